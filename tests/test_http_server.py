"""The daemon's HTTP server against hostile clients: more idle connections than it has file
descriptors."""

from __future__ import annotations

import contextlib
import resource
import socket

from tests import servers as srv
from tests.daemon_process import DaemonProcess
from tests.support import need_binary, wait_until

NOFILE = 160  # the daemon's RLIMIT_NOFILE, soft and hard: far fewer than the idle clients


def _nofile(soft: int, hard: int) -> tuple[str, ...]:
    """A wrapper that starts the daemon with these limits on open files."""
    return (need_binary("prlimit"), f"--nofile={soft}:{hard}", "--")


def _answers(daemon: DaemonProcess, path: str) -> bool:
    try:
        return daemon.get(path)[0] == 200
    except OSError:  # refused, reset or timed out: not an answer
        return False


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False  # still open, nothing to read
    except OSError:
        return True  # reset


def test_idle_connections_past_the_descriptor_limit_leave_health_and_targets_alone(
    tmp_path, servers
):
    port = servers.wsgi(srv.text_app(body=b"fine"))
    csv = tmp_path / "urls.csv"
    csv.write_text(
        "url,name\n" + "".join(f"http://127.0.0.1:{port}/t{i},t{i}\n" for i in range(100))
    )
    args = ("--targets", str(csv), "--results", "-", "--interval", "1", "--timeout", "1")
    with DaemonProcess(*args, log=tmp_path / "log", wrapper=_nofile(NOFILE, NOFILE)) as daemon:

        def all_up() -> bool:
            samples = daemon.metrics()
            up = [v for k, v in samples.items() if k.startswith("probe_success{")]
            return len(up) == 100 and all(v == 1 for v in up)

        wait_until(all_up, timeout=20, what="all 100 targets up")
        idle: list[socket.socket] = []
        try:
            for _ in range(NOFILE + 100):  # each would hold one of the daemon's descriptors
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", daemon.port))
                idle.append(sock)
            wait_until(lambda: _answers(daemon, "/health"), timeout=20, what="/health")

            def probes() -> float:
                samples = daemon.metrics()
                return sum(v for k, v in samples.items() if k.startswith("upcheck_probes_total"))

            # Two more rounds of every target while the idle clients are still connected.
            before = probes()
            wait_until(lambda: probes() >= before + 200, timeout=20, what="two probe rounds")
            assert all_up(), "a target went down while the daemon was short of descriptors"
            log = daemon.log()
            assert "Too many open files" not in log
            assert "Traceback" not in log
            # The server made room by closing idle clients rather than holding them all.
            assert sum(_closed_by_peer(sock) for sock in idle) > 0
        finally:
            for sock in idle:
                with contextlib.suppress(OSError):
                    sock.close()


def test_the_daemon_raises_its_open_files_limit_and_sizes_its_server_below_it(tmp_path, servers):
    port = servers.wsgi(srv.text_app())
    csv = tmp_path / "urls.csv"
    csv.write_text(f"url,name\nhttp://127.0.0.1:{port}/,local\n")

    args = ("--targets", str(csv), "--results", "-", "--concurrency", "50")
    wrapper = _nofile(NOFILE, 2 * NOFILE)
    with DaemonProcess(*args, log=tmp_path / "log", wrapper=wrapper) as daemon:
        assert resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE) == (2 * NOFILE,) * 2
        started = wait_until(
            lambda: next(
                (line for line in daemon.log().splitlines() if "event=started" in line), None
            )
        )
    # (320 descriptors - 50 probe slots - 64 of its own) / 2
    assert f"fd_limit={2 * NOFILE} max_connections=103" in started
