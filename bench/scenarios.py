"""The scenarios of one benchmark run. Each returns a flat dict of figures for the report."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import metrics
from bench.procs import (
    HERE,
    Processes,
    cpu_seconds,
    free_port,
    http_get,
    machine_busy_seconds,
    peak_rss_mib,
    pin,
    rss_mib,
    wait_until,
)

CONCURRENCY = 100  # probes in flight, the same for upcheck and the exporter


@dataclass
class Env:
    """What every scenario shares: the processes, nginx, the CPUs, the mode."""

    procs: Processes
    workdir: Path
    nginx_port: int
    nginx_tls_port: int  # the same nginx over https (full handshake per probe)
    ca_file: Path  # trusts nginx's https certificate
    prober_cpu: int | None  # the CPU the prober under test is pinned to
    other_cpu: int | None  # nginx, the load generator, the delay server
    quick: bool

    def nginx_requests(self) -> int:
        status, body, _ = http_get(self.nginx_port, "/nginx_status")
        assert status == 200, status
        # "Active connections: N\nserver accepts handled requests\n A H R\n..."
        return int(body.split(b"\n")[2].split()[2])


def write_csv(path: Path, rows: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("url,name,interval\n" + "\n".join(rows) + "\n")
    tmp.replace(path)


def scrape(port: int, prefixes: tuple[str, ...] = ("upcheck_",), timed: list | None = None) -> list:
    """The samples of /metrics whose names start with ``prefixes``; ``timed`` gets (s, bytes)."""
    status, body, seconds = http_get(port, "/metrics", timeout=60)
    assert status == 200, status
    if timed is not None:
        timed.append((seconds, len(body)))
    return metrics.parse(body.decode(), prefixes)


def probes_done(port: int) -> float:
    return metrics.total(scrape(port), "upcheck_probes_total")


# -- CPU per probe, side by side with the blackbox exporter ----------------------------------


def _window(env: Env) -> tuple[float, float]:
    return (5.0, 2.0) if env.quick else (12.0, 3.0)  # (measure, warm-up) seconds


def upcheck_saturated(env: Env, checkout: Path, https: bool = False) -> dict[str, float]:
    """The daemon with more work due than it can do: probes/s and CPU ms per probe, over
    plain http or (``https``) with a full TLS handshake per probe.

    Every target is due once in the first interval (the daemon spreads a new list over it) and
    the interval outlasts the run, so each probe in the window goes to a distinct URL. Probes
    are counted by nginx (requests served), not by scraping the daemon, so the window holds
    nothing but probing.
    """
    window, warm = _window(env)
    interval = window + warm + 8
    demand = 1500 if https else 4000  # probes/s due: far beyond what one core can do
    count = int(demand * interval)
    csv = env.workdir / "saturate.csv"
    origin = (
        f"https://127.0.0.1:{env.nginx_tls_port}" if https else f"http://127.0.0.1:{env.nginx_port}"
    )
    write_csv(csv, [f"{origin}/u/{i},u{i}," for i in range(count)])
    extra = ("--ca-file", str(env.ca_file)) if https else ()
    proc, port = env.procs.upcheck(
        checkout, csv, env.prober_cpu, interval, CONCURRENCY, extra=extra
    )
    try:
        time.sleep(warm)
        busy0 = machine_busy_seconds()
        cpu0, req0, t0 = cpu_seconds(proc.pid), env.nginx_requests(), time.monotonic()
        time.sleep(window)
        cpu1, req1, t1 = cpu_seconds(proc.pid), env.nginx_requests(), time.monotonic()
        busy1 = machine_busy_seconds()
        samples = scrape(port)
        done = metrics.total(samples, "upcheck_probes_total")
        ok = metrics.total(samples, "upcheck_probes_total", result="success")
    finally:
        env.procs.stop(proc)
    probes = req1 - req0
    return {
        "probes": probes,
        "probes_per_s": probes / (t1 - t0),
        "cpu_ms_per_probe": 1000 * (cpu1 - cpu0) / max(probes, 1),
        "cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "success_ratio": ok / max(done, 1),
        "targets": count,
        "machine_busy_cores": (busy1 - busy0) / (t1 - t0),
    }


def blackbox_saturated(env: Env, probes: int, https: bool = False) -> dict[str, float]:
    """The exporter driven through /probe at the same concurrency for ``probes`` distinct URLs,
    over plain http or (``https``) over the same https port as upcheck, verifying against the
    same CA (module ``https_2xx``)."""
    proc, port = env.procs.blackbox(env.prober_cpu, env.ca_file)
    try:
        limit = 120
        argv = [
            sys.executable,
            str(HERE / "loadgen.py"),
            str(port),
            str(env.nginx_tls_port if https else env.nginx_port),
            str(int(probes)),
            str(CONCURRENCY),
            str(limit),
            *(["https"] if https else []),
        ]
        cpu0, t0, busy0 = cpu_seconds(proc.pid), time.monotonic(), machine_busy_seconds()
        run = subprocess.run(
            [*pin(env.other_cpu), *argv], check=False, capture_output=True, timeout=limit + 30
        )
        if run.returncode != 0:
            raise RuntimeError(f"loadgen failed: {run.stderr.decode()[-2000:]}")
        out = run.stdout
        cpu1, t1, busy1 = cpu_seconds(proc.pid), time.monotonic(), machine_busy_seconds()
    finally:
        env.procs.stop(proc)
    report = json.loads(out)
    return {
        "probes": report["done"],
        "probes_per_s": report["done"] / (t1 - t0),
        "cpu_ms_per_probe": 1000 * (cpu1 - cpu0) / max(report["done"], 1),
        "cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "success_ratio": report["ok"] / max(report["done"], 1),
        "machine_busy_cores": (busy1 - busy0) / (t1 - t0),
    }


def members(env: Env, checkout: Path, counts: tuple[int, ...] = (1, 2, 3)) -> dict[str, Any]:
    """1, 2 and 3 static members (``--shard i/N``) sharing one saturating list: total probes/s
    and CPU per probe against the number of members, as nginx counts the requests.

    The list is due often (6,000 URLs every second, the shortest interval allowed: 6,000
    probes/s), so that even three members each have more due than one core can do. The members
    are not pinned: on this machine they share its cores with nginx, as processes on one task
    would.
    """
    window, warm = _window(env)
    csv = env.workdir / "members.csv"
    write_csv(csv, [f"http://127.0.0.1:{env.nginx_port}/m/{i},m{i}," for i in range(6000)])
    out: dict[str, Any] = {}
    for count in counts:
        folder = env.workdir / f"members-{count}"
        started = [
            env.procs.upcheck(
                checkout, csv, None, 1, CONCURRENCY, timeout=1,
                extra=("--shard", f"{i}/{count}", "--results", str(folder / "results.json")),
            )
            for i in range(count)
        ]  # fmt: skip
        try:
            time.sleep(warm)
            pids = [proc.pid for proc, _ in started]
            busy0 = machine_busy_seconds()
            cpu0 = sum(cpu_seconds(pid) for pid in pids)
            req0, t0 = env.nginx_requests(), time.monotonic()
            time.sleep(window)
            cpu1 = sum(cpu_seconds(pid) for pid in pids)
            req1, t1 = env.nginx_requests(), time.monotonic()
            busy1 = machine_busy_seconds()
            owned = [
                metrics.total(scrape(port), "upcheck_shard_owned_targets") for _, port in started
            ]
        finally:
            for proc, _ in started:
                env.procs.stop(proc)
        probes = req1 - req0
        out[str(count)] = {
            "probes_per_s": probes / (t1 - t0),
            "cpu_ms_per_probe": 1000 * (cpu1 - cpu0) / max(probes, 1),
            "cpu_cores": (cpu1 - cpu0) / (t1 - t0),
            "owned": owned,
            "machine_busy_cores": (busy1 - busy0) / (t1 - t0),
        }
    return out


# -- scale: memory, lateness, /metrics -------------------------------------------------------


def scale(env: Env, checkout: Path, targets: int, interval: float) -> dict[str, Any]:
    """``targets`` URLs at ``interval``: peak RSS, and lateness over a window after the first
    pass. At 50k the window is the load of issue #17's bar (:func:`_scraped_window`); below, it
    is quiet."""
    csv = env.workdir / f"scale-{targets}.csv"
    write_csv(csv, [f"http://127.0.0.1:{env.nginx_port}/s/{i},s{i}," for i in range(targets)])
    started = time.monotonic()
    proc, port = env.procs.upcheck(checkout, csv, env.prober_cpu, interval, 500)
    figures: dict[str, Any] = {"targets": targets, "interval_s": interval}
    try:
        figures["load_s"] = time.monotonic() - started
        # The first pass: every target gets its first result (bounded).
        first_pass = interval * (0.7 if env.quick and targets >= 50_000 else 1.0)
        wanted = targets * (0.65 if env.quick and targets >= 50_000 else 0.98)
        wait_until(lambda: probes_done(port) >= wanted, first_pass + 120, "first pass", every=2)
        measure = interval / 2 if env.quick else interval
        if targets >= 50_000:
            figures.update(_scraped_window(env, proc.pid, port, measure))
        else:
            before = scrape(port)
            cpu0, busy0 = cpu_seconds(proc.pid), machine_busy_seconds()
            time.sleep(measure)
            cpu1, busy1 = cpu_seconds(proc.pid), machine_busy_seconds()
            after = scrape(port)
            figures["cpu_share"] = (cpu1 - cpu0) / measure
            figures["machine_busy_cores"] = (busy1 - busy0) / measure
            figures.update(_lateness(before, after))
        figures["peak_rss_mib"] = peak_rss_mib(proc.pid)
    finally:
        env.procs.stop(proc)
    return figures


Samples = list[tuple[str, dict[str, str], float]]


def _lateness(before: Samples, after: Samples) -> dict[str, Any]:
    """Lateness p50/p99, the probes counted and those over 1 s late, between two scrapes;
    the probes' results so far at the second."""
    late = metrics.delta(
        metrics.buckets(after, "upcheck_probe_lateness_seconds"),
        metrics.buckets(before, "upcheck_probe_lateness_seconds"),
    )
    on_time = dict(late).get(1.0, 0.0)
    ok = metrics.total(after, "upcheck_probes_total", result="success")
    return {
        "lateness_p50_s": metrics.quantile(0.5, late),
        "lateness_p99_s": metrics.quantile(0.99, late),
        "lateness_samples": late[-1][1] if late else 0,
        "late_over_1s": (late[-1][1] - on_time) if late else 0,
        "success_ratio": ok / max(metrics.total(after, "upcheck_probes_total"), 1),
        "results": {lab["result"]: v for n, lab, v in after if n == "upcheck_probes_total"},
    }


SETTLE = 5.0  # seconds between the bench's last scrape and the window


def _scraped_window(env: Env, pid: int, port: int, seconds: float) -> dict[str, Any]:
    """Issue #17's load for ``seconds``, from ``bench/scrapers.py`` on the other CPU: two
    scrapers of ``/metrics`` (gzip) every 15 s, at 0 s and 7 s, and ``GET /`` every 30 s, at
    11 s. The window runs from scraper A's first scrape to its last, at ``seconds``: lateness
    and CPU are read from those two, so nothing but this load falls in it (the bench's own
    scrapes polling the first pass end :data:`SETTLE` seconds before it starts)."""
    time.sleep(SETTLE)
    limit = seconds + 60
    run = subprocess.run(
        [*pin(env.other_cpu), sys.executable, str(HERE / "scrapers.py"), str(port), str(pid),
         f"{seconds:g}"],
        check=False, capture_output=True, timeout=limit,
    )  # fmt: skip
    if run.returncode != 0:
        raise RuntimeError(f"scrapers failed: {run.stderr.decode()[-2000:]}")
    report = json.loads(run.stdout)
    requests = report["requests"]
    scrapes = [r for r in requests if r["who"].startswith("scraper")]
    pages = [r for r in requests if r["who"] == "page"]
    scrape_s = sorted(r["seconds"] for r in scrapes if r["status"] == 200)
    page_s = sorted(r["seconds"] for r in pages if r["status"] == 200)
    figures: dict[str, Any] = {
        "window_s": seconds,
        "scrapes": len(scrapes),
        "scrapes_failed": sum(r["status"] != 200 for r in scrapes),
        "metrics_s_max": scrape_s[-1] if scrape_s else math.nan,
        "metrics_s_median": metrics.percentile(scrape_s, 0.5),
        "metrics_mib": max((r["bytes"] for r in scrapes), default=0) / 2**20,
        "metrics_gzip_mib": max((r["bytes_sent"] for r in scrapes), default=0) / 2**20,
        "page_fetches": len(pages),
        "page_failed": sum(r["status"] != 200 for r in pages),
        "page_s_max": page_s[-1] if page_s else math.nan,
        "page_mib": max((r["bytes"] for r in pages), default=0) / 2**20,
        "requests_failed": sum(r["status"] != 200 for r in requests),
        "requests": requests,
    }
    first, last = report.get("first"), report.get("last")
    if first is None or last is None:  # a bounding scrape failed: no window to read
        figures.update({"lateness_p50_s": math.nan, "lateness_p99_s": math.nan})
        return figures
    elapsed = last["at"] - first["at"]
    figures["window_measured_s"] = elapsed
    figures["cpu_share"] = (last["cpu_s"] - first["cpu_s"]) / elapsed
    busy = {cpu: last["busy_s"][cpu] - first["busy_s"][cpu] for cpu in first["busy_s"]}
    figures["machine_busy_cores"] = busy["cpu"] / elapsed
    if env.prober_cpu is not None:
        # The daemon's core busy with anything else (other work on a shared machine, and the
        # kernel's network work, which is not charged to a process): what the daemon lost.
        others = busy[f"cpu{env.prober_cpu}"] - (last["cpu_s"] - first["cpu_s"])
        figures["prober_core_others_share"] = others / elapsed
    prefixes = ("upcheck_",)
    before = metrics.parse("\n".join(first["lines"]), prefixes)
    after = metrics.parse("\n".join(last["lines"]), prefixes)
    figures.update(_lateness(before, after))
    return figures


# -- timing fidelity under load --------------------------------------------------------------


def fidelity(env: Env, checkout: Path, delay: float = 0.2) -> dict[str, float]:
    """Error of probe_duration_seconds against a target that delays exactly ``delay`` seconds,
    with the daemon loaded to about 70% of one core by probes of nginx."""
    delay_proc, delay_port, stats = env.procs.delay_server(env.other_cpu, delay)
    csv = env.workdir / "fidelity.csv"
    slow = [f"http://127.0.0.1:{delay_port}/d/{i},d{i},1" for i in range(10)]
    load_interval = 10.0

    def load(n: int) -> list[str]:
        return [f"http://127.0.0.1:{env.nginx_port}/f/{i},f{i},{load_interval:g}" for i in range(n)]

    n1 = 3000
    write_csv(csv, slow + load(n1))
    proc, port = env.procs.upcheck(
        checkout, csv, env.prober_cpu, load_interval, 500, reload_interval=1
    )
    figures: dict[str, float] = {}
    try:
        time.sleep(load_interval + 1)
        # Calibrate: CPU grows about linearly with the probe rate. A new URL's first probe
        # costs more than later ones (its first hop is prepared then cached), so each
        # round waits two intervals after the reload before it measures again.
        for _ in range(4):
            cpu0 = cpu_seconds(proc.pid)
            time.sleep(6)
            share = (cpu_seconds(proc.pid) - cpu0) / 6
            if abs(share - 0.7) <= 0.05:
                break
            n1 = max(100, min(60_000, int(n1 * 0.7 / max(share, 0.01))))
            write_csv(csv, slow + load(n1))
            time.sleep(2 * load_interval + 3)
        seen: dict[str, float] = {}
        errors: list[float] = []
        window = 15.0 if env.quick else 40.0
        cpu0, t0, busy0 = cpu_seconds(proc.pid), time.monotonic(), machine_busy_seconds()
        while time.monotonic() - t0 < window:
            samples = scrape(port, ("probe_duration_seconds",))
            for _, labels, value in samples:
                name = labels.get("name", "")
                if name.startswith("d") and seen.get(name) != value:
                    if name in seen:
                        errors.append(value - delay)
                    seen[name] = value
            time.sleep(0.4)
        elapsed = time.monotonic() - t0
        share = (cpu_seconds(proc.pid) - cpu0) / elapsed
        figures["machine_busy_cores"] = (machine_busy_seconds() - busy0) / elapsed
    finally:
        env.procs.stop(proc)
        env.procs.stop(delay_proc)  # it writes what it served on the way out
    served = [float(x) - delay for x in stats.read_text().split()] if stats.exists() else []
    absolute = [abs(e) for e in errors]
    figures.update(
        {
            "load_targets": n1,
            "cpu_share": share,
            "samples": len(errors),
            "error_p50_ms": 1000 * metrics.percentile(absolute, 0.5),
            "error_p99_ms": 1000 * metrics.percentile(absolute, 0.99),
            "error_max_ms": 1000 * max(absolute, default=math.nan),
            "signed_mean_ms": 1000 * (sum(errors) / len(errors)) if errors else math.nan,
            "reference_p99_ms": 1000 * metrics.percentile(served, 0.99),
        }
    )
    return figures


# -- soak: reloads and scrape bursts, for minutes --------------------------------------------


def soak(env: Env, checkout: Path, targets: int = 10_000, interval: float = 30.0) -> dict[str, Any]:
    """``targets`` URLs at ``interval`` for minutes, while the list changes and Prometheus
    scrapes in bursts: does memory stay flat, do probes stay on time, does ``/health`` answer?

    Every 20 s the CSV is replaced (written beside it, then renamed into place) with a tenth of
    its rows pointing at new URLs (a thousand targets removed, a thousand added; the daemon
    checks the file every 2 s). Every 30 s, ``bench/burst.py`` (on the other CPU) makes 200
    concurrent gzip ``/metrics`` scrapes and times ``/health`` every 0.1 s while they last.
    RSS is read every 5 s; its slope is a least-squares line over the run, and over its second
    half (past the first reloads and bursts, whose buffers are made once). Lateness is the
    increase of the daemon's histogram over the run.
    """
    duration = 60.0 if env.quick else 300.0
    rewrite_every, burst_every, burst_size, burst_limit = 20.0, 30.0, 200, 60.0
    csv = env.workdir / "soak.csv"
    generation = [0] * targets

    def rows() -> list[str]:
        return [
            f"http://127.0.0.1:{env.nginx_port}/soak/{gen}/{i},k{i}g{gen},"
            for i, gen in enumerate(generation)
        ]

    write_csv(csv, rows())
    proc, port = env.procs.upcheck(checkout, csv, env.prober_cpu, interval, 500, reload_interval=2)
    figures: dict[str, Any] = {"targets": targets, "interval_s": interval, "duration_s": duration}
    bursts: list[dict[str, Any]] = []
    rss: list[tuple[float, float]] = []
    burst: subprocess.Popen[bytes] | None = None
    try:
        first_pass = interval + 120
        wait_until(lambda: probes_done(port) >= targets * 0.98, first_pass, "first pass", every=2)
        before = scrape(port)
        t0 = time.monotonic()
        cpu0 = cpu_seconds(proc.pid)
        next_rewrite, next_burst, next_rss, rewrites = rewrite_every, 10.0, 0.0, 0
        while (now := time.monotonic() - t0) < duration or burst is not None:
            if burst is not None and burst.poll() is not None:
                out, err = burst.communicate()
                if burst.returncode != 0:
                    raise RuntimeError(f"burst failed: {err.decode()[-2000:]}")
                bursts.append(json.loads(out))
                burst = None
            if now >= duration:
                time.sleep(0.5)  # the last burst still running: let it finish (bounded)
                continue
            if now >= next_rss:
                rss.append((now, rss_mib(proc.pid)))
                next_rss += 5.0
            if now >= next_rewrite:
                rewrites += 1
                tenth = targets // 10
                first = (rewrites - 1) * tenth % targets
                for i in range(first, first + tenth):
                    generation[i % targets] += 1
                write_csv(csv, rows())
                next_rewrite += rewrite_every
            if now >= next_burst and burst is None:
                argv = [sys.executable, str(HERE / "burst.py"), str(port), str(burst_size)]
                burst = subprocess.Popen(
                    [*pin(env.other_cpu), *argv, str(burst_limit)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                next_burst += burst_every
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        figures["cpu_share"] = (cpu_seconds(proc.pid) - cpu0) / elapsed
        rss.append((elapsed, rss_mib(proc.pid)))
        after = scrape(port)
    finally:
        if burst is not None:
            burst.kill()
            burst.wait()
        env.procs.stop(proc)
    late = metrics.delta(
        metrics.buckets(after, "upcheck_probe_lateness_seconds"),
        metrics.buckets(before, "upcheck_probe_lateness_seconds"),
    )
    on_time = dict(late).get(1.0, 0.0)
    health = sorted(s for b in bursts for s in b["health_s"])
    figures.update(
        {
            "rewrites": rewrites,
            "bursts": len(bursts),
            "targets_at_end": metrics.total(after, "upcheck_targets"),
            "load_errors": metrics.total(after, "upcheck_targets_load_errors_total"),
            "rss_start_mib": rss[0][1],
            "rss_end_mib": rss[-1][1],
            "rss_max_mib": max(m for _, m in rss),
            "rss_slope_mib_per_min": 60 * _slope(rss),
            # Without the first reloads and bursts, whose buffers and caches are made once.
            "rss_slope_second_half_mib_per_min": 60
            * _slope([p for p in rss if p[0] >= duration / 2]),
            "rss_samples": rss,
            "lateness_p50_s": metrics.quantile(0.5, late),
            "lateness_p99_s": metrics.quantile(0.99, late),
            "lateness_samples": late[-1][1] if late else 0,
            "late_over_1s": (late[-1][1] - on_time) if late else 0,
            "health_s_max": health[-1] if health else math.nan,
            "health_s_p50": metrics.percentile(health, 0.5),
            "health_s_p99": metrics.percentile(health, 0.99),
            "health_failed": sum(b["health_failed"] for b in bursts),
            "scrape_s_max": max((b["scrape_s_max"] or math.nan for b in bursts), default=math.nan),
            "scrape_s_median": metrics.percentile(
                [b["scrape_s_median"] for b in bursts if b["scrape_s_median"] is not None], 0.5
            ),
            "scrapes_failed": sum(b["scrapes"] - b["scrapes_ok"] for b in bursts),
            "burst_s_max": max((b["burst_s"] for b in bursts), default=math.nan),
        }
    )
    return figures


def _slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of ``points`` (y per x)."""
    if len(points) < 2:
        return math.nan
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else math.nan


# -- the status page at 50k targets, with a week of history carried over ----------------------


def _full_history_document(rows: list[tuple[str, str]], down: set[str], now: float) -> bytes:
    """A results document as a daemon would have written it after a week: every URL with 20
    points of history and a week of uptime counts (every 5 minutes; every 17th probe failed for
    the URLs in ``down``), for the daemon under test to read back at its start."""
    from daemon.model import ProbeResult, Target
    from daemon.store import BucketEncoder, TargetState

    def counts(failing: bool) -> dict[str, Any]:
        state = TargetState(Target("http://127.0.0.1/", "template"))
        for k in range(7 * 24 * 12, 0, -1):
            up = not (failing and k % 17 == 0)
            state.record(
                ProbeResult(up, 200 if up else 503, 0.004, (0, 0.001, 0, 0.002, 0.001), 3, 0,
                            False, None, None if up else "http_status", None, now - 300 * k)
            )  # fmt: skip
        encoded = BucketEncoder().encode(state)
        assert encoded is not None
        return encoded

    healthy, flaky = counts(False), counts(True)
    results = []
    for url, name in rows:
        failing = name in down
        results.append(
            {
                "name": name, "url": url, "up": not failing,
                "status_code": None if failing else 200, "response_time_ms": 4.1,
                "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 30)),
                "error_kind": "connect" if failing else None,
                "error": "connection refused" if failing else None,
                "consecutive_failures": 3 if failing else 0,
                "phases_ms": {"resolve": 0, "connect": 0.1, "tls": 0, "processing": 3.8,
                              "transfer": 0.2},
                "cert_expires_at": None,
                "history": [4.1, 3.9, 4.4, 5.0, 4.2] * 3 + [None if failing else 4.0] * 5,
                "attempts": 1, "uptime": None,
                "uptime_buckets": flaky if failing else healthy,
            }
        )  # fmt: skip
    document = {"schema": 1, "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                time.gmtime(now - 30)), "application": "bench", "results": results}  # fmt: skip
    return json.dumps(document, separators=(",", ":")).encode()


def _lateness_window(pid: int, port: int, seconds: float, during=None, every: float = 0.0):
    """Over ``seconds``: p99 of the probes' lateness, the daemon's CPU share, and how many times
    ``during()`` ran (called in a loop, ``every`` seconds apart at most; bounded by the
    window)."""
    before = scrape(port)
    runs = 0
    cpu0, start = cpu_seconds(pid), time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        if during is not None:
            began = time.monotonic()
            during()
            runs += 1
            rest = every - (time.monotonic() - began)
        else:
            rest = 1.0
        time.sleep(max(0.0, min(rest, deadline - time.monotonic())))
    cpu_share = (cpu_seconds(pid) - cpu0) / (time.monotonic() - start)
    after = scrape(port)
    late = metrics.delta(
        metrics.buckets(after, "upcheck_probe_lateness_seconds"),
        metrics.buckets(before, "upcheck_probe_lateness_seconds"),
    )
    return metrics.quantile(0.99, late), cpu_share, runs


def _chromium_seconds(path: Path, workdir: Path, runs: int = 3) -> float:
    """Median wall time of headless Chromium loading ``path`` and taking a screenshot."""
    binary = shutil.which("chromium")
    assert binary is not None
    times = []
    for run in range(runs):
        profile = workdir / f"chromium-{path.stem}-{run}"
        started = time.monotonic()
        subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--window-size=1280,1400",
             f"--screenshot={workdir / (path.stem + '.png')}", path.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        times.append(time.monotonic() - started)
        shutil.rmtree(profile, ignore_errors=True)
    return sorted(times)[len(times) // 2]


def page(env: Env, checkout: Path, targets: int = 50_000, interval: float = 60.0) -> dict[str, Any]:
    """``targets`` URLs (1% on a closed port, so down) at ``interval``, started on a results
    file holding a week of history for every URL: peak RSS with the history full, the page's
    size, the CPU to build it, lateness p99 and CPU share quiet, with ``GET /`` every second
    and back to back, and how long headless Chromium takes to render it."""
    from daemon.model import ProbeResult, Target
    from daemon.outputs.document import Snapshot
    from daemon.store import ResultsStore

    closed = free_port()
    rows = []
    down = set()
    for i in range(targets):
        if i % 100 == 0:
            rows.append((f"http://127.0.0.1:{closed}/p/{i}", f"p{i}"))
            down.add(f"p{i}")
        else:
            rows.append((f"http://127.0.0.1:{env.nginx_port}/p/{i}", f"p{i}"))
    csv = env.workdir / "page.csv"
    write_csv(csv, [f"{url},{name}," for url, name in rows])
    results = env.workdir / "page" / "results.json"
    results.parent.mkdir(exist_ok=True)
    now = time.time()
    results.write_bytes(_full_history_document(rows, down, now))
    figures: dict[str, Any] = {
        "targets": targets,
        "results_file_mib_start": results.stat().st_size / 2**20,
    }
    # The windows below fit between the first results-file write and the next one, which
    # would otherwise land in one of them.
    window = 15.0 if env.quick else 40.0
    publish = max(interval, 3 * window + 20)
    seeded = results.stat().st_mtime
    proc, port = env.procs.upcheck(
        checkout, csv, env.prober_cpu, interval, 500,
        extra=("--results", str(results), "--publish-interval", f"{publish:g}"),
    )  # fmt: skip
    try:
        wait_until(
            lambda: results.stat().st_mtime > seeded and probes_done(port) >= 0.98 * targets,
            publish + 180,
            "the first pass and the first results-file write",
            every=1,
        )
        fetched: list[tuple[float, int]] = []

        def fetch() -> None:
            status, body, seconds = http_get(port, "/", timeout=60)
            assert status == 200, status
            fetched.append((seconds, len(body)))

        quiet = _lateness_window(proc.pid, port, window)
        figures["lateness_p99_quiet_s"], figures["cpu_share_quiet"], _ = quiet
        # A browser (or several) refreshing every second, 15-60 times the page's own rate:
        # each fetch after the 5 s cache expired builds the page again.
        slow = _lateness_window(proc.pid, port, window, fetch, every=1.0)
        figures["lateness_p99_page_1s_s"], figures["cpu_share_page_1s"], _ = slow
        # Back to back: mostly the cached page served over and over.
        tight = _lateness_window(proc.pid, port, window, fetch)
        figures["lateness_p99_page_loop_s"], figures["cpu_share_page_loop"] = tight[:2]
        figures["page_fetches_loop"] = tight[2]
        figures["page_get_s_max"] = max(s for s, _ in fetched)
        figures["page_get_s_median"] = sorted(s for s, _ in fetched)[len(fetched) // 2]
        status, body, _ = http_get(port, "/", timeout=60)
        assert status == 200, status
        figures["page_mib"] = len(body) / 2**20
        figures["peak_rss_mib"] = peak_rss_mib(proc.pid)
    finally:
        env.procs.stop(proc)  # SIGTERM: the last results file and page are written
    figures["results_file_mib"] = results.stat().st_size / 2**20
    figures["results_page_mib"] = results.with_suffix(".html").stat().st_size / 2**20
    page_file = env.workdir / "page" / "page.html"
    page_file.write_bytes(body)

    # The build, in this process, from what the daemon wrote: a store of ``targets`` states
    # carrying that history, each with a result, then the document and the page.
    document = json.loads(results.read_bytes())
    store = ResultsStore()
    for entry in document["results"]:
        target = Target(entry["url"], entry["name"])
        store.add(target)
        state = store.get(target.url)
        assert state is not None
        state.seed(entry["history"], entry["consecutive_failures"], entry["uptime_buckets"])
        up = bool(entry["up"])
        store.record(
            target,
            ProbeResult(up, 200 if up else None, 0.004, (0, 0.001, 0, 0.002, 0.001), 3, 0,
                        False, None, None if up else "connect",
                        None if up else "connection refused", time.time() - 1),
        )  # fmt: skip
    snapshot = Snapshot(store, "bench", True)
    cpu0 = time.process_time()
    snapshot.document  # noqa: B018 - timed
    cpu1 = time.process_time()
    html = snapshot.status_html
    cpu2 = time.process_time()
    figures["document_build_cpu_s"] = cpu1 - cpu0
    figures["page_build_cpu_s"] = cpu2 - cpu1
    figures["page_get_build_cpu_s"] = cpu2 - cpu0  # what one GET / costs: both
    figures["page_build_mib"] = len(html.encode()) / 2**20

    if shutil.which("chromium"):
        blank = env.workdir / "page" / "blank.html"
        blank.write_text("<!doctype html><title>blank</title><p>blank")
        base = _chromium_seconds(blank, env.workdir)
        full = _chromium_seconds(page_file, env.workdir)
        figures["chromium_blank_s"] = base
        figures["chromium_page_s"] = full
        figures["chromium_render_s"] = max(full - base, 0.0)
    return figures
