"""Real servers on 127.0.0.1:0 for the probe and daemon tests, well-behaved and hostile.

They run as greenlets in the (gevent-patched) test process, so a test can start a daemon in a
subprocess, or call the probe directly, against real sockets.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import trustme
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class TestServers:
    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, ca: trustme.CA) -> None:
        self.ca = ca
        self._servers: list[Any] = []

    def _tls(
        self,
        hostnames: tuple[str, ...],
        ca: trustme.CA | None,
        not_after: datetime.datetime | None = None,
    ) -> ssl.SSLContext:
        cert = (ca or self.ca).issue_cert(*hostnames, not_after=not_after)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context

    def wsgi(
        self,
        app: Wsgi,
        tls: bool = False,
        hostnames: tuple[str, ...] = ("localhost", "127.0.0.1"),
        ca: trustme.CA | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        not_after: datetime.datetime | None = None,
    ) -> int:
        """Serve a WSGI app; returns the port. ``ca`` issues the certificate (default: trusted),
        valid until ``not_after`` (default: trustme's).

        ``host`` is the loopback address to listen on: ``127.0.0.1``, or ``::1`` for IPv6;
        ``port`` 0 picks a free one.
        """
        kwargs: dict[str, Any] = {"log": None, "error_log": None}
        if tls:
            kwargs["ssl_context"] = self._tls(hostnames, ca, not_after)
        server = WSGIServer((host, port), app, **kwargs)
        server.start()
        self._servers.append(server)
        return int(server.server_port)

    def raw(self, handler: Callable[[socket.socket], None]) -> int:
        """Serve raw TCP: ``handler(sock)`` owns each accepted connection."""

        def handle(sock: socket.socket, _address: Any) -> None:
            with contextlib.suppress(OSError):  # hostile servers expect broken pipes
                handler(sock)

        server = StreamServer(("127.0.0.1", 0), handle)
        server.start()
        self._servers.append(server)
        return int(server.server_port)

    def stop_all(self) -> None:
        for server in self._servers:
            server.stop(timeout=0.5)
        self._servers.clear()


def ipv6_loopback_available() -> bool:
    """True when this machine can listen on ::1 (some containers have no IPv6 at all)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def text_app(status: str = "200 OK", body: bytes = b"hello", headers=()) -> Wsgi:
    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/plain"), *headers])
        return [body]

    return app


def read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def never_answers(sock: socket.socket) -> None:
    read_request(sock)
    gevent.sleep(60)


def trickles(sock: socket.socket) -> None:
    """Headers at once, then one body byte every 0.2 s for a minute."""
    read_request(sock)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n")
    for _ in range(300):
        sock.sendall(b"x")
        gevent.sleep(0.2)


def endless_body(sock: socket.socket) -> None:
    """A chunked body that never ends (bounded here at 64 MiB so the test cannot run away)."""
    read_request(sock)
    sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
    for _ in range(1024):
        sock.sendall(chunk)


def resets(sock: socket.socket) -> None:
    """Reads the request, then aborts the connection with a TCP reset."""
    read_request(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def closes_without_answering(sock: socket.socket) -> None:
    """Reads the request, then closes the connection cleanly (a FIN) without a byte of answer."""
    read_request(sock)
    sock.close()


def garbage(sock: socket.socket) -> None:
    read_request(sock)
    sock.sendall(b"this is not HTTP\r\n\r\n")
    sock.close()
