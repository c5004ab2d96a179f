"""CloudWatch: per-URL and per-application figures with ``PutMetricData``.

Every result is folded into a per-URL aggregate as it arrives; each push turns the aggregates
into datums using ``Values``/``Counts`` statistic sets, so a URL probed every 5 s still costs
one datum per metric per push. The service's limits are enforced here because an emulator
does not enforce them: at most 1000 datums and 1 MB per request, 150 distinct values per
datum, dimension values of printable ASCII and at most 1024 characters, no NaN or infinity.
A request the service refuses anyway as invalid data loses the datums it names (the whole
request if it names none), counted as dropped, rather than being resent forever ahead of
everything else; any other failure keeps the data for retry.

Datums that could not be sent wait for the next push, in a bounded buffer: while CloudWatch is
down the oldest are dropped (and counted in ``upcheck_sink_dropped_total``) rather than let
memory grow, and probing never waits on any of it.

A request stopped before its answer came (a shutdown out of time kills the push mid-request)
is dropped and counted, never sent again. ``PutMetricData`` has no idempotency key: the service
cannot tell a request sent twice from two requests, and a statistic set counted twice doubles
its SampleCount and Sum for good, with nothing to show it. A lost batch is a visible gap, in
the figures and in ``upcheck_sink_dropped_total``; a doubled one is a silent lie. The publisher
lets a push in flight finish while the shutdown budget lasts, so this is the last resort.
botocore still retries a read timeout or a connection dropped mid-answer on its own (standard
retry mode), and such a failure is kept for retry here: that rarer double is left to the SDK.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from daemon.aws import LazyClient, describe_error
from daemon.logs import event
from daemon.model import ProbeResult, Target
from daemon.outputs.document import Snapshot
from daemon.store import ResultsStore
from daemon.telemetry import Telemetry

log = logging.getLogger(__name__)

MAX_DATUMS_PER_REQUEST = 1000
MAX_REQUEST_BYTES = 1_000_000
MAX_VALUES_PER_DATUM = 150
MAX_DIMENSION_VALUE = 1024
DEFAULT_MAX_PENDING = 200_000  # datums kept for retry while CloudWatch is unreachable
_REQUEST_OVERHEAD = 2_000  # Action, Version, Namespace and headroom, in bytes
_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))
# The 400s that say the data itself is invalid. Other 400s (access denied, expired or bad
# signature, throttling) are about the caller or the moment: the data is kept for retry.
_INVALID_DATA_CODES = frozenset(
    (
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "MissingParameter",
        "MissingRequiredParameter",
    )
)
# The service names the datum it refuses: "... parameter MetricData.member.3.Value ...".
_MEMBER = re.compile(r"MetricData\.member\.(\d+)\b")


class _Aggregate:
    """Everything one URL produced since the last push."""

    __slots__ = ("response_ms", "status", "up")

    def __init__(self) -> None:
        self.response_ms: Counter[float] = Counter()
        self.up: Counter[int] = Counter()
        self.status: Counter[int] = Counter()


ApplicationFigures = Callable[[Snapshot], tuple[int, int, int] | None]


def _own_figures(snapshot: Snapshot) -> tuple[int, int, int]:
    return snapshot.targets_total, snapshot.targets_up, snapshot.targets_down


def dimension_value(text: str) -> str:
    """A value CloudWatch accepts: printable ASCII (anything else percent-encoded as UTF-8,
    the way a browser writes a URL), not blank, at most 1024 characters, and distinct URLs
    still distinct."""
    if not (text.isascii() and text.isprintable()):
        text = quote(text, safe=_PRINTABLE_ASCII)
    if not text.strip():
        return "-"
    if len(text) <= MAX_DIMENSION_VALUE:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[: MAX_DIMENSION_VALUE - 18]}~{digest}"


def encoded_size(datum: dict[str, Any]) -> int:
    """An upper bound of the datum's size in a request, measured in the wordiest protocol.

    The query protocol (``MetricData.member.N.Dimensions.member.M.Value=...``) spells every
    key out in full and percent-encodes values, so its size bounds the CBOR and JSON forms too.
    """
    prefix = "MetricData.member.1000."
    size = 0

    def field(key: str, value: object) -> int:
        return len(prefix) + len(key) + 2 + len(quote(str(value), safe=""))

    for key, value in datum.items():
        if key == "Dimensions":
            for i, dim in enumerate(value, start=1):
                size += field(f"Dimensions.member.{i}.Name", dim["Name"])
                size += field(f"Dimensions.member.{i}.Value", dim["Value"])
        elif key in ("Values", "Counts"):
            for i, item in enumerate(value, start=1):
                size += field(f"{key}.member.{i}", item)
        else:
            size += field(key, value if key != "Timestamp" else "2026-01-01T00:00:00.000000Z")
    return size


def batches(datums: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Split datums into requests within the count and size limits, in order."""
    batch: list[dict[str, Any]] = []
    size = _REQUEST_OVERHEAD
    for datum in datums:
        datum_size = encoded_size(datum)
        if batch and (
            len(batch) >= MAX_DATUMS_PER_REQUEST or size + datum_size > MAX_REQUEST_BYTES
        ):
            yield batch
            batch, size = [], _REQUEST_OVERHEAD
        batch.append(datum)
        size += datum_size
    if batch:
        yield batch


def _value_datums(
    name: str, unit: str, dims: list[dict[str, str]], counts: Counter[Any], when: datetime
) -> Iterator[dict[str, Any]]:
    """One datum per 150 distinct values (more only when a push window saw more than that)."""
    items = [(float(v), c) for v, c in sorted(counts.items()) if math.isfinite(float(v))]
    for start in range(0, len(items), MAX_VALUES_PER_DATUM):
        chunk = items[start : start + MAX_VALUES_PER_DATUM]
        yield {
            "MetricName": name,
            "Dimensions": dims,
            "Timestamp": when,
            "Values": [v for v, _ in chunk],
            "Counts": [float(c) for _, c in chunk],
            "Unit": unit,
        }


def _refuses_the_data(exc: ClientError) -> bool:
    """A 400 saying the request's data is invalid: sent again, it would fail again."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(exc.response.get("Error", {}).get("Code", "")).removesuffix("Exception")
    return status == 400 and code in _INVALID_DATA_CODES


class CloudWatchSink(LazyClient):
    name = "cloudwatch"

    def __init__(
        self,
        namespace: str,
        application: str,
        url_metrics: tuple[str, ...],
        store: ResultsStore,
        telemetry: Telemetry | None = None,
        client: Any | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        application_figures: ApplicationFigures | None = None,
    ) -> None:
        """``application_figures`` gives the per-application (total, up, down), or None to
        send none: with a shared list only the merging member sends them, for the fleet."""
        super().__init__("cloudwatch", client)
        self.namespace = namespace
        self.application = application
        self.url_metrics = frozenset(url_metrics)
        self._telemetry = telemetry
        self._application_figures = application_figures or _own_figures
        self._max_pending = max_pending
        self._aggregates: dict[str, _Aggregate] = {}
        self._pending: deque[dict[str, Any]] = deque()
        if self.url_metrics:
            store.subscribe(self._on_result)

    def _on_result(self, target: Target, result: ProbeResult) -> None:
        aggregate = self._aggregates.get(target.display_url)
        if aggregate is None:
            aggregate = self._aggregates[target.display_url] = _Aggregate()
        aggregate.up[1 if result.up else 0] += 1
        if result.up:  # the time of a failure is the deadline or the error, not a response
            aggregate.response_ms[round(result.duration * 1000.0, 1)] += 1
        if result.status_code is not None:
            aggregate.status[result.status_code] += 1

    def _drain(self, snapshot: Snapshot, when: datetime) -> list[dict[str, Any]]:
        app_dims = [{"Name": "Application", "Value": dimension_value(self.application)}]
        datums: list[dict[str, Any]] = []
        figures = self._application_figures(snapshot)
        if figures is not None:
            total, up, down = figures
            datums += [
                {"MetricName": name, "Dimensions": app_dims, "Timestamp": when,
                 "Value": float(value), "Unit": "Count"}
                for name, value in (
                    ("TargetsTotal", total),
                    ("TargetsUp", up),
                    ("TargetsDown", down),
                    ("TargetsLoadSuccess", 1 if snapshot.targets_load_success else 0),
                )
            ]  # fmt: skip
        aggregates, self._aggregates = self._aggregates, {}
        for url, aggregate in aggregates.items():
            dims = [*app_dims, {"Name": "Url", "Value": dimension_value(url)}]
            if "ResponseTime" in self.url_metrics and aggregate.response_ms:
                datums += _value_datums(
                    "ResponseTime", "Milliseconds", dims, aggregate.response_ms, when
                )
            if "Up" in self.url_metrics:
                datums += _value_datums("Up", "Count", dims, aggregate.up, when)
            if "StatusCode" in self.url_metrics and aggregate.status:
                datums += _value_datums("StatusCode", "None", dims, aggregate.status, when)
        return datums

    def _enqueue(self, datums: list[dict[str, Any]]) -> None:
        self._pending.extend(datums)
        overflow = len(self._pending) - self._max_pending
        if overflow > 0:
            for _ in range(overflow):
                self._pending.popleft()
            if self._telemetry is not None:
                self._telemetry.sink_dropped.labels(self.name).inc(overflow)
            log.warning(
                event("sink_dropped", sink=self.name, datums=overflow, reason="buffer full")
            )

    def publish(self, snapshot: Snapshot) -> None:
        self._enqueue(self._drain(snapshot, datetime.fromtimestamp(time.time(), UTC)))
        refused: list[str] = []
        while self._pending:
            batch = next(batches(itertools.islice(self._pending, MAX_DATUMS_PER_REQUEST)))
            try:
                self.client.put_metric_data(Namespace=self.namespace, MetricData=batch)
            except ClientError as exc:
                if not _refuses_the_data(exc):
                    raise self._kept_for_retry(exc) from None
                refused.append(self._drop_refused(exc, len(batch)))
                continue  # what is left of the batch goes again
            except BotoCoreError as exc:
                raise self._kept_for_retry(exc) from None
            except BaseException as exc:
                if not isinstance(exc, Exception):  # killed mid-request: GreenletExit, Timeout
                    self._drop_unanswered(len(batch))
                raise
            for _ in batch:
                self._pending.popleft()
        if refused:
            raise RuntimeError(
                f"PutMetricData to {self.namespace}: {len(refused)} request(s) refused as "
                f"invalid, their datums dropped; first: {refused[0]}"
            )

    def _kept_for_retry(self, exc: Exception) -> RuntimeError:
        return RuntimeError(
            f"PutMetricData to {self.namespace}: {describe_error(exc)} "
            f"({len(self._pending)} datums kept for retry)"
        )

    def _drop_refused(self, exc: ClientError, batch_size: int) -> str:
        """Drop the datums a 400 names (all of the request's if it names none): resending
        them would fail the same way forever and hold back everything queued behind."""
        reason = describe_error(exc)
        named = {int(n) - 1 for n in _MEMBER.findall(reason) if 0 < int(n) <= batch_size}
        doomed = sorted(named) if named else list(range(batch_size))
        for index in reversed(doomed):
            del self._pending[index]
        if self._telemetry is not None:
            self._telemetry.sink_dropped.labels(self.name).inc(len(doomed))
        log.warning(
            event("sink_dropped", sink=self.name, datums=len(doomed), reason=f"refused: {reason}")
        )
        return reason

    def _drop_unanswered(self, batch_size: int) -> None:
        """Forget a request stopped before its answer came: it may have been counted already,
        and CloudWatch cannot tell a second copy from new data."""
        for _ in range(batch_size):
            self._pending.popleft()
        if self._telemetry is not None:
            self._telemetry.sink_dropped.labels(self.name).inc(batch_size)
        log.warning(
            event(
                "sink_dropped",
                sink=self.name,
                datums=batch_size,
                reason="request interrupted before its answer: maybe counted, never resent",
            )
        )

    @property
    def pending(self) -> int:
        return len(self._pending)
