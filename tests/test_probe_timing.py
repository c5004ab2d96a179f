"""Plain-http phases are timed by the kernel: a busy event loop does not inflate them.

The server runs in a process of its own, so it answers while this process's hub is blocked.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import gevent
import pytest
from gevent import monkey

from daemon.probe import Prober
from daemon.targets import Target


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
