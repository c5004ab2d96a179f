"""The HTTP face of the daemon, as a WSGI app: /metrics, /health, /ready, /results and /.

Built by :func:`create_app` from callables, so it can be tested in-process without a scheduler
or a socket, and served by ``gevent.pywsgi`` in production.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable
from typing import Any

from daemon.exposition import CONTENT_TYPE

StartResponse = Callable[..., Any]
Answer = tuple[str, list[tuple[str, str]], bytes]

_TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def create_app(
    metrics: Callable[[], bytes],
    health: Callable[[], tuple[bool, str]],
    ready: Callable[[], tuple[bool, str]],
    results: Callable[[], Answer],
    status_page: Callable[[], str],
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def probe_answer(check: Callable[[], tuple[bool, str]]) -> Answer:
        ok, reason = check()
        status = "200 OK" if ok else "503 Service Unavailable"
        return status, [*_TEXT, ("Cache-Control", "no-store")], f"{reason}\n".encode()

    def metrics_answer() -> Answer:
        return "200 OK", [("Content-Type", CONTENT_TYPE)], metrics()

    def page_answer() -> Answer:
        return (
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
            status_page().encode(),
        )

    routes: dict[str, Callable[[], Answer]] = {
        "/metrics": metrics_answer,
        "/health": lambda: probe_answer(health),
        "/ready": lambda: probe_answer(ready),
        "/results": results,
        "/": page_answer,
    }

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        handler = routes.get(path)
        if handler is None:
            status, headers, body = "404 Not Found", list(_TEXT), b"not found\n"
        elif method not in ("GET", "HEAD"):
            status, headers = "405 Method Not Allowed", [*_TEXT, ("Allow", "GET, HEAD")]
            body = b"method not allowed\n"
        else:
            status, headers, body = handler()
            if path == "/metrics" and "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
                body = gzip.compress(body, compresslevel=1)
                headers = [*headers, ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        headers = [*headers, ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [b""] if method == "HEAD" else [body]

    return app
