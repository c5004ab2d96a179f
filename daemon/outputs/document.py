"""The results document (JSON, schema 1): the results store at one instant, as readers of
the results file, ``GET /results`` and the status page see it.

:class:`Snapshot` is that instant; it builds the document, its JSON and the page once each,
and only when someone asks: at tens of thousands of targets they cost real CPU.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from daemon.model import PHASES
from daemon.outputs.page import render_status_page
from daemon.store import ResultsStore, TargetState

SCHEMA = 1


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _entry(state: TargetState) -> dict[str, Any]:
    target, result = state.target, state.last
    base: dict[str, Any] = {"name": target.name, "url": target.display_url}
    if result is None:
        base.update(
            up=None,
            status_code=None,
            response_time_ms=None,
            checked_at=None,
            error_kind=None,
            error=None,
            consecutive_failures=0,
            phases_ms=None,
            cert_expires_at=None,
            history=[],
        )
        return base
    base.update(
        up=result.up,
        status_code=result.status_code,
        response_time_ms=round(result.duration * 1000, 1),
        checked_at=iso(result.started_at),
        error_kind=result.error_kind,
        error=result.error,
        consecutive_failures=state.consecutive_failures,
        phases_ms={p: round(s * 1000, 1) for p, s in zip(PHASES, result.phases, strict=True)},
        cert_expires_at=iso(result.cert_expiry),
        history=[round(p.response_time_ms, 1) if p.up else None for p in state.history()],
    )
    return base


def build_document(
    store: ResultsStore,
    application: str,
    now: float | None = None,
    pause: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The results document. ``pause`` is called every few hundred targets so that, with
    gevent, building it for a large fleet does not hold up the probes running meanwhile."""
    entries = []
    for index, state in enumerate(store.states(), start=1):
        entries.append(_entry(state))
        if pause is not None and index % 500 == 0:
            pause()
    up = sum(1 for e in entries if e["up"] is True)
    down = sum(1 for e in entries if e["up"] is False)
    return {
        "schema": SCHEMA,
        "generated_at": iso(time.time() if now is None else now),
        "application": application,
        "targets_total": len(entries),
        "targets_up": up,
        "targets_down": down,
        "results": entries,
    }


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
