"""Time, injected: the scheduler asks this object instead of the time module.

Tests hand the scheduler a fake clock and move time forward by hand; production uses
:class:`SystemClock`.
"""

from __future__ import annotations

import time
from typing import Protocol

import gevent
from gevent.event import Event


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wait(self, event: Event, seconds: float | None) -> None:
        """Return when ``event`` is set or ``seconds`` have passed (never, for None)."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        gevent.sleep(max(seconds, 0.0))

    def wait(self, event: Event, seconds: float | None) -> None:
        event.wait(None if seconds is None else max(seconds, 0.0))
