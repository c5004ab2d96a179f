"""The results store: the latest result, failure streak, recent history and uptime of every
target.

The scheduler writes into it; the Prometheus exposition, the results document, the status page
and the sinks read from it. Everything runs on one gevent hub, so plain dicts are safe: no
greenlet switch can happen in the middle of these methods.

Memory per target is bounded and does not grow with time (about 1 KB beside the target itself):

- the last :data:`HISTORY` response times, a ring of 32-bit integers (tenths of a ms): 144 B;
- uptime counters, one ``array('H')`` of 364 16-bit counts: the probes and the successful ones
  in each of the last thirteen 5-minute periods (the 1 h window) and the last 169 hours (the
  24 h and 7 d windows): 792 B, allocated with the target's first probe (or carried-over
  counts).

A window's oldest bucket usually straddles the window's start; it is counted in proportion to
its overlap (as if its probes were spread evenly over it), so the 1 h figure is exact to within
a 5-minute period and the 24 h and 7 d ones to within an hour.
"""

from __future__ import annotations

import base64
import binascii
import sys
import zlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.model import ProbeResult, Target

HISTORY = 20  # results kept per target for the status page

# Uptime buckets: (seconds per bucket, buckets kept). A window of W seconds needs W / L
# buckets plus the current, partial one.
FINE_SECONDS, FINE_BUCKETS = 300, 13  # the 1 h window
COARSE_SECONDS, COARSE_BUCKETS = 3600, 169  # the 24 h and 7 d windows
_FINE_PER_COARSE = COARSE_SECONDS // FINE_SECONDS
UPTIME_WINDOWS = (("1h", 3600), ("24h", 86_400), ("7d", 604_800))
# Each window with the size of its buckets, in seconds and in 5-minute periods.
_WINDOWS = tuple(
    (name, window, *((FINE_SECONDS, 1) if window <= 3600 else (COARSE_SECONDS, 12)))
    for name, window in UPTIME_WINDOWS
)
BUCKET_LAYOUT = f"{FINE_SECONDS}x{FINE_BUCKETS},{COARSE_SECONDS}x{COARSE_BUCKETS}"
# Offsets into one target's counts: probes then successes of each level.
_FINE_OK = FINE_BUCKETS
_COARSE_PROBES = 2 * FINE_BUCKETS
_COARSE_OK = _COARSE_PROBES + COARSE_BUCKETS
_COUNTS = _COARSE_OK + COARSE_BUCKETS
_COUNT_MAX = 0xFFFF
_NO_FAILURE = -(1 << 40)  # a fine-bucket index older than any window


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    up: bool
    response_time_ms: float


def _tenths(millis: float) -> int:
    """A duration in ms as tenths of a ms that fit the ring (NaN and negatives as 0)."""
    if not millis > 0:
        return 0
    return min(round(millis * 10), 0x7FFFFFFE) if millis < 1e9 else 0x7FFFFFFE


class TargetState:
    """One target's place in the store. ``version`` changes whenever ``last`` does."""

    __slots__ = (
        "_bucket_at",
        "_buckets",
        "_failed_at",
        "_ring",
        "_ring_len",
        "_ring_pos",
        "_seeded",
        "consecutive_failures",
        "last",
        "target",
        "version",
    )

    def __init__(self, target: Target) -> None:
        self.target = target
        self.last: ProbeResult | None = None
        self.consecutive_failures = 0
        self.version = 0
        # History as a compact ring of response times in tenths of a ms; a failed probe is
        # stored as -(tenths + 1).
        self._ring = array("i", bytes(4 * HISTORY))
        self._ring_len = 0
        self._ring_pos = 0
        # Uptime counts (see the module's docstring), None until there is something to count.
        self._buckets: array[int] | None = None
        self._bucket_at = 0  # the newest 5-minute period counted (unix time // FINE_SECONDS)
        self._failed_at = _NO_FAILURE  # the 5-minute period of the newest failure counted
        self._seeded = False  # whether seed() has carried an earlier owner's results over

    # -- writing ----------------------------------------------------------------------------

    def record(self, result: ProbeResult) -> None:
        self.last = result
        self.version += 1
        self.consecutive_failures = 0 if result.up else self.consecutive_failures + 1
        self._push(result.up, result.duration * 1000.0)
        self._count(result.started_at, result.up)

    def _push(self, up: bool, millis: float) -> None:
        tenths = _tenths(millis)
        self._ring[self._ring_pos] = tenths if up else -tenths - 1
        self._ring_pos = (self._ring_pos + 1) % HISTORY
        self._ring_len = min(self._ring_len + 1, HISTORY)

    def _count(self, when: float, up: bool) -> None:
        """One probe, started at unix time ``when``, into its uptime buckets."""
        fine = int(when // FINE_SECONDS)
        counts = self._buckets
        if counts is None or fine <= self._bucket_at - _FINE_PER_COARSE * COARSE_BUCKETS:
            # The first probe, or the clock went back by more than the week (or counts carried
            # over from a clock far ahead): start afresh rather than count nothing until then.
            counts = self._buckets = array("H", bytes(2 * _COUNTS))
            self._bucket_at = fine
            self._failed_at = _NO_FAILURE
        elif fine > self._bucket_at:
            self._advance(counts, fine)
        if not up:
            self._failed_at = max(self._failed_at, fine)
        newest = self._bucket_at
        if fine > newest - FINE_BUCKETS:
            _bump(counts, fine % FINE_BUCKETS, _FINE_OK, up)
        coarse = fine // _FINE_PER_COARSE
        if coarse > newest // _FINE_PER_COARSE - COARSE_BUCKETS:
            _bump(counts, _COARSE_PROBES + coarse % COARSE_BUCKETS, COARSE_BUCKETS, up)

    def _advance(self, counts: array[int], fine: int) -> None:
        """Make ``fine`` the newest 5-minute period: empty the buckets it and the periods
        since the last probe reuse."""
        old = self._bucket_at
        for index in range(max(old + 1, fine - FINE_BUCKETS + 1), fine + 1):
            position = index % FINE_BUCKETS
            counts[position] = counts[_FINE_OK + position] = 0
        old_coarse, coarse = old // _FINE_PER_COARSE, fine // _FINE_PER_COARSE
        for index in range(max(old_coarse + 1, coarse - COARSE_BUCKETS + 1), coarse + 1):
            position = _COARSE_PROBES + index % COARSE_BUCKETS
            counts[position] = counts[COARSE_BUCKETS + position] = 0
        self._bucket_at = fine

    def seed(
        self,
        history: Sequence[float | None],
        consecutive_failures: int,
        uptime_buckets: Any = None,
    ) -> None:
        """Carry over what an earlier owner of this target saw (the results document's
        ``history``, oldest first, None for a failure, and its ``uptime_buckets``), once.

        The results document is read while probing has begun (from S3 that takes a while), so
        this process may have probed the target already: what it saw then comes after what is
        carried over, and both are counted."""
        if self._seeded:
            return
        self._seeded = True
        own = self._ordered()
        probed = self.version  # results recorded by this process
        self._ring_len = self._ring_pos = 0
        for millis in list(history)[-HISTORY:]:
            if isinstance(millis, int | float) and not isinstance(millis, bool) and millis >= 0:
                self._push(True, float(millis))
            else:
                self._push(False, 0.0)
        for value in own[-HISTORY:]:
            self._ring[self._ring_pos] = value
            self._ring_pos = (self._ring_pos + 1) % HISTORY
            self._ring_len = min(self._ring_len + 1, HISTORY)
        if self.consecutive_failures == probed:  # every probe of this process failed, or none
            self.consecutive_failures += max(0, int(consecutive_failures))
        decoded = decode_buckets(uptime_buckets)
        if decoded is None:
            return
        if self._buckets is None:
            self._bucket_at, self._buckets = decoded
        else:
            self._bucket_at, self._buckets = _merged((self._bucket_at, self._buckets), decoded)
        self._failed_at = max(self._failed_at, _newest_failure(self._buckets, self._bucket_at))

    # -- reading ----------------------------------------------------------------------------

    def _ordered(self) -> list[int]:
        """The ring's values, oldest first."""
        ring, length, pos = self._ring, self._ring_len, self._ring_pos
        if length < HISTORY:
            return ring[:length].tolist()
        return ring[pos:].tolist() + ring[:pos].tolist()

    def history(self) -> list[HistoryPoint]:
        """Oldest first."""
        return [
            HistoryPoint(True, v / 10) if v >= 0 else HistoryPoint(False, (-v - 1) / 10)
            for v in self._ordered()
        ]

    def failed_recently(self) -> bool:
        """Whether a probe in the history failed."""
        return self._ring_len > 0 and min(self._ring[: self._ring_len]) < 0

    def history_ms(self) -> list[float | None]:
        """Response times in ms, oldest first, None for a failed probe (the document's form)."""
        return [v / 10 if v >= 0 else None for v in self._ordered()]

    def uptime(self, now: float) -> dict[str, float | None]:
        """Share of successful probes in the last hour, day and week (None: no probe in it)."""
        if self._buckets is None:
            return {name: None for name, _ in UPTIME_WINDOWS}
        at, failed = self._bucket_at, self._failed_at
        shares: dict[str, float | None] = {}
        for name, window, size, per in _WINDOWS:
            first = int((now - window) // size)
            if at // per < first:
                shares[name] = None  # nothing counted since the window began
            elif failed // per < first:
                shares[name] = 1.0  # no failure counted in it: nothing to add up
            else:
                shares[name] = self.uptime_ratio(now, window)
        return shares

    def uptime_ratio(self, now: float, window: float) -> float | None:
        counts = self._buckets
        if counts is None:
            return None
        fine = window <= FINE_SECONDS * (FINE_BUCKETS - 1)
        size = FINE_SECONDS if fine else COARSE_SECONDS
        per = 1 if fine else _FINE_PER_COARSE
        start = now - window
        first = int(start // size)
        newest = self._bucket_at // per
        if newest < first:
            return None  # nothing counted since the window began
        if self._failed_at // per < first:
            return 1.0  # no failure counted in the window: no need to add anything up
        n, probes_at = (FINE_BUCKETS, 0) if fine else (COARSE_BUCKETS, _COARSE_PROBES)
        ok_at = probes_at + n
        low = max(first, newest - n + 1)
        high = min(int(now // size), newest)
        if low > high:
            return None  # everything counted lies ahead of ``now`` (a clock set back)
        # The oldest bucket counts for the part of it inside the window.
        weight = 1.0 if low > first else (first + 1 - start / size)
        position = probes_at + low % n
        probes = weight * counts[position]
        ok = weight * counts[n + position]
        if high > low:
            probes += _ring_sum(counts, probes_at, n, low + 1, high)
            ok += _ring_sum(counts, ok_at, n, low + 1, high)
        return ok / probes if probes > 0 else None

    def uptime_buckets(self) -> tuple[int, bytes] | None:
        """(unix time the newest 5-minute period began, the counts as little-endian bytes) to
        write down with :func:`encode_buckets`; None before anything was counted."""
        counts = self._buckets
        if counts is None:
            return None
        if sys.byteorder == "big":  # pragma: no cover - the format is little-endian
            counts = array("H", counts)
            counts.byteswap()
        return self._bucket_at * FINE_SECONDS, counts.tobytes()


def _bump(counts: array[int], position: int, ok_offset: int, up: bool) -> None:
    if counts[position] >= _COUNT_MAX:  # e.g. a 0.05 s interval: halve, keeping the ratio
        counts[position] >>= 1
        counts[position + ok_offset] >>= 1
    counts[position] += 1
    if up:
        counts[position + ok_offset] += 1


def _ring_sum(counts: array[int], offset: int, n: int, low: int, high: int) -> int:
    """Sum of the buckets of periods ``low`` .. ``high`` (at most ``n`` of them) of the ring of
    ``n`` buckets at ``offset``, one or two slices."""
    start, end = low % n, high % n
    if start <= end:
        return sum(counts[offset + start : offset + end + 1])
    return sum(counts[offset + start : offset + n]) + sum(counts[offset : offset + end + 1])


def _merged(
    first: tuple[int, array[int]], second: tuple[int, array[int]]
) -> tuple[int, array[int]]:
    """Two sets of counts (each: newest 5-minute period, counts) added up, bucket by bucket of
    the same period, for the newer of the two newest periods."""
    at = max(first[0], second[0])
    merged = array("H", bytes(2 * _COUNTS))
    for offset, n, per in (
        (0, FINE_BUCKETS, 1),
        (_COARSE_PROBES, COARSE_BUCKETS, _FINE_PER_COARSE),
    ):
        newest = at // per
        for index in range(newest - n + 1, newest + 1):
            position = offset + index % n
            for held_at, counts in (first, second):
                if held_at // per - n < index <= held_at // per:
                    probes = min(merged[position] + counts[position], _COUNT_MAX)
                    merged[position] = probes
                    merged[position + n] = min(merged[position + n] + counts[position + n], probes)
    return at, merged


def _newest_failure(counts: array[int], bucket_at: int) -> int:
    """The 5-minute period of the newest failure in carried-over counts (for an hourly bucket,
    its last period), or :data:`_NO_FAILURE`."""
    for index in range(bucket_at, bucket_at - FINE_BUCKETS, -1):
        position = index % FINE_BUCKETS
        if counts[position] > counts[_FINE_OK + position]:
            return index
    coarse = bucket_at // _FINE_PER_COARSE
    for index in range(coarse, coarse - COARSE_BUCKETS, -1):
        position = _COARSE_PROBES + index % COARSE_BUCKETS
        if counts[position] > counts[COARSE_BUCKETS + position]:
            return min(bucket_at, (index + 1) * _FINE_PER_COARSE - 1)
    return _NO_FAILURE


class BucketEncoder:
    """Uptime counts into the results document's ``uptime_buckets``, compactly.

    The counts are a raw DEFLATE stream (RFC 1951), base64. One compressor serves a whole
    document, flushed fully after each target, so each target's text inflates on its own: at 50k
    targets
    this costs ~2 µs a target instead of the ~25 µs of setting up a compressor for each, and a
    healthy target's counts take about 30 characters.
    """

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(1, zlib.DEFLATED, -15, 1)

    def encode(self, state: TargetState) -> dict[str, Any] | None:
        packed = state.uptime_buckets()
        if packed is None:
            return None
        at, raw = packed
        # After the full flush, an empty final block (0x03 0x00) ends the stream: any inflater
        # reads it whole.
        data = self._deflate.compress(raw) + self._deflate.flush(zlib.Z_FULL_FLUSH) + b"\x03\x00"
        return {
            "layout": BUCKET_LAYOUT,
            "at": at,
            "counts": base64.b64encode(data).decode("ascii"),
        }


def decode_buckets(value: Any) -> tuple[int, array[int]] | None:
    """The results document's ``uptime_buckets`` back into (newest 5-minute period, counts);
    None for anything else (missing, another layout, damaged)."""
    if not isinstance(value, dict) or value.get("layout") != BUCKET_LAYOUT:
        return None
    at, text = value.get("at"), value.get("counts")
    if not isinstance(at, int) or isinstance(at, bool) or not isinstance(text, str):
        return None
    try:
        inflate = zlib.decompressobj(-15)
        raw = inflate.decompress(base64.b64decode(text, validate=True), 2 * _COUNTS + 1)
    except (binascii.Error, ValueError, zlib.error):
        return None
    if len(raw) != 2 * _COUNTS:
        return None
    counts = array("H", raw)
    if sys.byteorder == "big":  # pragma: no cover - the format is little-endian
        counts.byteswap()
    return at // FINE_SECONDS, counts


def bucket_series(value: Any, now: float, hours: int) -> list[float | None] | None:
    """The share of successful probes in each of the last ``hours`` whole or partial hours,
    oldest first (None: no probe in that hour), from the document's ``uptime_buckets``."""
    decoded = decode_buckets(value)
    if decoded is None:
        return None
    bucket_at, counts = decoded
    newest = bucket_at // _FINE_PER_COARSE
    current = int(now // COARSE_SECONDS)
    series: list[float | None] = []
    for index in range(current - hours + 1, current + 1):
        if index > newest or index <= newest - COARSE_BUCKETS:
            series.append(None)
            continue
        position = _COARSE_PROBES + index % COARSE_BUCKETS
        probes = counts[position]
        series.append(counts[COARSE_BUCKETS + position] / probes if probes else None)
    return series


ResultListener = Callable[[Target, ProbeResult], None]


class ResultsStore:
    def __init__(self) -> None:
        self._states: dict[str, TargetState] = {}
        self._listeners: list[ResultListener] = []
        self.generation = 0  # bumps whenever the set of targets changes
        self.version = 0  # bumps whenever anything changes: the set of targets or a result

    def subscribe(self, listener: ResultListener) -> None:
        """Call ``listener`` with every new result (e.g. to aggregate between two pushes)."""
        self._listeners.append(listener)

    def add(self, target: Target) -> None:
        self._states[target.url] = TargetState(target)
        self.generation += 1
        self.version += 1

    def remove(self, url: str) -> None:
        if self._states.pop(url, None) is not None:
            self.generation += 1
            self.version += 1

    def record(self, target: Target, result: ProbeResult) -> None:
        state = self._states.get(target.url)
        if state is None or state.target is not target:
            return  # the target was removed or replaced while this probe ran
        state.record(result)
        self.version += 1
        for listener in self._listeners:
            listener(target, result)

    def get(self, url: str) -> TargetState | None:
        return self._states.get(url)

    def seed(
        self,
        url: str,
        history: Sequence[float | None],
        consecutive_failures: int,
        uptime_buckets: Any = None,
    ) -> bool:
        """Carry an earlier owner's results over to ``url`` (see :meth:`TargetState.seed`);
        False if the target is not in the store."""
        state = self._states.get(url)
        if state is None:
            return False
        probed = state.last is not None
        state.seed(history, consecutive_failures, uptime_buckets)
        if probed:  # its streak may have changed: /metrics must render it again
            state.version += 1
            self.version += 1
        return True

    def states(self) -> Iterator[TargetState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    def counts(self) -> tuple[int, int, int]:
        """(total, up, down); a target not probed yet counts in total only."""
        up = down = 0
        for state in self._states.values():
            if state.last is not None:
                if state.last.up:
                    up += 1
                else:
                    down += 1
        return len(self._states), up, down
