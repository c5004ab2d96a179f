"""One results file from several members: each writes its part, one merges them.

With ``--shard``, every member writes its own results (the same schema) as
``<results>.parts/<member>.json`` beside the results file. The member that ranks first for the
key ``merge`` then reads the fresh parts, merges them into the combined results file and its
status page, and lists the members it merged with each part's age. Readers of the results file
see one document with every URL once, as without sharding.

During a change of membership two members may both merge for up to one refresh: each write is
whole (rename or one PUT) and built from the same parts, so the last one simply wins. A URL that
two members probed during a handover appears once, with the newer result.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from daemon.logs import event
from daemon.outputs.document import SCHEMA, Snapshot, iso
from daemon.outputs.page import render_status_page

log = logging.getLogger(__name__)

STALE_AFTER_INTERVALS = 3  # a part older than this many publish intervals is left out


@dataclass(frozen=True, slots=True)
class Part:
    """One member's part as read back: who wrote it, its bytes, when it was last written."""

    member: str
    data: bytes
    modified: float  # unix time, from the file system or S3


class PartStore(Protocol):
    """Where the parts and the combined file live (a folder, or an S3 prefix)."""

    def write_part(self, member: str, data: bytes) -> None: ...

    def read_parts(self, newer_than: float) -> list[Part]:
        """Every part written after ``newer_than`` (unix time); older ones are not read."""
        ...

    def write_document(self, document: bytes, page: bytes) -> None: ...


def _parsed_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def merge_documents(
    parts: Iterable[tuple[str, dict[str, Any]]], application: str, now: float
) -> dict[str, Any]:
    """The combined results document of the members' documents, every URL once (the newer
    result where two members had it), with ``members``: each part's id, age and size."""
    by_url: dict[str, dict[str, Any]] = {}
    members = []
    for member, document in parts:
        results = document.get("results") or []
        generated = _parsed_time(document.get("generated_at"))
        members.append(
            {
                "id": member,
                "generated_at": document.get("generated_at"),
                "age_seconds": None if generated is None else round(max(now - generated, 0), 1),
                "targets": len(results),
            }
        )
        for entry in results:
            url = entry.get("url")
            kept = by_url.get(url)
            if kept is None or (entry.get("checked_at") or "") > (kept.get("checked_at") or ""):
                by_url[url] = entry
    entries = list(by_url.values())
    return {
        "schema": SCHEMA,
        "generated_at": iso(now),
        "application": application,
        "targets_total": len(entries),
        "targets_up": sum(1 for e in entries if e.get("up") is True),
        "targets_down": sum(1 for e in entries if e.get("up") is False),
        "members": sorted(members, key=lambda m: m["id"]),
        "results": entries,
    }


class SharedResults:
    """The results-file sink of a member of a shared list."""

    name = "results_file"

    def __init__(
        self,
        store: PartStore,
        member: Callable[[], str],
        is_merger: Callable[[], bool],
        application: str,
        publish_interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._member = member
        self._is_merger = is_merger
        self._application = application
        self._max_age = STALE_AFTER_INTERVALS * publish_interval
        self._clock = clock
        # The fleet's (total, up, down) as last merged here; None when this member does not
        # merge (per-application figures come from the merging member only).
        self.merged_counts: tuple[int, int, int] | None = None

    def publish(self, snapshot: Snapshot) -> None:
        self._store.write_part(self._member(), snapshot.document_json)
        if not self._is_merger():
            self.merged_counts = None
            return
        now = self._clock()
        documents = []
        for part in self._store.read_parts(newer_than=now - self._max_age):
            try:
                document = json.loads(part.data)
            except ValueError as exc:
                log.warning(event("results_part_unreadable", member=part.member, error=str(exc)))
                continue
            generated = _parsed_time(document.get("generated_at"))
            if generated is not None and now - generated > self._max_age:
                continue  # written late with an old snapshot, or a clock far behind
            if document.get("schema") == SCHEMA:
                documents.append((part.member, document))
        merged = merge_documents(documents, self._application, now)
        body = json.dumps(merged, separators=(",", ":"), allow_nan=False).encode()
        self._store.write_document(body, render_status_page(merged).encode())
        self.merged_counts = (
            merged["targets_total"],
            merged["targets_up"],
            merged["targets_down"],
        )
