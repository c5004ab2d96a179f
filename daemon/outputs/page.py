"""The HTML status page, rendered from the results document alone, so the copy published
beside the results file is the same page ``GET /`` shows.

One self-contained file: inline CSS and SVG, no script, font, image or style from anywhere
(it works as a private S3 object, behind a proxy, offline, and under a Content-Security-Policy
of ``default-src 'none'; style-src 'unsafe-inline'``). State is always written in words; colour
only repeats it.

The URLs are in four sections, failing ones first: down, up but with failures in the last
24 hours or among the last probes ("unsteady"), not probed yet, and up. Every URL is on the
page. A list of up to :data:`FULL_PAGE` URLs is shown whole, a row per URL (status, latency,
sparklines, uptime, certificate, last error, last check). In a longer one, :data:`FULL_ROWS`
URLs get a row, down ones first, then unsteady ones, and the others one compact line: the name
and the uptime, or only the name under a heading when the uptime is 100% in all three windows
(about 6 bytes beside the name). 50,000 URLs named like ``s12345`` make a page of about 0.8 MB,
named like ``api-12345.example.com`` about 1.5 MB; it renders in a browser in a second or two.

The filter is a set of links to the sections (``#down``, ``#unsteady``, ``#pending``,
``#up``): the one targeted is shown alone (CSS ``:target``), so a filtered view can be
bookmarked and works without a script.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from html import escape
from operator import itemgetter
from types import MappingProxyType
from typing import Any

from daemon.store import bucket_series

# What the page may load: nothing but its own inline style (no script, no frame, no form, no
# base). A <meta> carries it too, for copies served without our headers (the S3 object).
POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none';"
    " form-action 'none'"
)

FULL_PAGE = 1000  # a list this long or shorter: every URL in full
FULL_ROWS = 300  # a longer one: this many in full, failing ones first; the rest compact
CHUNK = 500  # compact lines per list, each laid out only when scrolled into view
PAUSE_EVERY = 1000  # entries between two calls of ``pause``

ERROR_WORDS = MappingProxyType(
    {
        "dns": "name not found (DNS)",
        "connect": "connection refused or unreachable",
        "tls": "TLS handshake failed",
        "timeout": "no complete answer in time",
        "http_status": "unexpected HTTP status",
        "body_mismatch": "body check failed",
        "slow": "answered too slowly",
        "too_many_redirects": "too many redirects",
        "too_large": "body too large",
        "protocol": "broken HTTP exchange",
        "blocked": "address blocked (link-local or metadata)",
    }
)

_STYLE = """
:root{color-scheme:light dark;--fg:#1d2127;--mute:#5b6470;--bg:#fafbfc;--card:#fff;
--line:#e3e6ea;--head:#f1f3f6;--ok:#1f8f45;--okbg:#d7f5dd;--bad:#c0302b;--badbg:#fde0df;
--warn:#9a6200;--warnbg:#fdf0d2;--none:#9aa3ad}
@media(prefers-color-scheme:dark){:root{--fg:#e6e9ee;--mute:#9aa3ad;--bg:#15181c;
--card:#1d2127;--line:#2e343c;--head:#252a31;--okbg:#173d24;--badbg:#4a1d1b;--warnbg:#43330f}}
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;padding:1rem;max-width:90rem;
color:var(--fg);background:var(--bg)}
h1{font-size:1.35rem;margin:0}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.meta,.note{color:var(--mute);font-size:.85rem}
.banner{margin:.6rem 0;padding:.7rem 1rem;border-radius:.5rem;font-size:1.05rem;
border-left:.4rem solid var(--ok);background:var(--okbg)}
.banner.bad{border-color:var(--bad);background:var(--badbg)}
.banner.warn{border-color:var(--warn);background:var(--warnbg)}
nav{display:flex;flex-wrap:wrap;gap:.4rem;margin:.8rem 0}
nav a{padding:.25rem .8rem;border:1px solid var(--line);border-radius:1rem;color:inherit;
text-decoration:none;background:var(--card)}
nav a:focus-visible,nav a:hover{outline:2px solid var(--mute)}
main:has(>section:target)>section:not(:target){display:none}
body:has(#down:target) a[href="#down"],body:has(#unsteady:target) a[href="#unsteady"],
body:has(#pending:target) a[href="#pending"],body:has(#up:target) a[href="#up"],
body:not(:has(section:target)) a[href="#all"]{background:var(--fg);color:var(--bg)}
.s{display:inline-block;min-width:4.5em;padding:0 .5em;border-radius:1em;font-weight:600;
text-align:center;font-size:.85rem}
.s-down{background:var(--badbg);color:var(--bad)}.s-up{background:var(--okbg);color:var(--ok)}
.s-pending{background:var(--head);color:var(--mute)}
@media(prefers-color-scheme:dark){.s-down{color:#ff8a84}.s-up{color:#7ddc97}}
table{border-collapse:collapse;width:100%;background:var(--card);table-layout:fixed}
th:nth-child(1){width:5rem}th:nth-child(3){width:3.6rem}th:nth-child(4){width:4.6rem}
th:nth-child(5){width:8rem}th:nth-child(6){width:11.5rem}th:nth-child(7){width:6.5rem}
th:nth-child(9){width:5.5rem}td:nth-child(6){white-space:nowrap}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);
vertical-align:top}
th{background:var(--head);font-weight:600;font-size:.85rem}
td:nth-child(3),td:nth-child(4){text-align:right;font-variant-numeric:tabular-nums}
.u{color:var(--mute);font-size:.8rem;word-break:break-all}
.e{color:var(--bad);font-weight:600}.w{color:var(--warn);font-weight:600}
svg{display:block;width:7.5rem;height:1.1rem;margin-bottom:.2rem}
.lat{fill:none;stroke:var(--mute);stroke-width:1.5;vector-effect:non-scaling-stroke}
.ko{stroke:var(--bad);stroke-width:2;vector-effect:non-scaling-stroke}
.a0,.a1,.a2,.a3{stroke-width:14;stroke-dasharray:.8 .2}.a0{stroke:var(--line)}
.a1{stroke:var(--ok)}.a2{stroke:var(--warn)}.a3{stroke:var(--bad)}
ol{list-style:none;margin:0;padding:0;display:grid;gap:0 1.2rem;
grid-template-columns:repeat(auto-fill,minmax(15rem,1fr));
content-visibility:auto;contain-intrinsic-size:auto 6000px}
li{display:flex;justify-content:space-between;gap:.6rem;padding:.12rem 0;
border-bottom:1px solid var(--line);overflow-wrap:anywhere}
li b{font-weight:400;color:var(--mute);white-space:nowrap;font-variant-numeric:tabular-nums}
@media(max-width:48rem){thead{display:none}table,tbody,tr,td{display:block}
tr{border-bottom:2px solid var(--line);padding:.3rem 0}td{border:0;padding:.1rem .3rem}
td:nth-child(3),td:nth-child(4){text-align:left}
td:nth-child(n+3)::before{color:var(--mute);font-size:.8rem}
td:nth-child(3)::before{content:"status "}td:nth-child(4)::before{content:"latency "}
td:nth-child(6)::before{content:"uptime 1 h · 24 h · 7 d: "}
td:nth-child(7)::before{content:"certificate: "}td:nth-child(9)::before{content:"checked "}}
"""

_HEAD = (
    '<thead><tr><th scope="col">state<th scope="col">target<th scope="col">status'
    '<th scope="col">latency<th scope="col">recent<th scope="col">uptime 1 h · 24 h · 7 d'
    '<th scope="col">certificate<th scope="col">last error<th scope="col">checked</thead>'
)

_SECTIONS = (
    ("down", "Down"),
    ("unsteady", "Up, with recent failures"),
    ("pending", "Not probed yet"),
    ("up", "Up"),
)


_ALL_UP = MappingProxyType({"1h": 1.0, "24h": 1.0, "7d": 1.0})


def _parsed(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def percent(ratio: Any) -> str:
    """An uptime ratio as text; never rounded up to 100% unless every probe succeeded."""
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or math.isnan(ratio):
        return "n/a"
    if ratio >= 1:
        return "100%"
    value = max(ratio, 0.0) * 100
    digits = 2 if value >= 99 else 1
    scale = 10**digits
    return f"{math.floor(value * scale) / scale:.{digits}f}%"


def uptime_text(uptime: Any) -> str:
    """1 h · 24 h · 7 d, or one figure when all three are the same."""
    if uptime == _ALL_UP:
        return "100%"
    if not isinstance(uptime, dict):
        uptime = {}
    figures = [percent(uptime.get(key)) for key in ("1h", "24h", "7d")]
    if figures[0] == figures[1] == figures[2]:
        return figures[0]
    return " · ".join(figures)


def _kind(entry: dict[str, Any]) -> str:
    up = entry.get("up")
    if up is False:
        return "down"
    if up is None:
        return "pending"
    uptime = entry.get("uptime")
    day = uptime.get("24h") if isinstance(uptime, dict) else None
    if isinstance(day, int | float) and day < 1:
        return "unsteady"
    failed = entry.get("recent_failure")  # a brief entry (see render_status_page)
    if failed is None:
        history = entry.get("history")
        failed = isinstance(history, list) and None in history
    return "unsteady" if failed else "up"


def _ago(seconds: float) -> str:
    seconds = max(seconds, 0)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def latency_svg(history: Any) -> str:
    """The recent probes: response times as a line, failures as red ticks."""
    if not isinstance(history, list) or not history:
        return ""
    values = [
        v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in history
    ]
    times = [v for v in values if v is not None]
    top = max(times, default=0) or 1.0
    step = 95 / max(len(values) - 1, 1)
    line, ticks = [], []
    for i, value in enumerate(values):
        x = f"{i * step:.3g}"
        if value is None:
            ticks.append(f"M{x} 1V17")
        else:
            line.append(f"{x},{16 - 14 * value / top:.0f}")
    label = f"last {len(values)} probes: {len(values) - len(times)} failed"
    if times:
        label += f", {min(times):.0f} to {max(times):.0f} ms"
    parts = [
        f'<svg viewBox="0 0 95 18" preserveAspectRatio="none" role="img"><title>{label}</title>'
    ]
    if len(line) > 1:
        parts.append(f'<polyline class="lat" points="{" ".join(line)}"/>')
    elif line:
        parts.append(f'<path class="lat" d="M{line[0].replace(",", " ")}h2"/>')
    if ticks:
        parts.append(f'<path class="ko" d="{"".join(ticks)}"/>')
    return "".join(parts) + "</svg>"


def availability_svg(buckets: Any, now: float, hours: int = 24) -> str:
    """One bar per hour of the last ``hours``: all probes up, some failed, all failed, none.

    Bars of one kind side by side are one dashed line (the dashes are the bars), so a day
    without a failure costs a few bytes, not one shape per hour."""
    series = bucket_series(buckets, now, hours)
    if series is None:
        return ""
    kinds = ["a0" if r is None else "a1" if r >= 1 else "a3" if r == 0 else "a2" for r in series]
    runs: dict[str, list[str]] = {}
    start = 0
    for i in range(1, hours + 1):
        if i == hours or kinds[i] != kinds[start]:
            runs.setdefault(kinds[start], []).append(f"M{start} 9H{i}")
            start = i
    label = (
        f"last {hours} hours: {kinds.count('a1')} all up, {kinds.count('a2')} with failures, "
        f"{kinds.count('a3')} all down, {kinds.count('a0')} not probed"
    )
    body = "".join(f'<path class="{kind}" d="{"".join(d)}"/>' for kind, d in runs.items())
    return (
        f'<svg viewBox="0 0 {hours} 18" preserveAspectRatio="none" role="img">'
        f"<title>{label}</title>{body}</svg>"
    )


def _certificate(entry: dict[str, Any], now: float) -> str:
    expiry = _parsed(entry.get("cert_expires_at"))
    if expiry is None:
        return "n/a"
    days = math.floor((expiry - now) / 86400)
    if days < 0:
        return f'<span class="e">expired {-days} d ago</span>'
    if days < 14:
        return f'<span class="w">{days} d left</span>'
    return f"{days} d left"


def _error(entry: dict[str, Any], kind: str) -> str:
    error_kind = entry.get("error_kind")
    streak = entry.get("consecutive_failures")
    if error_kind:
        words = ERROR_WORDS.get(str(error_kind), str(error_kind))
        text = f'<span class="e">{escape(words)}</span>'
        if entry.get("error"):
            text += f": {escape(str(entry['error']))}"
        attempts = entry.get("attempts")
        if isinstance(attempts, int) and attempts > 1:
            text += f" (after {attempts} attempts)"
        if isinstance(streak, int) and streak > 1:
            text += f" · {streak} failures in a row"
        return text
    history = entry.get("history")
    if kind == "unsteady" and isinstance(history, list):
        failed = sum(1 for v in history if v is None)
        if failed:
            return f'<span class="w">{failed} of the last {len(history)} probes failed</span>'
        return '<span class="w">failures earlier today</span>'
    return ""


def _row(entry: dict[str, Any], kind: str, now: float) -> str:
    state = "down" if kind == "down" else "pending" if kind == "pending" else "up"
    latency = entry.get("response_time_ms")
    checked = entry.get("checked_at")
    checked_at = _parsed(checked)
    when = (
        f'<time datetime="{escape(checked)}">{_ago(now - checked_at)}</time>'
        if checked_at is not None and isinstance(checked, str)
        else "not yet"
    )
    status = entry.get("status_code")
    return (
        f'<tr><td><b class="s s-{state}">{state}</b>'
        f"<td><strong>{escape(str(entry.get('name', '')))}</strong>"
        f'<div class="u">{escape(str(entry.get("url", "")))}</div>'
        f"<td>{'' if status is None else escape(str(status))}"
        f"<td>{'' if not isinstance(latency, int | float) else f'{latency:.0f} ms'}"
        f"<td>{latency_svg(entry.get('history'))}"
        f"{availability_svg(entry.get('uptime_buckets'), now)}"
        f"<td>{uptime_text(entry.get('uptime'))}"
        f"<td>{_certificate(entry, now)}"
        f"<td>{_error(entry, kind)}"
        f"<td>{when}\n"
    )


# One URL as the page keeps it while it sorts and groups the whole list: (sort key, index in
# the results, name, uptime text). The entry itself is read again only for a full row (with a
# lazy document, entries are built on each read).
_Line = tuple[Any, int, str, str]


def _lines(lines: list[_Line], with_uptime: bool, pause: Callable[[], None] | None) -> list[str]:
    """Compact lines, in lists of :data:`CHUNK` (the browser lays out only those in view)."""
    out = []
    for start in range(0, len(lines), CHUNK):
        out.append("<ol>")
        chunk = lines[start : start + CHUNK]
        if with_uptime:
            out.extend(f"<li>{escape(name)} <b>{up}</b>\n" for _, _, name, up in chunk)
        else:
            out.extend(f"<li>{escape(name)}\n" for _, _, name, _ in chunk)
        out.append("</ol>")
        if pause is not None:
            pause()
    return out


def _line(index: int, entry: dict[str, Any], kind: str) -> _Line:
    name = str(entry.get("name", ""))
    uptime = entry.get("uptime")
    if kind != "unsteady":
        return name.lower(), index, name, uptime_text(uptime)
    day = uptime.get("24h") if isinstance(uptime, dict) else None  # the least available first
    return (
        (day if isinstance(day, int | float) else 1.0, name.lower()),
        index,
        name,
        uptime_text(uptime),
    )


def render_status_page(
    document: dict[str, Any],
    refresh_seconds: int | None = None,
    pause: Callable[[], None] | None = None,
) -> str:
    """The page for ``document``. ``pause`` is called every :data:`PAUSE_EVERY` targets, so
    that with gevent a large page does not hold up the probes running meanwhile.

    Every entry is read once to sort and group it, and again only for a full row. When the
    results offer ``brief(index)`` (the daemon's own, built as they are read), the first read
    takes that: ``name``, ``up``, ``uptime`` and ``recent_failure``, a few times cheaper."""
    now = _parsed(document.get("generated_at")) or 0.0
    results = document.get("results") or []
    brief: Callable[[int], dict[str, Any]] = getattr(results, "brief", results.__getitem__)
    groups: dict[str, list[_Line]] = {key: [] for key, _ in _SECTIONS}
    for index in range(len(results)):
        entry = brief(index)
        kind = _kind(entry)
        groups[kind].append(_line(index, entry, kind))
        if pause is not None and (index + 1) % PAUSE_EVERY == 0:
            pause()
    for group in groups.values():
        group.sort(key=itemgetter(0))  # stable: equal names stay in the results' order
        if pause is not None:
            pause()
    total = len(results)
    budget = total if total <= FULL_PAGE else FULL_ROWS
    out: list[str] = []
    for key, title in _SECTIONS:
        group = groups[key]
        if not group:
            continue
        full = min(len(group), budget) if total <= FULL_PAGE or key in ("down", "unsteady") else 0
        budget -= full
        out.append(f'<section id="{key}" aria-labelledby="h-{key}">')
        out.append(f'<h2 id="h-{key}">{title} ({len(group):,})</h2>')
        if full:
            out.append(f"<table>{_HEAD}<tbody>")
            for number, (_, index, _, _) in enumerate(group[:full], start=1):
                out.append(_row(results[index], key, now))
                if pause is not None and number % 100 == 0:
                    pause()
            out.append("</tbody></table>")
        # Compact lines: the name, and the uptime unless it is 100% in all three windows (the
        # most common case by far, listed last under a heading that says so).
        rest = group[full:]
        perfect = [line for line in rest if line[3] == "100%"]
        other = [line for line in rest if line[3] != "100%"] if perfect else rest
        if pause is not None:
            pause()
        if other:
            more = f"{len(other):,} more" if full else f"{len(other):,}"
            out.append(
                f'<p class="note">{more}: name, uptime over 1 h · 24 h · 7 d (one figure when '
                "the three are the same); the results file has every detail.</p>"
            )
            out.extend(_lines(other, True, pause))
        if perfect:
            out.append(
                f'<h3 class="note">{len(perfect):,}{" more" if full or other else ""} with '
                "100% uptime over 1 h, 24 h and 7 d:</h3>"
            )
            out.extend(_lines(perfect, False, pause))
        out.append("</section>")
    body = "".join(out) or '<p class="note">No targets loaded.</p>'
    counts = {key: len(group) for key, group in groups.items()}
    return _page(document, counts, total, body, refresh_seconds)


def _banner(counts: dict[str, int], total: int) -> str:
    down, unsteady, pending, up = (counts[k] for k in ("down", "unsteady", "pending", "up"))
    if total == 0:
        return '<p class="banner warn">No targets loaded.</p>'
    if down:
        text = f"{down:,} of {total:,} URLs down"
        cls = "bad"
    elif pending == total:
        text = f"{total:,} URLs, none probed yet"
        cls = "warn"
    else:
        text = f"All {up + unsteady:,} probed URLs up"
        cls = "warn" if unsteady else ""
    details = []
    if unsteady:
        details.append(f"{unsteady:,} up with recent failures")
    if pending and pending != total:
        details.append(f"{pending:,} not probed yet")
    extra = f" · {' · '.join(details)}" if details else ""
    return f'<p class="banner {cls}" role="status"><strong>{text}</strong>{extra}</p>'


def _members(document: dict[str, Any]) -> str:
    members = document.get("members")
    if not isinstance(members, list) or not members:
        return ""
    parts = []
    for member in members:
        if isinstance(member, dict):
            age = member.get("age_seconds")
            shown = "" if not isinstance(age, int | float) else f" ({age:.0f} s old)"
            parts.append(f"{escape(str(member.get('id')))}{shown}")
    return f" · merged from {len(parts)} members: {', '.join(parts)}"


def _nav(counts: dict[str, int], total: int) -> str:
    links = [f'<a href="#all">All {total:,}</a>']
    names = {"down": "Down", "unsteady": "Unsteady", "pending": "Not probed", "up": "Up"}
    links.extend(
        f'<a href="#{key}">{names[key]} {counts[key]:,}</a>' for key, _ in _SECTIONS if counts[key]
    )
    return f'<nav aria-label="Show">{"".join(links)}</nav>'


def _page(
    document: dict[str, Any],
    counts: dict[str, int],
    total: int,
    body: str,
    refresh_seconds: int | None,
) -> str:
    app = escape(str(document.get("application", "")))
    refresh = refresh_seconds or (15 if total <= FULL_PAGE else 60)
    down = counts["down"]
    up = counts["up"] + counts["unsteady"]
    generated = escape(str(document.get("generated_at") or ""))
    hint = (
        " Find one URL with your browser's search: every URL is on this page."
        if total > FULL_PAGE
        else ""
    )
    return "".join(
        (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n',
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n',
            f'<meta http-equiv="refresh" content="{refresh}">\n',
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
            f"<title>{app}: {down} down, {up} up</title>\n<style>{_STYLE}</style></head>\n",
            f'<body id="all">\n<header><h1>{app}</h1>\n',
            f'<p class="meta">generated {generated} (UTC){_members(document)}</p>\n',
            _banner(counts, total),
            "\n",
            _nav(counts, total),
            f'<p class="note">A link shows one section; "All" shows every one and the page '
            f"refreshes every {refresh} s (Chromium does not refresh a page opened at a "
            f"#section: reload it).{hint}</p></header>\n<main>\n",
            body,
            "\n</main>\n</body></html>\n",
        )
    )
