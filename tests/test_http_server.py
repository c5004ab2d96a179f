"""The daemon's HTTP server against hostile clients: more idle connections than it has file
descriptors, and bursts of concurrent scrapes."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import resource
import socket

import gevent
from prometheus_client import CollectorRegistry

from daemon.model import Target
from daemon.outputs.exposition import BODY_TTL, Exposition
from daemon.server import HttpServer
from daemon.store import ResultsStore
from daemon.telemetry import Telemetry
from daemon.web import create_app
from tests import servers as srv
from tests.daemon_process import DaemonProcess
from tests.fakes import result
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


def _store(targets: int) -> ResultsStore:
    store = ResultsStore()
    for i in range(targets):
        target = Target(url=f"https://shop-{i}.example/health", name=f"shop-{i}")
        store.add(target)
        store.record(target, result())
    return store


def _get(port: int, path: str, **headers: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_concurrent_scrapes_share_one_render_and_one_compression_while_health_answers():
    exposition = Exposition(_store(20_000), Telemetry(CollectorRegistry()), clock=lambda: 0.0)
    building = [0]  # /metrics requests whose body is being rendered or compressed right now
    seen_by_health: list[int] = []

    def health() -> tuple[bool, str]:
        seen_by_health.append(building[0])
        return True, "ok"

    app = create_app(
        metrics=exposition.render,
        health=health,
        ready=lambda: (True, "ready"),
        results=lambda: ("404 Not Found", [], b""),
        status_page=lambda: "",
    )

    def counting(environ, start_response):
        if environ["PATH_INFO"] != "/metrics":
            return app(environ, start_response)
        building[0] += 1
        try:
            return app(environ, start_response)
        finally:
            building[0] -= 1

    server = HttpServer(("127.0.0.1", 0), counting, max_connections=100)
    server.start()
    try:
        port = server.server_port
        scrapes = [
            gevent.spawn(_get, port, "/metrics", **{"Accept-Encoding": "gzip"}) for _ in range(60)
        ]

        def poll_health() -> None:
            for _ in range(2000):  # bounded: stops once every scrape is answered
                if all(g.ready() for g in scrapes):
                    return
                assert _get(port, "/health")[0] == 200

        poller = gevent.spawn(poll_health)
        gevent.joinall([*scrapes, poller], timeout=120, raise_error=True)
        assert all(g.successful() for g in [*scrapes, poller])
    finally:
        server.stop(timeout=1)
    bodies = {gzip.decompress(g.value[1]) for g in scrapes}
    assert {g.value[0] for g in scrapes} == {200}
    assert len(bodies) == 1 and b'probe_success{name="shop-19999"' in bodies.pop()
    assert (exposition.renders, exposition.compressions) == (1, 1)
    assert max(seen_by_health) > 0, "/health never ran while a body was being built"


def test_a_body_is_served_again_only_while_nothing_changed_and_it_is_fresh():
    now = [0.0]
    store = _store(3)
    exposition = Exposition(store, Telemetry(CollectorRegistry()), clock=lambda: now[0])
    first = exposition.render()
    assert exposition.render() is first
    target = Target(url="https://shop-0.example/health", name="shop-0")
    store.record(store.get(target.url).target, result(up=False))
    second = exposition.render()  # a new result: a new body
    assert second is not first and b"} 0\n" in bytes(second)
    now[0] += BODY_TTL  # nothing changed, but the daemon's own figures move on
    assert exposition.render() is not second
    assert exposition.renders == 3
