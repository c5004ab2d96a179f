"""``/metrics``: the daemon's own registry plus one set of blackbox-style series per target.

Per-target series are not prometheus_client objects: at 50k targets that would mean ~700k
child objects and a slow scrape. Instead each target's lines are rendered from its latest
result when that result changes, cached on its version, and joined per metric family at scrape
time, so a scrape costs a join over cached strings plus the targets that changed since. The
body is streamed in chunks (:class:`Scrape`) rather than joined whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from operator import itemgetter

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


class Scrape:
    """One /metrics body, handed out in chunks: at 50k targets it is ~50 MB, and joined whole
    it was a fifth of the daemon's peak memory. The pieces are the cached lines themselves,
    so holding them costs a list of references, not a copy."""

    __slots__ = ("_pieces", "length")
    CHUNK = 256 * 1024

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces
        self.length = sum(map(len, pieces))

    def __iter__(self) -> Iterator[bytes]:
        group: list[bytes] = []
        size = 0
        for piece in self._pieces:
            group.append(piece)
            size += len(piece)
            if size >= self.CHUNK:
                yield b"".join(group)
                group, size = [], 0
        if group:
            yield b"".join(group)

    def __bytes__(self) -> bytes:
        return b"".join(self._pieces)


class Exposition:
    def __init__(self, store: ResultsStore, telemetry: Telemetry) -> None:
        self._store = store
        self._telemetry = telemetry
        self._cache: dict[str, _Rendered] = {}
        self._cache_generation = -1

    def render(self) -> Scrape:
        if self._cache_generation != self._store.generation:
            live = {state.target.url for state in self._store.states()}
            for url in [u for u in self._cache if u not in live]:
                del self._cache[url]
            self._cache_generation = self._store.generation
        per_target: list[tuple[bytes, ...]] = []
        cache = self._cache
        for state in self._store.states():
            cached = cache.get(state.target.url)
            if cached is None or cached.state is not state:
                cached = cache[state.target.url] = _Rendered(state, _labels(state.target))
            elif cached.version != state.version:
                cached.version = state.version
                cached.lines = _render(cached.labels, state)
            per_target.append(cached.lines)
        # Every piece in exposition order, joined only chunk by chunk as it is sent.
        parts = [generate_latest(self._telemetry.registry)]
        for index, header in enumerate(_HEADERS):
            parts.append(header)
            parts.extend(map(itemgetter(index), per_target))
        return Scrape(parts)


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
