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
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol, overload

from daemon.logs import event
from daemon.outputs.document import SCHEMA, Snapshot, encode_document, iso
from daemon.outputs.page import render_status_page

log = logging.getLogger(__name__)

STALE_AFTER_INTERVALS = 3  # a part older than this many publish intervals is left out
PAUSE_EVERY = 500  # entries read or merged between two calls of ``pause``


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


# One entry of a part as the merge keeps it: the part's text and the entry's span in it, then
# what merging and the page's sorting need, so that neither parses it again: url, checked_at
# ("" when absent), name, up, uptime, and whether the history holds a failure. A plain tuple of
# plain values (the uptime a dict of numbers): the garbage collector stops tracking it, so 50k
# of them add nothing to a full collection's walk.
_Kept = tuple[str, int, int, Any, str, Any, Any, Any, bool]
_TEXT: Final = 0
_START: Final = 1
_END: Final = 2
_URL: Final = 3
_CHECKED: Final = 4
_NAME: Final = 5
_UP: Final = 6
_UPTIME: Final = 7
_FAILED: Final = 8


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # json.loads takes it; no member writes it


_DECODER = json.JSONDecoder(parse_constant=_refuse)
_SPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, index: int) -> int:
    match = _SPACE.match(text, index)
    assert match is not None  # "*" matches the empty string too
    return match.end()


def _keep(entry: Any, text: str, start: int, end: int) -> _Kept:
    if not isinstance(entry, dict):
        raise ValueError(f"the result at character {start} is not an object")
    url = entry.get("url")
    if not (url is None or isinstance(url, str)):
        raise ValueError(f"the result at character {start} has a url that is not a string")
    checked = entry.get("checked_at")
    history = entry.get("history")
    return (
        text,
        start,
        end,
        url,
        checked if isinstance(checked, str) else "",
        entry.get("name", ""),
        entry.get("up"),
        entry.get("uptime"),
        isinstance(history, list) and None in history,
    )


class Entries(Sequence[dict[str, Any]]):
    """A part's results (or the merged ones) kept as their JSON text, each parsed again only
    when read: the combined file copies the text as it is, and the page reads a few hundred
    entries in full and only a brief of the rest. Parsed and kept as dicts, 50k entries took
    ~100 MB and a quarter of a million objects for every full garbage collection to walk."""

    def __init__(self, kept: list[_Kept]) -> None:
        self._kept = kept

    def __len__(self) -> int:
        return len(self._kept)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [_parsed(kept) for kept in self._kept[index]]
        return _parsed(self._kept[index])

    def brief(self, index: int) -> dict[str, Any]:
        """What the page sorts and groups by (see :func:`render_status_page`)."""
        kept = self._kept[index]
        return {
            "name": kept[_NAME],
            "up": kept[_UP],
            "uptime": kept[_UPTIME],
            "recent_failure": kept[_FAILED],
        }

    def encoded(self, start: int, stop: int) -> str:
        """The JSON of entries ``start`` to ``stop``, comma-separated: their text as read."""
        return ",".join(kept[_TEXT][kept[_START] : kept[_END]] for kept in self._kept[start:stop])


def _parsed(kept: _Kept) -> dict[str, Any]:
    entry: dict[str, Any] = _DECODER.decode(kept[_TEXT][kept[_START] : kept[_END]])
    return entry


def _read_entries(text: str, index: int, pause: Callable[[], None] | None) -> tuple[Entries, int]:
    """The array at ``index``, one entry at a time; where it ends."""
    kept: list[_Kept] = []
    index = _skip(text, index + 1)
    if text.startswith("]", index):
        return Entries(kept), index + 1
    while True:
        entry, end = _DECODER.raw_decode(text, index)
        kept.append(_keep(entry, text, index, end))
        if pause is not None and len(kept) % PAUSE_EVERY == 0:
            pause()
        index = _skip(text, end)
        if text.startswith("]", index):
            return Entries(kept), index + 1
        if not text.startswith(",", index):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
        index = _skip(text, index + 1)


def read_part(data: bytes, pause: Callable[[], None] | None = None) -> dict[str, Any]:
    """A part's document as ``json.loads`` reads it (ValueError where that fails, and for a
    NaN or an infinity, which no member writes), with its ``results`` as :class:`Entries`, read
    :data:`PAUSE_EVERY` at a time with ``pause`` between: one ``json.loads`` of a part of 17k
    URLs held the event loop for ~0.3 s, and a merge reads several."""
    text = data.decode(json.detect_encoding(data), "surrogatepass")
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM", text, 0)
    index = _skip(text, 0)
    if not text.startswith("{", index):
        raise json.JSONDecodeError("Expecting an object", text, index)
    document: dict[str, Any] = {}
    index = _skip(text, index + 1)
    closed = text.startswith("}", index)
    while not closed:
        if not text.startswith('"', index):
            raise json.JSONDecodeError("Expecting property name", text, index)
        key, index = _DECODER.raw_decode(text, index)
        index = _skip(text, index)
        if not text.startswith(":", index):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, index)
        index = _skip(text, index + 1)
        if key == "results" and text.startswith("[", index):
            document[key], index = _read_entries(text, index, pause)
        else:
            document[key], index = _DECODER.raw_decode(text, index)
            if key == "results" and document[key] is not None:  # null: none, as before
                raise ValueError(f"the results at character {index} are not an array")
        index = _skip(text, index)
        closed = text.startswith("}", index)
        if not closed:
            if not text.startswith(",", index):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
            index = _skip(text, index + 1)
    end = _skip(text, index + 1)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return document


def merge_documents(
    parts: Iterable[tuple[str, dict[str, Any]]],
    application: str,
    now: float,
    pause: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The combined results document of the members' documents, every URL once (the newer
    result where two members had it), with ``members``: each part's id, age and size.

    The documents are those of :func:`read_part`; one with its results as plain entries
    (tests, tools) is read as the JSON a member would have written. ``pause`` is called every
    :data:`PAUSE_EVERY` entries."""
    by_url: dict[Any, _Kept] = {}
    members = []
    for member, document in parts:
        results = document.get("results")
        if not isinstance(results, Entries):
            results = read_part(json.dumps({"results": list(results or [])}).encode())["results"]
        generated = _parsed_time(document.get("generated_at"))
        members.append(
            {
                "id": member,
                "generated_at": document.get("generated_at"),
                "age_seconds": None if generated is None else round(max(now - generated, 0), 1),
                "targets": len(results),
            }
        )
        for count, entry in enumerate(results._kept, start=1):
            url = entry[_URL]
            kept = by_url.get(url)
            if kept is None or entry[_CHECKED] > kept[_CHECKED]:
                by_url[url] = entry
            if pause is not None and count % PAUSE_EVERY == 0:
                pause()
    entries = list(by_url.values())
    del by_url
    up = down = 0
    for entry in entries:
        if entry[_UP] is True:
            up += 1
        elif entry[_UP] is False:
            down += 1
    return {
        "schema": SCHEMA,
        "generated_at": iso(now),
        "application": application,
        "targets_total": len(entries),
        "targets_up": up,
        "targets_down": down,
        "members": sorted(members, key=lambda m: m["id"]),
        "results": Entries(entries),
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
        pause: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._member = member
        self._is_merger = is_merger
        self._application = application
        self._max_age = STALE_AFTER_INTERVALS * publish_interval
        self._clock = clock
        # Called every few hundred entries while the parts are read, merged and written out,
        # so that with gevent the merge of a large fleet does not hold up the probes.
        self._pause = pause
        # The fleet's (total, up, down) as last merged here; None when this member does not
        # merge (per-application figures come from the merging member only).
        self.merged_counts: tuple[int, int, int] | None = None

    def publish(self, snapshot: Snapshot) -> None:
        self._store.write_part(self._member(), snapshot.document_json)
        if not self._is_merger():
            self.merged_counts = None
            return
        pause = self._pause
        if pause is not None:
            pause()  # the part was written with a blocking write (and fsync) on local disk
        now = self._clock()
        merged = merge_documents(self._fresh_parts(now), self._application, now, pause)
        body = encode_document(merged, pause=pause)
        page = render_status_page(merged, pause=pause).encode()
        counts = merged["targets_total"], merged["targets_up"], merged["targets_down"]
        del merged  # the parts' text and what was kept of each entry: freed here, not mid-write
        if pause is not None:
            pause()
        self._store.write_document(body, page)
        self.merged_counts = counts

    def _fresh_parts(self, now: float) -> Iterator[tuple[str, dict[str, Any]]]:
        """The fresh parts of this schema, each read when the merge comes to it, and its bytes
        let go once read (the text of each is kept: the combined file is copied from it)."""
        parts = self._store.read_parts(newer_than=now - self._max_age)
        parts.reverse()
        while parts:
            if self._pause is not None:
                self._pause()  # after the reads (blocking on local disk), between two parts
            part = parts.pop()
            member = part.member
            try:
                document = read_part(part.data, self._pause)
            except ValueError as exc:
                log.warning(event("results_part_unreadable", member=member, error=str(exc)))
                continue
            finally:
                del part
            generated = _parsed_time(document.get("generated_at"))
            if generated is not None and now - generated > self._max_age:
                continue  # written late with an old snapshot, or a clock far behind
            if document.get("schema") == SCHEMA:
                yield member, document
