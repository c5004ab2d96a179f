"""A fake clock for the scheduler, and canned probe results."""

from __future__ import annotations

import heapq
import itertools

import gevent
from gevent.event import Event

from daemon.model import ProbeResult


class FakeClock:
    """Time moves only when a test calls :meth:`advance`; sleepers wake in order."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, Event]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        wake = Event()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._seq), wake))
        wake.wait()

    def wait(self, event: Event, seconds: float | None) -> None:
        """Until ``event`` is set or the fake time has moved ``seconds`` on."""
        timer = Event()
        if seconds is not None:
            heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._seq), timer))
        gevent.wait([event, timer], count=1)

    def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper due on the way, each at its own instant."""
        end = self.now + seconds
        gevent.idle()
        while self._sleepers and self._sleepers[0][0] <= end:
            due, _, wake = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            wake.set()
            gevent.idle()  # let the woken greenlet run until it sleeps again
        self.now = end
        gevent.idle()


def result(up: bool = True, duration: float = 0.05, status: int | None = 200) -> ProbeResult:
    return ProbeResult(
        up=up,
        status_code=status,
        duration=duration,
        phases=(0.0, 0.01, 0.0, duration - 0.02, 0.01),
        content_length=10,
        redirects=0,
        ssl=False,
        cert_expiry=None,
        error_kind=None if up else "http_status",
        error=None if up else f"status {status}, expected 200-399",
        started_at=1_700_000_000.0,
    )
