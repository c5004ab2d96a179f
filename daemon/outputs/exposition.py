"""``/metrics``: the daemon's own registry plus one set of blackbox-style series per target.

Per-target series are not prometheus_client objects: at 50k targets that would mean ~700k
child objects and a slow scrape. Instead each target's lines are rendered from its latest
result when that result changes, cached on its version, and joined per metric family at scrape
time, so a scrape costs a join over cached strings plus the targets that changed since. The
body is streamed in chunks (:class:`Scrape`) rather than joined whole.

Concurrent scrapes share one body and one compression of it: a burst of 200 gzip scrapes at
10k targets, each rendering and compressing its own, held the event loop (and so ``/health``
and the probes' start) for seconds. Building a body pauses for other greenlets every
:data:`PAUSE_EVERY` targets and every compressed chunk.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter

import gevent
from gevent.lock import Semaphore
from prometheus_client import generate_latest

from daemon.model import PHASES, ProbeResult, Target
from daemon.store import ResultsStore, TargetState
from daemon.telemetry import Telemetry

# (name, type, help) in exposition order; the order of the tuple each target renders.
FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("probe_success", "gauge", "Whether the last probe succeeded (1) or failed (0)."),
    ("probe_duration_seconds", "gauge", "How long the last probe took, in seconds."),
    ("probe_http_status_code", "gauge", "HTTP status of the last response; 0 if none."),
    (
        "probe_http_duration_seconds",
        "gauge",
        "Duration of each phase of the last probe, summed over redirects, in seconds.",
    ),
    ("probe_http_content_length", "gauge", "Body length of the last response; -1 if unknown."),
    ("probe_http_redirects", "gauge", "Redirects followed by the last probe."),
    ("probe_http_ssl", "gauge", "1 if the last probe's final URL was https, else 0."),
    (
        "probe_ssl_earliest_cert_expiry",
        "gauge",
        "Unix time of the earliest expiry of a leaf certificate the last probe saw.",
    ),
    ("upcheck_consecutive_failures", "gauge", "Failed probes in a row; 0 after a success."),
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PAUSE_EVERY = 1000  # targets rendered between two pauses for other greenlets
BODY_TTL = 1.0  # seconds a body is served again while the store has not changed
_HEADERS = tuple(
    f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n".encode()
    for name, kind, help_text in FAMILIES
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return repr(float(value)) if value != int(value) else f"{int(value)}"


class _Rendered:
    __slots__ = ("labels", "lines", "state", "version")

    def __init__(self, state: TargetState, labels: str) -> None:
        self.state = state  # a replaced target gets a new state: never reuse its lines
        self.labels = labels  # a target's labels never change: redact and escape them once
        self.version = state.version
        self.lines = _render(labels, state)


def _labels(target: Target) -> str:
    return f'name="{_escape(target.name)}",url="{_escape(target.display_url)}"'


_NOTHING = (b"",) * len(FAMILIES)
assert PHASES == ("resolve", "connect", "tls", "processing", "transfer")  # _render's order


def _render(labels: str, state: TargetState) -> tuple[bytes, ...]:
    """One piece per family (possibly several lines), each ending in a newline.

    Bytes, so that a scrape is a single ``bytes.join`` with no encoding pass over the body.
    """
    result: ProbeResult | None = state.last
    if result is None:
        return _NOTHING
    duration = "probe_http_duration_seconds{" + labels + ',phase="'
    resolve, connect, tls, processing, transfer = result.phases
    phases = (
        f'{duration}resolve"}} {_num(resolve)}\n'
        f'{duration}connect"}} {_num(connect)}\n'
        f'{duration}tls"}} {_num(tls)}\n'
        f'{duration}processing"}} {_num(processing)}\n'
        f'{duration}transfer"}} {_num(transfer)}\n'
    )
    expiry = (
        f"probe_ssl_earliest_cert_expiry{{{labels}}} {_num(result.cert_expiry)}\n"
        if result.cert_expiry is not None
        else ""
    )
    return (
        f"probe_success{{{labels}}} {1 if result.up else 0}\n".encode(),
        f"probe_duration_seconds{{{labels}}} {_num(result.duration)}\n".encode(),
        f"probe_http_status_code{{{labels}}} {result.status_code or 0}\n".encode(),
        phases.encode(),
        f"probe_http_content_length{{{labels}}} {result.content_length}\n".encode(),
        f"probe_http_redirects{{{labels}}} {result.redirects}\n".encode(),
        f"probe_http_ssl{{{labels}}} {1 if result.ssl else 0}\n".encode(),
        expiry.encode(),
        f"upcheck_consecutive_failures{{{labels}}} {state.consecutive_failures}\n".encode(),
    )


def _let_others_run() -> None:
    gevent.sleep(0)


def gzip_chunks(chunks: Iterable[bytes], pause: Callable[[], None] = _let_others_run) -> bytes:
    """gzip, level 1 (a scrape is compressed once and read once), chunk by chunk, with
    ``pause()`` after each chunk."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: with the gzip header
    out = []
    for chunk in chunks:
        out.append(compressor.compress(chunk))
        pause()
    out.append(compressor.flush())
    return b"".join(out)


class Scrape:
    """One /metrics body, handed out in chunks: at 50k targets it is ~50 MB, and joined whole
    it was a fifth of the daemon's peak memory. The pieces are the cached lines themselves,
    so holding them costs a list of references, not a copy. Shared by every scraper that
    asks while it is current; :meth:`gzipped` compresses it once for all of them."""

    __slots__ = ("_gzip_lock", "_gzipped", "_on_compress", "_pause", "_pieces", "length")
    CHUNK = 256 * 1024

    def __init__(
        self,
        pieces: list[bytes],
        length: int | None = None,
        pause: Callable[[], None] = _let_others_run,
        on_compress: Callable[[], None] | None = None,
    ) -> None:
        self._pieces = pieces
        self.length = sum(map(len, pieces)) if length is None else length
        self._pause = pause
        self._on_compress = on_compress
        self._gzip_lock = Semaphore()
        self._gzipped: bytes | None = None

    def gzipped(self) -> bytes:
        """The body gzipped: compressed by the first scraper that asks, while those asking
        meanwhile wait for it rather than compress it again."""
        with self._gzip_lock:
            if self._gzipped is None:
                if self._on_compress is not None:
                    self._on_compress()
                self._gzipped = gzip_chunks(self, self._pause)
            return self._gzipped

    def __iter__(self) -> Iterator[bytes]:
        """The body in chunks of about :attr:`CHUNK` bytes, with a pause between two."""
        group: list[bytes] = []
        size = 0
        for piece in self._pieces:
            group.append(piece)
            size += len(piece)
            if size >= self.CHUNK:
                yield b"".join(group)
                self._pause()
                group, size = [], 0
        if group:
            yield b"".join(group)

    def gzipped_chunks(self) -> tuple[Iterator[bytes], int]:
        """The gzipped body in slices of :attr:`CHUNK` bytes, with a pause between two, and
        its length. On loopback one write can hand the kernel megabytes at once: 200 scrapers
        each writing a whole body in one turn of the event loop held ``/health`` for seconds."""
        data = self.gzipped()

        def slices() -> Iterator[bytes]:
            view = memoryview(data)
            for start in range(0, len(data), self.CHUNK):
                if start:
                    self._pause()
                yield bytes(view[start : start + self.CHUNK])

        return slices(), len(data)

    def __bytes__(self) -> bytes:
        return b"".join(self._pieces)


class Exposition:
    """Builds /metrics bodies, at most one at a time, shared by the scrapers that want one.

    A scraper arriving while a body is being built waits for that body and takes it; one
    arriving later takes the last body again if no result changed since (the store's
    ``version``) and it is under :data:`BODY_TTL` old (the daemon's own figures move on too).
    ``renders`` and ``compressions`` count the bodies built and gzipped.
    """

    def __init__(
        self,
        store: ResultsStore,
        telemetry: Telemetry,
        pause: Callable[[], None] = _let_others_run,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._telemetry = telemetry
        self._pause = pause
        self._clock = clock
        self._cache: dict[str, _Rendered] = {}
        self._cache_generation = -1
        # One build at a time: concurrent scrapers wait here, then take the body just built.
        self._lock = Semaphore()
        self._body: Scrape | None = None
        self._body_version = -1
        self._body_at = 0.0
        self._built = 0  # bodies finished (``renders`` counts those started)
        self.renders = 0
        self.compressions = 0

    def render(self) -> Scrape:
        """The current body: the one being built when this was called, the last one if it is
        still current, or a new one."""
        built_before = self._built
        with self._lock:
            body = self._body
            if body is not None and (
                self._built != built_before  # finished while this scraper waited
                or (
                    self._body_version == self._store.version
                    and self._clock() - self._body_at < BODY_TTL
                )
            ):
                return body
            self.renders += 1
            version, at = self._store.version, self._clock()
            body = self._body = self._build()
            self._body_version, self._body_at = version, at
            self._built += 1
            return body

    def _counted_compression(self) -> None:
        self.compressions += 1

    def _build(self) -> Scrape:
        pause = self._pause
        if self._cache_generation != self._store.generation:
            live = {state.target.url for state in self._store.states()}
            for url in [u for u in self._cache if u not in live]:
                del self._cache[url]
            self._cache_generation = self._store.generation
        per_target: list[tuple[bytes, ...]] = []
        cache = self._cache
        for count, state in enumerate(self._store.states(), 1):
            cached = cache.get(state.target.url)
            if cached is None or cached.state is not state:
                cached = cache[state.target.url] = _Rendered(state, _labels(state.target))
            elif cached.version != state.version:
                cached.version = state.version
                cached.lines = _render(cached.labels, state)
            per_target.append(cached.lines)
            if count % PAUSE_EVERY == 0:
                pause()
        # Every piece in exposition order, joined only chunk by chunk as it is sent.
        parts = [generate_latest(self._telemetry.registry)]
        length = len(parts[0])
        for index, header in enumerate(_HEADERS):
            family = list(map(itemgetter(index), per_target))
            length += len(header) + sum(map(len, family))
            parts.append(header)
            parts.extend(family)
            pause()
        return Scrape(parts, length, pause, self._counted_compression)


def _gauge(name: str, help_text: str, samples: str) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} gauge\n{samples}"


def render_probe(result: ProbeResult) -> bytes:
    """One probe as ``GET /probe`` answers it: the blackbox exporter's series, names and help
    texts, without labels (Prometheus adds ``instance`` and ``job`` from its job config)."""
    resolve, connect, tls, processing, transfer = result.phases
    phases = "".join(
        f'probe_http_duration_seconds{{phase="{phase}"}} {_num(seconds)}\n'
        for phase, seconds in (
            ("connect", connect),
            ("processing", processing),
            ("resolve", resolve),
            ("tls", tls),
            ("transfer", transfer),
        )
    )
    parts = [
        _gauge(
            "probe_dns_lookup_time_seconds",
            "Returns the time taken for probe dns lookup in seconds",
            f"probe_dns_lookup_time_seconds {_num(resolve)}\n",
        ),
        _gauge(
            "probe_duration_seconds",
            "Returns how long the probe took to complete in seconds",
            f"probe_duration_seconds {_num(result.duration)}\n",
        ),
        _gauge(
            "probe_http_content_length",
            "Length of http content response",
            f"probe_http_content_length {result.content_length}\n",
        ),
        _gauge(
            "probe_http_duration_seconds",
            "Duration of http request by phase, summed over all redirects",
            phases,
        ),
        _gauge(
            "probe_http_redirects",
            "The number of redirects",
            f"probe_http_redirects {result.redirects}\n",
        ),
        _gauge(
            "probe_http_ssl",
            "Indicates if SSL was used for the final redirect",
            f"probe_http_ssl {1 if result.ssl else 0}\n",
        ),
        _gauge(
            "probe_http_status_code",
            "Response HTTP status code",
            f"probe_http_status_code {result.status_code or 0}\n",
        ),
    ]
    if result.cert_expiry is not None:
        parts.append(
            _gauge(
                "probe_ssl_earliest_cert_expiry",
                "Returns last SSL chain expiry in unixtime",
                f"probe_ssl_earliest_cert_expiry {_num(result.cert_expiry)}\n",
            )
        )
    parts.append(
        _gauge(
            "probe_success",
            "Displays whether or not the probe was a success",
            f"probe_success {1 if result.up else 0}\n",
        )
    )
    return "".join(parts).encode()
