"""The scheduler: one timetable of due times, one dispatcher, a greenlet per probe in flight.

Each target keeps a fixed phase: its probes are due at ``first_due + k * interval``. A batch of
targets that arrives together (the first load, or the ones a reload adds) is spread evenly over
the interval, so start-up is not a burst. A probe that cannot start on time (every slot busy,
or the hub was busy) records how late it started in ``upcheck_probe_lateness_seconds``; slots
missed entirely are skipped rather than run back to back.

An idle target is one entry of a heap ordered by due time, not a sleeping greenlet: a greenlet
parked in a sleep keeps its saved C stack, which at 50k targets was most of the daemon's
memory. One dispatcher greenlet pops what is due, takes a slot (at most ``concurrency`` probes
in flight) and spawns a greenlet for that one probe; when the probe ends, the target goes back
into the heap at its next due time, whatever the probe did: a probe that crashes (a bug, a
leaked ``gevent.Timeout``, a result listener that raises) is logged, counted as
``result="crash"`` and probed again on its phase. A dispatcher that crashes is logged and
restarted, up to :data:`DISPATCHER_RESTARTS` times in :data:`RESTART_WINDOW` seconds; past
that it stays down and ``health()`` says so.

A removed target leaves a stale row in the heap until its due time comes round; once stale rows
outnumber half the live ones, ``apply()`` drops them all (one O(n) pass, paid for by the
removals that made them), so reloads that rename every row cannot pile up old targets.

``apply()`` reconciles the running set with a new list: unchanged targets keep their entry,
phase and history; removed ones stop and leave the store; changed ones restart.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import gevent
from gevent.event import Event
from gevent.lock import BoundedSemaphore

from daemon.clock import Clock
from daemon.logs import event
from daemon.model import NoVerdict, ProbeResult, Target
from daemon.store import ResultsStore
from daemon.telemetry import Telemetry

log = logging.getLogger(__name__)

ProbeFn = Callable[[Target], ProbeResult]
# Seconds from now to a target's first probe, given its interval (see Scheduler's ``phase``).
PhaseFn = Callable[[Target, float], float]
HEARTBEAT = 1.0  # seconds between the watchdog's ticks
COMPACT_SLACK = 64  # stale rows always tolerated, so a small list is not compacted every reload
DISPATCHER_RESTARTS = 3  # crashes restarted within RESTART_WINDOW; one more and it stays down
RESTART_WINDOW = 600.0
# What ends a greenlet of ours as a crash: gevent.Timeout is a BaseException, and one leaking
# from a probe must not end its target's schedule. GreenletExit (stop, remove) is no crash.
_CRASHES = (Exception, gevent.Timeout)
# Seconds before each new attempt of a probe this process could not make (NoVerdict: out of
# descriptors or memory); after the last one the target keeps its state until its next slot.
RETRY_AFTER_SHORTAGE = (0.5, 1.0, 2.0, 4.0)


class _Entry:
    """One target in the timetable. ``due`` is its next probe; ``probing`` its probe, if any."""

    __slots__ = ("due", "interval", "probing", "removed", "target")

    def __init__(self, target: Target, due: float, interval: float) -> None:
        self.target = target
        self.due = due
        self.interval = interval
        self.probing: gevent.Greenlet | None = None
        self.removed = False


class Scheduler:
    def __init__(
        self,
        probe: ProbeFn,
        store: ResultsStore,
        telemetry: Telemetry,
        clock: Clock,
        interval: float,
        timeout: float,
        concurrency: int,
        phase: PhaseFn | None = None,
    ) -> None:
        """``phase`` places each new target's first probe; without it a batch is spread
        evenly over the interval. Shared lists use a phase every member computes alike, so a
        target that moves between members keeps its cadence."""
        self._probe = probe
        self._phase = phase
        self._store = store
        self._telemetry = telemetry
        self._clock = clock
        self._interval = interval
        self._timeout = timeout
        self._slots = BoundedSemaphore(concurrency)
        self._entries: dict[str, _Entry] = {}
        # (due, tie-breaker, entry); an entry whose ``due`` moved on or that was removed is
        # stale and skipped when popped.
        self._timetable: list[tuple[float, int, _Entry]] = []
        self._order = itertools.count()
        self._wake = Event()
        self._wake_at = -math.inf  # when the dispatcher will look again; -inf while it works
        self._dispatcher: gevent.Greenlet | None = None
        self._watchdog: gevent.Greenlet | None = None
        self._running = False
        self._slowest = 0.0  # the largest interval + timeout among the targets
        self._last_tick = clock.monotonic()
        self._last_progress = clock.monotonic()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._last_tick = self._last_progress = self._clock.monotonic()
        self._watchdog = gevent.spawn(self._watch)
        self._dispatcher = gevent.spawn(self._supervise)

    def stop(self) -> None:
        """Stop every probe now; results already recorded stay in the store."""
        self._running = False
        greenlets = [g for g in (self._dispatcher, self._watchdog) if g is not None]
        for entry in self._entries.values():
            entry.removed = True
            if entry.probing is not None:
                greenlets.append(entry.probing)
        gevent.killall(greenlets, block=True, timeout=2)
        self._entries.clear()
        self._timetable.clear()

    def interval_of(self, target: Target) -> float:
        return target.interval or self._interval

    def timeout_of(self, target: Target) -> float:
        return target.timeout or self._timeout

    # -- the target list -------------------------------------------------------------------

    def apply(self, targets: Sequence[Target]) -> tuple[int, int, int]:
        """Make the running set match ``targets``. Returns (added, removed, changed)."""
        wanted = {t.url: t for t in targets}
        removed = [url for url in self._entries if url not in wanted]
        changed = [
            url
            for url, t in wanted.items()
            if url in self._entries and self._entries[url].target != t
        ]
        for url in removed + changed:
            entry = self._entries.pop(url)
            entry.removed = True
            if entry.probing is not None:
                entry.probing.kill(block=False)
            self._store.remove(url)
        # Every live entry has at most one row, so the excess is a lower bound of stale rows.
        stale = len(self._timetable) - len(self._entries)
        if stale > len(self._entries) // 2 + COMPACT_SLACK:
            self._drop_stale_rows()
        fresh = [t for url, t in wanted.items() if url not in self._entries]
        self._start_batch(fresh)
        # A probe with retries may take one deadline per attempt.
        self._slowest = max(
            (self.interval_of(t) + self.timeout_of(t) * (1 + t.retries) for t in wanted.values()),
            default=0.0,
        )
        self._last_progress = self._clock.monotonic()
        return len(fresh) - len(changed), len(removed), len(changed)

    def _start_batch(self, targets: Iterable[Target]) -> None:
        batch = list(targets)
        now = self._clock.monotonic()
        for index, target in enumerate(batch):
            self._store.add(target)
            interval = self.interval_of(target)
            if self._phase is None:
                first = interval * index / len(batch)
            else:
                first = self._phase(target, interval)
            entry = _Entry(target, now + first, interval)
            self._entries[target.url] = entry
            self._timetable.append((entry.due, next(self._order), entry))
        if batch:  # a reload that only removed or kept targets leaves the heap as it is
            heapq.heapify(self._timetable)
            self._wake.set()

    def _drop_stale_rows(self) -> None:
        """Keep only the timetable's live rows, in place: the dispatcher holds this list."""
        timetable = self._timetable
        timetable[:] = [row for row in timetable if not row[2].removed and row[2].due == row[0]]
        heapq.heapify(timetable)

    def targets(self) -> list[Target]:
        return [e.target for e in self._entries.values()]

    # -- probing ---------------------------------------------------------------------------

    def _supervise(self) -> None:
        """Run the dispatcher; after a crash, log it and start it again, within a budget.

        The dispatcher's state (the timetable, the entries, the slots) outlives it, so a
        restart loses nothing, where a 503 would have the orchestrator replace the task,
        dropping every target's history and a minute of probes. A crash that comes back at
        once is a bug no restart fixes: past the budget the dispatcher stays down, and
        ``health()`` answers 503 so the task is replaced after all.
        """
        crashes: deque[float] = deque(maxlen=DISPATCHER_RESTARTS + 1)
        while True:
            try:
                self._dispatch()
            except _CRASHES:
                now = self._clock.monotonic()
                crashes.append(now)
                recent = sum(now - then < RESTART_WINDOW for then in crashes)
                stop = recent > DISPATCHER_RESTARTS
                log.exception(
                    event(
                        "dispatcher_crashed",
                        action="stop" if stop else "restart",
                        recent_crashes=recent,
                        window=f"{RESTART_WINDOW:.0f}s",
                    )
                )
                if stop:
                    return

    def _dispatch(self) -> None:
        """Start every probe that is due, then wait for the next due time (or a new entry)."""
        clock, timetable = self._clock, self._timetable
        while True:
            self._wake_at = -math.inf
            now = clock.monotonic()
            while timetable and timetable[0][0] <= now:
                due, _, entry = heapq.heappop(timetable)
                if entry.removed or entry.due != due:
                    continue
                self._slots.acquire()  # all busy: wait here; the lateness shows it
                if self._gone(entry):  # removed while we waited for the slot
                    self._slots.release()
                else:
                    entry.probing = gevent.spawn(self._run, entry, due)
                    # Released when the greenlet ends in any way, including a kill before it
                    # ever ran (a reload in the same loop pass), when no `finally` of ours runs.
                    entry.probing.rawlink(self._release_slot)
                # Either way the wait for the slot may have taken a while. Nothing between
                # the pop and the link calls the clock, so a failing clock leaves no target
                # out of the timetable and no slot taken.
                now = clock.monotonic()
            self._wake.clear()
            delay = timetable[0][0] - now if timetable else None
            self._wake_at = math.inf if delay is None else now + delay
            clock.wait(self._wake, delay)

    def _release_slot(self, _greenlet: gevent.Greenlet) -> None:
        self._slots.release()

    @staticmethod
    def _gone(entry: _Entry) -> bool:
        return entry.removed

    def _run(self, entry: _Entry, due: float) -> None:
        """One probe of one target, in its own greenlet; then, however it ended, book the next
        one (unless the target was removed)."""
        try:
            self._probe_now(entry.target, due)
        except _CRASHES:  # _probe_now counted it
            log.exception(event("probe_crashed", target=entry.target.display_url))
        finally:
            entry.probing = None
            if not entry.removed:
                self._book_next(entry, due)

    def _book_next(self, entry: _Entry, due: float) -> None:
        now = self._clock.monotonic()
        interval = entry.interval
        due += interval
        if due <= now:  # a whole slot was missed: skip it, keep the phase
            due += interval * ((now - due) // interval + 1)
        entry.due = due
        heapq.heappush(self._timetable, (due, next(self._order), entry))
        if due < self._wake_at:
            self._wake.set()

    def _probe_now(self, target: Target, due: float) -> None:
        """Probe ``target`` (its slot is already held) and record the result.

        Counted once: by its result, or as a crash if the probe or the recording raised (a
        result that did not reach every listener is not a success).
        """
        telemetry = self._telemetry
        telemetry.probe_started(self._clock.monotonic() - due)
        try:
            result = self._verdict(target)
            if result is None:  # no verdict: nothing recorded, the target keeps its state
                telemetry.probe_abandoned()
                return
            self._last_progress = self._clock.monotonic()
            previous = self._store.get(target.url)
            was_up = (
                previous.last.up if previous is not None and previous.last is not None else None
            )
            self._store.record(target, result)
            if was_up is not result.up:
                self._log_transition(target, result, was_up)
        except gevent.GreenletExit:
            telemetry.probe_abandoned()  # stopped or removed, not a crash
            raise
        except BaseException:
            telemetry.probe_finished("crash")
            raise
        telemetry.probe_finished(result.error_kind or "success")

    def _verdict(self, target: Target) -> ProbeResult | None:
        """The probe's result; None when this process lacked the descriptors or memory to make
        it, even after a few short waits. The slot stays held meanwhile: when descriptors are
        short, fewer probes at once is what helps."""
        for wait in (*RETRY_AFTER_SHORTAGE, None):
            try:
                return self._probe(target)
            except NoVerdict as exc:
                self._telemetry.probe_resource_errors.inc()
                log.warning(
                    event(
                        "probe_resource_error",
                        target=target.display_url,
                        name=target.name,
                        error=str(exc),
                        retry_in="next slot" if wait is None else f"{wait:g}s",
                    )
                )
                if wait is not None:
                    self._clock.sleep(wait)
        return None

    @staticmethod
    def _log_transition(target: Target, result: ProbeResult, was_up: bool | None) -> None:
        if result.up:
            # The first "up" of every target at start-up is routine: keep it out of INFO.
            level = logging.DEBUG if was_up is None else logging.INFO
            if not log.isEnabledFor(level):
                return  # every target's first probe comes here: skip building the message
            log.log(
                level,
                event(
                    "target_up",
                    target=target.display_url,
                    name=target.name,
                    status=result.status_code,
                    ms=round(result.duration * 1000, 1),
                    was="unknown" if was_up is None else "down",
                ),
            )
        else:
            log.warning(
                event(
                    "target_down",
                    target=target.display_url,
                    name=target.name,
                    kind=result.error_kind,
                    error=result.error,
                    status=result.status_code,
                    was="unknown" if was_up is None else "up",
                )
            )

    # -- health ----------------------------------------------------------------------------

    def _watch(self) -> None:
        while True:
            self._last_tick = self._clock.monotonic()
            self._clock.sleep(HEARTBEAT)

    def health(self) -> tuple[bool, str]:
        """(healthy, reason). Unhealthy only when probing really stopped making progress.

        Stuck means: the scheduler was stopped or its watchdog or dispatcher died, the hub has
        not let the watchdog run for a long time, or targets exist but no probe has finished
        for longer than the slowest target's interval plus its timeout plus a grace minute.
        """
        now = self._clock.monotonic()
        if not self._running or self._watchdog is None or self._watchdog.dead:
            return False, "scheduler is not running"
        if self._dispatcher is None or self._dispatcher.dead:
            return False, "the dispatcher died"
        if now - self._last_tick > 30 * HEARTBEAT:
            return False, f"scheduler has not run for {now - self._last_tick:.0f}s"
        if self._entries:
            idle = now - self._last_progress
            if idle > self._slowest + 60:
                return False, f"no probe finished for {idle:.0f}s"
        return True, "ok"

    def probe_all_once(self, targets: Sequence[Target]) -> None:
        """For ``--once``: probe every target now, at most ``concurrency`` at a time."""
        now = self._clock.monotonic()
        for target in targets:
            self._store.add(target)

        def once(target: Target) -> None:
            with self._slots:
                self._probe_now(target, now)

        greenlets = [gevent.spawn(once, t) for t in targets]
        gevent.joinall(greenlets, raise_error=True)
