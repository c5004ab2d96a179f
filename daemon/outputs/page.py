"""The HTML status page, rendered from the results document alone, so the copy published
beside the results file is the same page ``GET /`` shows."""

from __future__ import annotations

import html
from typing import Any

# What the page may load: nothing but its own inline style (no script, no frame, no form, no
# base). A <meta> carries it too, for copies served without our headers (the S3 object).
POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none';"
    " form-action 'none'"
)

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2127;background:#fafbfc}
h1{font-size:1.3rem;margin:0 0 .3rem}.meta{color:#5b6470;margin-bottom:1rem}
.pill{display:inline-block;padding:.1rem .6rem;border-radius:1rem;font-weight:600;
margin-right:.4rem}
.up{background:#d7f5dd;color:#12622a}.down{background:#fde0df;color:#a3211d}
.pending{background:#eceff3;color:#5b6470}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#f1f3f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.url{color:#5b6470;font-size:12px;word-break:break-all}.err{color:#a3211d;font-size:12px}
.hist span{display:inline-block;width:6px;height:14px;margin-right:1px;border-radius:1px}
.hist .ok{background:#3bb85c}.hist .ko{background:#e0443e}
"""


def _status_cell(entry: dict[str, Any]) -> str:
    if entry["up"] is None:
        return '<span class="pill pending">pending</span>'
    if entry["up"]:
        return '<span class="pill up">up</span>'
    return '<span class="pill down">down</span>'


def _history_cell(history: list[float | None]) -> str:
    spans = "".join(
        f'<span class="ok" title="{ms} ms"></span>'
        if ms is not None
        else '<span class="ko" title="failed"></span>'
        for ms in history
    )
    return f'<div class="hist">{spans}</div>'


def render_status_page(document: dict[str, Any], refresh_seconds: int = 15) -> str:
    """A self-contained page (inline CSS, no scripts): down targets first, then by name."""
    esc = html.escape
    entries = sorted(
        document["results"],
        key=lambda e: (e["up"] is not False, e["up"] is not None, e["name"].lower()),
    )
    rows = []
    for e in entries:
        error = (
            f'<div class="err">{esc(e["error_kind"] or "")}: {esc(e["error"] or "")}</div>'
            if e["error_kind"]
            else ""
        )
        latency = "" if e["response_time_ms"] is None else f"{e['response_time_ms']:.0f} ms"
        rows.append(
            "<tr>"
            f"<td>{_status_cell(e)}</td>"
            f'<td><strong>{esc(e["name"])}</strong><div class="url">{esc(e["url"])}</div>'
            f"{error}</td>"
            f'<td class="num">{esc(str(e["status_code"] or ""))}</td>'
            f'<td class="num">{latency}</td>'
            f'<td class="num">{e["consecutive_failures"] or ""}</td>'
            f"<td>{esc(e['checked_at'] or 'not yet')}</td>"
            f"<td>{_history_cell(e['history'])}</td>"
            "</tr>"
        )
    body = "\n".join(rows) or '<tr><td colspan="7">No targets loaded.</td></tr>'
    app = esc(document["application"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{POLICY}">
<meta http-equiv="refresh" content="{refresh_seconds}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{app}: {document["targets_down"]} down, {document["targets_up"]} up</title>
<style>{_STYLE}</style></head>
<body>
<h1>{app}</h1>
<div class="meta">
<span class="pill up">{document["targets_up"]} up</span>
<span class="pill down">{document["targets_down"]} down</span>
<span class="pill pending">{document["targets_total"]} targets</span>
generated {esc(document["generated_at"] or "")}
</div>
<table>
<thead><tr><th>state</th><th>target</th><th>status</th><th>latency</th><th>fails</th>
<th>checked (UTC)</th><th>recent</th></tr></thead>
<tbody>
{body}
</tbody></table>
</body></html>
"""
