"""Watches the targets source and hands each good new list on (to the scheduler, via runtime).

Checked every reload interval; a list is parsed and applied only when the source's checksum
changed. A source that cannot be read, or a file rejected whole, leaves the last good list in
force and is counted; before the first good list, retries back off from 1 s up to the reload
interval so a daemon started before its bucket exists comes up as soon as it can.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import gevent
from gevent.event import Event

from daemon.clock import Clock
from daemon.logs import event
from daemon.model import Target
from daemon.sources.base import SourceError, TargetSource
from daemon.sources.parse import TargetsError, parse_targets
from daemon.telemetry import Telemetry

log = logging.getLogger(__name__)

# Takes a whole new list; answers how many targets were (added, removed, changed).
Apply = Callable[[Sequence[Target]], tuple[int, int, int]]


class Reloader:
    def __init__(
        self,
        source: TargetSource,
        apply: Apply,
        telemetry: Telemetry,
        clock: Clock,
        reload_interval: float,
    ) -> None:
        self._source = source
        self._apply = apply
        self._telemetry = telemetry
        self._clock = clock
        self._reload_interval = reload_interval
        self._checksum: str | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._wake = Event()
        self.loaded = False  # a good list has been applied at least once (drives /ready)
        self.last_error: str | None = None
        # Why the file now at the source was rejected, while it stays there; None otherwise.
        self._rejection: str | None = None

    def check(self) -> bool:
        """Look at the source once; apply a changed, valid list. Returns True if all went well."""
        try:
            fetched = self._source.fetch(self._checksum)
        except SourceError as exc:
            return self._failed(str(exc))
        if fetched is None:
            return self._unchanged()
        try:
            parsed = parse_targets(fetched.data)
        except TargetsError as exc:
            self._checksum = fetched.checksum  # don't re-parse the same bad file every time
            self._rejection = f"{self._source.description}: {exc}"
            return self._failed(self._rejection)
        for problem in parsed.errors:
            log.warning(
                event("targets_row_skipped", source=self._source.description, problem=problem)
            )
        added, removed, changed = self._apply(parsed.targets)
        self._checksum = fetched.checksum
        self._telemetry.targets_loaded(len(parsed.targets), len(parsed.errors))
        log.info(
            event(
                "targets_loaded" if not self.loaded else "targets_reloaded",
                source=self._source.description,
                targets=len(parsed.targets),
                added=added,
                removed=removed,
                changed=changed,
                skipped_rows=len(parsed.errors),
                checksum=fetched.checksum[:16],
            )
        )
        self.loaded = True
        self.last_error = None
        self._rejection = None
        return True

    def _unchanged(self) -> bool:
        """The source answered "same as last time". If the last look failed to read it, that
        is a recovery: the list in force is what the source holds, so say so."""
        if self._rejection is not None:
            self.last_error = self._rejection  # still the same rejected file
            return False
        if self.last_error is not None and self.loaded:
            log.info(event("targets_source_recovered", source=self._source.description))
            self.last_error = None
            self._telemetry.targets_source_readable()
        return True

    def _failed(self, reason: str) -> bool:
        self.last_error = reason
        self._telemetry.targets_load_failed()
        log.error(
            event(
                "targets_load_failed",
                source=self._source.description,
                error=reason,
                keeping="last good list" if self.loaded else "nothing loaded yet",
            )
        )
        return False

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._loop)

    def check_soon(self) -> None:
        """Look at the source now rather than at the next tick (SIGHUP); the ticks after it
        keep their interval from this look."""
        self._wake.set()

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)

    def _loop(self) -> None:
        """The first look happens at once; then every reload interval (backing off before the
        first good list)."""
        backoff = 1.0
        while True:
            try:
                self.check()
            except Exception:
                log.exception(event("targets_reload_crashed", source=self._source.description))
            if self.loaded:
                delay = self._reload_interval
            else:
                delay = backoff
                backoff = min(backoff * 2, self._reload_interval)
            self._wake.clear()
            self._clock.wait(self._wake, delay)
