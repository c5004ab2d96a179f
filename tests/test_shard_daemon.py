"""Several daemons share one list (``--shard``), as real processes against real local sites:
each URL is probed by one member, the members' parts merge into one results file, and a member
that leaves or joins moves only its share."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections import Counter
from urllib.parse import urlsplit

import pytest

from daemon.sharding.membership import task_id
from daemon.sharding.rendezvous import Ring
from tests.daemon_process import ROOT, DaemonProcess
from tests.support import MotoServer, wait_until
from tests.test_sharding import EcsService, MetadataEndpoint, fargate_task_metadata

FAST = ("--interval", "1", "--reload-interval", "1", "--publish-interval", "1")
URLS = 60


class CountingSite:
    """One local site answering every path, counting the hits per path (thread-safe: the
    server runs as greenlets, the counts are read from the test)."""

    def __init__(self, servers) -> None:
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.port = servers.wsgi(self._app)

    def _app(self, environ, start_response):
        with self._lock:
            self.hits[environ["PATH_INFO"]] += 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def urls(self, count: int) -> list[str]:
        return [f"http://127.0.0.1:{self.port}/u{i}" for i in range(count)]

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.hits)

    def all_probed_since(self, before: Counter[str], urls: set[str]) -> bool:
        now = self.snapshot()
        return all(now[urlsplit(u).path] > before[urlsplit(u).path] for u in urls)


def write_list(path, urls: list[str]) -> None:
    path.write_text("url,name\n" + "".join(f"{u},n{i}\n" for i, u in enumerate(urls)))


def owned(daemon: DaemonProcess) -> set[str]:
    """The URLs a member exports on /metrics: its share of the list."""
    return {
        match.group(1)
        for key in daemon.metrics()
        if key.startswith("probe_success{")
        for match in [re.search(r'url="([^"]+)"', key)]
        if match
    }


def test_each_url_is_probed_by_exactly_one_of_three_members(tmp_path, servers):
    site = CountingSite(servers)
    urls = site.urls(URLS)
    csv = tmp_path / "urls.csv"
    write_list(csv, urls)
    results = tmp_path / "results.json"
    for index in range(3):
        done = subprocess.run(
            [sys.executable, "-m", "daemon", "--targets", str(csv), "--results", str(results),
             "--shard", f"{index}/3", "--once"],
            cwd=ROOT, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
    hits = site.snapshot()
    assert sorted(hits) == sorted(f"/u{i}" for i in range(URLS))
    assert set(hits.values()) == {1}  # every URL once, by one member, in the round
    parts = sorted(p.name for p in (tmp_path / "results.json.parts").iterdir())
    assert parts == ["0.json", "1.json", "2.json"]
    shares = [len(json.loads((tmp_path / "results.json.parts" / p).read_text())["results"])
              for p in parts]  # fmt: skip
    assert sum(shares) == URLS and all(shares)


def test_three_members_merge_one_results_file_and_a_restarted_member_covers_its_share_again(
    tmp_path, servers
):
    site = CountingSite(servers)
    urls = site.urls(URLS)
    csv = tmp_path / "urls.csv"
    write_list(csv, urls)
    results = tmp_path / "results.json"

    def member(index: int, log: str) -> DaemonProcess:
        return DaemonProcess(
            "--targets", str(csv), "--results", str(results), "--shard", f"{index}/3", *FAST,
            log=tmp_path / log,
        )  # fmt: skip

    members = [member(i, f"member{i}.log") for i in range(3)]
    try:
        wait_until(lambda: sum(len(owned(m)) for m in members) == URLS, what="every share")
        shares = [owned(m) for m in members]
        assert set().union(*shares) == set(urls)
        assert sum(len(s) for s in shares) == URLS  # disjoint: no URL exported twice

        def combined() -> dict | None:
            try:
                document = json.loads(results.read_text())
            except (OSError, ValueError):
                return None
            done = len(document.get("members", [])) == 3 and all(
                r["up"] is True for r in document["results"]
            )
            return document if done and document["targets_total"] == URLS else None

        document = wait_until(combined, timeout=30, what="the combined results file")
        assert sorted(r["url"] for r in document["results"]) == sorted(urls)
        assert [m["id"] for m in document["members"]] == ["0", "1", "2"]
        assert all(m["age_seconds"] is not None for m in document["members"])
        assert members[0].sample("upcheck_shard_members") == 3
        assert members[1].sample("upcheck_shard_owned_targets") == len(shares[1])
        assert members[1].sample("upcheck_targets") == URLS  # the whole list, on every member

        # Member 1 stops; while it is gone its share is not probed (static members do not
        # watch each other). Started again, it covers its share again, with the history its
        # earlier self left in the combined file.
        members[1].stop()
        members[1] = member(1, "member1-again.log")
        before = site.snapshot()
        wait_until(
            lambda: site.all_probed_since(before, shares[1]),
            timeout=30,
            what="member 1's URLs probed again",
        )
        assert owned(members[1]) == shares[1]
        wait_until(
            lambda: "event=history_carried_over" in members[1].log(), what="history read back"
        )
    finally:
        for m in members:
            m.stop()


# -- ECS: members are the running tasks of a service ----------------------------------------


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as server:
        yield server


def test_ecs_members_take_over_a_departed_share_and_a_joining_task_takes_only_its_own(
    tmp_path, servers, moto, monkeypatch
):
    """moto cannot run Fargate tasks: RunTask creates task records in a cluster (kept RUNNING
    by its manual state manager) and ListTasks lists them, which is all the membership asks.
    Each daemon reads its own task ARN from its own stand-in of the task metadata endpoint."""
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    service = EcsService(moto)
    site = CountingSite(servers)
    urls = site.urls(40)
    csv = tmp_path / "urls.csv"
    write_list(csv, urls)
    results = tmp_path / "results.json"
    arns = service.run(3)

    def member(arn: str, log: str) -> DaemonProcess:
        endpoint = MetadataEndpoint(servers)
        endpoint.document = fargate_task_metadata(arn, service.cluster_arn, service.service)
        return DaemonProcess(
            "--targets", str(csv), "--results", str(results), "--shard", "ecs",
            "--shard-refresh-interval", "5", *FAST,
            env={**moto.env(), "ECS_CONTAINER_METADATA_URI_V4": endpoint.url},
            log=tmp_path / log,
        )  # fmt: skip

    members = [member(arn, f"task{i}.log") for i, arn in enumerate(arns)]
    try:

        def shares_settled(ms: list[DaemonProcess]) -> list[set[str]] | None:
            """Each URL exported by exactly one member, and every member exporting some: a
            member just started exports nothing until its first probes, while the others,
            not yet refreshed, still cover the whole list."""
            shares = [owned(m) for m in ms]
            whole = set().union(*shares) == set(urls)
            once = sum(len(s) for s in shares) == len(urls)
            return shares if whole and once and all(shares) else None

        shares = wait_until(lambda: shares_settled(members), timeout=30, what="three shares")
        assert all(m.sample("upcheck_shard_members") == 3 for m in members)

        # A task stops: the other two take its share over at their next refreshes.
        service.stop(arns[2])
        members[2].stop()
        gone = shares[2]
        before = site.snapshot()
        wait_until(lambda: shares_settled(members[:2]), timeout=30, what="two members cover all")
        wait_until(
            lambda: site.all_probed_since(before, gone),
            timeout=30,
            what="the departed share probed again",
        )

        # A task joins the two: it takes exactly the URLs the ring gives it among the three,
        # and every URL that moves moves to it; nothing moves between the two that stayed.
        # (How many that is varies with the random task ids: a third on average, over half of
        # 40 in about 2% of runs, so the count itself is not asserted.)
        two = shares_settled(members[:2])
        assert two is not None
        joined_arn = service.run(1)[0]
        members.append(member(joined_arn, "task-joined.log"))
        three = wait_until(
            lambda: shares_settled([members[0], members[1], members[3]]),
            timeout=30,
            what="the joined member's share",
        )
        moved = (two[0] - three[0]) | (two[1] - three[1])
        assert moved == three[2]  # nothing moved between the two old members
        ring = Ring([task_id(arns[0]), task_id(arns[1]), task_id(joined_arn)])
        assert three[2] == {url for url in urls if ring.owner(url) == task_id(joined_arn)}
    finally:
        for m in members:
            m.stop()
