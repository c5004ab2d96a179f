"""The processes a benchmark run starts (nginx, the blackbox exporter, a delay server, upcheck)
and what it reads from /proc about them. Every start is paired with a stop in ``Processes``."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy so far (anything but idle and iowait), every process."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pin(cpu: int | None) -> list[str]:
    """A taskset prefix that pins a command to one CPU (none on a one-CPU machine)."""
    if cpu is None or len(cpus()) < 2 or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


def http_get(
    port: int, path: str, timeout: float = 30.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes, float]:
    """(status, body, seconds) of one GET to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        started = time.perf_counter()
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - started
    finally:
        conn.close()


def wait_until(check, timeout: float, what: str, every: float = 0.1):
    """Poll ``check()`` until it returns something truthy; bounded by ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            value = check()
            if value:
                return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:g}s")


class Processes:
    """Starts processes into one work folder and stops every one of them on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self._procs):
            self.stop(proc)

    def start(
        self, name: str, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc in self._procs:
            self._procs.remove(proc)

    # -- the parts -------------------------------------------------------------------------

    def nginx(self, cpu: int | None) -> tuple[int, int, Path]:
        """nginx answering 200 with a 3-byte body for any path, on 127.0.0.1, over plain http
        and over https (an ECDSA P-256 certificate from a throwaway CA, no session reuse: every
        probe a full handshake, as a fresh visitor); returns both ports and the CA's file."""
        import trustme

        port, tls_port = free_port(), free_port()
        root = self.workdir / "nginx"
        root.mkdir(exist_ok=True)
        ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
        cert = ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.ECDSA)
        cert.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        conf = root / "nginx.conf"
        temp = "".join(
            f"  {kind}_temp_path {root}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf.write_text(
            f"""worker_processes 1;
daemon off;
master_process off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  default_type text/plain;
  keepalive_timeout 0;
{temp}  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ return 200 "ok\\n"; }}
    location = /nginx_status {{ stub_status; }}
  }}
  server {{
    listen 127.0.0.1:{tls_port} ssl backlog=4096;
    ssl_certificate {root}/server.pem;
    ssl_certificate_key {root}/server.pem;
    ssl_session_cache off;
    ssl_session_tickets off;
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""
        )
        self.start("nginx", [*pin(cpu), "nginx", "-c", str(conf), "-p", str(root)])
        wait_until(lambda: http_get(port, "/ready")[0] == 200, 10, "nginx")
        return port, tls_port, root / "ca.pem"

    def blackbox(
        self, cpu: int | None, ca_file: Path | None = None
    ) -> tuple[subprocess.Popen[bytes], int]:
        """The exporter with ``http_2xx`` and, given ``ca_file``, ``https_2xx``: the same
        module, verifying the server's certificate against that CA, as upcheck does."""
        port = free_port()
        https = (
            "  https_2xx:\n"
            "    prober: http\n"
            "    timeout: 5s\n"
            "    http:\n"
            "      preferred_ip_protocol: ip4\n"
            "      ip_protocol_fallback: false\n"
            "      tls_config:\n"
            f"        ca_file: {ca_file}\n"
            if ca_file is not None
            else ""
        )
        conf = self.workdir / "blackbox.yml"
        conf.write_text(
            "modules:\n"
            "  http_2xx:\n"
            "    prober: http\n"
            "    timeout: 5s\n"
            "    http:\n"
            "      preferred_ip_protocol: ip4\n"
            "      ip_protocol_fallback: false\n" + https
        )
        proc = self.start(
            "blackbox",
            [
                *pin(cpu),
                "prometheus-blackbox-exporter",
                f"--config.file={conf}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
        )
        wait_until(lambda: http_get(port, "/metrics")[0] == 200, 15, "blackbox exporter")
        return proc, port

    def delay_server(
        self, cpu: int | None, delay: float
    ) -> tuple[subprocess.Popen[bytes], int, Path]:
        port = free_port()
        stats = self.workdir / "delay-stats.txt"
        proc = self.start(
            "delay",
            [
                *pin(cpu),
                sys.executable,
                str(HERE / "delay_server.py"),
                str(port),
                str(delay),
                str(stats),
            ],
        )
        wait_until(lambda: http_get(port, "/up")[0] == 200, 10, "delay server")
        return proc, port, stats

    def upcheck(
        self,
        checkout: Path,
        csv: Path,
        cpu: int | None,
        interval: float,
        concurrency: int,
        timeout: float = 5.0,
        reload_interval: float = 3600.0,
        extra: tuple[str, ...] = (),
    ) -> tuple[subprocess.Popen[bytes], int]:
        """The daemon on ``csv``; ``extra`` flags come last, so they win over the ones here."""
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        for key in ("UPCHECK_CA_FILE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            env.pop(key, None)
        proc = self.start(
            "upcheck",
            [
                *pin(cpu),
                sys.executable,
                "-m",
                "daemon",
                "--targets",
                str(csv),
                "--listen",
                f"127.0.0.1:{port}",
                "--interval",
                f"{interval:g}",
                "--timeout",
                f"{timeout:g}",
                "--concurrency",
                str(concurrency),
                "--reload-interval",
                f"{reload_interval:g}",
                "--publish-interval",
                "3600",
                "--results",
                "-",
                "--log-level",
                "error",
                *extra,
            ],
            cwd=checkout,
            env=env,
        )
        wait_until(lambda: http_get(port, "/ready")[0] == 200, 120, "upcheck /ready")
        return proc, port


@contextlib.contextmanager
def worktree(gitref: str, scratch: Path) -> Iterator[Path]:
    """An older checkout of this repository in a temporary git worktree, removed afterwards."""
    path = scratch / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(path), gitref],
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False
        )
