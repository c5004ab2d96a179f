"""Settings: every SPEC flag with its environment variable, and one clear error line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trustme

from daemon.settings import ConfigError, load


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "urls.csv"
    path.write_text("url\nhttp://127.0.0.1/\n")
    return str(path)


def test_defaults_match_the_spec(csv):
    s = load(["--targets", csv], environ={})
    assert (s.listen_host, s.listen_port) == ("0.0.0.0", 8080)
    assert (s.interval, s.timeout, s.concurrency) == (60, 10, 500)
    assert (s.reload_interval, s.publish_interval) == (60, 60)
    assert s.results == "results/results.json"
    assert s.cloudwatch_namespace is None
    assert s.cloudwatch_url_metrics == ("ResponseTime", "Up")
    assert s.app_name == "upcheck" and s.ca_file is None
    assert s.once is False and s.allow_link_local is False


def test_every_option_reads_its_environment_variable(csv, tmp_path):
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    env = {
        "UPCHECK_TARGETS": csv,
        "UPCHECK_LISTEN": "127.0.0.1:9000",
        "UPCHECK_INTERVAL": "30",
        "UPCHECK_TIMEOUT": "2.5",
        "UPCHECK_CONCURRENCY": "50",
        "UPCHECK_RELOAD_INTERVAL": "15",
        "UPCHECK_RESULTS": "s3://bucket/prefix/results.json",
        "UPCHECK_PUBLISH_INTERVAL": "20",
        "UPCHECK_CLOUDWATCH_NAMESPACE": "Shop/Uptime",
        "UPCHECK_CLOUDWATCH_URL_METRICS": "Up,StatusCode",
        "UPCHECK_APP_NAME": "shop",
        "UPCHECK_CA_FILE": str(ca),
        "UPCHECK_ALLOW_LINK_LOCAL": "true",
        "UPCHECK_LOG_LEVEL": "debug",
    }
    s = load([], environ=env)
    assert s.targets == csv and (s.listen_host, s.listen_port) == ("127.0.0.1", 9000)
    assert (s.interval, s.timeout, s.concurrency) == (30, 2.5, 50)
    assert (s.reload_interval, s.publish_interval) == (15, 20)
    assert s.results == "s3://bucket/prefix/results.json"
    assert s.cloudwatch_namespace == "Shop/Uptime"
    assert s.cloudwatch_url_metrics == ("Up", "StatusCode")
    assert s.app_name == "shop" and s.ca_file == str(ca)
    assert s.allow_link_local is True and s.log_level == "debug"


def test_a_flag_wins_over_its_environment_variable(csv):
    s = load(["--targets", csv, "--interval", "5"], environ={"UPCHECK_INTERVAL": "30"})
    assert s.interval == 5


def test_results_dash_disables_the_results_file_and_none_disables_url_metrics(csv):
    s = load(["--targets", csv, "--results", "-", "--cloudwatch-url-metrics", "none"], {})
    assert s.results is None and s.cloudwatch_url_metrics == ()


def test_every_problem_is_reported_at_once(csv):
    with pytest.raises(ConfigError) as caught:
        load(
            ["--targets", "/nonexistent.csv", "--interval", "-1", "--timeout", "abc"],
            environ={"UPCHECK_CLOUDWATCH_URL_METRICS": "Latency"},
        )
    message = str(caught.value)
    assert "--targets '/nonexistent.csv' cannot be read: No such file or directory" in message
    assert "--interval must be greater than 0, got '-1'" in message
    assert "--timeout must be a number, got 'abc'" in message
    assert "--cloudwatch-url-metrics takes a comma list" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--interval", "0.000000001"], {}, "--interval must be at least 1 s, got '0.000000001'"),
        (["--interval", "0.5"], {}, "--interval must be at least 1 s, got '0.5'"),
        ([], {"UPCHECK_INTERVAL": "86401"}, "--interval must be at most 86400 s, got '86401'"),
        (["--timeout", "0.01"], {}, "--timeout must be at least 0.1 s, got '0.01'"),
        (["--timeout", "301"], {}, "--timeout must be at most 300 s, got '301'"),
        (
            ["--interval", "5", "--timeout", "30"],
            {},
            "--timeout 30 is longer than --interval 5: a probe would still run when the next"
            " is due",
        ),
        (
            ["--interval", "5"],
            {"UPCHECK_TIMEOUT": "6"},
            "--timeout 6 is longer than --interval 5: a probe would still run when the next is due",
        ),
    ],
)
def test_an_absurd_interval_or_timeout_is_refused(csv, argv, environ, message):
    """`--interval 0.000000001` probed one URL about a thousand times a second."""
    with pytest.raises(ConfigError) as caught:
        load(["--targets", csv, *argv], environ=environ)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("argv", "interval", "timeout"),
    [
        (["--interval", "1", "--timeout", "0.1"], 1, 0.1),
        (["--interval", "86400", "--timeout", "300"], 86400, 300),
        (["--interval", "5", "--timeout", "5"], 5, 5),
        # Only the interval set: the default timeout stays; the probe never overlaps itself.
        (["--interval", "5"], 5, 10),
    ],
)
def test_intervals_and_timeouts_at_their_bounds_are_accepted(csv, argv, interval, timeout):
    s = load(["--targets", csv, *argv], environ={})
    assert (s.interval, s.timeout) == (interval, timeout)


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (
            ["--reload-interval", "0.001"],
            {},
            "--reload-interval must be at least 1 s, got '0.001'",
        ),
        (
            [],
            {"UPCHECK_RELOAD_INTERVAL": "86401"},
            "--reload-interval must be at most 86400 s, got '86401'",
        ),
        (
            ["--publish-interval", "1e-9"],
            {},
            "--publish-interval must be at least 1 s, got '1e-9'",
        ),
        (
            [],
            {"UPCHECK_PUBLISH_INTERVAL": "1e300"},
            "--publish-interval must be at most 86400 s, got '1e300'",
        ),
        (
            ["--shard-refresh-interval", "1"],
            {},
            "--shard-refresh-interval must be at least 5 s, got '1'",
        ),
        (
            [],
            {"UPCHECK_SHARD_REFRESH_INTERVAL": "3601"},
            "--shard-refresh-interval must be at most 3600 s, got '3601'",
        ),
        (
            ["--publish-interval", "nan"],
            {},
            "--publish-interval must be greater than 0, got 'nan'",
        ),
        (
            ["--shard-refresh-interval", "-30"],
            {},
            "--shard-refresh-interval must be greater than 0, got '-30'",
        ),
    ],
)
def test_an_absurd_reload_publish_or_membership_interval_is_refused(csv, argv, environ, message):
    """`--publish-interval 0.001` rewrote the results file (and pushed to S3 and CloudWatch) a
    thousand times a second; `--shard-refresh-interval 0.001` called ECS ListTasks as often."""
    with pytest.raises(ConfigError) as caught:
        load(["--targets", csv, *argv], environ=environ)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--reload-interval", "1", "--publish-interval", "1", "--shard-refresh-interval", "5"],
            (1, 1, 5),
        ),
        (
            [
                "--reload-interval",
                "86400",
                "--publish-interval",
                "86400",
                "--shard-refresh-interval",
                "3600",
            ],
            (86400, 86400, 3600),
        ),
    ],
)
def test_reload_publish_and_membership_intervals_at_their_bounds_are_accepted(csv, argv, expected):
    s = load(["--targets", csv, *argv], environ={})
    assert (s.reload_interval, s.publish_interval, s.shard_refresh_interval) == expected


def test_a_ca_bundle_that_is_not_pem_is_refused_at_start(csv, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as caught:
        load(["--targets", csv, "--ca-file", str(junk)], environ={"REQUESTS_CA_BUNDLE": str(junk)})
    message = str(caught.value)
    assert f"--ca-file {str(junk)!r} holds no usable PEM certificates" in message
    assert f"REQUESTS_CA_BUNDLE {str(junk)!r} holds no usable PEM certificates" in message


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--targets", "{csv}", "--inter", "5"], "unrecognized arguments: --inter 5"),
        (["--targets", "{csv}", "--cloudwatch-namespace", "AWS/EC2"], "reserved"),
        (["--targets", "{csv}", "--cloudwatch-namespace", "Überwachung"], "0-9 A-Z a-z"),
        (["--targets", "{csv}", "--cloudwatch-namespace", "a*b"], "0-9 A-Z a-z"),
        ([], "--targets (or UPCHECK_TARGETS) is required"),
        (["--targets", "s3://bucket-only"], "--targets must be s3://bucket/key"),
        (["--targets", "{csv}", "--listen", "8080"], "--listen must be host:port"),
        (["--targets", "{csv}", "--concurrency", "1.5"], "--concurrency must be a whole number"),
        (["--targets", "{csv}", "--interval", "0.000000001"], "--interval must be at least 1 s"),
        (["--targets", "{csv}", "--ca-file", "{csv}"], "holds no usable PEM certificates"),
    ],
)
def test_bad_configuration_exits_2_with_one_clear_line(csv, argv, fragment):
    argv = [a.replace("{csv}", csv) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("upcheck: error: ") and fragment in lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (["--reload-interval", "0.001"], {}, "--reload-interval must be at least 1 s"),
        (["--publish-interval", "0.001"], {}, "--publish-interval must be at least 1 s"),
        (
            ["--shard-refresh-interval", "0.001"],
            {},
            "--shard-refresh-interval must be at least 5 s",
        ),
        ([], {"UPCHECK_RELOAD_INTERVAL": "0"}, "--reload-interval must be greater than 0"),
        ([], {"UPCHECK_PUBLISH_INTERVAL": "1e300"}, "--publish-interval must be at most 86400 s"),
        (
            [],
            {"UPCHECK_SHARD_REFRESH_INTERVAL": "86400"},
            "--shard-refresh-interval must be at most 3600 s",
        ),
    ],
)
def test_an_absurd_reload_publish_or_membership_interval_exits_2_with_one_clear_line(
    csv, argv, env, fragment
):
    # --once, no results file and port 0: were the value let through, the process would probe
    # once and end (and the test fail) rather than run a daemon writing into the working folder.
    safe = ("--once", "--results", "-", "--listen", "127.0.0.1:0")
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "--targets", csv, *safe, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("upcheck: error: ") and fragment in lines[0]
    assert proc.stdout == ""


def test_help_lists_every_flag_with_its_environment_variable():
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    for env in ("UPCHECK_TARGETS", "UPCHECK_CLOUDWATCH_URL_METRICS", "UPCHECK_CA_FILE"):
        assert env in proc.stdout
    assert "--once" in proc.stdout
