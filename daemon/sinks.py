"""Sinks: where the figures go every publish interval (results file, CloudWatch).

Each sink runs in a :class:`Publisher` greenlet of its own, so a slow or failing sink never
delays probing or another sink. Failures are logged, counted in
``upcheck_sink_errors_total{sink}`` and retried with exponential backoff capped at the publish
interval; ``flush()`` makes one last attempt at shutdown.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from functools import cached_property
from typing import Any, Protocol

import gevent

from daemon.clock import Clock
from daemon.logs import event
from daemon.report import build_document, render_status_page
from daemon.results import ResultsStore
from daemon.telemetry import Telemetry

log = logging.getLogger(__name__)


class Snapshot:
    """One instant of the results store, as the sinks need it.

    The counts are taken at once; the document and the page only when a sink asks for them,
    and once: at tens of thousands of targets they cost real CPU, and CloudWatch needs neither.
    """

    def __init__(
        self,
        store: ResultsStore,
        application: str,
        targets_load_success: bool,
        pause: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self.application = application
        self.targets_load_success = targets_load_success
        self.targets_total, self.targets_up, self.targets_down = store.counts()
        self._pause = pause

    @cached_property
    def document(self) -> dict[str, Any]:
        return build_document(self._store, self.application, pause=self._pause)

    @cached_property
    def status_html(self) -> str:
        return render_status_page(self.document)

    @cached_property
    def document_json(self) -> bytes:
        return json.dumps(self.document, separators=(",", ":"), allow_nan=False).encode()


class Sink(Protocol):
    name: str  # the ``sink`` label: results_file, cloudwatch

    def publish(self, snapshot: Snapshot) -> None:
        """Write the snapshot; raise on failure (the publisher counts and retries)."""
        ...


class HttpAnswer(Protocol):
    """How ``GET /results`` is answered for a results destination."""

    def results_answer(self) -> tuple[str, list[tuple[str, str]], bytes]: ...


class LocalResultsFile:
    """The results document on local disk, written whole: temp file, fsync, rename.

    ``status.html`` is written beside it the same way, so a web server pointed at the folder
    serves the same page as ``GET /``.
    """

    name = "results_file"

    def __init__(self, path: str, live: Callable[[], bytes] | None = None) -> None:
        self.path = os.path.abspath(path)
        self.status_path = os.path.join(os.path.dirname(self.path), "status.html")
        self._live = live
        self._written = False

    def publish(self, snapshot: Snapshot) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        _atomic_write(self.path, snapshot.document_json)
        self._written = True
        _atomic_write(self.status_path, snapshot.status_html.encode())

    def results_answer(self) -> tuple[str, list[tuple[str, str]], bytes]:
        """The file as this process last wrote it. Before its first write (one publish interval
        after the start), the same document built from the results as they are now: a file
        left by an earlier run is not today's news."""
        if not self._written:
            return not_written_answer(self._live)
        try:
            with open(self.path, "rb") as handle:
                return "200 OK", list(JSON_HEADERS), handle.read()
        except FileNotFoundError:  # removed behind our back: the next write brings it back
            return not_written_answer(self._live)


JSON_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", "no-cache"))


def not_written_answer(
    live: Callable[[], bytes] | None,
) -> tuple[str, list[tuple[str, str]], bytes]:
    """``GET /results`` before this process first wrote the results: the document built now
    (marked ``X-Upcheck-Results: live``), or a 503 when there is nothing to build it from."""
    if live is None:
        return (
            "503 Service Unavailable",
            [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "5")],
            b"results not written yet\n",
        )
    return "200 OK", [*JSON_HEADERS, ("X-Upcheck-Results", "live")], live()


def _atomic_write(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".upcheck-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
        self._failures = 0
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
        self._telemetry.sink_succeeded(self.sink.name)
        return True

    def next_delay(self) -> float:
        """The publish interval; after failures, 1, 2, 4 ... seconds up to that interval."""
        if not self._failures:
            return self._interval
        return float(min(self._interval, 2 ** (self._failures - 1)))

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._loop)

    def _loop(self) -> None:
        while True:
            self._clock.sleep(self.next_delay())
            self.attempt()

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)

    def flush(self, timeout: float) -> bool:
        """The last write at shutdown, bounded by ``timeout`` seconds."""
        self.stop()
        done = gevent.spawn(self.attempt)
        done.join(timeout)
        if done.ready():
            return bool(done.value)
        done.kill(block=False)
        log.error(event("sink_flush_timed_out", sink=self.sink.name, timeout=timeout))
        self._telemetry.sink_failed(self.sink.name)
        return False
