"""History and uptime per URL: counted in time buckets, written into the results document,
and carried over to the next process (a restart, or another member taking a URL over), locally
and on S3."""

from __future__ import annotations

import base64
import json
import time
import tracemalloc
import zlib

import boto3
import pytest
from prometheus_client import CollectorRegistry

from daemon.model import ProbeResult, Target
from daemon.outputs.document import Snapshot, build_document
from daemon.outputs.exposition import Exposition
from daemon.runtime import Daemon
from daemon.settings import load
from daemon.store import (
    FINE_BUCKETS,
    ResultsStore,
    TargetState,
    decode_buckets,
)
from daemon.telemetry import Telemetry
from tests.daemon_process import DaemonProcess
from tests.support import MotoServer, wait_until

HOUR, DAY = 3600, 86_400
T0 = 1_800_000_000  # a whole hour (and 5-minute period) in unix time
FAST = ("--interval", "1", "--reload-interval", "1", "--publish-interval", "1")


def result(up: bool, at: float, ms: float = 12.0, attempts: int = 1) -> ProbeResult:
    return ProbeResult(
        up=up,
        status_code=200 if up else 503,
        duration=ms / 1000,
        phases=(0.0, 0.001, 0.0, ms / 1000 - 0.002, 0.001),
        content_length=2,
        redirects=0,
        ssl=False,
        cert_expiry=None,
        error_kind=None if up else "http_status",
        error=None if up else "status 503, expected 200-399",
        started_at=at,
        attempts=attempts,
    )


def state_with(*probes: tuple[bool, float]) -> TargetState:
    state = TargetState(Target("http://127.0.0.1/x", "x"))
    for up, at in probes:
        state.record(result(up, at))
    return state


# -- uptime windows ------------------------------------------------------------------------


def test_each_window_counts_only_the_probes_inside_it():
    now = T0 + 30 * 60
    state = state_with(
        *[(False, now - 3 * DAY + i) for i in range(10)],  # in the week only
        *[(True, now - 2 * HOUR + i) for i in range(10)],  # in the day and the week
        *[(True, now - 20 * 60 + i) for i in range(4)],  # in all three
        (False, now - 60),
    )
    assert state.uptime(now) == {"1h": 0.8, "24h": 14 / 15, "7d": 14 / 25}


def test_probes_leave_a_window_as_it_moves_on():
    state = state_with((False, T0), (True, T0 + 10))
    assert state.uptime(T0 + 60) == {"1h": 0.5, "24h": 0.5, "7d": 0.5}
    assert state.uptime(T0 + 2 * HOUR) == {"1h": None, "24h": 0.5, "7d": 0.5}
    assert state.uptime(T0 + 2 * DAY) == {"1h": None, "24h": None, "7d": 0.5}
    assert state.uptime(T0 + 8 * DAY) == {"1h": None, "24h": None, "7d": None}


def test_the_bucket_a_window_starts_in_counts_for_its_share_inside_the_window():
    # The failure's 5-minute bucket [T0, T0 + 300) is half inside the hour before ``now``.
    now = T0 + HOUR + 150
    state = state_with((False, T0 + 10), (True, now - 10))
    assert state.uptime_ratio(now, HOUR) == pytest.approx(1 / 1.5)


def test_a_new_probe_empties_the_buckets_it_reuses():
    state = state_with((False, T0))
    later = T0 + 169 * HOUR  # the failure's buckets, hourly and 5-minute, come round again
    state.record(result(True, later))
    state.record(result(False, later + 1))
    assert state.uptime(later + 2) == {"1h": 0.5, "24h": 0.5, "7d": 0.5}


def test_a_clock_set_back_by_more_than_a_week_starts_the_counts_afresh():
    state = state_with((False, T0 + 30 * DAY))
    state.record(result(True, T0))
    assert state.uptime(T0 + 1) == {"1h": 1.0, "24h": 1.0, "7d": 1.0}


def test_memory_per_target_does_not_grow_with_probes():
    def allocated(probes: int) -> int:
        tracemalloc.start()
        states = []
        for i in range(50):
            state = TargetState(Target(f"http://127.0.0.1/{i}", str(i)))
            for k in range(probes):  # a probe every 5 minutes, 8 days for the largest
                state.record(result(k % 7 != 0, T0 + 300 * k))
            states.append(state)
        size, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return size

    one, many = allocated(1), allocated(2400)
    assert many <= one * 1.1, (one, many)


# -- the results document --------------------------------------------------------------------


def store_of(*states: tuple[str, list[tuple[bool, float]]]) -> ResultsStore:
    store = ResultsStore()
    for name, probes in states:
        target = Target(f"http://127.0.0.1/{name}", name)
        store.add(target)
        for up, at in probes:
            store.record(target, result(up, at))
    return store


def test_each_result_carries_its_uptime_attempts_and_buckets():
    store = store_of(("shop", [(True, T0 + 10), (False, T0 + 20)]), ("new", []))
    target = Target("http://127.0.0.1/retried", "retried")
    store.add(target)
    store.record(target, result(True, T0 + 30, attempts=3))
    entries = {e["name"]: e for e in build_document(store, "app", now=T0 + 60)["results"]}
    assert entries["shop"]["uptime"] == {"1h": 0.5, "24h": 0.5, "7d": 0.5}
    assert entries["shop"]["attempts"] == 1 and entries["retried"]["attempts"] == 3
    assert entries["shop"]["history"] == [12.0, None]
    assert entries["new"]["uptime"] == {"1h": None, "24h": None, "7d": None}
    assert entries["new"]["attempts"] is None and entries["new"]["uptime_buckets"] is None
    decoded = decode_buckets(entries["shop"]["uptime_buckets"])
    assert decoded is not None
    at, counts = decoded
    assert at == (T0 + 20) // 300
    assert (counts[at % FINE_BUCKETS], counts[FINE_BUCKETS + at % FINE_BUCKETS]) == (2, 1)


def test_the_results_json_lets_probes_run_while_it_is_encoded():
    store = store_of(*[(f"u{i}", [(i % 9 != 0, T0)]) for i in range(1_200)])
    pauses: list[int] = []
    snapshot = Snapshot(store, "app", True, pause=lambda: pauses.append(1))
    document = snapshot.document
    pauses.clear()
    encoded = snapshot.document_json
    assert len(pauses) >= 2  # between every 500 results
    whole = {**document, "results": list(document["results"])}
    assert encoded == json.dumps(whole, separators=(",", ":")).encode()


def test_history_and_uptime_survive_the_document_as_json():
    probes = [(k % 3 != 0, T0 - 5 * DAY + 977 * k) for k in range(400)]
    store = store_of(("shop", probes))
    now = T0 + 10
    entry = json.loads(json.dumps(build_document(store, "app", now=now)))["results"][0]
    carried = TargetState(Target("http://127.0.0.1/shop", "shop"))
    carried.seed(entry["history"], entry["consecutive_failures"], entry["uptime_buckets"])
    original = store.get("http://127.0.0.1/shop")
    assert original is not None
    for later in (now, now + HOUR / 2, now + DAY / 3, now + 5 * DAY):
        assert carried.uptime(later) == original.uptime(later)
    assert carried.history_ms() == original.history_ms()
    carried.record(result(False, now + 1))
    original.record(result(False, now + 1))
    assert carried.uptime(now + 2) == original.uptime(now + 2)


def test_a_target_not_probed_again_yet_keeps_what_was_carried_over():
    """A restart (or a handover) written down before the URL's first probe in the new process
    must not wipe its history and uptime from the results file."""
    earlier = build_document(store_of(("shop", [(False, T0), (True, T0 + 5)])), "app", now=T0)
    entry = earlier["results"][0]
    store = store_of(("shop", []))
    state = store.get("http://127.0.0.1/shop")
    assert state is not None
    state.seed(entry["history"], 3, entry["uptime_buckets"])
    again = build_document(store, "app", now=T0 + 60)["results"][0]
    assert again["up"] is None and again["history"] == [None, 12.0]
    assert again["consecutive_failures"] == 3
    assert again["uptime"] == {"1h": 0.5, "24h": 0.5, "7d": 0.5}
    assert again["uptime_buckets"] == entry["uptime_buckets"]


def test_probes_made_while_the_results_were_read_back_come_after_them_and_count_too():
    """Reading the results back (from S3: a while) overlaps the first probes of the new
    process; what they saw must not make the carried-over history and uptime be dropped."""
    earlier = build_document(store_of(("x", [(False, T0 + i) for i in range(5)])), "app", T0)
    carried = earlier["results"][0]
    recovered = state_with((True, T0 + 60))
    recovered.seed(carried["history"], 5, carried["uptime_buckets"])
    assert recovered.history_ms() == [None] * 5 + [12.0]
    assert recovered.uptime(T0 + 120) == {"1h": 1 / 6, "24h": 1 / 6, "7d": 1 / 6}
    assert recovered.consecutive_failures == 0
    still_down = state_with((False, T0 + 60), (False, T0 + 70))
    still_down.seed(carried["history"], 5, carried["uptime_buckets"])
    assert still_down.consecutive_failures == 7
    assert still_down.uptime(T0 + 120)["1h"] == 0.0


def test_a_streak_carried_over_after_the_first_probe_shows_in_metrics_at_once():
    store = store_of(("x", [(False, T0)]))
    exposition = Exposition(store, Telemetry(CollectorRegistry()))

    def streak() -> str:
        text = bytes(exposition.render()).decode()
        return next(line for line in text.splitlines() if line.startswith("upcheck_consec"))

    assert streak().endswith(" 1")  # rendered, and cached on the state's version
    assert store.seed("http://127.0.0.1/x", [None] * 4, 4)
    assert streak().endswith(" 5")
    assert not store.seed("http://127.0.0.1/gone", [], 0)


def test_what_was_carried_over_is_counted_once():
    carried = build_document(store_of(("x", [(False, T0), (True, T0 + 1)])), "app", T0)
    entry = carried["results"][0]
    state = state_with()
    for _ in range(2):  # e.g. two changes of members while the results were being read
        state.seed(entry["history"], 1, entry["uptime_buckets"])
    assert state.history_ms() == [None, 12.0]
    assert state.consecutive_failures == 1
    decoded = decode_buckets(entry["uptime_buckets"])
    assert decoded is not None and state.uptime_buckets() == (
        decoded[0] * 300,
        decoded[1].tobytes(),
    )


@pytest.mark.parametrize(
    "damaged",
    [
        None,
        "not a dict",
        {"layout": "60x60", "at": T0, "counts": ""},
        {"layout": "300x13,3600x169", "at": "soon", "counts": ""},
        {"layout": "300x13,3600x169", "at": T0, "counts": "%%% not base64"},
        {"layout": "300x13,3600x169", "at": T0, "counts": "AAAA"},
        "1 MB of zeros",  # inflates to far more than the counts can be
    ],
)
def test_damaged_uptime_counts_are_ignored(damaged):
    if damaged == "1 MB of zeros":
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = deflate.compress(bytes(1 << 20)) + deflate.flush()
        damaged = {"layout": "300x13,3600x169", "at": T0, "counts": base64.b64encode(bomb).decode()}
    state = TargetState(Target("http://127.0.0.1/x", "x"))
    state.seed([1.0, None], 1, damaged)
    assert state.uptime(T0) == {"1h": None, "24h": None, "7d": None}
    assert state.history_ms() == [1.0, None]  # the rest is still carried over


def test_a_url_that_moves_to_this_member_keeps_its_history_and_uptime(tmp_path):
    """With a shared list, a member that takes URLs over (a peer left) reads what the peer
    saw from the combined results file."""
    targets = [Target(f"http://127.0.0.1:9/{i}", f"t{i}") for i in range(40)]
    now = time.time()
    seen = ResultsStore()
    for i, target in enumerate(targets):
        seen.add(target)
        for k in range(4):
            seen.record(target, result(k != i % 4, now - 60 * k))
    results = tmp_path / "results.json"
    results.write_text(json.dumps(build_document(seen, "upcheck", now=now)))
    csv = tmp_path / "urls.csv"
    csv.write_text("url,name\n" + "".join(f"{t.url},{t.name}\n" for t in targets))

    daemon = Daemon(load(["--targets", str(csv), "--results", str(results), "--shard", "0/2"]))
    daemon.start_membership()  # static members 0 and 1; this is 0
    daemon.apply(targets)
    daemon.reloader.loaded = True
    first_share = {t.url for t in daemon.own_share(targets)}
    assert 0 < len(first_share) < len(targets)
    daemon.members_changed(["0"])  # member 1 is gone: its URLs move here
    assert len(daemon.store) == len(targets)
    for target in targets:
        state, before = daemon.store.get(target.url), seen.get(target.url)
        assert state is not None and before is not None
        assert state.history_ms() == before.history_ms()
        assert state.uptime(now) == before.uptime(now) != {"1h": 1.0, "24h": 1.0, "7d": 1.0}
        assert state.consecutive_failures == before.consecutive_failures


# -- a restart of the daemon, on local disk and on S3 ---------------------------------------


class Switch:
    """A site whose answer the test changes: failing before the restart, healthy after it."""

    def __init__(self) -> None:
        self.status = "503 Service Unavailable"

    def __call__(self, environ, start_response):
        start_response(self.status, [("Content-Type", "text/plain")])
        return [b"ok"]


def fine_probes(entry: dict) -> int:
    decoded = decode_buckets(entry["uptime_buckets"])
    assert decoded is not None
    return sum(decoded[1][:FINE_BUCKETS])


def check_restart(read_entry, start_daemon, site: Switch) -> None:
    """Run, SIGTERM, run again on the same results file: the second run's history is the
    first's followed by its own probes, and its uptime counts the first run's failures."""
    with start_daemon("first.log"):
        wait_until(
            lambda: (e := read_entry()) and len(e["history"]) >= 4,
            timeout=30,
            what="four probes in the results file",
        )
    before = read_entry()  # as written on the way out (SIGTERM)
    assert before is not None
    assert set(before["history"]) == {None} and before["uptime"]["1h"] == 0.0
    earlier_probes = fine_probes(before)
    assert earlier_probes >= len(before["history"])

    site.status = "200 OK"
    with start_daemon("second.log") as second:
        after = wait_until(
            lambda: (e := read_entry()) and e["up"] is True and e,
            timeout=30,
            what="the first healthy probe after the restart in the results file",
        )
        assert "event=history_carried_over" in second.log()
    new = [ms for ms in after["history"] if ms is not None]
    assert new and after["history"] == (before["history"] + new)[-20:]
    assert fine_probes(after) == earlier_probes + len(new)
    assert after["uptime"]["1h"] == pytest.approx(len(new) / (earlier_probes + len(new)))
    assert after["consecutive_failures"] == 0


def test_history_and_uptime_continue_after_a_restart(tmp_path, servers):
    site = Switch()
    url = f"http://127.0.0.1:{servers.wsgi(site)}/"
    csv = tmp_path / "urls.csv"
    csv.write_text(f"url,name\n{url},shop\n")
    results = tmp_path / "results.json"

    def read_entry() -> dict | None:
        try:
            return json.loads(results.read_text())["results"][0]
        except (OSError, ValueError, IndexError):
            return None

    def start(log: str) -> DaemonProcess:
        return DaemonProcess(
            "--targets", str(csv), "--results", str(results), *FAST, log=tmp_path / log
        )  # fmt: skip

    check_restart(read_entry, start, site)


@pytest.fixture
def moto():
    server = MotoServer().start()
    yield server
    server.stop()


def test_history_and_uptime_continue_after_a_restart_on_s3(tmp_path, servers, moto):
    site = Switch()
    url = f"http://127.0.0.1:{servers.wsgi(site)}/"
    env = moto.env()
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    s3.create_bucket(Bucket="upcheck")
    s3.put_object(Bucket="upcheck", Key="urls.csv", Body=f"url,name\n{url},shop\n".encode())

    def read_entry() -> dict | None:
        try:
            body = s3.get_object(Bucket="upcheck", Key="prod/results.json")["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        results = json.loads(body)["results"]
        return results[0] if results else None

    def start(log: str) -> DaemonProcess:
        return DaemonProcess(
            "--targets", "s3://upcheck/urls.csv", "--results", "s3://upcheck/prod/results.json",
            *FAST, env=env, log=tmp_path / log,
        )  # fmt: skip

    check_restart(read_entry, start, site)
