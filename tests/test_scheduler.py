"""The scheduler under a fake clock: spread, phase, lateness, concurrency, reconcile."""

from __future__ import annotations

import logging
import weakref

import gevent
import pytest
from prometheus_client import CollectorRegistry

from daemon.logs import _LogfmtFormatter
from daemon.model import Target
from daemon.scheduler import DISPATCHER_RESTARTS, RESTART_WINDOW, Scheduler
from daemon.store import ResultsStore
from daemon.telemetry import Telemetry
from daemon.web import create_app
from tests.fakes import FakeClock, result


class Recorder:
    """A probe that records when each target was probed and can take (fake) time."""

    def __init__(self, clock: FakeClock, takes: float = 0.0) -> None:
        self.clock = clock
        self.takes = takes
        self.calls: list[tuple[str, float]] = []
        self.running = 0
        self.most_running = 0

    def __call__(self, target: Target):
        self.calls.append((target.url, self.clock.now))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.takes:
                self.clock.sleep(self.takes)
        finally:
            self.running -= 1
        return result()

    def times(self, url: str) -> list[float]:
        return [t for u, t in self.calls if u == url]


def targets(n: int, **fields) -> list[Target]:
    return [Target(url=f"http://127.0.0.1/{i}", name=f"t{i}", **fields) for i in range(n)]


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def telemetry():
    return Telemetry(CollectorRegistry())


def make(clock, telemetry, probe, interval=10.0, concurrency=100, store=None):
    scheduler = Scheduler(
        probe,
        store if store is not None else ResultsStore(),
        telemetry,
        clock,
        interval=interval,
        timeout=5.0,
        concurrency=concurrency,
    )
    scheduler.start()
    return scheduler


def sample(telemetry: Telemetry, name: str, **labels) -> float:
    value = telemetry.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_first_probes_are_spread_evenly_over_the_interval(clock, telemetry):
    probe = Recorder(clock)
    scheduler = make(clock, telemetry, probe, interval=10.0)
    start = clock.now
    scheduler.apply(targets(5))
    clock.advance(9.99)
    firsts = sorted(t - start for _, t in probe.calls)
    assert firsts == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0])
    scheduler.stop()


def test_each_target_keeps_its_phase_interval_after_interval(clock, telemetry):
    probe = Recorder(clock, takes=0.3)
    scheduler = make(clock, telemetry, probe, interval=10.0)
    start = clock.now
    scheduler.apply(targets(2))
    clock.advance(35)
    assert [t - start for t in probe.times("http://127.0.0.1/1")] == pytest.approx(
        [5.0, 15.0, 25.0, 35.0]
    )
    scheduler.stop()


def test_a_per_target_interval_overrides_the_default(clock, telemetry):
    probe = Recorder(clock)
    scheduler = make(clock, telemetry, probe, interval=10.0)
    fast = Target(url="http://127.0.0.1/fast", name="fast", interval=2.0)
    scheduler.apply([fast])
    clock.advance(9)
    assert len(probe.times(fast.url)) == 5
    scheduler.stop()


def test_concurrency_bounds_probes_in_flight(clock, telemetry):
    probe = Recorder(clock, takes=25.0)
    scheduler = make(clock, telemetry, probe, interval=60.0, concurrency=2)
    scheduler.apply(targets(6))  # due every 10 s, each probe takes 25 s
    clock.advance(59)
    assert probe.most_running == 2
    scheduler.stop()


def test_lateness_records_how_long_a_probe_waited_for_a_slot(clock, telemetry):
    probe = Recorder(clock, takes=12.0)
    scheduler = make(clock, telemetry, probe, interval=60.0, concurrency=1)
    scheduler.apply(targets(6))
    # Due at 0, 10, 20, 30, 40; one slot, 12 s a probe: they start at 0, 12, 24, 36, 48.
    clock.advance(59)
    assert sample(telemetry, "upcheck_probe_lateness_seconds_count") == 5
    assert sample(telemetry, "upcheck_probe_lateness_seconds_sum") == pytest.approx(20.0)
    assert sample(telemetry, "upcheck_probe_lateness_seconds_bucket", le="5.0") == 3
    assert sample(telemetry, "upcheck_probes_total", result="success") == 4
    scheduler.stop()


def test_a_slot_missed_entirely_is_skipped_not_run_twice(clock, telemetry):
    probe = Recorder(clock, takes=25.0)  # longer than two intervals
    scheduler = make(clock, telemetry, probe, interval=10.0)
    start = clock.now
    scheduler.apply(targets(1))
    clock.advance(45)
    # 0: runs until 25; slots 10 and 20 were missed; next on the phase grid is 30.
    assert [t - start for t in probe.times("http://127.0.0.1/0")] == [0.0, 30.0]
    scheduler.stop()


def test_reload_keeps_unchanged_targets_and_their_history(clock, telemetry):
    store = ResultsStore()
    probe = Recorder(clock)
    scheduler = make(clock, telemetry, probe, interval=10.0, store=store)
    keep, drop, change = targets(3)
    scheduler.apply([keep, drop, change])
    clock.advance(25)
    kept_state = store.get(keep.url)
    assert kept_state is not None and len(kept_state.history()) == 3
    phase_before = probe.times(keep.url)

    changed = Target(url=change.url, name="renamed")
    added = Target(url="http://127.0.0.1/new", name="new")
    assert scheduler.apply([keep, changed, added]) == (1, 1, 1)

    assert store.get(drop.url) is None
    assert store.get(keep.url) is kept_state  # same state object: history kept
    new_state = store.get(change.url)
    assert new_state is not None and new_state.target.name == "renamed"
    assert new_state.last is None  # a changed target restarts from scratch
    calls_before = len(probe.calls)
    clock.advance(10)
    assert drop.url not in [u for u, _ in probe.calls[calls_before:]]
    # The kept target stays on its old phase grid.
    assert probe.times(keep.url)[len(phase_before)] == pytest.approx(phase_before[-1] + 10)
    assert len(kept_state.history()) == 4
    assert len(scheduler.targets()) == 3
    scheduler.stop()


def test_results_of_a_probe_that_outlives_its_target_are_dropped(clock, telemetry):
    store = ResultsStore()
    probe = Recorder(clock, takes=3.0)
    scheduler = make(clock, telemetry, probe, store=store)
    (target,) = targets(1)
    scheduler.apply([target])
    clock.advance(1)  # the probe is running
    scheduler.apply([])
    clock.advance(5)
    assert store.get(target.url) is None
    assert len(store) == 0
    scheduler.stop()


def test_health_fails_when_no_probe_finishes_for_too_long(clock, telemetry):
    probe = Recorder(clock, takes=10_000.0)  # a probe that never comes back
    scheduler = make(clock, telemetry, probe, interval=10.0)
    scheduler.apply(targets(1))
    clock.advance(30)
    assert scheduler.health() == (True, "ok")
    clock.advance(60)
    healthy, reason = scheduler.health()
    assert not healthy and "no probe finished" in reason
    scheduler.stop()
    assert scheduler.health() == (False, "scheduler is not running")


def test_health_stays_good_with_no_targets_at_all(clock, telemetry):
    scheduler = make(clock, telemetry, Recorder(clock))
    clock.advance(3600)
    assert scheduler.health() == (True, "ok")
    scheduler.stop()


def test_a_crashing_probe_is_logged_and_the_target_keeps_its_schedule(clock, telemetry, caplog):
    calls: list[float] = []

    def crashing(target):
        calls.append(clock.now)
        raise RuntimeError("bug")

    scheduler = make(clock, telemetry, crashing, interval=10.0)
    scheduler.apply(targets(1))
    clock.advance(25)
    assert len(calls) == 3
    assert "probe_crashed" in caplog.text
    assert scheduler.health()[0]
    scheduler.stop()


def test_idle_targets_hold_no_greenlet(clock, telemetry):
    import gc

    import gevent

    def greenlets() -> int:
        return sum(isinstance(o, gevent.Greenlet) for o in gc.get_objects())

    scheduler = make(clock, telemetry, Recorder(clock), interval=3600.0)
    before = greenlets()
    scheduler.apply(targets(500))
    clock.advance(1)  # one target is due at once; the other 499 wait in the timetable
    assert greenlets() - before <= 2
    scheduler.stop()


def test_a_target_added_later_is_probed_at_once_not_after_the_longest_wait(clock, telemetry):
    probe = Recorder(clock)
    scheduler = make(clock, telemetry, probe, interval=3600.0)
    (first,) = targets(1)
    scheduler.apply([first])
    clock.advance(10)  # the dispatcher now waits for first's next probe, an hour away
    added = Target(url="http://127.0.0.1/added", name="added")
    scheduler.apply([first, added])
    clock.advance(1)
    assert probe.times(added.url) == [pytest.approx(clock.now - 1)]
    scheduler.stop()


def test_a_target_removed_while_waiting_for_a_slot_is_never_probed(clock, telemetry):
    probe = Recorder(clock, takes=50.0)
    scheduler = make(clock, telemetry, probe, interval=60.0, concurrency=1)
    busy, waiting = targets(2)  # due at 0 and 30; the first holds the only slot until 50
    scheduler.apply([busy, waiting])
    clock.advance(40)  # waiting is due, and waits for the slot
    scheduler.apply([busy])
    clock.advance(15)
    assert probe.times(waiting.url) == []
    assert sample(telemetry, "upcheck_probes_in_flight") == 0
    scheduler.stop()


def test_probes_stopped_or_removed_midway_are_not_counted_as_crashes(clock, telemetry):
    probe = Recorder(clock, takes=50.0)
    scheduler = make(clock, telemetry, probe, interval=60.0)
    removed, stopped = targets(2)  # both start within the first 30 s and run for 50 s
    scheduler.apply([removed, stopped])
    clock.advance(31)
    assert sample(telemetry, "upcheck_probes_in_flight") == 2
    scheduler.apply([stopped])
    clock.advance(1)
    scheduler.stop()
    assert sample(telemetry, "upcheck_probes_total", result="crash") == 0
    assert sample(telemetry, "upcheck_probes_in_flight") == 0


def test_a_probe_removed_before_it_ran_gives_its_slot_back(clock, telemetry):
    probe = Recorder(clock)
    scheduler = make(clock, telemetry, probe, interval=10.0, concurrency=2)
    for round_ in range(3):
        scheduler.apply([Target(url=f"http://127.0.0.1/gone{round_}", name="gone")])
        gevent.sleep(0)  # the dispatcher takes a slot and spawns the probe, not yet started
        scheduler.apply([])  # ... which a reload removes before it ever ran
    kept = targets(2)
    scheduler.apply(kept)
    clock.advance(9.99)
    assert sorted(url for url, _ in probe.calls) == sorted(t.url for t in kept)


def test_renaming_every_row_on_each_reload_does_not_pile_up_the_timetable(clock, telemetry):
    # The numbers: 1,000 targets at 3600 s, 30 loads a minute apart, each renaming
    # every row, left 22,740 rows in the timetable, each holding an old Target.
    probe = Recorder(clock)
    scheduler = make(clock, telemetry, probe, interval=3600.0)
    urls = [f"http://127.0.0.1/{i}" for i in range(1000)]
    old: list[weakref.ref[Target]] = []
    for generation in range(30):
        batch = [Target(url=url, name=f"r{generation}") for url in urls]
        if generation < 29:
            old.extend(weakref.ref(t) for t in batch)
        probed_before = len(probe.calls)
        scheduler.apply(batch)
        del batch
        clock.advance(60)
    assert len(scheduler._timetable) <= 2 * len(urls) + 100
    # Freed by reference counting alone, no gc.collect(): the daemon freezes its heap after
    # a big reload, and a frozen cycle would never be collected.
    assert sum(ref() is not None for ref in old) == 0
    # Dropping rows lost no live target: the last list is probed, each URL once an interval.
    clock.advance(3600 - 60 - 1)
    assert sorted(url for url, _ in probe.calls[probed_before:]) == sorted(urls)
    scheduler.stop()


def test_after_waiting_for_a_slot_held_for_a_removed_target_the_next_starts_on_time(
    clock, telemetry
):
    probe = Recorder(clock, takes=50.0)
    scheduler = make(clock, telemetry, probe, interval=60.0, concurrency=1)
    start = clock.now
    a, b, c = targets(3)  # due at 0, 20 and 40; a holds the only slot until 50
    scheduler.apply([a, b, c])
    clock.advance(30)  # the dispatcher holds b and waits for the slot
    scheduler.apply([a, c])
    clock.advance(25)
    assert probe.times(b.url) == []
    assert [t - start for t in probe.times(c.url)] == [50.0]  # due at 40, the slot freed at 50
    scheduler.stop()


def crash_records(caplog, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(f"event={name} ")]


@pytest.mark.parametrize(
    "error", [RuntimeError("bug"), gevent.Timeout()], ids=["exception", "leaked_timeout"]
)
def test_a_probe_that_crashes_once_is_logged_counted_and_probed_again_next_interval(
    clock, telemetry, caplog, capsys, error
):
    calls: list[float] = []

    def crashes_first(target):
        calls.append(clock.now)
        if len(calls) == 1:
            raise error
        return result()

    scheduler = make(clock, telemetry, crashes_first, interval=10.0)
    start = clock.now
    scheduler.apply(targets(1))
    clock.advance(25)
    assert [t - start for t in calls] == [0.0, 10.0, 20.0]
    assert sample(telemetry, "upcheck_probes_total", result="crash") == 1
    assert sample(telemetry, "upcheck_probes_total", result="success") == 2
    (record,) = crash_records(caplog, "probe_crashed")
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "Traceback" not in capsys.readouterr().err  # nothing left to the hub to print
    scheduler.stop()


def test_a_result_listener_that_raises_counts_a_crash_and_the_target_is_probed_again(
    clock, telemetry, caplog
):
    store = ResultsStore()
    heard: list[str] = []

    def listener(target, _result):
        heard.append(target.url)
        if len(heard) == 1:
            raise RuntimeError("the sink's aggregate is broken")

    store.subscribe(listener)
    probe = Recorder(clock)
    scheduler = make(clock, telemetry, probe, interval=10.0, store=store)
    (target,) = targets(1)
    scheduler.apply([target])
    clock.advance(25)
    assert len(probe.times(target.url)) == 3
    assert len(heard) == 3
    # One probe, one count: the one whose result could not be delivered is a crash.
    assert sample(telemetry, "upcheck_probes_total", result="crash") == 1
    assert sample(telemetry, "upcheck_probes_total", result="success") == 2
    assert sample(telemetry, "upcheck_probes_in_flight") == 0
    assert len(crash_records(caplog, "probe_crashed")) == 1
    scheduler.stop()


class FlakyClock(FakeClock):
    """A fake clock whose ``wait`` (only the dispatcher waits on the clock) raises once for
    each of ``fail_at`` (fake times, oldest first) that has come."""

    def __init__(self, fail_at: list[float]) -> None:
        super().__init__()
        self.fail_at = [self.now + t for t in fail_at]

    def wait(self, event, seconds):
        if self.fail_at and self.fail_at[0] <= self.now:
            del self.fail_at[0]
            raise RuntimeError("the clock broke")
        super().wait(event, seconds)


def test_a_dispatcher_crash_is_logged_as_one_event_and_the_dispatcher_restarts(
    telemetry, caplog, capsys
):
    clock = FlakyClock(fail_at=[0.0])
    probe = Recorder(clock)
    scheduler = make(clock, telemetry, probe, interval=10.0)
    start = clock.now
    (target,) = targets(1)
    scheduler.apply([target])
    clock.advance(25)
    assert clock.fail_at == []  # it did crash
    assert [t - start for t in probe.times(target.url)] == [0.0, 10.0, 20.0]
    assert scheduler.health() == (True, "ok")
    (record,) = crash_records(caplog, "dispatcher_crashed")
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "action=restart" in record.getMessage()
    line = _LogfmtFormatter().format(record)
    assert "\n" not in line and "the clock broke" in line
    assert "Traceback" not in capsys.readouterr().err  # nothing left to the hub to print
    scheduler.stop()


def test_a_dispatcher_crashing_now_and_then_is_restarted_every_time(telemetry, caplog):
    # Never more than DISPATCHER_RESTARTS crashes in one window, twice as many in all.
    spacing = RESTART_WINDOW / DISPATCHER_RESTARTS + 10
    clock = FlakyClock(fail_at=[k * spacing for k in range(2 * DISPATCHER_RESTARTS)])
    probe = Recorder(clock)
    scheduler = make(clock, telemetry, probe, interval=10.0)
    (target,) = targets(1)
    scheduler.apply([target])
    clock.advance(2 * DISPATCHER_RESTARTS * spacing + 5)
    assert clock.fail_at == []
    crashes = crash_records(caplog, "dispatcher_crashed")
    assert len(crashes) == 2 * DISPATCHER_RESTARTS
    assert all("action=restart" in r.getMessage() for r in crashes)
    assert scheduler.health() == (True, "ok")
    assert probe.times(target.url)[-1] == clock.now - 5
    scheduler.stop()


def test_a_dispatcher_that_keeps_crashing_stops_and_health_says_so(telemetry, caplog, capsys):
    clock = FlakyClock(fail_at=[0.0] * 100)
    scheduler = make(clock, telemetry, Recorder(clock), interval=10.0)
    scheduler.apply(targets(1))
    clock.advance(5)
    crashes = [r.getMessage() for r in crash_records(caplog, "dispatcher_crashed")]
    assert len(crashes) == DISPATCHER_RESTARTS + 1
    assert all("action=restart" in m for m in crashes[:-1]) and "action=stop" in crashes[-1]
    assert scheduler.health() == (False, "the dispatcher died")
    assert get_health(scheduler) == ("503 Service Unavailable", b"the dispatcher died\n")
    assert "Traceback" not in capsys.readouterr().err
    scheduler.stop()


def get_health(scheduler: Scheduler) -> tuple[str, bytes]:
    """GET /health from the web app wired to ``scheduler``, in process."""
    app = create_app(
        metrics=lambda: b"",
        health=scheduler.health,
        ready=lambda: (True, "ready"),
        results=lambda: ("404 Not Found", [], b""),
        status_page=lambda: "",
    )
    answer: list[str] = []
    body = b"".join(
        app(
            {"PATH_INFO": "/health", "REQUEST_METHOD": "GET"},
            lambda status, headers: answer.append(status),
        )
    )
    return answer[0], body
