"""A small local web server with well-behaved and badly-behaved pages, for ``make run``.

Listens on 127.0.0.1 only. Every page is deterministic so a newcomer can tell at a glance that
upcheck reports each one right:

  /            200, a short page            /slow       200 after 1.5 s
  /api/health  200, JSON {"status": "ok"}   /error      500
  /redirect    302 -> /                     /hang       accepts, never answers
  /flaky       200 and 503 in turn          /big        200, 256 KiB body
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import itertools  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

_flaky = itertools.cycle((True, False))
_BIG = b"x" * (256 * 1024)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    text = [("Content-Type", "text/plain; charset=utf-8")]
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [b"<!doctype html><title>demo</title><h1>Welcome to the demo shop</h1>"]
    if path == "/api/health":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"status": "ok"}']
    if path == "/slow":
        gevent.sleep(1.5)
        start_response("200 OK", text)
        return [b"finally\n"]
    if path == "/error":
        start_response("500 Internal Server Error", text)
        return [b"something broke\n"]
    if path == "/redirect":
        start_response("302 Found", [("Location", "/"), *text])
        return [b""]
    if path == "/hang":
        gevent.sleep(3600)
    if path == "/flaky":
        if next(_flaky):
            start_response("200 OK", text)
            return [b"fine this time\n"]
        start_response("503 Service Unavailable", text)
        return [b"try again\n"]
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [_BIG]
    start_response("404 Not Found", text)
    return [b"not found\n"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8081)
    port = parser.parse_args().port
    server = WSGIServer(("127.0.0.1", port), app, log=None)
    server.start()
    print(f"demo targets: http://127.0.0.1:{server.server_port}/", file=sys.stderr, flush=True)
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    stop.wait()
    server.stop(timeout=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
