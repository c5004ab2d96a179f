"""Plain-http phases are timed by the kernel: a busy event loop does not inflate them.

The server runs in a process of its own, so it answers while this process's hub is blocked.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import time

import gevent
import pytest
from gevent import monkey

from daemon.model import Target
from daemon.probe.prober import Prober


@pytest.fixture
def process_server(tmp_path):
    """``python -m http.server`` on 127.0.0.1, in its own process; yields its port."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (...)"
        match = re.search(r"port (\d+)", line)
        assert match, line
        yield int(match.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(sys.platform != "linux", reason="kernel timestamps are Linux's")
def test_time_the_event_loop_was_blocked_is_not_charged_to_a_plain_http_probe(
    process_server, client_ssl_context
):
    block = monkey.get_original("time", "sleep")
    blocked: list[float] = []

    def hog() -> None:
        """Holds the hub, as a burst of other greenlets' work would."""
        started = time.perf_counter()
        block(1.0)
        blocked.append(time.perf_counter() - started)

    def resolver(host: str, port: int):
        gevent.spawn(hog)  # runs as soon as the probe waits on its socket
        return [(socket.AF_INET, ("127.0.0.1", port))]

    prober = Prober(client_ssl_context, resolver=resolver, default_timeout=5)
    started = time.perf_counter()
    result = prober.probe(Target(url=f"http://hog.test:{process_server}/", name="hog"))
    wall = time.perf_counter() - started
    assert result.up, result.error
    assert blocked and wall >= blocked[0]  # the probe lived through the block...
    assert result.duration < blocked[0]  # ...and its timings do not contain it
    assert result.duration == sum(result.phases)


SLOW_ACCEPT = r"""
import socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(0)
port = listener.getsockname()[1]
fillers = []  # fill the accept queue: the next SYN is dropped and must be sent again
for _ in range(3):
    filler = socket.socket()
    filler.setblocking(False)
    filler.connect_ex(("127.0.0.1", port))
    fillers.append(filler)
print(port, flush=True)
sys.stdin.readline()  # the probe's SYN has been sent (and dropped)
time.sleep(0.3)
listener.settimeout(0.2)
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        conn, _ = listener.accept()
    except socket.timeout:
        continue
    conn.settimeout(1)
    try:
        if conn.recv(65536):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    except OSError:
        pass
    conn.close()
"""


def test_a_connect_that_needed_a_syn_retransmit_counts_its_whole_wait():
    """The kernel's round trip covers only the last handshake: after a retransmitted SYN the
    connect phase must be the time connect really took, not that round trip."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_ACCEPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        prober = Prober(ssl.create_default_context(), resolver=_loopback, default_timeout=8)
        probing = gevent.spawn(prober.probe, Target(url=f"http://x.test:{port}/", name="x"))
        gevent.sleep(0.2)  # the SYN is out and dropped by the full queue
        proc.stdin.write("go\n")
        proc.stdin.flush()
        started = time.perf_counter()
        result = probing.get(timeout=15)
        waited = time.perf_counter() - started
    finally:
        proc.kill()
        proc.wait()
    assert result.up, result.error
    connect = result.phases[1]
    assert connect >= waited * 0.5, (connect, waited)  # not a sub-millisecond round trip
    assert result.duration >= connect


def _loopback(host: str, port: int):
    return [(socket.AF_INET, ("127.0.0.1", port))]
