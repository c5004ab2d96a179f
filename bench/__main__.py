"""``python -m bench [--quick] [--only NAME,...] [--baseline GITREF]``.

Starts nginx (the targets), the blackbox exporter (the peer) and upcheck on 127.0.0.1 only,
runs the scenarios, prints a table, writes ``bench/last-results.json`` and, after a full run,
the results block of ``docs/PERFORMANCE.md``. With ``--baseline``, the same upcheck scenarios
also run against an older checkout (a temporary git worktree) for before/after ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.procs import ROOT, Processes, cpus, worktree

NAMES = (
    "compare",
    "https",
    "scale-1k",
    "scale-10k",
    "scale-50k",
    "fidelity",
    "members",
    "soak",
    "page",
)
RESULTS = ROOT / "bench" / "last-results.json"
DOC = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def check_tools() -> None:
    missing = [t for t in ("nginx", "prometheus-blackbox-exporter") if shutil.which(t) is None]
    if missing:
        sys.exit(
            "bench: missing " + ", ".join(missing) + "; install with: apt-get install -y "
            "--no-install-recommends nginx prometheus-blackbox-exporter"
        )


def run_upcheck(env: scenarios.Env, checkout: Path, only: set[str], label: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    plan = [
        ("compare", lambda: scenarios.upcheck_saturated(env, checkout)),
        ("https", lambda: scenarios.upcheck_saturated(env, checkout, https=True)),
        ("scale-1k", lambda: scenarios.scale(env, checkout, 1_000, 30.0)),
        ("scale-10k", lambda: scenarios.scale(env, checkout, 10_000, 30.0)),
        ("scale-50k", lambda: scenarios.scale(env, checkout, 50_000, 60.0)),
        ("fidelity", lambda: scenarios.fidelity(env, checkout)),
        ("members", lambda: scenarios.members(env, checkout)),
        ("soak", lambda: scenarios.soak(env, checkout)),
        ("page", lambda: scenarios.page(env, checkout)),
    ]
    for name, run in plan:
        if name in only:
            started = time.monotonic()
            print(f"bench: {label}: {name} ...", file=sys.stderr, flush=True)
            out[name] = run()
            print(
                f"bench: {label}: {name} done in {time.monotonic() - started:.0f}s: "
                f"{json.dumps(out[name])}",
                file=sys.stderr,
                flush=True,
            )
    return out


def compare_rounds(
    env: scenarios.Env, results: dict[str, Any], rounds: int, https: bool = False
) -> None:
    """upcheck, then the exporter for as many probes, ``rounds`` times in turn; over plain
    http (``compare``) or over https (``https``: the exporter's ``https_2xx`` module).

    On a shared machine one round can land on a busy moment for either side (the exporter's
    own CPU per probe has varied by a third from one run to the next here), so the bar is
    judged on the median round's ratio, and every round is kept in the results.
    """
    name = "https" if https else "compare"
    pairs = []
    for number in range(1, rounds + 1):
        print(f"bench: {name} round {number}/{rounds}: upcheck ...", file=sys.stderr, flush=True)
        ours = scenarios.upcheck_saturated(env, ROOT, https=https)
        print(f"bench: {name} round {number}/{rounds}: blackbox ...", file=sys.stderr, flush=True)
        peer = scenarios.blackbox_saturated(env, ours["probes"], https=https)
        ratio = ours["cpu_ms_per_probe"] / peer["cpu_ms_per_probe"]
        print(
            f"bench: {name} round {number}: upcheck {ours['cpu_ms_per_probe']:.3f} ms, "
            f"exporter {peer['cpu_ms_per_probe']:.3f} ms per probe, ratio {ratio:.2f}",
            file=sys.stderr,
            flush=True,
        )
        pairs.append((ratio, ours, peer))
    pairs.sort(key=lambda pair: pair[0])
    _, ours, peer = pairs[len(pairs) // 2]
    results["runs"]["current"][name] = ours
    results["blackbox_https" if https else "blackbox"] = peer
    results[f"{name}_rounds"] = [
        {
            "ratio": r,
            "upcheck_cpu_ms": o["cpu_ms_per_probe"],
            "exporter_cpu_ms": p["cpu_ms_per_probe"],
        }
        for r, o, p in pairs
    ]


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _below(value: float | None, bar: float) -> bool:
    """Whether a figure was measured and is under its bar (a NaN is not)."""
    return value is not None and value < bar


def table(results: dict[str, Any]) -> str:
    """The results as Markdown: the bars, then every figure, then before/after ratios."""
    now = results["runs"].get("current", {})
    base = results["runs"].get("baseline", {})
    peers = {"compare": results.get("blackbox", {}), "https": results.get("blackbox_https", {})}
    lines = [
        f"Run {results['when']} on {results['machine']['cores']} cores "
        f"({results['machine']['cpu']}), Python {results['machine']['python']}, "
        f"mode {results['mode']}, commit {results['commit']}"
        + (f", baseline {results['baseline']}" if results.get("baseline") else "")
        + ".",
        "",
    ]

    def get(run: dict[str, Any], scenario: str, key: str) -> float | None:
        value = run.get(scenario, {}).get(key)
        return None if value is None else float(value)

    def ratio_of(scenario: str) -> float | None:
        ours, theirs = (
            get(now, scenario, "cpu_ms_per_probe"),
            peers[scenario].get("cpu_ms_per_probe"),
        )
        return ours / theirs if ours and theirs else None

    ratio, https_ratio = ratio_of("compare"), ratio_of("https")
    rss = get(now, "scale-50k", "peak_rss_mib")
    bars = [
        (
            "CPU per probe, upcheck / blackbox exporter, plain http",
            ratio,
            "<= 0.7",
            2,
            ratio is not None and ratio <= 0.7,
        ),
        (
            "CPU per probe, upcheck / blackbox exporter, https (full handshake)",
            https_ratio,
            "<= 0.8",
            2,
            https_ratio is not None and https_ratio <= 0.8,
        ),
        (
            "peak RSS at 50k targets (MiB)",
            rss,
            "< 400 MB (381 MiB)",
            0,
            rss is not None and rss * 1.048576 < 400,
        ),
        (
            "lateness p99 at 10k targets / 30 s (s)",
            get(now, "scale-10k", "lateness_p99_s"),
            "< 1 s",
            3,
            (get(now, "scale-10k", "lateness_p99_s") or 99) < 1,
        ),
        (
            "lateness p99 at 50k / 60 s, two scrapers every 15 s + page every 30 s (s)",
            get(now, "scale-50k", "lateness_p99_s"),
            "< 1 s",
            3,
            _below(get(now, "scale-50k", "lateness_p99_s"), 1),
        ),
        (
            "/metrics (gzip) at 50k targets, slowest scrape in that window (s)",
            get(now, "scale-50k", "metrics_s_max"),
            "< 1 s",
            2,
            _below(get(now, "scale-50k", "metrics_s_max"), 1),
        ),
        (
            "soak at 10k, reloads and scrape bursts: lateness p99 (s)",
            get(now, "soak", "lateness_p99_s"),
            "< 1 s",
            3,
            _below(get(now, "soak", "lateness_p99_s"), 1),
        ),
        (
            "soak at 10k: RSS slope (MiB/min)",
            get(now, "soak", "rss_slope_mib_per_min"),
            "< 1 (flat)",
            2,
            _below(get(now, "soak", "rss_slope_mib_per_min"), 1),
        ),
        (
            "status page at 50k targets, size (MiB)",
            get(now, "page", "page_mib"),
            "<= 2 MB (1.91 MiB)",
            2,
            (get(now, "page", "page_mib") or 99) * 1.048576 <= 2,
        ),
        (
            "status page at 50k targets, CPU to build document and page (s)",
            get(now, "page", "page_get_build_cpu_s"),
            "< 1 s",
            2,
            (get(now, "page", "page_get_build_cpu_s") or 99) < 1,
        ),
        (
            "status page at 50k targets, headless Chromium render (s)",
            get(now, "page", "chromium_render_s"),
            "< 3 s",
            2,
            (get(now, "page", "chromium_render_s") or 99) < 3,
        ),
        (
            "peak RSS at 50k targets with a week of history (MiB)",
            get(now, "page", "peak_rss_mib"),
            "< 400 MB (381 MiB)",
            0,
            (get(now, "page", "peak_rss_mib") or 9999) * 1.048576 < 400,
        ),
        (
            "timing fidelity p99 error at ~70% of a core (ms)",
            get(now, "fidelity", "error_p99_ms"),
            "< 10 ms",
            1,
            (get(now, "fidelity", "error_p99_ms") or 999) < 10,
        ),
    ]
    for scenario, what in (("compare", "plain http"), ("https", "https")):
        rounds = results.get(f"{scenario}_rounds", [])
        if len(rounds) > 1:
            lines += [
                f"CPU per probe over {what} compared in {len(rounds)} alternating rounds; the "
                "bar uses the median round. Ratios, lowest to highest: "
                + ", ".join(f"{r['ratio']:.2f}" for r in rounds)
                + " (upcheck ms per probe, same order: "
                + ", ".join(f"{r['upcheck_cpu_ms']:.3f}" for r in rounds)
                + "; exporter: "
                + ", ".join(f"{r['exporter_cpu_ms']:.3f}" for r in rounds)
                + ").",
                "",
            ]
    lines += ["| bar | value | target | met? |", "|---|---|---|---|"]
    for name, value, target, digits, met in bars:
        shown = fmt(value, digits)
        lines.append(
            f"| {name} | {shown} | {target} | {'yes' if met else 'no'} |"
            if value is not None
            else f"| {name} | — | {target} | not run |"
        )
    lines += [
        "",
        "| figure | blackbox exporter | upcheck"
        + (" before | upcheck after | after/before |" if base else " |"),
        "|---|---|---" + ("|---|---|" if base else "|"),
    ]
    rows = [
        ("saturated: probes/s", "compare", "probes_per_s", 0),
        ("saturated: CPU ms per probe", "compare", "cpu_ms_per_probe", 3),
        ("saturated: CPU share of one core", "compare", "cpu_share", 2),
        ("saturated: probes measured", "compare", "probes", 0),
        ("saturated: success ratio", "compare", "success_ratio", 3),
        ("saturated: whole machine busy, cores", "compare", "machine_busy_cores", 2),
        ("https saturated: probes/s", "https", "probes_per_s", 0),
        ("https saturated: CPU ms per probe", "https", "cpu_ms_per_probe", 3),
        ("https saturated: CPU share of one core", "https", "cpu_share", 2),
        ("https saturated: probes measured", "https", "probes", 0),
        ("https saturated: success ratio", "https", "success_ratio", 3),
        ("https saturated: whole machine busy, cores", "https", "machine_busy_cores", 2),
        ("1k targets: peak RSS MiB", "scale-1k", "peak_rss_mib", 0),
        ("10k targets: peak RSS MiB", "scale-10k", "peak_rss_mib", 0),
        ("50k targets: peak RSS MiB", "scale-50k", "peak_rss_mib", 0),
        ("50k targets: load until /ready s", "scale-50k", "load_s", 1),
        ("10k / 30 s: lateness p50 s", "scale-10k", "lateness_p50_s", 4),
        ("10k / 30 s: lateness p99 s", "scale-10k", "lateness_p99_s", 4),
        ("10k / 30 s: CPU share of one core", "scale-10k", "cpu_share", 2),
        ("50k / 60 s, scraped: window s", "scale-50k", "window_measured_s", 1),
        ("50k / 60 s, scraped: lateness p50 s", "scale-50k", "lateness_p50_s", 4),
        ("50k / 60 s, scraped: lateness p99 s", "scale-50k", "lateness_p99_s", 4),
        ("50k / 60 s, scraped: probes started", "scale-50k", "lateness_samples", 0),
        ("50k / 60 s, scraped: probes started over 1 s late", "scale-50k", "late_over_1s", 0),
        ("50k / 60 s, scraped: CPU share of one core", "scale-50k", "cpu_share", 2),
        ("50k / 60 s, scraped: whole machine busy, cores", "scale-50k", "machine_busy_cores", 2),
        (
            "50k / 60 s, scraped: the daemon's core busy with anything else, share",
            "scale-50k",
            "prober_core_others_share",
            2,
        ),
        ("50k: /metrics gzip scrapes in the window", "scale-50k", "scrapes", 0),
        ("50k: /metrics gzip, slowest s", "scale-50k", "metrics_s_max", 3),
        ("50k: /metrics gzip, median s", "scale-50k", "metrics_s_median", 3),
        ("50k: /metrics MiB (gzip MiB)", "scale-50k", "metrics_mib", 1),
        ("50k: GET / in the window", "scale-50k", "page_fetches", 0),
        ("50k: GET /, slowest s", "scale-50k", "page_s_max", 3),
        ("50k: GET / MiB", "scale-50k", "page_mib", 2),
        ("50k: requests failed (status, timeout)", "scale-50k", "requests_failed", 0),
        ("fidelity: load, CPU share of one core", "fidelity", "cpu_share", 2),
        ("fidelity: whole machine busy, cores", "fidelity", "machine_busy_cores", 2),
        ("fidelity: load targets (10 s interval)", "fidelity", "load_targets", 0),
        ("fidelity: samples", "fidelity", "samples", 0),
        ("fidelity: error p50 ms", "fidelity", "error_p50_ms", 2),
        ("fidelity: error p99 ms", "fidelity", "error_p99_ms", 2),
        ("fidelity: error max ms", "fidelity", "error_max_ms", 2),
        ("fidelity: reference server's own p99 ms", "fidelity", "reference_p99_ms", 2),
        ("soak: seconds measured", "soak", "duration_s", 0),
        ("soak: CSV rewrites (a tenth of the rows each)", "soak", "rewrites", 0),
        ("soak: RSS at start MiB", "soak", "rss_start_mib", 0),
        ("soak: RSS at end MiB", "soak", "rss_end_mib", 0),
        ("soak: RSS slope MiB/min", "soak", "rss_slope_mib_per_min", 2),
        (
            "soak: RSS slope over the second half MiB/min",
            "soak",
            "rss_slope_second_half_mib_per_min",
            2,
        ),
        ("soak: lateness p50 s", "soak", "lateness_p50_s", 4),
        ("soak: lateness p99 s", "soak", "lateness_p99_s", 4),
        ("soak: probes started over 1 s late", "soak", "late_over_1s", 0),
        ("soak: CPU share of one core", "soak", "cpu_share", 2),
        ("soak: bursts of 200 gzip /metrics scrapes", "soak", "bursts", 0),
        ("soak: /metrics in a burst, slowest s", "soak", "scrape_s_max", 2),
        ("soak: /metrics in a burst, median s", "soak", "scrape_s_median", 2),
        ("soak: /health during bursts, p50 s", "soak", "health_s_p50", 3),
        ("soak: /health during bursts, p99 s", "soak", "health_s_p99", 3),
        ("soak: /health during bursts, slowest s", "soak", "health_s_max", 3),
        ("page 50k: peak RSS MiB, a week of history read back", "page", "peak_rss_mib", 0),
        ("page 50k: results file MiB", "page", "results_file_mib", 1),
        ("page 50k: GET / MiB", "page", "page_mib", 2),
        ("page 50k: document build CPU s", "page", "document_build_cpu_s", 3),
        ("page 50k: page build CPU s", "page", "page_build_cpu_s", 3),
        ("page 50k: GET / slowest s (page fetched in a loop)", "page", "page_get_s_max", 3),
        ("page 50k: lateness p99 s, quiet", "page", "lateness_p99_quiet_s", 4),
        ("page 50k: lateness p99 s, GET / every second", "page", "lateness_p99_page_1s_s", 4),
        ("page 50k: lateness p99 s, GET / back to back", "page", "lateness_p99_page_loop_s", 4),
        ("page 50k: CPU share, quiet", "page", "cpu_share_quiet", 2),
        ("page 50k: CPU share, GET / every second", "page", "cpu_share_page_1s", 2),
        ("page 50k: CPU share, GET / back to back", "page", "cpu_share_page_loop", 2),
        ("page 50k: GET / fetches back to back", "page", "page_fetches_loop", 0),
        ("page 50k: Chromium load + screenshot s (blank page)", "page", "chromium_blank_s", 2),
        ("page 50k: Chromium load + screenshot s (the page)", "page", "chromium_page_s", 2),
    ]
    for label, scenario, key, digits in rows:
        peer_value = peers[scenario].get(key) if scenario in peers else None
        after = get(now, scenario, key)
        if key == "metrics_mib" and after is not None:
            shown_after = f"{after:.1f} ({get(now, scenario, 'metrics_gzip_mib') or 0:.1f})"
        else:
            shown_after = fmt(after, digits)
        row = f"| {label} | {fmt(peer_value, digits) if peer_value is not None else ''} |"
        if base:
            before = get(base, scenario, key)
            change = (after / before) if after is not None and before else None
            row += f" {fmt(before, digits)} | {shown_after} | {fmt(change, 2)} |"
        else:
            row += f" {shown_after} |"
        lines.append(row)
    shared = now.get("members")
    if shared:
        lines += [
            "",
            "Members sharing one list (`--shard i/N`, unpinned, nginx on the other core):",
            "",
            "| members | probes/s, all members | CPU ms per probe | CPU cores used | "
            "whole machine busy, cores |",
            "|---|---|---|---|---|",
        ]
        for count, figures in sorted(shared.items()):
            lines.append(
                f"| {count} | {fmt(figures['probes_per_s'], 0)} | "
                f"{fmt(figures['cpu_ms_per_probe'], 3)} | {fmt(figures['cpu_cores'], 2)} | "
                f"{fmt(figures['machine_busy_cores'], 2)} |"
            )
    return "\n".join(lines) + "\n"


def update_doc(text: str) -> None:
    block = f"{BEGIN}\n{text}{END}"
    if DOC.exists() and BEGIN in DOC.read_text():
        head, rest = DOC.read_text().split(BEGIN, 1)
        DOC.write_text(head + block + rest.split(END, 1)[1])
    else:
        DOC.parent.mkdir(exist_ok=True)
        existing = DOC.read_text() if DOC.exists() else "# Performance\n"
        DOC.write_text(existing.rstrip() + "\n\n## Results of the last full run\n\n" + block + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows (about 3 minutes)")
    parser.add_argument(
        "--only", default=",".join(NAMES), help=f"comma list of scenarios: {', '.join(NAMES)}"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="rounds of each upcheck/exporter comparison (plain and https); the median is "
        "reported (default 5, 1 with --quick)",
    )
    parser.add_argument(
        "--baseline",
        metavar="GITREF",
        help="also run the upcheck scenarios against this older commit",
    )
    args = parser.parse_args()
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = only - set(NAMES)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    check_tools()
    cores = cpus()
    prober_cpu, other_cpu = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    cpu_name = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    results: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_name, "python": platform.python_version()},
        "mode": "quick" if args.quick else "full",
        "commit": commit,
        "baseline": args.baseline,
        "only": sorted(only),
        "runs": {},
    }
    with (
        tempfile.TemporaryDirectory(prefix="upcheck-bench-") as scratch,
        Processes(Path(scratch)) as procs,
    ):
        nginx_port, nginx_tls_port, ca_file = procs.nginx(other_cpu)
        env = scenarios.Env(
            procs,
            Path(scratch),
            nginx_port,
            nginx_tls_port,
            ca_file,
            prober_cpu,
            other_cpu,
            args.quick,
        )
        if args.baseline:
            with worktree(args.baseline, Path(scratch)) as old:
                # A list shared by members is new: an older commit has no --shard; the page
                # scenario reads back uptime counts an older commit does not write.
                results["runs"]["baseline"] = run_upcheck(
                    env, old, only - {"members", "page"}, "baseline"
                )
        rounds = args.rounds or (1 if args.quick else 5)
        results["runs"]["current"] = run_upcheck(env, ROOT, only - {"compare", "https"}, "current")
        if "compare" in only:
            compare_rounds(env, results, rounds)
        if "https" in only:
            compare_rounds(env, results, rounds, https=True)
    text = table(results)
    print(text)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if not args.quick and only == set(NAMES):
        update_doc(text)
        print(f"bench: wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
