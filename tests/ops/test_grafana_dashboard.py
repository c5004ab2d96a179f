"""The Grafana dashboard: well-formed, provisioned, and every query true to the daemon.

Grafana itself is not available here, so the dashboard is read as data; its PromQL is checked
against a live daemon's /metrics (names and labels) and run on a real Prometheus that scrapes
that daemon (syntax, and that each query returns data).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.ops.conftest import (
    REPO,
    SHARD_METRICS,
    TWIN_TASKS,
    Daemon,
    Prometheus,
    Targets,
    daemon_shards,
)
from tests.ops.promql import exported, names, problems, with_pending
from tests.support import wait_until

GRAFANA = REPO / "ops" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "upcheck.json"
# What Grafana would put in place of its variables; `.*` is the "All" value of name and url.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "5m",
    "name": ".*",
    "url": ".*",
}
LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\)")
# Labels that name one task: Prometheus's `instance`, and what the ADOT collector adds.
TASK_LABELS = {"instance", "aws_ecs_task_arn"}
# (panel, query) pairs that show one line per task on purpose; every other query speaks of the
# fleet or of URLs, and must come out the same however many tasks export a URL.
PER_TASK_QUERIES = {
    ("Time since last sink success", "A"),
    ("Daemon memory", "A"),
    ("Daemon CPU", "A"),
    ("Open file descriptors", "A"),
    ("Open file descriptors", "B"),
    ("Shard members each task sees", "A"),
    ("URLs owned per task", "A"),
}
# Fleet figures whose value must not change when a second task exports the same URLs.
FLEET_FIGURES = {
    "URLs monitored",
    "Up",
    "Down",
    "Availability over the time range",
    "URLs down",
    "URLs by status class",
    "Targets file",
    "Daemon scraped",
    "Worst URLs",
}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    top = dashboard()["panels"]
    return top + [inner for p in top if p["type"] == "row" for inner in p.get("panels", [])]


def substitute(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        return GRAFANA_VARIABLES[match.group(1) or match.group(2)]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def queries() -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL with Grafana's variables filled in) for every query."""
    return [
        (p["title"], t["refId"], substitute(t["expr"]))
        for p in panels()
        if p["type"] != "row"
        for t in p["targets"]
    ]


def expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables filled in) for every query."""
    return [(title, expr) for title, _, expr in queries()]


def uses_shard_metrics(expr: str) -> bool:
    return bool(set(names(expr).selectors) & set(SHARD_METRICS))


def variable_queries() -> list[tuple[str, str, str]]:
    """(variable, selector, label) of each `label_values(selector, label)` variable."""
    found = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.fullmatch(variable["query"]["query"])
            assert match, variable["query"]
            found.append((variable["name"], substitute(match["selector"]), match["label"]))
    return found


# ------------------------------------------------------------------------- the reader itself

EXAMPLE_EXPOSITION = """\
# TYPE probe_success gauge
probe_success{name="a",url="http://a/"} 1
# TYPE upcheck_probe_lateness_seconds histogram
upcheck_probe_lateness_seconds_bucket{le="1.0"} 1
upcheck_probe_lateness_seconds_bucket{le="+Inf"} 1
upcheck_probe_lateness_seconds_sum 0.1
upcheck_probe_lateness_seconds_count 1
"""


def test_the_reader_flags_unknown_metrics_and_labels_and_accepts_known_ones() -> None:
    known = exported(EXAMPLE_EXPOSITION)
    assert problems('sum by (name) (probe_success{url=~".*"})', known) == []
    lateness = "rate(upcheck_probe_lateness_seconds_bucket[1m])"
    assert problems(f"histogram_quantile(0.9, sum by (le) ({lateness}))", known) == []
    assert problems("probe_sucess", known) == ["metric probe_sucess is not exported"]
    # `up` comes from Prometheus, with only the scrape labels.
    assert problems('up{job="upcheck"}', known) == []
    assert problems('up{name="x"}', known) == ["up has no label name"]
    assert problems('probe_success{target="x"}', known) == ["probe_success has no label target"]
    assert problems("sum by (phase) (probe_success)", known) == [
        "no metric in the expression has label phase"
    ]
    used = names("count(probe_success == 0) or vector(0) and on (job) probe_success offset 5m")
    assert set(used.selectors) == {"probe_success"} and used.grouping == {"job"}


# ------------------------------------------------------------------------- structure


def test_panel_ids_are_unique_and_the_grid_has_no_overlap() -> None:
    all_panels = panels()
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in all_panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine


def test_every_query_uses_the_datasource_variable() -> None:
    (source,) = [v for v in dashboard()["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    for p in panels():
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": f"${{{source['name']}}}"}
        for target in p["targets"]:
            assert target["datasource"] == p["datasource"], p["title"]


def test_the_dashboard_shows_what_an_operator_needs() -> None:
    by_metric: dict[str, list[str]] = {}
    for title, expr in expressions():
        for metric in names(expr).selectors:
            by_metric.setdefault(metric, []).append(title)
    # Every per-URL series of SPEC.md, and the daemon's own health.
    for metric in (
        "probe_success",
        "probe_duration_seconds",
        "probe_http_status_code",
        "probe_http_duration_seconds",
        "probe_http_content_length",
        "probe_http_redirects",
        "probe_http_ssl",
        "probe_ssl_earliest_cert_expiry",
        "upcheck_consecutive_failures",
        "upcheck_targets",
        "upcheck_targets_last_load_success",
        "upcheck_targets_load_errors_total",
        "upcheck_probes_total",
        "upcheck_probe_lateness_seconds_bucket",
        "upcheck_sink_errors_total",
        "upcheck_sink_last_success_timestamp_seconds",
        "up",  # the daemon itself is scraped (UpcheckDaemonDown)
        "upcheck_shard_members",  # SPEC.md "Sharding": who shares the list
        "upcheck_shard_owned_targets",  # and how it is split
        "upcheck_shard_membership_refresh_failures_total",  # and whether that is current
    ):
        assert metric in by_metric, f"no panel shows {metric}"
    phases = [e for _, e in expressions() if "probe_http_duration_seconds" in e]
    assert any(
        "{{phase}}" in t["legendFormat"]
        for p in panels()
        if p["type"] != "row"
        for t in p["targets"]
        if "probe_http_duration_seconds" in t["expr"]
    ), phases
    rows = [p["title"] for p in panels() if p["type"] == "row"]
    assert rows[0] == "Fleet overview" and "Daemon health" in rows


def test_only_the_per_task_panels_keep_the_task_labels() -> None:
    """Reading the queries: nothing groups or matches by task, and each per-task query says
    which task a line is (`instance`, or `aws_ecs_task_arn` through the ADOT collector)."""
    legends = {
        (p["title"], t["refId"]): t["legendFormat"]
        for p in panels()
        if p["type"] != "row"
        for t in p["targets"]
    }
    assert set(legends) >= PER_TASK_QUERIES, PER_TASK_QUERIES - set(legends)
    for title, ref, expr in queries():
        assert "without" not in expr, (title, ref)
        if (title, ref) in PER_TASK_QUERIES:
            assert "{{instance}} {{aws_ecs_task_arn}}" in legends[title, ref], (title, ref)
        else:
            assert not names(expr).grouping & TASK_LABELS, (title, ref)


def test_provisioning_loads_the_dashboards_folder_and_a_prometheus_source() -> None:
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/upcheck.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].endswith("/upcheck")
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "${PROMETHEUS_URL}"
    assert dashboard()["uid"] == "upcheck-overview"


# ------------------------------------------------------------------------- against the daemon


def test_every_query_names_only_metrics_and_labels_the_daemon_exports(
    live_daemon: Daemon,
) -> None:
    exports = exported(live_daemon.metrics())
    if not daemon_shards():
        # The daemon side of issue 13 has not landed: the names are SPEC.md's.
        exports = with_pending(exports, SHARD_METRICS)
    # The https target makes the certificate series exist; the results file the sink series.
    assert "probe_ssl_earliest_cert_expiry" in exports
    assert "upcheck_sink_errors_total" in exports
    found = {
        f"{title}: {expr}": problems(expr, exports)
        for title, expr in expressions()
        if problems(expr, exports)
    }
    for variable, selector, label in variable_queries():
        wrong = problems(selector, exports)
        (metric,) = names(selector).selectors
        if label not in exports[metric]:
            wrong.append(f"{metric} has no label {label}")
        if wrong:
            found[f"variable {variable}"] = wrong
    assert found == {}


@pytest.mark.parametrize("title,expr", expressions(), ids=[t for t, _ in expressions()])
def test_every_query_runs_on_prometheus_and_returns_data(
    live_prometheus: Prometheus, title: str, expr: str
) -> None:
    if uses_shard_metrics(expr) and not daemon_shards():
        live_prometheus.query(expr)  # still valid PromQL
        pytest.skip("the daemon does not know --shard yet (issue 13): no shard metrics to show")
    # A syntax error fails at once (the API answers 400); an empty answer is polled for a
    # while, since rate() and friends need a few scrapes first.
    wait_until(lambda: live_prometheus.query(expr), timeout=20, what=f"data for {title!r}")


def _answer(prometheus: Prometheus, expr: str) -> dict[frozenset, float]:
    return {frozenset(s["metric"].items()): float(s["value"][1]) for s in prometheus.query(expr)}


@pytest.mark.parametrize("title,ref,expr", queries(), ids=[f"{t} {r}" for t, r, _ in queries()])
def test_two_tasks_exporting_the_same_urls_change_no_fleet_or_url_figure(
    live_prometheus: Prometheus, twin_prometheus: Prometheus, title: str, ref: str, expr: str
) -> None:
    """SPEC.md "Sharding": while a URL changes hands two tasks export it for a refresh. The
    twin Prometheus sees that for every URL, all the time: each URL must still come out once,
    with no task label, and the fleet figures must equal the single task's."""
    if uses_shard_metrics(expr) and not daemon_shards():
        pytest.skip("the daemon does not know --shard yet (issue 13): no shard metrics to show")
    if (title, ref) in PER_TASK_QUERIES:

        def every_task() -> bool:
            tasks = {s["metric"].get("instance") for s in twin_prometheus.query(expr)}
            return tasks == set(TWIN_TASKS)

        wait_until(every_task, timeout=20, what=f"one {title!r} {ref} line per task")
        return
    twin = wait_until(
        lambda: twin_prometheus.query(expr), timeout=20, what=f"twin data for {title!r}"
    )
    for sample in twin:
        assert not set(sample["metric"]) & TASK_LABELS, (title, ref, sample)
    if title in FLEET_FIGURES:

        def same() -> bool:
            single = _answer(live_prometheus, expr)
            return bool(single) and _answer(twin_prometheus, expr) == single

        wait_until(same, timeout=20, what=f"{title!r} {ref} to read the same with two tasks")


def test_the_name_and_url_variables_list_the_targets(
    live_prometheus: Prometheus, targets: Targets
) -> None:
    wanted = {
        "name": set(targets.expected),
        "url": {url for url, _, _ in targets.expected.values()},
    }
    for variable, selector, label in variable_queries():
        values = wait_until(
            lambda s=selector, lb=label: set(
                live_prometheus.api(f"label/{lb}/values", **{"match[]": s})
            ),
            timeout=20,
            what=f"values of {variable}",
        )
        assert values == wanted[variable]


def test_the_data_source_interval_is_the_scrape_interval_here_and_on_amp() -> None:
    """A timeInterval shorter than the scrape (15 s against AMP's 60 s) leaves rate panels
    blank: $__rate_interval must span several real scrapes."""
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = sources["datasources"]
    prometheus = yaml.safe_load((REPO / "ops/prometheus/prometheus.yml").read_text())
    assert source["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"] == "60s"
    variables = (REPO / "ops/terraform/variables.tf").read_text()
    amp = variables[variables.index('variable "amp_scrape_interval"') :]
    assert re.search(r"default\s*=\s*60\n", amp), "AMP's collector scrapes every 60 s"
