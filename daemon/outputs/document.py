"""The results document (JSON, schema 1): the results store at one instant, as readers of
the results file, ``GET /results`` and the status page see it.

:class:`Snapshot` is that instant; it builds the document, its JSON and the page once each,
and only when someone asks: at tens of thousands of targets they cost real CPU.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, overload

from daemon.outputs.page import render_status_page
from daemon.store import BucketEncoder, ResultsStore, TargetState

SCHEMA = 1


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ratio(value: float | None) -> float | None:
    return value if value is None or value == 1.0 else round(value, 6)


class _Entries:
    """Builds the document's entries, with what one document's entries share: the time, one
    bucket encoder, and the ISO form of each whole second met (at 50k targets probed every
    minute, about 60 distinct seconds: formatting each once saves a fifth of the build)."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.buckets = BucketEncoder()
        self._iso: dict[int, str | None] = {}

    def iso(self, ts: float | None) -> str | None:
        if ts is None:
            return None
        second = math.floor(ts)
        if second not in self._iso:
            self._iso[second] = iso(second)
        return self._iso[second]

    def entry(self, state: TargetState) -> dict[str, Any]:
        target, result = state.target, state.last
        uptime = state.uptime(self.now)
        if result is None:
            # Not probed by this process yet. What an earlier run or owner saw (history,
            # streak, uptime) is kept, so a restart before the first probe does not lose it.
            return {
                "name": target.name,
                "url": target.display_url,
                "up": None,
                "status_code": None,
                "response_time_ms": None,
                "checked_at": None,
                "error_kind": None,
                "error": None,
                "consecutive_failures": state.consecutive_failures,
                "phases_ms": None,
                "cert_expires_at": None,
                "history": state.history_ms(),
                "attempts": None,
                "uptime": {name: _ratio(value) for name, value in uptime.items()},
                "uptime_buckets": self.buckets.encode(state),
            }
        resolve, connect, tls, processing, transfer = result.phases
        return {
            "name": target.name,
            "url": target.display_url,
            "up": result.up,
            "status_code": result.status_code,
            "response_time_ms": _ms(result.duration),
            "checked_at": self.iso(result.started_at),
            "error_kind": result.error_kind,
            "error": result.error,
            "consecutive_failures": state.consecutive_failures,
            "phases_ms": {
                "resolve": _ms(resolve),
                "connect": _ms(connect),
                "tls": _ms(tls),
                "processing": _ms(processing),
                "transfer": _ms(transfer),
            },
            "cert_expires_at": self.iso(result.cert_expiry),
            "history": state.history_ms(),
            "attempts": result.attempts,
            "uptime": {name: _ratio(value) for name, value in uptime.items()},
            "uptime_buckets": self.buckets.encode(state),
        }


def _ms(seconds: float) -> float:
    """Seconds as ms to a tenth (``round(x, 1)`` is slower and a document has 300k of them)."""
    return math.floor(seconds * 10_000 + 0.5) / 10


class Results(Sequence[dict[str, Any]]):
    """A document's results, each entry built from its target's state when it is read, and
    not kept: at 50k targets the entries as dicts took ~100 MB, and each sink only needs a few
    hundred at a time (the JSON is encoded in chunks, the page keeps a line of text per URL).

    The targets are those of the moment the document was made; an entry shows its target as
    it is when read, so two reads of one entry may differ by the probes recorded between.
    """

    def __init__(self, states: list[TargetState], now: float) -> None:
        self._states = states
        self._build = _Entries(now)

    def __len__(self) -> int:
        return len(self._states)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._build.entry(state) for state in self._states[index]]
        return self._build.entry(self._states[index])

    def brief(self, index: int) -> dict[str, Any]:
        """What the page needs of every entry to sort and group them, a few times cheaper than
        the entry: ``name``, ``up``, ``uptime``, and ``recent_failure`` (a failure in the
        history) in place of ``history``."""
        state = self._states[index]
        last = state.last
        return {
            "name": state.target.name,
            "up": None if last is None else last.up,
            "uptime": {k: _ratio(v) for k, v in state.uptime(self._build.now).items()},
            "recent_failure": state.failed_recently(),
        }


def lazy_document(
    store: ResultsStore, application: str, now: float | None = None
) -> dict[str, Any]:
    """The results document with its ``results`` as :class:`Results`: cheap to make and to
    keep; the entries cost CPU each time they are read."""
    now = time.time() if now is None else now
    states = list(store.states())
    up = down = 0
    for state in states:
        if state.last is not None:
            if state.last.up:
                up += 1
            else:
                down += 1
    return {
        "schema": SCHEMA,
        "generated_at": iso(now),
        "application": application,
        "targets_total": len(states),
        "targets_up": up,
        "targets_down": down,
        "results": Results(states, now),
    }


def build_document(
    store: ResultsStore,
    application: str,
    now: float | None = None,
    pause: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The results document with every entry built, as a plain dict of lists. ``pause`` is
    called every few hundred targets so that, with gevent, building it for a large fleet does
    not hold up the probes running meanwhile."""
    document = lazy_document(store, application, now)
    results = document["results"]
    entries: list[dict[str, Any]] = []
    for start in range(0, len(results), 500):
        if start and pause is not None:
            pause()
        entries.extend(results[start : start + 500])
    document["results"] = entries
    return document


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
        # The page and the JSON yield while they are built: a second reader of the same
        # snapshot (GET / twice within a few seconds) waits for the first build, not a second.
        self._building = threading.Lock()
        self._html: str | None = None
        self._json: bytes | None = None

    @cached_property
    def document(self) -> dict[str, Any]:
        """The document; its ``results`` (:class:`Results`) are built as they are read."""
        return lazy_document(self._store, self.application)

    @property
    def status_html(self) -> str:
        with self._building:
            if self._html is None:
                self._html = render_status_page(self.document, pause=self._pause)
            return self._html

    @property
    def document_json(self) -> bytes:
        with self._building:
            if self._json is None:
                self._json = encode_document(self.document, pause=self._pause)
            return self._json


def encode_document(document: dict[str, Any], pause: Callable[[], None] | None = None) -> bytes:
    """The document as compact JSON, its results encoded a few hundred at a time with
    ``pause`` between: at 50k targets one ``json.dumps`` held the hub for over half a second.
    The bytes are those of ``json.dumps`` with ``results`` moved last (where the daemon puts
    it anyway). Results that are already JSON text (the merge of the members' parts) offer
    ``encoded(start, stop)``, and that text is used as it is."""
    dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    head = {key: value for key, value in document.items() if key != "results"}
    if "results" not in document:
        return dumps(head).encode()
    results = document["results"]
    encoded: Callable[[int, int], str] = getattr(
        results, "encoded", lambda start, stop: dumps(results[start:stop])[1:-1]
    )
    opening = dumps(head)[:-1] + ',"results":[' if head else '{"results":['
    parts = [opening.encode()]
    for start in range(0, len(results), 500):
        if start:
            parts.append(b",")
            if pause is not None:
                pause()
        parts.append(encoded(start, start + 500).encode())
    parts.append(b"]}")
    return b"".join(parts)
