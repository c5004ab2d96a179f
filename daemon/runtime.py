"""The composition root: builds every part, hands each its dependencies, and runs them,
forever (until SIGTERM) or once. Signals, the shutdown budget and process-wide policy (the
garbage collector, the open files limit) live here too; no other module wires objects or
reaches for a global.

Data flows one way: targets source -> scheduler -> probe -> results store -> outputs.
"""

from __future__ import annotations

import gc
import json
import logging
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from prometheus_client import disable_created_metrics

from daemon import __version__
from daemon.clock import SystemClock
from daemon.logs import configure, event
from daemon.model import Target
from daemon.outputs.document import Snapshot
from daemon.outputs.exposition import Exposition
from daemon.outputs.publisher import Publisher, Sink
from daemon.outputs.results_file import LocalResultsFile, S3ResultsFile
from daemon.outputs.shared_results import SharedResults
from daemon.probe.connection import AresResolver, make_ssl_context
from daemon.probe.prober import Prober
from daemon.probe_endpoint import OnDemandProber
from daemon.redact import redact_text
from daemon.scheduler import Scheduler
from daemon.server import RESERVED_FDS, HttpServer, connection_cap
from daemon.settings import ConfigError, Settings, load
from daemon.sharding import rendezvous
from daemon.sharding.membership import (
    EcsMembership,
    Membership,
    MembershipError,
    StaticMembership,
)
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


def make_membership(settings: Settings, clock: SystemClock) -> Membership | None:
    spec = settings.shard
    if spec.mode == "static":
        return StaticMembership(spec.index, spec.count)
    if spec.mode == "ecs":
        assert settings.ecs_metadata_url is not None
        from daemon.aws import make_client

        return EcsMembership(
            settings.ecs_metadata_url,
            # Short timeouts: a refresh must not hang for minutes while the last membership
            # stays in force anyway.
            lambda: make_client("ecs", connect_timeout=2, read_timeout=5, attempts=2),
            clock,
            refresh_interval=settings.shard_refresh_interval,
        )
    return None


def settle_heap() -> None:
    """After a big load: free the parse's garbage, then leave the survivors out of later GCs.

    A list of 50k targets leaves a few hundred thousand long-lived objects; without
    ``gc.freeze`` every full collection walks all of them again, a pause of tens of
    milliseconds in the middle of probes being timed. What the last settle froze is thawed
    first: objects frozen then (an old list, the reference cycles of probes that were in flight)
    are garbage by now, and frozen objects are never collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def errors_as_events() -> None:
    """Make every error that would print its own traceback to stderr one logfmt event instead.

    gevent's hub prints, over many lines, the traceback of a greenlet that dies with an
    exception and of a thread-pool call that raised (a resolver error: the caller gets the
    exception too); Python does the same for an uncaught exception, an error it cannot raise
    (in a ``__del__``) and a warning. A log reader takes each line for an event of its own.
    """
    hub = gevent.get_hub()

    def hub_error(
        context: object,
        kind: type[BaseException],
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            where = context if isinstance(context, str) else hub.format_context(context)
        except Exception:  # a repr that fails must not take the error report with it
            where = type(context).__name__
        log.error(
            event("unhandled_error", where=redact_text(str(where)), error=_described(kind, value)),
            exc_info=None if value is None else (kind, value, tb),
        )

    def uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        log.critical(event("crashed", error=_described(kind, value)), exc_info=(kind, value, tb))

    def unraisable(report: sys.UnraisableHookArgs) -> None:
        kind = report.exc_type
        log.error(
            event(
                "unraisable_error",
                where=redact_text(report.err_msg or "Exception ignored in"),
                error=_described(kind, report.exc_value),
            ),
            exc_info=(kind, report.exc_value, report.exc_traceback)
            if report.exc_value is not None
            else None,
        )

    hub.print_exception = hub_error
    sys.excepthook = uncaught
    sys.unraisablehook = unraisable
    logging.captureWarnings(True)


def _described(kind: type[BaseException], value: object) -> str:
    return redact_text(f"{kind.__name__}: {value}" if value is not None else kind.__name__)


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one, and return the limit in force.

    Every probe in flight holds a socket, and so does every HTTP connection: the soft limit
    (often 1024) is a default for interactive shells, not a budget for a monitor.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard  # Linux's default nr_open
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (OSError, ValueError):
        return soft
    return wanted


def _yield() -> None:
    """Let other greenlets (probes) run while a long document is being built."""
    gevent.sleep(0)


def yield_to_the_loop() -> None:
    """Let the event loop turn once (poll the sockets, fire the timers due) before going on.

    ``gevent.sleep(0)`` only lets the greenlets already runnable go first, and gevent turns
    the loop only every 50 such callbacks: a job paused that way every few milliseconds
    still held the probes' timers and sockets for 50 slices (~0.2 s at 50k URLs). A timer
    of a microsecond is due by the time the loop polls, so the poll does not block."""
    gevent.sleep(1e-6)


class Daemon:
    """The wired parts of one running upcheck."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock = SystemClock()
        self.telemetry = Telemetry()
        self.store = ResultsStore()
        self.prober = Prober(
            make_ssl_context(settings.ca_file),
            resolver=AresResolver(),
            allow_link_local=settings.allow_link_local,
            default_timeout=settings.timeout,
        )
        self.membership = make_membership(settings, self.clock)
        self._ring: rendezvous.Ring | None = None
        self._targets: tuple[Target, ...] = ()  # the whole list in force, owned or not
        self.scheduler = Scheduler(
            self.prober.probe,
            self.store,
            self.telemetry,
            self.clock,
            interval=settings.interval,
            timeout=settings.timeout,
            concurrency=settings.concurrency,
            phase=None if self.membership is None else self._shared_phase,
        )
        self.source = make_source(settings)
        self.reloader = Reloader(
            self.source, self.apply, self.telemetry, self.clock, settings.reload_interval
        )
        self.results_file = make_results_file(settings)
        self.shared_results: SharedResults | None = None
        self.sinks = self._make_sinks()
        self.publishers = [
            Publisher(sink, self.snapshot, self.telemetry, self.clock, settings.publish_interval)
            for sink in self.sinks
        ]
        self.exposition = Exposition(self.store, self.telemetry, pause=_yield)
        # GET /probe (--probe-endpoint): the same prober, results never stored.
        self.on_demand = (
            OnDemandProber(self.prober.probe, settings.timeout) if settings.probe_endpoint else None
        )
        self._view_lock = Semaphore()
        self._view: tuple[float, Snapshot] | None = None

    def _make_sinks(self) -> list[Sink]:
        settings = self.settings
        sinks: list[Sink] = []
        if self.results_file is not None and self.membership is not None:
            membership = self.membership
            self.shared_results = SharedResults(
                self.results_file,
                member=lambda: membership.me,
                is_merger=self.is_merger,
                application=settings.app_name,
                publish_interval=settings.publish_interval,
                pause=yield_to_the_loop,
            )
            sinks.append(self.shared_results)
        elif self.results_file is not None:
            sinks.append(self.results_file)
        if settings.cloudwatch_namespace:
            from daemon.outputs.cloudwatch import CloudWatchSink

            shared = self.shared_results
            sinks.append(
                CloudWatchSink(
                    namespace=settings.cloudwatch_namespace,
                    application=settings.app_name,
                    url_metrics=settings.cloudwatch_url_metrics,
                    store=self.store,
                    telemetry=self.telemetry,
                    # Shared list: the fleet's figures, from the merging member only.
                    application_figures=None if shared is None else lambda _: shared.merged_counts,
                )
            )
        return sinks

    # -- the list and who probes what -----------------------------------------------------

    def apply(self, targets: Sequence[Target]) -> tuple[int, int, int]:
        """A new list (from the reloader, or the list in force again after a change of
        members) into the scheduler: this member's share of it, each new URL seeded with the
        history its earlier owner (or this process before a restart) left in the results."""
        self._targets = tuple(targets)
        owned = self.own_share(self._targets)
        fresh = [t for t in owned if self.store.get(t.url) is None]
        added, removed, changed = self.scheduler.apply(owned)
        self.telemetry.shard_owned_targets.set(len(owned))
        if fresh:
            self._seed(fresh)
        # A full collection costs ~0.3 s of hub time at 50k targets, felt by every probe in
        # flight: worth it after a big change (the first load), not for a few edited rows.
        if added + changed + removed > len(self.store) // 10:
            settle_heap()
        return added, removed, changed

    def own_share(self, targets: Sequence[Target]) -> list[Target]:
        """The targets this member probes: all of them without sharding."""
        if self.membership is None or self._ring is None:
            return list(targets)
        ring, me = self._ring, self.membership.me
        return [t for t in targets if ring.owns(t.url, me)]

    def _shared_phase(self, target: Target, interval: float) -> float:
        return rendezvous.phase(target.url, interval, self.clock.time())

    def is_merger(self) -> bool:
        """Whether this member writes the combined results (it ranks first for ``merge``)."""
        if self.membership is None or self._ring is None:
            return True
        return self._ring.owner("merge") == self.membership.me

    def members_changed(self, members: Sequence[str]) -> None:
        self._ring = rendezvous.Ring(members)
        self.telemetry.shard_members.set(len(self._ring.members))
        assert self.membership is not None
        log.info(
            event(
                "shard_members_changed",
                me=self.membership.me,
                members=len(self._ring.members),
                merger=self._ring.owner("merge"),
            )
        )
        if self.reloader.loaded:
            self.apply(self._targets)

    def start_membership(self) -> None:
        """Join the shared list (ECS: find this task and its peers). MembershipError when
        this process cannot learn who it is."""
        if self.membership is None:
            self.telemetry.shard_members.set(1)
            return
        self.membership.on_change.append(self.members_changed)
        self.membership.on_failure.append(lambda _: self.telemetry.shard_refresh_failures.inc())
        self.membership.start()
        self.members_changed(self.membership.members())

    def _seed(self, targets: Sequence[Target]) -> None:
        """History, failure streaks and uptime counts for ``targets`` from the results file
        last written."""
        if self.results_file is None:
            return
        try:
            data = self.results_file.read_document()
            document = json.loads(data) if data else None
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning(event("results_not_read_back", error=str(exc)))
            return
        if not isinstance(document, dict) or document.get("schema") != 1:
            return
        earlier = {
            (entry.get("name"), entry.get("url")): entry
            for entry in document.get("results") or []
            if isinstance(entry, dict)
        }
        seeded = 0
        for target in targets:
            entry = earlier.get((target.name, target.display_url))
            if entry is None:
                continue
            history = entry.get("history")
            streak = entry.get("consecutive_failures")
            seeded += self.store.seed(
                target.url,
                history if isinstance(history, list) else [],
                streak if isinstance(streak, int) else 0,
                entry.get("uptime_buckets"),
            )
        if seeded:
            log.info(event("history_carried_over", targets=seeded))

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
        results_sink = self.shared_results or self.results_file
        written = any(p.written for p in self.publishers if p.sink is results_sink)
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
            probe=self.on_demand,
        )

    def flush(self, budget: float) -> None:
        """Last writes of every sink, in parallel, within ``budget`` seconds."""
        jobs = [gevent.spawn(p.flush, budget) for p in self.publishers]
        gevent.joinall(jobs, timeout=budget + 0.25)


def run_forever(daemon: Daemon) -> int:
    settings = daemon.settings
    fd_limit = raise_fd_limit()
    server = HttpServer(
        (settings.listen_host, settings.listen_port),
        daemon.app(),
        max_connections=connection_cap(fd_limit, settings.concurrency),
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
            probe_endpoint="on" if settings.probe_endpoint else "off",
            fd_limit=fd_limit,
            max_connections=server.max_connections,
        )
    )
    if fd_limit < settings.concurrency + RESERVED_FDS + server.max_connections:
        log.warning(
            event(
                "fd_limit_low",
                fd_limit=fd_limit,
                concurrency=settings.concurrency,
                advice="raise the open files limit (ulimit -n) or lower --concurrency",
            )
        )
    # Signals first: a SIGTERM that arrives while the first load still waits on S3 must
    # still stop the daemon cleanly.
    stopping = Event()

    def on_signal(signum: int) -> None:
        if not stopping.is_set():  # Ctrl-C under `make run` can bring SIGINT and SIGTERM
            log.info(event("stopping", signal=signal.Signals(signum).name))
            stopping.set()

    def on_hangup() -> None:
        log.info(event("targets_check_requested", signal="SIGHUP"))
        daemon.reloader.check_soon()

    gevent.signal_handler(signal.SIGTERM, on_signal, signal.SIGTERM)
    gevent.signal_handler(signal.SIGINT, on_signal, signal.SIGINT)
    gevent.signal_handler(signal.SIGHUP, on_hangup)
    # Learn who this member is before probing anything: probing before that would either
    # duplicate the peers' work or leave URLs out. A SIGTERM meanwhile still stops at once.
    joining = gevent.spawn(daemon.start_membership)
    gevent.wait([joining, stopping], count=1)
    if not joining.ready() or not joining.successful():
        joining.kill()
        server.stop(timeout=1)
        if isinstance(joining.exception, MembershipError):
            log.error(event("shard_join_failed", error=str(joining.exception)))
            return 1
        if joining.exception is not None:
            log.error(event("shard_join_crashed", error=repr(joining.exception)))
            return 1
        log.info(event("stopped"))
        return 0
    daemon.scheduler.start()
    daemon.reloader.start()  # the first load runs in the reloader's greenlet, not here
    for publisher in daemon.publishers:
        publisher.start()
    stopping.wait()
    # One deadline for every step, so that slow steps cannot add up past the SPEC's 10 s.
    deadline = time.monotonic() + SHUTDOWN_DEADLINE
    daemon.reloader.stop()
    if daemon.membership is not None:
        daemon.membership.stop()
    daemon.scheduler.stop()
    daemon.flush(budget=max(0.5, deadline - time.monotonic() - 0.75))
    server.stop(timeout=max(0.1, deadline - time.monotonic()))
    log.info(event("stopped"))
    return 0


def run_once(daemon: Daemon) -> int:
    raise_fd_limit()
    try:
        fetched = daemon.source.fetch(None)
        assert fetched is not None
        parsed = parse_targets(fetched.data)
    except (SourceError, TargetsError) as exc:
        print(f"upcheck: error: cannot load targets: {exc}", file=sys.stderr)
        return 2
    for problem in parsed.errors:
        log.warning(event("targets_row_skipped", source=daemon.source.description, problem=problem))
    try:
        daemon.start_membership()
    except MembershipError as exc:
        print(f"upcheck: error: cannot join the shared list: {exc}", file=sys.stderr)
        return 2
    daemon.reloader.loaded = True
    daemon.scheduler.probe_all_once(daemon.own_share(parsed.targets))
    failed_sinks = [p.sink.name for p in daemon.publishers if not p.attempt()]
    all_up = True
    for state in daemon.store.states():
        result = state.last
        if result is None:  # no verdict: this process ran short of descriptors (logged)
            all_up = False
            print(
                f"SKIP {'-':>3} {'-':>9}  {state.target.name}  {state.target.display_url}"
                "  not probed: the daemon ran out of file descriptors or memory"
            )
            continue
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
    errors_as_events()
    disable_created_metrics()  # type: ignore[no-untyped-call]
    daemon = Daemon(settings)
    if settings.once:
        return run_once(daemon)
    return run_forever(daemon)
