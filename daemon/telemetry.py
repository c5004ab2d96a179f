"""The daemon's own figures (not per target): loads, probes, lateness, sinks.

Modules upstream of the exposition record into this object, handed to them by ``__main__``;
the ``/metrics`` endpoint reads its registry. It owns a private registry rather than the global
one so tests can build as many daemons as they like in one process.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    platform_collector,
    process_collector,
)

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
        self.probes = Counter(
            "upcheck_probes",
            "Probes finished, by result: success or an error kind.",
            ["result"],
            registry=r,
        )
        self.lateness = Histogram(
            "upcheck_probe_lateness_seconds",
            "How far behind its schedule a probe started.",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("upcheck_probes_in_flight", "Probes running now.", registry=r)
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
        self._probe_children: dict[str, Counter] = {}

    def probe_started(self, lateness: float) -> None:
        self.lateness.observe(max(lateness, 0.0))
        self.in_flight.inc()

    def probe_finished(self, result_label: str) -> None:
        self.in_flight.dec()
        child = self._probe_children.get(result_label)
        if child is None:
            child = self._probe_children[result_label] = self.probes.labels(result_label)
        child.inc()

    def probe_abandoned(self) -> None:
        """A probe stopped or removed half-way: no longer in flight, and no result."""
        self.in_flight.dec()

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
