"""The composition root: builds every part, hands each its dependencies, and runs them,
forever (until SIGTERM) or once. Signals, the shutdown budget and process-wide policy (the
garbage collector) live here too; no other module wires objects or reaches for a global.

Data flows one way: targets source -> scheduler -> probe -> results store -> outputs.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.pywsgi import WSGIServer
from prometheus_client import disable_created_metrics

from daemon import __version__
from daemon.clock import SystemClock
from daemon.logs import configure, event
from daemon.model import Target
from daemon.outputs.document import Snapshot
from daemon.outputs.exposition import Exposition
from daemon.outputs.publisher import Publisher, Sink
from daemon.outputs.results_file import LocalResultsFile, S3ResultsFile
from daemon.probe.connection import make_ssl_context
from daemon.probe.prober import Prober
from daemon.scheduler import Scheduler
from daemon.settings import ConfigError, Settings, load
from daemon.sources.base import SourceError, TargetSource
from daemon.sources.file import LocalFileSource
from daemon.sources.parse import TargetsError, parse_targets
from daemon.sources.reloader import Reloader
from daemon.store import ResultsStore
from daemon.telemetry import Telemetry
from daemon.web import Answer, create_app, results_answer

log = logging.getLogger("daemon")

VIEW_TTL = 5.0  # seconds a built status page / live results document is served again
SHUTDOWN_DEADLINE = 8.5  # seconds from SIGTERM to exit, all steps; SPEC allows 10 (headroom)


def make_source(settings: Settings) -> TargetSource:
    if settings.targets.startswith("s3://"):
        from daemon.sources.s3 import S3TargetSource

        return S3TargetSource(settings.targets)
    return LocalFileSource(settings.targets)


def make_results_file(settings: Settings) -> LocalResultsFile | S3ResultsFile | None:
    if settings.results is None:
        return None
    if settings.results.startswith("s3://"):
        return S3ResultsFile(settings.results)
    return LocalResultsFile(settings.results)


def make_sinks(
    settings: Settings,
    store: ResultsStore,
    telemetry: Telemetry,
    results_file: Sink | None,
) -> list[Sink]:
    sinks: list[Sink] = [] if results_file is None else [results_file]
    if settings.cloudwatch_namespace:
        from daemon.outputs.cloudwatch import CloudWatchSink

        sinks.append(
            CloudWatchSink(
                namespace=settings.cloudwatch_namespace,
                application=settings.app_name,
                url_metrics=settings.cloudwatch_url_metrics,
                store=store,
                telemetry=telemetry,
            )
        )
    return sinks


def settle_heap() -> None:
    """After a big load: free the parse's garbage, then leave the survivors out of later GCs.

    A list of 50k targets leaves a few hundred thousand long-lived objects; without
    ``gc.freeze`` every full collection walks all of them again, a pause of tens of
    milliseconds in the middle of probes being timed.
    """
    gc.collect()
    gc.freeze()


def _yield() -> None:
    """Let other greenlets (probes) run while a long document is being built."""
    gevent.sleep(0)


class Daemon:
    """The wired parts of one running upcheck."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock = SystemClock()
        self.telemetry = Telemetry()
        self.store = ResultsStore()
        self.prober = Prober(
            make_ssl_context(settings.ca_file),
            allow_link_local=settings.allow_link_local,
            default_timeout=settings.timeout,
        )
        self.scheduler = Scheduler(
            self.prober.probe,
            self.store,
            self.telemetry,
            self.clock,
            interval=settings.interval,
            timeout=settings.timeout,
            concurrency=settings.concurrency,
        )
        self.source = make_source(settings)
        self.reloader = Reloader(
            self.source, self.apply, self.telemetry, self.clock, settings.reload_interval
        )
        self.results_file = make_results_file(settings)
        self.sinks = make_sinks(settings, self.store, self.telemetry, self.results_file)
        self.publishers = [
            Publisher(sink, self.snapshot, self.telemetry, self.clock, settings.publish_interval)
            for sink in self.sinks
        ]
        self.exposition = Exposition(self.store, self.telemetry)
        self._view_lock = Semaphore()
        self._view: tuple[float, Snapshot] | None = None

    def apply(self, targets: Sequence[Target]) -> tuple[int, int, int]:
        """A new list from the reloader into the scheduler."""
        added, removed, changed = self.scheduler.apply(targets)
        # A full collection costs ~0.3 s of hub time at 50k targets, felt by every probe in
        # flight: worth it after a big change (the first load), not for a few edited rows.
        if added + changed + removed > len(self.store) // 10:
            settle_heap()
        return added, removed, changed

    def snapshot(self) -> Snapshot:
        return Snapshot(
            self.store,
            self.settings.app_name,
            targets_load_success=self.reloader.loaded and self.reloader.last_error is None,
            pause=_yield,
        )

    def recent_snapshot(self) -> Snapshot:
        """A snapshot at most :data:`VIEW_TTL` old, its document built once, for ``GET /`` and
        the live ``/results``: at 50k targets a build costs seconds of CPU, and a dashboard
        refreshing every few seconds (or several at once) must not take that from probes."""
        with self._view_lock:
            now = self.clock.monotonic()
            if self._view is None or now - self._view[0] >= VIEW_TTL:
                snapshot = self.snapshot()
                snapshot.document  # noqa: B018 - built here, under the lock, exactly once
                self._view = (now, snapshot)
            return self._view[1]

    def ready(self) -> tuple[bool, str]:
        if self.reloader.loaded:
            return True, f"ready: {len(self.store)} targets"
        return False, f"targets not loaded yet: {self.reloader.last_error or 'loading'}"

    def results_answer(self) -> Answer:
        written = any(p.written for p in self.publishers if p.sink is self.results_file)
        return results_answer(
            self.results_file, written, lambda: self.recent_snapshot().document_json
        )

    def app(self) -> Callable[..., Iterable[bytes]]:
        return create_app(
            metrics=self.exposition.render,
            health=self.scheduler.health,
            ready=self.ready,
            results=self.results_answer,
            status_page=lambda: self.recent_snapshot().status_html,
        )

    def flush(self, budget: float) -> None:
        """Last writes of every sink, in parallel, within ``budget`` seconds."""
        jobs = [gevent.spawn(p.flush, budget) for p in self.publishers]
        gevent.joinall(jobs, timeout=budget + 0.25)


def run_forever(daemon: Daemon) -> int:
    settings = daemon.settings
    server = WSGIServer(
        (settings.listen_host, settings.listen_port),
        daemon.app(),
        log=None,
        error_log=logging.getLogger("daemon.http"),
    )
    try:
        server.start()
    except OSError as exc:
        print(
            f"upcheck: error: cannot listen on {settings.listen_host}:{settings.listen_port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    log.info(
        event(
            "started",
            version=__version__,
            listen=f"{settings.listen_host}:{server.server_port}",
            targets=daemon.source.description,
            results=settings.results or "off",
            cloudwatch=settings.cloudwatch_namespace or "off",
        )
    )
    # Signals first: a SIGTERM that arrives while the first load still waits on S3 must
    # still stop the daemon cleanly.
    stopping = Event()

    def on_signal(signum: int) -> None:
        if not stopping.is_set():  # Ctrl-C under `make run` can bring SIGINT and SIGTERM
            log.info(event("stopping", signal=signal.Signals(signum).name))
            stopping.set()

    gevent.signal_handler(signal.SIGTERM, on_signal, signal.SIGTERM)
    gevent.signal_handler(signal.SIGINT, on_signal, signal.SIGINT)
    daemon.scheduler.start()
    daemon.reloader.start()  # the first load runs in the reloader's greenlet, not here
    for publisher in daemon.publishers:
        publisher.start()
    stopping.wait()
    # One deadline for every step, so that slow steps cannot add up past the SPEC's 10 s.
    deadline = time.monotonic() + SHUTDOWN_DEADLINE
    daemon.reloader.stop()
    daemon.scheduler.stop()
    daemon.flush(budget=max(0.5, deadline - time.monotonic() - 0.75))
    server.stop(timeout=max(0.1, deadline - time.monotonic()))
    log.info(event("stopped"))
    return 0


def run_once(daemon: Daemon) -> int:
    try:
        fetched = daemon.source.fetch(None)
        assert fetched is not None
        parsed = parse_targets(fetched.data)
    except (SourceError, TargetsError) as exc:
        print(f"upcheck: error: cannot load targets: {exc}", file=sys.stderr)
        return 2
    for problem in parsed.errors:
        log.warning(event("targets_row_skipped", source=daemon.source.description, problem=problem))
    daemon.reloader.loaded = True
    daemon.scheduler.probe_all_once(parsed.targets)
    failed_sinks = [p.sink.name for p in daemon.publishers if not p.attempt()]
    all_up = True
    for state in daemon.store.states():
        result = state.last
        assert result is not None
        all_up &= result.up
        status = result.status_code if result.status_code is not None else "-"
        verdict = "UP  " if result.up else "DOWN"
        detail = "" if result.up else f"  {result.error_kind}: {result.error}"
        print(
            f"{verdict} {status!s:>3} {result.duration * 1000:7.0f}ms  {state.target.name}  "
            f"{state.target.display_url}{detail}"
        )
    total, up, down = daemon.store.counts()
    print(f"{up}/{total} up, {down} down")
    if failed_sinks:  # the reason is in the sink_failed log line
        print(f"upcheck: error: could not write: {', '.join(failed_sinks)}", file=sys.stderr)
        return 2
    return 0 if all_up else 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"upcheck: error: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level)
    disable_created_metrics()  # type: ignore[no-untyped-call]
    daemon = Daemon(settings)
    if settings.once:
        return run_once(daemon)
    return run_forever(daemon)
