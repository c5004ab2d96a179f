"""Members' parts and the merged results file: one suite, run against a local folder and against
S3 (moto in server mode)."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from daemon.aws import make_client
from daemon.model import ProbeResult, Target
from daemon.outputs.document import Snapshot, iso
from daemon.outputs.results_file import LocalResultsFile, S3ResultsFile
from daemon.outputs.shared_results import SharedResults, merge_documents
from daemon.store import ResultsStore
from tests.support import MotoServer


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def results_file(request, tmp_path, monkeypatch):
    if request.param == "local":
        return LocalResultsFile(str(tmp_path / "prod" / "results.json"))
    moto = request.getfixturevalue("moto")
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    urllib.request.urlopen(
        urllib.request.Request(f"{moto.endpoint_url}/moto-api/reset", method="POST")
    )
    client = make_client("s3")
    client.create_bucket(Bucket="upcheck-results")
    return S3ResultsFile("s3://upcheck-results/prod/results.json", client=client)


def result(up: bool, started_at: float) -> ProbeResult:
    return ProbeResult(
        up=up,
        status_code=200 if up else 500,
        duration=0.01,
        phases=(0.0, 0.002, 0.0, 0.006, 0.002),
        content_length=2,
        redirects=0,
        ssl=False,
        cert_expiry=None,
        error_kind=None if up else "http_status",
        error=None if up else "status 500, expected 200-399",
        started_at=started_at,
    )


def snapshot_of(*urls: str, up: bool = True, at: float | None = None) -> Snapshot:
    store = ResultsStore()
    for url in urls:
        target = Target(url=url, name=url.rsplit("/", 1)[-1])
        store.add(target)
        store.record(target, result(up, at or time.time()))
    return Snapshot(store, "shop", targets_load_success=True)


def combined(results_file) -> dict:
    data = results_file.read_document()
    assert data is not None
    return json.loads(data)


def test_the_merging_member_writes_every_url_once_with_the_members_and_their_ages(
    results_file,
):
    a = SharedResults(results_file, lambda: "a", lambda: False, "shop", 60.0)
    b = SharedResults(results_file, lambda: "b", lambda: True, "shop", 60.0)
    a.publish(snapshot_of("http://127.0.0.1/1", "http://127.0.0.1/2"))
    assert results_file.read_document() is None  # a does not merge
    b.publish(snapshot_of("http://127.0.0.1/3", up=False))
    document = combined(results_file)
    assert sorted(r["url"] for r in document["results"]) == [
        "http://127.0.0.1/1", "http://127.0.0.1/2", "http://127.0.0.1/3",
    ]  # fmt: skip
    assert (document["targets_total"], document["targets_up"], document["targets_down"]) == (
        3, 2, 1,
    )  # fmt: skip
    assert [m["id"] for m in document["members"]] == ["a", "b"]
    assert [m["targets"] for m in document["members"]] == [2, 1]
    assert all(0 <= m["age_seconds"] < 60 for m in document["members"])
    assert b.merged_counts == (3, 2, 1) and a.merged_counts is None


def test_a_part_older_than_three_publish_intervals_is_left_out(results_file):
    old = SharedResults(results_file, lambda: "old", lambda: False, "shop", 60.0)
    fresh = SharedResults(results_file, lambda: "fresh", lambda: True, "shop", 60.0)
    long_ago = time.time() - 3 * 60 - 30
    stale = snapshot_of("http://127.0.0.1/gone")
    stale.__dict__["document"] = {**stale.document, "generated_at": iso(long_ago)}
    old.publish(stale)
    fresh.publish(snapshot_of("http://127.0.0.1/here"))
    document = combined(results_file)
    assert [r["url"] for r in document["results"]] == ["http://127.0.0.1/here"]
    assert [m["id"] for m in document["members"]] == ["fresh"]


def test_a_url_two_members_probed_during_a_handover_keeps_the_newer_result():
    url = "http://127.0.0.1/moving"
    older = snapshot_of(url, up=False, at=time.time() - 30).document
    newer = snapshot_of(url, up=True).document
    document = merge_documents([("a", newer), ("b", older)], "shop", time.time())
    assert len(document["results"]) == 1 and document["results"][0]["up"] is True
    document = merge_documents([("b", older), ("a", newer)], "shop", time.time())
    assert len(document["results"]) == 1 and document["results"][0]["up"] is True


def test_the_combined_page_is_written_beside_the_combined_file(results_file, tmp_path):
    SharedResults(results_file, lambda: "a", lambda: True, "shop", 60.0).publish(
        snapshot_of("http://127.0.0.1/1")
    )
    if isinstance(results_file, LocalResultsFile):
        page = (tmp_path / "prod" / "results.html").read_text()
    else:
        body = results_file.client.get_object(Bucket="upcheck-results", Key="prod/results.html")
        page = body["Body"].read().decode()
    assert "<h1>shop</h1>" in page and "http://127.0.0.1/1" in page
