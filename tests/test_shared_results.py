"""Members' parts and the merged results file: one suite, run against a local folder and against
S3 (moto in server mode)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import gevent
import pytest

from daemon.aws import make_client
from daemon.model import ProbeResult, Target
from daemon.outputs.document import Snapshot, iso
from daemon.outputs.page import render_status_page
from daemon.outputs.results_file import LocalResultsFile, S3ResultsFile
from daemon.outputs.shared_results import SharedResults, merge_documents
from daemon.runtime import Daemon
from daemon.settings import load
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


def test_the_merging_member_lets_the_probes_run_while_it_merges_many_parts(tmp_path):
    """At 50k URLs the parse, merge and render of the parts cost seconds of CPU: the daemon's
    merging member must hand the event loop to the probes again and again meanwhile, and the
    combined file and page must be those of the parts read whole."""
    results = tmp_path / "results.json"
    csv = tmp_path / "urls.csv"
    csv.write_text("url,name\nhttp://127.0.0.1:9/x,x\n")
    daemon = Daemon(load(["--targets", str(csv), "--results", str(results), "--shard", "0/1"]))
    assert daemon.shared_results is not None and daemon.is_merger()
    file = LocalResultsFile(str(results))
    at = time.time()
    parts = {}
    for member in ("1", "2"):
        peer = SharedResults(file, lambda m=member: m, lambda: False, "shop", 60.0)
        urls = [f"http://127.0.0.1:9/{member}/{i}" for i in range(2_000)]
        peer.publish(snapshot_of(*urls, up=member == "1", at=at))
        parts[member] = (Path(file.parts_dir) / f"{member}.json").read_bytes()

    ran_during_merge = 0
    merging = True

    def probe() -> None:
        """Stands for the scheduler, which waits on a timer for the next probe due: it runs
        only when the event loop turns, which ``gevent.sleep(0)`` alone does only every 50
        calls."""
        nonlocal ran_during_merge
        while merging:
            ran_during_merge += 1
            gevent.sleep(1e-6)

    prober = gevent.spawn(probe)
    gevent.sleep(0)
    ran_during_merge = 0
    own = snapshot_of(*[f"http://127.0.0.1:9/0/{i}" for i in range(2_000)], at=at)
    daemon.shared_results.publish(own)
    merging = False
    prober.join()
    assert ran_during_merge >= 20  # 6,000 entries read, merged, encoded, laid out in slices

    document = json.loads(results.read_bytes())
    read_whole = [json.loads(own.document_json), json.loads(parts["1"]), json.loads(parts["2"])]
    assert document["results"] == [e for part in read_whole for e in part["results"]]
    assert [m["id"] for m in document["members"]] == ["0", "1", "2"]
    assert (document["targets_total"], document["targets_up"], document["targets_down"]) == (
        6_000, 4_000, 2_000,
    )  # fmt: skip
    page = results.with_suffix(".html").read_text()
    assert page == render_status_page(document)  # the same page as from the file read whole


def test_a_part_that_is_not_a_results_document_is_left_out_and_the_rest_merged(
    results_file, caplog
):
    """The merge reads the parts entry by entry rather than with ``json.loads``; what that
    would refuse (or what no member writes) leaves its part out, with a warning naming it."""
    written = snapshot_of("http://127.0.0.1/cut").document_json
    whole = json.loads(written)
    broken = {
        "cut": written[:-40],
        "trailing": written + b" {}",
        "nan": written.replace(b'"response_time_ms":10.0', b'"response_time_ms":NaN'),
        "not_an_entry": json.dumps({**whole, "results": [1]}).encode(),
        "list_of_results": json.dumps(whole["results"]).encode(),
    }
    assert b"NaN" in broken["nan"]
    for member, data in broken.items():
        results_file.write_part(member, data)
    merger = SharedResults(results_file, lambda: "ok", lambda: True, "shop", 60.0)
    merger.publish(snapshot_of("http://127.0.0.1/fine"))
    document = combined(results_file)
    assert [r["url"] for r in document["results"]] == ["http://127.0.0.1/fine"]
    assert [m["id"] for m in document["members"]] == ["ok"]
    warned = {r.getMessage() for r in caplog.records if "results_part_unreadable" in r.getMessage()}
    assert all(any(f"member={member}" in line for line in warned) for member in broken), warned


def test_a_part_laid_out_otherwise_merges_to_the_same_document(results_file):
    """Another writer's layout (spaces, line breaks, results first, a BOM-less UTF-8 name)
    reads as ``json.loads`` reads it, and the entries are copied as their meaning, not bytes."""
    mine = json.loads(snapshot_of("http://127.0.0.1/1", "http://127.0.0.1/2").document_json)
    mine["results"][1]["name"] = "café ☕"
    spaced = {"results": mine["results"], **{k: v for k, v in mine.items() if k != "results"}}
    results_file.write_part("a-spaced", json.dumps(spaced, indent=2, ensure_ascii=False).encode())
    merger = SharedResults(results_file, lambda: "b", lambda: True, "shop", 60.0)
    merger.publish(snapshot_of("http://127.0.0.1/3"))
    document = combined(results_file)
    assert document["results"][:2] == mine["results"]
    assert [r["url"] for r in document["results"]][2:] == ["http://127.0.0.1/3"]
    assert [m["targets"] for m in document["members"]] == [2, 1]
