"""The HTTP face of the daemon, as a WSGI app: /metrics, /health, /ready, /results, / and,
with ``--probe-endpoint``, /probe.

Built by :func:`create_app` from callables, so it can be tested in-process without a scheduler
or a socket, and served by ``gevent.pywsgi`` in production. How ``GET /results`` answers for
each kind of results file lives here too (:func:`results_answer`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from daemon.logs import event
from daemon.model import ProbeResult
from daemon.outputs.exposition import CONTENT_TYPE, Scrape, gzip_chunks, render_probe
from daemon.outputs.page import POLICY
from daemon.outputs.results_file import LocalResultsFile, S3ResultsFile
from daemon.probe_endpoint import ProbeRequestError
from daemon.redact import redact_url

StartResponse = Callable[..., Any]
Answer = tuple[str, list[tuple[str, str]], bytes]
# GET /probe: (target, module, Prometheus's scrape timeout header) -> the probe's result.
ProbeNow = Callable[[str | None, str | None, str | None], ProbeResult]

_TEXT = (("Content-Type", "text/plain; charset=utf-8"),)
_JSON = (("Content-Type", "application/json"), ("Cache-Control", "no-cache"))
# The status page shows names, URLs and errors from the CSV and from the probed servers: it is
# escaped, and this says a browser must run nothing even if something slipped through.
# frame-ancestors works only as a header, not in the page's <meta>.
_HTML = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", f"{POLICY}; frame-ancestors 'none'"),
)
# On every answer: /ready and /health echo text from the CSV; never let a browser sniff it.
_NOSNIFF = ("X-Content-Type-Options", "nosniff")


def results_answer(
    results_file: LocalResultsFile | S3ResultsFile | None,
    written: bool,
    live: Callable[[], bytes],
) -> Answer:
    """``GET /results``: the results file as this process last wrote it (local: the JSON
    itself; S3: a 302 to a presigned link). Before its first write (one publish interval after
    the start), the same document built from the results as they are now, marked
    ``X-Upcheck-Results: live``: a file left by an earlier run is not today's news."""
    if results_file is None:
        return "404 Not Found", list(_TEXT), b"results file disabled\n"
    if written and isinstance(results_file, S3ResultsFile):
        try:
            url = results_file.presigned_url()
        except RuntimeError as exc:
            return "503 Service Unavailable", list(_TEXT), f"{exc}\n".encode()
        return (
            "302 Found",
            [("Location", url), ("Cache-Control", "no-store"), *_TEXT],
            b"see the presigned URL in Location\n",
        )
    if written and isinstance(results_file, LocalResultsFile):
        try:
            return "200 OK", list(_JSON), results_file.read()
        except OSError:
            pass  # removed or replaced behind our back (the publisher says so): build it now
    return "200 OK", [*_JSON, ("X-Upcheck-Results", "live")], live()


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header allows gzip: named (any case) or by ``*``, and not
    with ``q=0``."""
    allowed: dict[str, bool] = {}
    for item in header.split(","):
        coding, _, params = item.partition(";")
        quality = params.strip().lower().replace(" ", "")
        allowed[coding.strip().lower()] = not (
            quality.startswith("q=") and quality[2:].rstrip("0").rstrip(".") in ("", "0")
        )
    if "gzip" in allowed:
        return allowed["gzip"]
    return allowed.get("*", False)


def probe_endpoint_answer(probe: ProbeNow, environ: dict[str, Any]) -> Answer:
    """``GET /probe?target=URL[&module=M][&debug=true]`` as the blackbox exporter answers it:
    the probe's series, or with ``debug=true`` a few readable lines about it first."""
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)

    def first(key: str) -> str | None:
        values = query.get(key)
        return values[0] if values else None

    target, module = first("target"), first("module")
    try:
        result = probe(target, module, environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"))
    except ProbeRequestError as exc:
        return exc.status, [*_TEXT, ("Cache-Control", "no-store")], f"{exc.message}\n".encode()
    body = render_probe(result)
    if first("debug") == "true":
        summary = event(
            "probe",
            target=redact_url(target or ""),
            module=module or "http_2xx",
            result=result.error_kind or "success",
            status=result.status_code,
            error=result.error,
        )
        text = f"Logs for the probe:\n{summary}\n\nMetrics that would have been returned:\n"
        return "200 OK", [*_TEXT, ("Cache-Control", "no-store")], text.encode() + body
    return "200 OK", [("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-store")], body


def create_app(
    metrics: Callable[[], bytes | Scrape],
    health: Callable[[], tuple[bool, str]],
    ready: Callable[[], tuple[bool, str]],
    results: Callable[[], Answer],
    status_page: Callable[[], str],
    probe: ProbeNow | None = None,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The app. ``probe`` serves ``GET /probe`` (``--probe-endpoint``); without it, 404."""

    def probe_answer(check: Callable[[], tuple[bool, str]]) -> Answer:
        ok, reason = check()
        status = "200 OK" if ok else "503 Service Unavailable"
        return status, [*_TEXT, ("Cache-Control", "no-store")], f"{reason}\n".encode()

    def metrics_answer(
        environ: dict[str, Any],
    ) -> tuple[str, list[tuple[str, str]], Iterable[bytes], int]:
        """The body as chunks and its length: ~50 MB at 50k targets is never joined whole."""
        body = metrics()
        headers = [("Content-Type", CONTENT_TYPE), ("Vary", "Accept-Encoding")]
        if accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", "")):
            headers.append(("Content-Encoding", "gzip"))
            if isinstance(body, bytes):
                zipped = gzip_chunks([body])
                return "200 OK", headers, [zipped], len(zipped)
            # A Scrape is shared by concurrent scrapers, and so is its compression.
            chunks, length = body.gzipped_chunks()
            return "200 OK", headers, chunks, length
        if isinstance(body, bytes):
            return "200 OK", headers, [body], len(body)
        return "200 OK", headers, body, body.length

    def page_answer() -> Answer:
        return (
            "200 OK",
            [*_HTML, ("Cache-Control", "no-store")],
            status_page().encode(),
        )

    routes: dict[str, Callable[[], Answer]] = {
        "/health": lambda: probe_answer(health),
        "/ready": lambda: probe_answer(ready),
        "/results": results,
        "/": page_answer,
    }

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        chunks: Iterable[bytes]
        if path == "/metrics" and method in ("GET", "HEAD"):
            status, headers, chunks, length = metrics_answer(environ)
        elif path == "/probe" and probe is not None and method in ("GET", "HEAD"):
            status, headers, body = probe_endpoint_answer(probe, environ)
            chunks, length = [body], len(body)
        else:
            handler = routes.get(path)
            known = path == "/metrics" or (path == "/probe" and probe is not None)
            if handler is None and not known:
                status, headers, body = "404 Not Found", list(_TEXT), b"not found\n"
            elif method not in ("GET", "HEAD"):
                status, headers = "405 Method Not Allowed", [*_TEXT, ("Allow", "GET, HEAD")]
                body = b"method not allowed\n"
            else:
                assert handler is not None
                status, headers, body = handler()
            chunks, length = [body], len(body)
        start_response(status, [*headers, ("Content-Length", str(length)), _NOSNIFF])
        return [b""] if method == "HEAD" else chunks

    return app
