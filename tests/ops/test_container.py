"""The Dockerfile and .dockerignore, checked without a Docker engine (none on these machines).

hadolint lints the file; the rest reads the instructions and runs the parts that can run here:
the HEALTHCHECK command against a live daemon, and the ENTRYPOINT's SIGTERM handling.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest

from tests.ops.conftest import (
    REPO,
    Daemon,
    Targets,
    clean_env,
    http_get,
    start_daemon,
    stop,
    venv_tool,
)
from tests.support import free_port


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def only(keyword: str) -> str:
    (args,) = [a for k, a in instructions() if k == keyword]
    return args


def test_hadolint_reports_nothing_at_any_level() -> None:
    linted = subprocess.run(
        [venv_tool("hadolint"), "--no-color", "--format", "json", "Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(linted.stdout) == [], linted.stdout + linted.stderr
    assert linted.returncode == 0


def test_base_image_is_a_slim_python_pinned_to_a_patch_release() -> None:
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+", only("FROM"))


def test_dependencies_are_installed_in_a_layer_before_the_code() -> None:
    steps = instructions()
    order = [f"{k} {a}" for k, a in steps]
    copy_requirements = order.index("COPY requirements.lock .")
    install = next(i for i, s in enumerate(order) if s.startswith("RUN pip install"))
    copy_code = next(i for i, s in enumerate(order) if s.startswith("COPY daemon/"))
    assert copy_requirements < install < copy_code
    assert "-r requirements.lock" in order[install] and "--no-cache-dir" in order[install]
    # Only hashed files, and nothing the lock does not list.
    assert "--require-hashes" in order[install] and "--no-deps" in order[install]


def test_runs_as_a_fixed_non_root_user() -> None:
    steps = instructions()
    users = [i for i, (k, _) in enumerate(steps) if k == "USER"]
    assert users, "no USER instruction"
    user = steps[users[-1]][1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0), user
    # Terraform's task definition runs the same uid:gid (ops/terraform, container_user).
    assert user == "10001:10001"
    entry = next(i for i, (k, _) in enumerate(steps) if k == "ENTRYPOINT")
    assert users[-1] < entry


def test_exposes_8080_and_listens_there_by_default() -> None:
    assert only("EXPOSE") == "8080"
    env = [word for k, a in instructions() if k == "ENV" for word in a.split()]
    assert "UPCHECK_LISTEN=0.0.0.0:8080" in env


def test_entrypoint_is_exec_form_so_sigterm_reaches_the_daemon() -> None:
    assert json.loads(only("ENTRYPOINT")) == ["python", "-m", "daemon"]
    assert only("STOPSIGNAL") == "SIGTERM"


def healthcheck_argv() -> list[str]:
    options, _, command = only("HEALTHCHECK").partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[0] == "python", "the healthcheck must need nothing beyond Python"
    assert not {"curl", "wget"} & set(" ".join(argv).split())
    return [sys.executable, *argv[1:]]


def run_healthcheck(listen: str) -> int:
    return subprocess.run(
        healthcheck_argv(),
        env=clean_env(UPCHECK_LISTEN=listen),
        capture_output=True,
        timeout=30,
    ).returncode


def test_healthcheck_passes_against_a_live_daemon(live_daemon: Daemon) -> None:
    assert http_get(f"{live_daemon.base}/health")[0] == 200
    assert run_healthcheck(f"0.0.0.0:{live_daemon.port}") == 0


class _Unhealthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_healthcheck_fails_when_health_answers_503_or_nothing_listens() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unhealthy)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert run_healthcheck(f"0.0.0.0:{server.server_port}") != 0
    finally:
        server.shutdown()
        server.server_close()
    assert run_healthcheck(f"0.0.0.0:{free_port()}") != 0


def test_sigterm_flushes_the_results_file_and_exits_0(tmp_path: Path, targets: Targets) -> None:
    # A publish interval far beyond the test: only the SIGTERM flush can write the results.
    daemon = start_daemon(tmp_path, targets, "--publish-interval", "3600")
    started = time.monotonic()
    assert stop(daemon.proc, timeout=10) == 0, daemon.log.read_text()
    assert time.monotonic() - started < 10  # SPEC: exit within 10 s of SIGTERM
    document = json.loads(daemon.results.read_text())
    by_name = {r["name"]: r["up"] for r in document["results"]}
    assert by_name == {name: up for name, (_, up, _) in targets.expected.items()}


# --------------------------------------------------------------------------- .dockerignore


def _pattern(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore matching: `*` within one path segment, `**` across segments."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def in_build_context(path: str) -> bool:
    """Whether `path` reaches the build context: the last matching pattern decides, and a
    pattern that matches a folder matches everything in it."""
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _pattern(line.lstrip("!").strip("/"))))
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for negated, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            included = negated
    return included


@pytest.mark.parametrize(
    "path",
    [
        "tests/ops/test_container.py",
        "tests/support.py",
        ".venv/bin/python",
        ".venv-checkov/lib/site.py",
        "results/results.json",
        ".git/HEAD",
        ".pytest_cache/v/cache/lastfailed",
        "ops/terraform/terraform.tfstate",
        "daemon/__pycache__/probe.cpython-311.pyc",
        "README.md",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert not in_build_context(path)


def test_dockerignore_lets_in_everything_the_dockerfile_copies() -> None:
    sources = [a.split()[0] for k, a in instructions() if k == "COPY"]
    assert sources == ["requirements.lock", "daemon/"]
    for source in sources:
        assert in_build_context(source.rstrip("/"))
    for module in (REPO / "daemon").rglob("*.py"):
        assert in_build_context(module.relative_to(REPO).as_posix()), module


def _lock() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: name -> (version, sha256 hashes)."""
    text = (REPO / "requirements.lock").read_text()
    found = {}
    for block in re.split(r"\n(?=[a-z0-9])", text):
        head = re.match(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\", block)
        if head:
            found[head[1]] = (head[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_pins_requirements_txt_and_everything_it_pulls_in_with_hashes() -> None:
    lock = _lock()
    assert lock, "requirements.lock lists nothing"
    # Every direct requirement at the same version...
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            assert lock[_normal(name)][0] == version, name
    # ...and every package, transitive ones too, with at least one sha256.
    assert all(hashes for _, hashes in lock.values()), [n for n, (_, h) in lock.items() if not h]
    text = (REPO / "requirements.lock").read_text()
    # Nothing machine-local (an index or a wheel folder of the machine that made it).
    assert "--index-url" not in text and "--find-links" not in text and "file://" not in text
    assert {"urllib3", "botocore", "greenlet", "certifi"} <= set(lock)
