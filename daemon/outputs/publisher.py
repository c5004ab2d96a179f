"""Sinks: where the figures go every publish interval (results file, CloudWatch).

Each sink runs in a :class:`Publisher` greenlet of its own, so a slow or failing sink never
delays probing or another sink. Failures are logged, counted in
``upcheck_sink_errors_total{sink}`` and retried with exponential backoff capped at the publish
interval; ``flush()`` makes one last attempt at shutdown.

A push in flight is never killed while the shutdown budget lasts: ``stop()`` lets it finish
and only then ends the loop, so the last attempt sends only what that push left. Killing it
mid-request would lose its answer though the service may have counted it, and a CloudWatch
batch sent again is counted twice (see :mod:`daemon.outputs.cloudwatch`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import gevent

from daemon.clock import Clock
from daemon.logs import event
from daemon.outputs.document import Snapshot
from daemon.telemetry import Telemetry

log = logging.getLogger(__name__)


class Sink(Protocol):
    name: str  # the ``sink`` label: results_file, cloudwatch

    def publish(self, snapshot: Snapshot) -> None:
        """Write the snapshot; raise on failure (the publisher counts and retries)."""
        ...


class Publisher:
    """Runs one sink every ``interval`` seconds in its own greenlet."""

    def __init__(
        self,
        sink: Sink,
        snapshot: Callable[[], Snapshot],
        telemetry: Telemetry,
        clock: Clock,
        interval: float,
    ) -> None:
        self.sink = sink
        self._snapshot = snapshot
        self._telemetry = telemetry
        self._clock = clock
        self._interval = interval
        self._greenlet: gevent.Greenlet | None = None
        self._stopping = False
        self._publishing = False  # the loop is inside attempt(): a request may be in flight
        self._failures = 0
        self.written = False  # a publish by this process has succeeded at least once
        telemetry.sink_registered(sink.name)

    def attempt(self) -> bool:
        """Publish once now. True on success; a failure is logged and counted, never raised."""
        try:
            self.sink.publish(self._snapshot())
        except Exception as exc:
            self._failures += 1
            self._telemetry.sink_failed(self.sink.name)
            log.error(
                event(
                    "sink_failed",
                    sink=self.sink.name,
                    error=f"{type(exc).__name__}: {exc}",
                    failures_in_a_row=self._failures,
                )
            )
            return False
        if self._failures:
            log.info(event("sink_recovered", sink=self.sink.name, after_failures=self._failures))
        self._failures = 0
        self.written = True
        self._telemetry.sink_succeeded(self.sink.name)
        return True

    def next_delay(self) -> float:
        """The publish interval; after failures, 1, 2, 4 ... seconds up to that interval."""
        if not self._failures:
            return self._interval
        return float(min(self._interval, 2 ** (self._failures - 1)))

    def start(self) -> None:
        self._stopping = False
        self._greenlet = gevent.spawn(self._loop)

    def _loop(self) -> None:
        while not self._stopping:
            self._clock.sleep(self.next_delay())
            self._publishing = True
            try:
                self.attempt()
            finally:
                self._publishing = False

    def stop(self, timeout: float = 2.0) -> bool:
        """End the loop; True once it has ended, within about ``timeout`` seconds.

        Waiting for its next push, the loop ends at once. A push in flight is given the
        ``timeout`` to finish: killed mid-request, it may have been counted without this
        process hearing so (the CloudWatch sink then drops that batch rather than resend it).
        """
        loop = self._greenlet
        if loop is None:
            return True
        deadline = time.monotonic() + timeout
        self._stopping = True
        if self._publishing:
            loop.join(timeout)
        loop.kill(block=True, timeout=max(0.1, deadline - time.monotonic()))
        return bool(loop.dead)

    def flush(self, timeout: float) -> bool:
        """The last write at shutdown, bounded by ``timeout`` seconds: a push in flight
        finishes first (within the same budget), then one more attempt sends what is left."""
        deadline = time.monotonic() + timeout  # real time: the budget is the process's
        ended = self.stop(timeout)  # never two pushes at once: both would send one batch
        left = deadline - time.monotonic()
        if ended and left > 0:
            done = gevent.spawn(self.attempt)
            done.join(left)
            if done.ready():
                return bool(done.value)
            done.kill(block=False)
        log.error(event("sink_flush_timed_out", sink=self.sink.name, timeout=timeout))
        self._telemetry.sink_failed(self.sink.name)
        return False
