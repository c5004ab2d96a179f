"""The daemon's own figures (not per target): loads, probes, lateness, sinks.

Modules upstream of the exposition record into this object, handed to them by ``__main__``;
the ``/metrics`` endpoint reads its registry. It owns a private registry rather than the global
one so tests can build as many daemons as they like in one process.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    gc_collector,
    platform_collector,
    process_collector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SINKS = ("results_file", "cloudwatch")


class Telemetry:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)
        r = self.registry
        self.targets = Gauge(
            "upcheck_targets",
            "Targets in the list in force (the whole list, on every member when sharded).",
            registry=r,
        )
        self.shard_members = Gauge(
            "upcheck_shard_members",
            "Members sharing the list, this one included (1 without sharding).",
            registry=r,
        )
        self.shard_owned_targets = Gauge(
            "upcheck_shard_owned_targets",
            "Targets this member probes: its share of the list (all of it without sharding).",
            registry=r,
        )
        self.shard_refresh_failures = Counter(
            "upcheck_shard_membership_refresh_failures",
            "Failed looks at the members (ECS ListTasks); the last membership stayed.",
            registry=r,
        )
        self.last_load_success = Gauge(
            "upcheck_targets_last_load_success",
            "1 if the last attempt to load the targets file worked, else 0.",
            registry=r,
        )
        self.load_errors = Counter(
            "upcheck_targets_load_errors_total",
            "Attempts to load a changed targets file that failed (the last good list stayed).",
            registry=r,
        )
        self.row_errors = Counter(
            "upcheck_targets_row_errors_total",
            "Rows of the targets file skipped as invalid, summed over loads.",
            registry=r,
        )
        self.last_load_timestamp = Gauge(
            "upcheck_targets_last_load_timestamp_seconds",
            "Unix time the list in force was loaded.",
            registry=r,
        )
        self.probe_counts = ProbeCounts()
        r.register(self.probe_counts)
        self.probe_resource_errors = Counter(
            "upcheck_probe_resource_errors",
            "Probe attempts this process could not make for want of its own file descriptors,"
            " socket buffers or memory; no result was recorded and the probe was tried again.",
            registry=r,
        )
        self.sink_errors = Counter(
            "upcheck_sink_errors",
            "Failed attempts to write to a sink.",
            ["sink"],
            registry=r,
        )
        self.sink_last_success = Gauge(
            "upcheck_sink_last_success_timestamp_seconds",
            "Unix time of the last successful write to a sink.",
            ["sink"],
            registry=r,
        )
        self.sink_dropped = Counter(
            "upcheck_sink_dropped",
            "Figures a sink dropped because its buffer was full while it could not write.",
            ["sink"],
            registry=r,
        )

    def probe_started(self, lateness: float) -> None:
        self.probe_counts.started(lateness)

    def probe_finished(self, result_label: str) -> None:
        self.probe_counts.finished(result_label)

    def probe_abandoned(self) -> None:
        """A probe stopped or removed half-way: no longer in flight, and no result."""
        self.probe_counts.in_flight -= 1

    def targets_loaded(self, count: int, row_errors: int) -> None:
        self.targets.set(count)
        self.last_load_success.set(1)
        self.last_load_timestamp.set(time.time())
        self.row_errors.inc(row_errors)

    def targets_source_readable(self) -> None:
        """The source is readable again and still holds the list in force."""
        self.last_load_success.set(1)

    def targets_load_failed(self) -> None:
        self.last_load_success.set(0)
        self.load_errors.inc()

    def sink_succeeded(self, sink: str) -> None:
        self.sink_errors.labels(sink)  # make the series exist at 0
        self.sink_last_success.labels(sink).set(time.time())

    def sink_failed(self, sink: str) -> None:
        self.sink_errors.labels(sink).inc()

    def sink_registered(self, sink: str) -> None:
        self.sink_errors.labels(sink)
        self.sink_dropped.labels(sink)


class ProbeCounts(Collector):
    """The figures every probe moves (``upcheck_probes_total``, ``upcheck_probes_in_flight``,
    ``upcheck_probe_lateness_seconds``), kept as plain numbers and turned into metrics only
    when scraped.

    prometheus-client guards each value with a lock, which under gevent's patching is a
    Python-level lock: five acquisitions a probe were 6% of a plain-http probe's CPU. Every
    probe runs on the one event-loop thread, so plain numbers are safe here.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self.results: dict[str, int] = {}
        # Per bucket of LATENESS_BUCKETS (value <= bound), then one past the last.
        self.lateness_counts = [0] * (len(LATENESS_BUCKETS) + 1)
        self.lateness_sum = 0.0

    def started(self, lateness: float) -> None:
        late = lateness if lateness > 0.0 else 0.0
        self.lateness_counts[bisect.bisect_left(LATENESS_BUCKETS, late)] += 1
        self.lateness_sum += late
        self.in_flight += 1

    def finished(self, result_label: str) -> None:
        self.in_flight -= 1
        self.results[result_label] = self.results.get(result_label, 0) + 1

    def collect(self) -> Iterator[Metric]:
        probes = CounterMetricFamily(
            "upcheck_probes",
            "Probes finished, by result: success or an error kind.",
            labels=["result"],
        )
        for label, count in sorted(self.results.items()):
            probes.add_metric([label], count)
        yield probes
        cumulative, buckets = 0, []
        for bound, count in zip(
            (*LATENESS_BUCKETS, float("inf")), self.lateness_counts, strict=True
        ):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "upcheck_probe_lateness_seconds",
            "How far behind its schedule a probe started.",
            buckets=buckets,
            sum_value=self.lateness_sum,
        )
        yield GaugeMetricFamily(
            "upcheck_probes_in_flight", "Probes running now.", value=self.in_flight
        )
