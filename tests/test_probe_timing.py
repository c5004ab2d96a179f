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
from daemon.probe import kernel_clock
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
    # Not a sub-millisecond round trip: a retransmitted SYN waits out TCP's initial
    # retransmission timeout, 1 s (RFC 6298), whatever the load; a busy machine only adds.
    assert connect >= 0.9, (connect, waited)
    assert result.duration >= connect


def _loopback(host: str, port: int):
    return [(socket.AF_INET, ("127.0.0.1", port))]


HEAD_DELAY = 0.1  # the server's wait before the headers
BODY_DELAY = 0.2  # and between the headers and the body
AFTER_BODY = 0.1  # how long the hub stays held once the body is in

SPLIT_ANSWER = r"""
import socket, sys, time
head_delay, body_delay = float(sys.argv[1]), float(sys.argv[2])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
listener.settimeout(10)
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.settimeout(10)
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each send its own segment
data = b""
while b"\r\n\r\n" not in data:
    chunk = conn.recv(4096)
    if not chunk:
        sys.exit(1)
    data += chunk
print("read", flush=True)
time.sleep(head_delay)
conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\n")
time.sleep(body_delay)
conn.sendall(b"body")
print("sent", flush=True)
conn.close()
"""


def _probe_split_answer(hold_the_loop: bool):
    """Probe a server (its own process) that sends the headers HEAD_DELAY after the request
    and the body BODY_DELAY later, in two segments. With ``hold_the_loop``, a greenlet blocks
    this process's hub from just after the request is sent until the body has arrived.
    Returns the result, how long the hub was held (0 if it was not), and the probe's wall
    time."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SPLIT_ANSWER, str(HEAD_DELAY), str(BODY_DELAY)],
        stdout=subprocess.PIPE,
    )
    block = monkey.get_original("time", "sleep")
    wait = monkey.get_original("select", "select")
    held: list[float] = []

    def hog() -> None:
        """Once the server has the request, holds the hub (no greenlet runs) until the server
        has sent its body, and a little longer so that it has arrived: the headers and the
        body both wait in the kernel."""
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"read\n"  # cooperative: the probe sends meanwhile
        started = time.perf_counter()
        wait([proc.stdout], [], [], 10)  # blocking: the server's "sent" line (bounded)
        block(AFTER_BODY)
        held.append(time.perf_counter() - started)

    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        prober = Prober(ssl.create_default_context(), resolver=_loopback, default_timeout=10)
        hogging = gevent.spawn(hog) if hold_the_loop else None
        started = time.perf_counter()
        result = prober.probe(Target(url=f"http://split.test:{port}/", name="split"))
        wall = time.perf_counter() - started
        if hogging is not None:
            hogging.get(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert result.up, result.error
    assert held or not hold_the_loop
    return result, (held[0] if held else 0.0), wall


@pytest.mark.skipif(sys.platform != "linux", reason="kernel timestamps are Linux's")
def test_headers_and_body_in_separate_segments_split_into_processing_and_transfer():
    result, _, _ = _probe_split_answer(hold_the_loop=False)
    processing, transfer = result.phases[3], result.phases[4]
    # The server's sleeps bound each phase from below.
    assert processing >= HEAD_DELAY * 0.9, result.phases
    assert transfer >= BODY_DELAY * 0.75, result.phases


@pytest.mark.skipif(sys.platform != "linux", reason="kernel timestamps are Linux's")
def test_a_loop_held_through_a_split_answer_charges_the_probe_only_the_servers_time():
    result, _, wall = _probe_split_answer(hold_the_loop=True)
    processing, transfer = result.phases[3], result.phases[4]
    assert processing + transfer >= (HEAD_DELAY + BODY_DELAY) * 0.9, result.phases
    # The body was in before the hub's last AFTER_BODY seconds: they are not the server's.
    assert result.duration <= wall - AFTER_BODY, (result.duration, wall)


@pytest.mark.skipif(sys.platform != "linux", reason="kernel timestamps are Linux's")
@pytest.mark.xfail(
    strict=True,
    reason="Linux keeps one arrival time per queued receive buffer, and when the body's "
    "segment arrives while the headers' is still queued it merges the two and keeps the later "
    "time (tcp_try_coalesce): no read size or MSG_PEEK gets the headers' own time back once "
    "both wait in the kernel. Only something that reads while the hub is held (another OS "
    "thread) could; see kernel_clock's docstring.",
)
def test_a_loop_held_through_a_split_answer_still_splits_processing_from_transfer():
    result, held, _ = _probe_split_answer(hold_the_loop=True)
    processing, transfer = result.phases[3], result.phases[4]
    assert transfer >= BODY_DELAY * 0.75, result.phases
    assert processing < held, (result.phases, held)


_SO_TIMESTAMPNS = 35


@pytest.mark.skipif(sys.platform != "linux", reason="kernel timestamps are Linux's")
def test_a_read_the_kernel_did_not_stamp_is_not_timed_by_another_read():
    """The kernel does not stamp every read: it stamps nothing that arrived while no socket on
    the machine asked for stamps (it turns stamping on and off for the whole system, lazily),
    so a lone probe's first packets may come unstamped. Such a read is switched off here to
    make it certain. A later read's time must not stand in for the first byte's, nor an earlier
    read's for the last byte's: the phase is then unknown (and the probe uses its own clock)."""
    keeper = socket.socket()  # keeps stamping on system-wide while the option is toggled below
    keeper.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    with keeper, socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            stamps = kernel_clock.watch(client)
            assert stamps is not None
            recv = kernel_clock.stamped_recv(client, stamps)

            client.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 0)
            server.sendall(b"head")
            assert recv(64) == b"head"  # unstamped
            client.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            server.sendall(b"body")
            assert recv(64) == b"body"  # stamped
            assert stamps.first is None
            assert stamps.processing(1.0) is None

            client.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 0)
            server.sendall(b"tail")
            assert recv(64) == b"tail"  # unstamped: the last byte's time is unknown
            assert stamps.last is None
            assert stamps.transfer(1.0) is None
