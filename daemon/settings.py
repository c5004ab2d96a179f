"""Command-line flags and environment variables, validated once at start-up.

Every option is a flag and an ``UPCHECK_*`` environment variable; the flag wins. All problems
are collected and raised together as one :class:`ConfigError`, so a user fixes them in one go.
"""

from __future__ import annotations

import argparse
import os
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from daemon import __version__
from daemon.sharding.membership import ShardSpec, ecs_metadata_url, parse_shard
from daemon.sources.parse import INTERVAL_LIMITS, TIMEOUT_LIMITS, limits_problem

CLOUDWATCH_URL_METRICS = ("ResponseTime", "Up", "StatusCode")

# Seconds, like INTERVAL_LIMITS. Under a second, the reloader and the publisher turn into busy
# loops: a look at the CSV (an S3 request), a results-file write and a CloudWatch push many times
# a second, for figures nobody reads that often. Over a day, a typo (SIGHUP still reloads at once,
# and SIGTERM still publishes a last time).
RELOAD_INTERVAL_LIMITS = (1.0, 86_400.0)
PUBLISH_INTERVAL_LIMITS = (1.0, 86_400.0)
# Every member calls ecs:ListTasks and ecs:DescribeTasks once a refresh, against its account's
# per-Region ECS API quota that deployments and the console share: a few seconds apart at least.
# A departed member's URLs wait up to one refresh for a new owner: an hour at most.
SHARD_REFRESH_LIMITS = (5.0, 3_600.0)


class ConfigError(ValueError):
    """Bad settings. The message lists every problem found, on one line."""


@dataclass(frozen=True, slots=True)
class Settings:
    targets: str
    listen_host: str
    listen_port: int
    interval: float
    timeout: float
    concurrency: int
    reload_interval: float
    results: str | None
    publish_interval: float
    cloudwatch_namespace: str | None
    cloudwatch_url_metrics: tuple[str, ...]
    app_name: str
    ca_file: str | None
    shard: ShardSpec
    ecs_metadata_url: str | None  # with --shard ecs: the task metadata endpoint (v4)
    shard_refresh_interval: float
    allow_link_local: bool
    once: bool
    log_level: str
    probe_endpoint: bool = False  # serve GET /probe?target=URL, the blackbox exporter's API


# (flag, env var, default, help). The order is the order of --help.
_OPTIONS: tuple[tuple[str, str, str | None, str], ...] = (
    ("--targets", "UPCHECK_TARGETS", None, "local path or s3://bucket/key of the targets CSV"),
    ("--listen", "UPCHECK_LISTEN", "0.0.0.0:8080", "HTTP server address, host:port"),
    (
        "--interval",
        "UPCHECK_INTERVAL",
        "60",
        "seconds between two probes of one URL, 1 to 86400",
    ),
    (
        "--timeout",
        "UPCHECK_TIMEOUT",
        "10",
        "hard deadline in seconds for one whole probe, 0.1 to 300 and not over --interval",
    ),
    ("--concurrency", "UPCHECK_CONCURRENCY", "500", "most probes in flight at once"),
    (
        "--reload-interval",
        "UPCHECK_RELOAD_INTERVAL",
        "60",
        "seconds between checks of the targets CSV for change, 1 to 86400",
    ),
    (
        "--results",
        "UPCHECK_RESULTS",
        "results/results.json",
        "local path or s3://bucket/key of the results file; '-' disables it",
    ),
    (
        "--publish-interval",
        "UPCHECK_PUBLISH_INTERVAL",
        "60",
        "seconds between results-file writes and CloudWatch pushes, 1 to 86400",
    ),
    (
        "--cloudwatch-namespace",
        "UPCHECK_CLOUDWATCH_NAMESPACE",
        "",
        "CloudWatch namespace; empty disables CloudWatch",
    ),
    (
        "--cloudwatch-url-metrics",
        "UPCHECK_CLOUDWATCH_URL_METRICS",
        "ResponseTime,Up",
        "per-URL CloudWatch metrics: comma list of ResponseTime, Up, StatusCode, or 'none'",
    ),
    ("--app-name", "UPCHECK_APP_NAME", "upcheck", "value of the Application dimension"),
    (
        "--ca-file",
        "UPCHECK_CA_FILE",
        "",
        "extra CA bundle trusted for HTTPS targets (SSL_CERT_FILE and REQUESTS_CA_BUNDLE "
        "are honoured too)",
    ),
    (
        "--shard",
        "UPCHECK_SHARD",
        "off",
        "share one list between processes: off, INDEX/COUNT (e.g. 0/3), or ecs (the running "
        "tasks of this task's ECS service)",
    ),
    (
        "--shard-refresh-interval",
        "UPCHECK_SHARD_REFRESH_INTERVAL",
        "30",
        "with --shard ecs: seconds between two looks at the service's running tasks, 5 to 3600",
    ),
    (
        "--log-level",
        "UPCHECK_LOG_LEVEL",
        "info",
        "debug, info, warning or error",
    ),
)

_BOOL_OPTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "--allow-link-local",
        "UPCHECK_ALLOW_LINK_LOCAL",
        "probe link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10, "
        "fd00:ec2::254), "
        "refused by default",
    ),
    (
        "--probe-endpoint",
        "UPCHECK_PROBE_ENDPOINT",
        "serve GET /probe?target=URL as the blackbox exporter does; off by default: whoever "
        "reaches the port can then have the daemon send requests to any address it can reach",
    ),
)

_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off", ""))


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m daemon",
        allow_abbrev=False,  # `--int 5` must not silently mean --interval
        description="upcheck: probe every URL of a CSV concurrently, forever, and export "
        "what it sees on /metrics, /results, CloudWatch and a results file.",
        epilog="Every option can also be set with the environment variable shown; the flag "
        "wins. Docs: README.md.",
    )
    for flag, env, default, help_text in _OPTIONS:
        shown = "required" if default is None else f"default: {default!r}"
        parser.add_argument(flag, metavar="VALUE", help=f"{help_text} [{env}; {shown}]")
    for flag, env, help_text in _BOOL_OPTIONS:
        parser.add_argument(flag, action="store_true", default=None, help=f"{help_text} [{env}]")
    parser.add_argument(
        "--once",
        action="store_true",
        help="probe every URL once, write the sinks, print a summary; exit 0 if all up, 1 if "
        "any is down, 2 if the targets cannot be loaded or a sink could not be written",
    )
    parser.add_argument("--version", action="version", version=f"upcheck {__version__}")
    return parser


def _positive(
    name: str,
    raw: str,
    problems: list[str],
    integer: bool = False,
    limits: tuple[float, float] | None = None,
) -> float:
    """A number greater than 0 (and within ``limits``, seconds, if given)."""
    try:
        value = float(int(raw)) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        problems.append(f"{name} must be {kind}, got {raw!r}")
        return 1.0
    if not value > 0 or value != value or value == float("inf"):
        problems.append(f"{name} must be greater than 0, got {raw!r}")
        return 1.0
    if limits is not None:
        problem = limits_problem(value, limits)
        if problem is not None:
            problems.append(f"{name} {problem}, got {raw!r}")
            return limits[0]
    return value


def _listen(raw: str, problems: list[str]) -> tuple[str, int]:
    host, sep, port = raw.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        problems.append(f"--listen must be host:port, got {raw!r}")
        return "0.0.0.0", 8080  # noqa: S104 - placeholder; a ConfigError follows
    return host, int(port)


def _url_metrics(raw: str, problems: list[str]) -> tuple[str, ...]:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in CLOUDWATCH_URL_METRICS]
    if unknown or not names:
        problems.append(
            "--cloudwatch-url-metrics takes a comma list of "
            f"{', '.join(CLOUDWATCH_URL_METRICS)}, or 'none'; got {raw!r}"
        )
        return ()
    return tuple(dict.fromkeys(names))


def _check_targets(path: str, problems: list[str]) -> None:
    if path.startswith("s3://"):
        bucket, _, key = path[5:].partition("/")
        if not bucket or not key:
            problems.append(f"--targets must be s3://bucket/key, got {path!r}")
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        problems.append(f"--targets {path!r} cannot be read: {exc.strerror or exc}")


def _check_ca_bundle(name: str, path: str, problems: list[str]) -> None:
    """The probe's TLS context loads this file at start-up; fail here, clearly, if it can't."""
    if not os.path.isfile(path):
        problems.append(f"{name} {path!r} is not a readable file")
        return
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        problems.append(f"{name} {path!r} holds no usable PEM certificates: {reason}")


_NAMESPACE = re.compile(r"[0-9A-Za-z.\-_/#: ]{1,255}")


def _check_namespace(namespace: str, problems: list[str]) -> None:
    """CloudWatch refuses every PutMetricData to a namespace outside these rules, so a bad one
    would silently turn the sink into a stream of errors: refuse it at start instead."""
    if not _NAMESPACE.fullmatch(namespace):
        problems.append(
            "--cloudwatch-namespace must be at most 255 of 0-9 A-Z a-z . - _ / # : and space, "
            f"got {namespace!r}"
        )
    elif namespace.startswith((":", "AWS/")):
        problems.append(
            f"--cloudwatch-namespace must not start with ':' or 'AWS/' (reserved), "
            f"got {namespace!r}"
        )


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Parse flags and environment into :class:`Settings`, or raise :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(list(argv)))
    problems: list[str] = []

    def value(flag: str, env: str, default: str | None) -> str | None:
        given = args[flag.lstrip("-").replace("-", "_")]
        if given is not None:
            return str(given)
        return environ.get(env, default)

    def is_set(flag: str) -> bool:
        """Set by a flag or its environment variable, rather than by default."""
        env = next(env for name, env, _, _ in _OPTIONS if name == flag)
        return value(flag, env, None) is not None

    raw = {flag: value(flag, env, default) for flag, env, default, _ in _OPTIONS}
    flags: dict[str, bool] = {}
    for flag, env, _ in _BOOL_OPTIONS:
        given = args[flag.lstrip("-").replace("-", "_")]
        env_raw = environ.get(env, "").strip().lower()
        if env_raw not in _TRUE | _FALSE:
            problems.append(f"{env} must be true or false, got {env_raw!r}")
        flags[flag] = bool(given) or env_raw in _TRUE

    targets = raw["--targets"] or ""
    if not targets:
        problems.append("--targets (or UPCHECK_TARGETS) is required")
    else:
        _check_targets(targets, problems)
    host, port = _listen(raw["--listen"] or "", problems)
    known = len(problems)
    interval = _positive("--interval", raw["--interval"] or "", problems, limits=INTERVAL_LIMITS)
    timeout = _positive("--timeout", raw["--timeout"] or "", problems, limits=TIMEOUT_LIMITS)
    both_good = len(problems) == known
    if both_good and timeout > interval and is_set("--interval") and is_set("--timeout"):
        # Only when both are set: `--interval 5` alone keeps the default timeout, and a probe
        # that outlasts its interval just delays the next one (never two at once).
        problems.append(
            f"--timeout {timeout:g} is longer than --interval {interval:g}: a probe would "
            "still run when the next is due"
        )
    concurrency = int(_positive("--concurrency", raw["--concurrency"] or "", problems, True))
    reload_interval = _positive(
        "--reload-interval", raw["--reload-interval"] or "", problems, limits=RELOAD_INTERVAL_LIMITS
    )
    publish_interval = _positive(
        "--publish-interval",
        raw["--publish-interval"] or "",
        problems,
        limits=PUBLISH_INTERVAL_LIMITS,
    )
    results = (raw["--results"] or "").strip()
    if results.startswith("s3://"):
        bucket, _, key = results[5:].partition("/")
        if not bucket or not key:
            problems.append(f"--results must be s3://bucket/key, a path or '-', got {results!r}")
    url_metrics = _url_metrics(raw["--cloudwatch-url-metrics"] or "", problems)
    ca_file = (raw["--ca-file"] or "").strip() or None
    if ca_file is not None:
        _check_ca_bundle("--ca-file", ca_file, problems)
    env_bundle = environ.get("REQUESTS_CA_BUNDLE", "").strip()
    if env_bundle:
        _check_ca_bundle("REQUESTS_CA_BUNDLE", env_bundle, problems)
    namespace = (raw["--cloudwatch-namespace"] or "").strip() or None
    if namespace is not None:
        _check_namespace(namespace, problems)
    shard = ShardSpec("off")
    try:
        shard = parse_shard(raw["--shard"] or "off")
    except ValueError as exc:
        problems.append(str(exc))
    shard_refresh = _positive(
        "--shard-refresh-interval",
        raw["--shard-refresh-interval"] or "",
        problems,
        limits=SHARD_REFRESH_LIMITS,
    )
    metadata_url = None
    if shard.mode == "ecs":
        try:
            metadata_url = ecs_metadata_url(environ)
        except ValueError as exc:
            problems.append(str(exc))
    if shard.mode != "off" and results in {"", "-"}:
        problems.append(
            "--shard needs --results: the members share their results through its folder or prefix"
        )
    log_level = (raw["--log-level"] or "").strip().lower()
    if log_level not in {"debug", "info", "warning", "error"}:
        problems.append(f"--log-level must be debug, info, warning or error, got {log_level!r}")

    if problems:
        raise ConfigError("; ".join(problems))
    return Settings(
        targets=targets,
        listen_host=host,
        listen_port=port,
        interval=interval,
        timeout=timeout,
        concurrency=concurrency,
        reload_interval=reload_interval,
        results=None if results in {"", "-"} else results,
        publish_interval=publish_interval,
        cloudwatch_namespace=namespace,
        cloudwatch_url_metrics=url_metrics,
        app_name=(raw["--app-name"] or "").strip() or "upcheck",
        ca_file=ca_file,
        shard=shard,
        ecs_metadata_url=metadata_url,
        shard_refresh_interval=shard_refresh,
        allow_link_local=flags["--allow-link-local"],
        once=bool(args["once"]),
        log_level=log_level,
        probe_endpoint=flags["--probe-endpoint"],
    )
