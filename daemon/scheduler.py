"""The scheduler: one greenlet per target, a bounded number of probes in flight.

Each target keeps a fixed phase: its probes are due at ``first_due + k * interval``. A batch of
targets that arrives together (the first load, or the ones a reload adds) is spread evenly over
the interval, so start-up is not a burst. A probe that cannot start on time (every slot busy,
or the hub was busy) records how late it started in ``upcheck_probe_lateness_seconds``; slots
missed entirely are skipped rather than run back to back.

``apply()`` reconciles the running set with a new list: unchanged targets keep their greenlet,
phase and history; removed ones stop and leave the store; changed ones restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import gevent
from gevent.lock import BoundedSemaphore

from daemon.clock import Clock
from daemon.logs import event
from daemon.probe import ProbeResult
from daemon.results import ResultsStore
from daemon.targets import Target
from daemon.telemetry import Telemetry

log = logging.getLogger(__name__)

ProbeFn = Callable[[Target], ProbeResult]
HEARTBEAT = 1.0  # seconds between the watchdog's ticks


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
    ) -> None:
        self._probe = probe
        self._store = store
        self._telemetry = telemetry
        self._clock = clock
        self._interval = interval
        self._timeout = timeout
        self._slots = BoundedSemaphore(concurrency)
        self._greenlets: dict[str, tuple[Target, gevent.Greenlet]] = {}
        self._watchdog: gevent.Greenlet | None = None
        self._running = False
        self._last_tick = clock.monotonic()
        self._last_progress = clock.monotonic()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._last_tick = self._last_progress = self._clock.monotonic()
        self._watchdog = gevent.spawn(self._watch)

    def stop(self) -> None:
        """Stop every probe now; results already recorded stay in the store."""
        self._running = False
        greenlets = [g for _, g in self._greenlets.values()]
        if self._watchdog is not None:
            greenlets.append(self._watchdog)
        gevent.killall(greenlets, block=True, timeout=2)
        self._greenlets.clear()

    def interval_of(self, target: Target) -> float:
        return target.interval or self._interval

    def timeout_of(self, target: Target) -> float:
        return target.timeout or self._timeout

    # -- the target list -------------------------------------------------------------------

    def apply(self, targets: Sequence[Target]) -> tuple[int, int, int]:
        """Make the running set match ``targets``. Returns (added, removed, changed)."""
        wanted = {t.url: t for t in targets}
        removed = [url for url in self._greenlets if url not in wanted]
        changed = [
            url
            for url, t in wanted.items()
            if url in self._greenlets and self._greenlets[url][0] != t
        ]
        for url in removed + changed:
            _, greenlet = self._greenlets.pop(url)
            greenlet.kill(block=False)
            self._store.remove(url)
        fresh = [t for url, t in wanted.items() if url not in self._greenlets]
        self._start_batch(fresh)
        self._telemetry.targets.set(len(self._greenlets))
        self._last_progress = self._clock.monotonic()
        return len(fresh) - len(changed), len(removed), len(changed)

    def _start_batch(self, targets: Iterable[Target]) -> None:
        batch = list(targets)
        now = self._clock.monotonic()
        for index, target in enumerate(batch):
            self._store.add(target)
            offset = self.interval_of(target) * index / len(batch)
            greenlet = gevent.spawn(self._run, target, now + offset)
            self._greenlets[target.url] = (target, greenlet)

    def targets(self) -> list[Target]:
        return [t for t, _ in self._greenlets.values()]

    # -- probing ---------------------------------------------------------------------------

    def _run(self, target: Target, due: float) -> None:
        interval = self.interval_of(target)
        clock = self._clock
        while True:
            delay = due - clock.monotonic()
            if delay > 0:
                clock.sleep(delay)
            try:
                self._probe_once(target, due)
            except gevent.GreenletExit:
                raise
            except Exception:
                log.exception(event("probe_crashed", target=target.display_url))
            now = clock.monotonic()
            due += interval
            if due <= now:  # a whole slot was missed: skip it, keep the phase
                due += interval * ((now - due) // interval + 1)

    def _probe_once(self, target: Target, due: float) -> None:
        with self._slots:
            self._telemetry.probe_started(self._clock.monotonic() - due)
            result: ProbeResult | None = None
            try:
                result = self._probe(target)
            finally:
                self._telemetry.probe_finished(
                    result.error_kind or "success" if result else "crash"
                )
        self._last_progress = self._clock.monotonic()
        previous = self._store.get(target.url)
        was_up = previous.last.up if previous is not None and previous.last is not None else None
        self._store.record(target, result)
        if was_up is not result.up:
            self._log_transition(target, result, was_up)

    @staticmethod
    def _log_transition(target: Target, result: ProbeResult, was_up: bool | None) -> None:
        if result.up:
            # The first "up" of every target at start-up is routine: keep it out of INFO.
            log.log(
                logging.DEBUG if was_up is None else logging.INFO,
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

        Stuck means: the scheduler was stopped or its watchdog died, the hub has not let the
        watchdog run for a long time, or targets exist but no probe has finished for longer
        than the slowest target's interval plus its timeout plus a grace minute.
        """
        now = self._clock.monotonic()
        if not self._running or self._watchdog is None or self._watchdog.dead:
            return False, "scheduler is not running"
        if now - self._last_tick > 30 * HEARTBEAT:
            return False, f"scheduler has not run for {now - self._last_tick:.0f}s"
        if self._greenlets:
            slowest = max(
                self.interval_of(t) + self.timeout_of(t) for t, _ in self._greenlets.values()
            )
            idle = now - self._last_progress
            if idle > slowest + 60:
                return False, f"no probe finished for {idle:.0f}s"
            dead = sum(1 for _, g in self._greenlets.values() if g.dead)
            if dead:
                return False, f"{dead} target greenlet(s) died"
        return True, "ok"

    def probe_all_once(self, targets: Sequence[Target]) -> None:
        """For ``--once``: probe every target now, at most ``concurrency`` at a time."""
        now = self._clock.monotonic()
        for target in targets:
            self._store.add(target)
        greenlets = [gevent.spawn(self._probe_once, t, now) for t in targets]
        gevent.joinall(greenlets, raise_error=True)
