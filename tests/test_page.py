"""The status page: rendered from the results document, checked as HTML and in a real headless
Chromium loading it from a daemon that probes local sites."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import gevent
import pytest

from daemon.model import ProbeResult, Target
from daemon.outputs.document import Snapshot, build_document
from daemon.outputs.page import FULL_ROWS, POLICY, percent, render_status_page
from daemon.store import ResultsStore
from tests import servers as srv
from tests.daemon_process import DaemonProcess
from tests.support import free_port, need_binary, wait_until

T0 = 1_800_000_000


def result(up: bool, at: float, error: str = "status 503, expected 200-399") -> ProbeResult:
    return ProbeResult(
        up=up,
        status_code=200 if up else 503,
        duration=0.042,
        phases=(0.0, 0.001, 0.0, 0.04, 0.001),
        content_length=2,
        redirects=0,
        ssl=False,
        cert_expiry=None,
        error_kind=None if up else "http_status",
        error=None if up else error,
        started_at=at,
    )


def document_of(*targets: tuple[str, list[bool]], now: float = T0 + 100) -> dict:
    store = ResultsStore()
    for name, probes in targets:
        target = Target(f"http://127.0.0.1/{name}", name)
        store.add(target)
        for i, up in enumerate(probes):
            store.record(target, result(up, T0 + i))
    return build_document(store, "shop", now=now)


class Rows(HTMLParser):
    """The text of each table row and each compact line, and each section's id."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, str]] = []  # (section id, text)
        self.section = ""
        self.headings: list[str] = []
        self._text: list[str] | None = None
        self._head = False

    def handle_starttag(self, tag, attrs):
        if self._text is not None:
            self._text.append(" ")  # cells and blocks apart
        if tag == "section":
            self.section = dict(attrs).get("id") or ""
        elif tag in ("h2", "h3"):
            self._head = True
            self.headings.append("")
        elif tag in ("tr", "li") and self.section and not (tag == "tr" and self._in_thead):
            self._close()
            self._text = []
        if tag == "thead":
            self._in_thead = True
        elif tag == "tbody":
            self._in_thead = False

    _in_thead = False

    def handle_endtag(self, tag):
        if tag in ("tr", "li", "tbody", "ol"):
            self._close()
        if tag in ("h2", "h3"):
            self._head = False

    def handle_data(self, data):
        if self._head:
            self.headings[-1] += data
        if self._text is not None:
            self._text.append(data)

    def _close(self):
        if self._text is not None:
            self.rows.append((self.section, " ".join("".join(self._text).split())))
            self._text = None

    def of(self, name: str) -> tuple[str, str]:
        found = [(s, t) for s, t in self.rows if re.search(rf"(^|\s){re.escape(name)}(\s|$)", t)]
        assert len(found) == 1, (name, found)
        return found[0]


def parse(page: str) -> Rows:
    rows = Rows()
    rows.feed(page)
    rows.close()
    return rows


def test_failing_urls_come_first_with_their_state_in_words():
    page = render_status_page(
        document_of(("alpha", [True, True]), ("broken", [True, False]), ("flaky", [False, True]))
    )
    rows = parse(page)
    sections = [section for section, _ in rows.rows]
    assert sections == ["down", "unsteady", "up"]
    section, text = rows.of("broken")
    assert section == "down" and text.startswith("down broken")
    assert "unexpected HTTP status: status 503, expected 200-399" in text
    assert "50.0%" in text
    flaky = rows.of("flaky")[1]
    assert flaky.startswith("up flaky") and "1 of the last 2 probes failed" in flaky
    assert rows.of("alpha")[1].startswith("up alpha") and "100%" in rows.of("alpha")[1]
    assert "1 of 3 URLs down" in page  # the banner


def test_every_url_of_a_large_list_is_on_a_page_of_at_most_2_mb():
    entries = []
    for i in range(50_000):
        up = i % 50 != 0
        unsteady = i % 50 == 1
        entries.append(
            {
                "name": f"api-{i:05d}.example.com",
                "url": f"https://api-{i:05d}.example.com/health",
                "up": up,
                "status_code": 200 if up else 503,
                "response_time_ms": 84.2,
                "checked_at": "2027-01-15T08:00:00Z",
                "error_kind": None if up else "http_status",
                "error": None if up else "status 503, expected 200-399",
                "consecutive_failures": 0 if up else 4,
                "cert_expires_at": "2027-03-01T12:00:00Z",
                "history": [80.1] * 16 + ([80.2] * 4 if up else [None] * 4),
                "attempts": 1,
                "uptime": {"1h": 0.8, "24h": 0.9875, "7d": 0.99875}
                if not up or unsteady
                else {"1h": 1.0, "24h": 1.0, "7d": 1.0},
            }
        )
    document = {
        "generated_at": "2027-01-15T08:00:05Z",
        "application": "shop",
        "targets_total": 50_000,
        "results": entries,
    }
    pauses = []
    page = render_status_page(document, pause=lambda: pauses.append(1))
    assert len(page.encode()) <= 2_000_000
    rows = parse(page)
    assert len(rows.rows) == 50_000  # every URL, once
    assert page.count("<tr><td>") == FULL_ROWS  # the first ones in full: down ones first
    assert rows.of("api-00000.example.com")[0] == "down"
    assert rows.of("api-00000.example.com")[1].startswith("down api-00000.example.com https://")
    assert rows.of("api-49950.example.com") == (
        "down",
        "api-49950.example.com 80.0% · 98.7% · 99.87%",
    )
    assert rows.of("api-00001.example.com") == (
        "unsteady",
        "api-00001.example.com 80.0% · 98.7% · 99.87%",
    )
    assert rows.of("api-00002.example.com") == ("up", "api-00002.example.com")
    assert "48,000 with 100% uptime over 1 h, 24 h and 7 d:" in rows.headings
    assert sum(1 for section, _ in rows.rows if section == "down") == 1000
    assert len(pauses) >= 50  # a large page lets the probes run while it is built


@pytest.mark.parametrize("size", [8, 1_200])  # every URL in full; compact lines
def test_the_daemons_own_results_make_the_same_page_as_the_plain_document(size):
    """The daemon's results are built as they are read and offer a cheaper brief of each
    entry for sorting; the page must not differ from one made from plain entries."""
    store = ResultsStore()
    for i in range(size):
        target = Target(f"http://127.0.0.1/{i}", f"u{i % 5}-{i}")
        store.add(target)
        for k in range(i % 4):  # none (not probed), all up, a failure among the last, down
            store.record(target, result(not (i % 3 == 0 and k == i % 4 - 1 - i % 2), T0 + k))
    lazy = Snapshot(store, "shop", True).document
    plain = {**lazy, "results": list(lazy["results"])}
    page = render_status_page(lazy)
    assert page == render_status_page(plain)
    assert {"down", "unsteady", "pending", "up"} <= {s for s, _ in parse(page).rows}


def test_readers_of_one_snapshot_share_one_build_of_the_page_and_the_json():
    """The builds yield to other greenlets; a second GET / meanwhile must wait for the first
    build rather than start another (each costs up to a second of CPU at 50k targets)."""
    store = ResultsStore()
    for i in range(2_500):
        target = Target(f"http://127.0.0.1/{i}", f"u{i}")
        store.add(target)
        store.record(target, result(i % 7 != 0, T0))
    snapshot = Snapshot(store, "shop", True, pause=lambda: gevent.sleep(0))
    snapshot.document  # noqa: B018 - built first, as Daemon.recent_snapshot does
    for view in ("status_html", "document_json"):
        readers = [gevent.spawn(getattr, snapshot, view) for _ in range(3)]
        gevent.joinall(readers, raise_error=True)
        assert len({id(reader.value) for reader in readers}) == 1, view


def test_a_failure_after_retries_says_how_many_attempts_it_took():
    store = ResultsStore()
    target = Target("http://127.0.0.1/retried", "retried")
    store.add(target)
    store.record(target, dataclasses.replace(result(False, T0), attempts=3))
    text = parse(render_status_page(build_document(store, "shop", now=T0 + 1))).of("retried")[1]
    assert "status 503, expected 200-399 (after 3 attempts)" in text


def test_the_page_loads_nothing_from_elsewhere_and_runs_no_script():
    page = render_status_page(document_of(("a", [True]), ("b", [False])))
    assert "<script" not in page.lower()
    assert not re.search(r"\son\w+\s*=", page)  # no inline event handlers
    assert not re.search(r"\b(src|srcset|action|xlink:href)\s*=", page)
    body = page.split("</style>", 1)[1]
    assert re.findall(r'href="([^"]*)"', body) == ["#all", "#down", "#up"]
    assert "url(" not in page and "@import" not in page


def test_names_urls_and_errors_are_shown_as_text_never_as_markup():
    evil = "<img src=x onerror=alert(1)>"
    store = ResultsStore()
    target = Target(f"http://127.0.0.1/?q={evil}", evil)
    store.add(target)
    store.record(target, result(False, T0, error=f"status 503 {evil}"))
    page = render_status_page(build_document(store, evil, now=T0 + 1))
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


@pytest.mark.parametrize(
    "ratio, shown",
    [(1.0, "100%"), (0.99999, "99.99%"), (0.999, "99.90%"), (0.5, "50.0%"), (None, "n/a")],
)
def test_uptime_is_never_rounded_up_to_100_percent(ratio, shown):
    assert percent(ratio) == shown


def test_a_document_from_an_older_version_still_renders():
    """A merged file can hold entries written by a member that predates uptime."""
    document = {
        "generated_at": "2027-01-15T08:00:05Z",
        "application": "shop",
        "results": [
            {"name": "old", "url": "http://127.0.0.1/", "up": False, "status_code": None,
             "response_time_ms": 3.0, "checked_at": "2027-01-15T08:00:00Z",
             "error_kind": "connect", "error": "connection refused",
             "consecutive_failures": 2, "history": [None, None]},
        ],
    }  # fmt: skip
    text = parse(render_status_page(document)).of("old")[1]
    assert text.startswith("down old") and "connection refused" in text and "n/a" in text


# -- in a real browser ----------------------------------------------------------------------


def chromium(tmp_path: Path, *args: str) -> str:
    binary = need_binary("chromium")
    profile = tmp_path / f"chromium-profile-{time.monotonic_ns()}"
    run = subprocess.run(
        [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={profile}", "--window-size=1280,1400", *args,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    return run.stdout.decode()


def test_chromium_shows_each_url_with_its_state_and_uptime(tmp_path, servers, ca):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    closed = free_port()
    sites = {
        "healthy": f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/",
        "secure": f"https://127.0.0.1:{servers.wsgi(srv.text_app(), tls=True)}/",
        "broken": f"http://127.0.0.1:{servers.wsgi(srv.text_app('500 Internal Server Error'))}/",
        "refused": f"http://127.0.0.1:{closed}/",
    }
    csv = tmp_path / "urls.csv"
    csv.write_text("url,name\n" + "".join(f"{url},{name}\n" for name, url in sites.items()))
    with DaemonProcess(
        "--targets", str(csv), "--results", str(tmp_path / "results.json"), "--ca-file",
        str(ca_file), "--interval", "1", "--publish-interval", "1", log=tmp_path / "log",
    ) as daemon:  # fmt: skip

        def probed_twice() -> bool:
            results = daemon.results()["results"]
            return len(results) == 4 and all(len(r["history"]) >= 2 for r in results)

        wait_until(probed_twice, timeout=30, what="every site probed twice")
        # The page is built at most every 5 s: wait for one that has every site probed.
        wait_until(
            lambda: b"Not probed yet" not in daemon.get("/")[2],
            timeout=15,
            what="a page with every site probed",
        )
        dom = chromium(tmp_path, "--dump-dom", daemon.base + "/")
        chromium(tmp_path, f"--screenshot={tmp_path / 'status-page.png'}", daemon.base + "/")

    rows = parse(dom)
    for name, url in sites.items():
        section, text = rows.of(name)
        state = "down" if name in ("broken", "refused") else "up"
        assert section == state and text.startswith(f"{state} {name} {url}"), text
    assert "100%" in rows.of("healthy")[1] and "100%" in rows.of("secure")[1]
    assert "0.0%" in rows.of("broken")[1] and "unexpected HTTP status" in rows.of("broken")[1]
    assert "connection refused or unreachable" in rows.of("refused")[1]
    assert re.search(r"\d+ d left", rows.of("secure")[1])  # the certificate's days
    assert "2 of 4 URLs down" in dom
    assert (tmp_path / "status-page.png").stat().st_size > 10_000  # kept as the test artifact


CSP = "default-src 'none'; style-src 'unsafe-inline'"


def test_the_page_needs_nothing_a_strict_content_security_policy_refuses(tmp_path, servers):
    """The page is served (by web.py) under this policy: no script, no outside resource, only
    inline style. Chromium logs each refusal; one policy stricter still proves it would."""
    page = render_status_page(
        document_of(("alpha", [True]), ("broken", [False]), ("flaky", [False, True]))
    ).encode()

    def serve(policy: str):
        def app(environ, start_response):
            found = environ["PATH_INFO"] == "/"
            start_response(
                "200 OK" if found else "404 Not Found",
                [("Content-Type", "text/html; charset=utf-8"), ("Content-Security-Policy", policy)],
            )
            return [page if found else b""]

        return f"http://127.0.0.1:{servers.wsgi(app)}/"

    def refusals(url: str) -> list[str]:
        binary = need_binary("chromium")
        run = subprocess.run(
            [
                binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                f"--user-data-dir={tmp_path / f'profile-{time.monotonic_ns()}'}",
                "--enable-logging=stderr", "--v=0", "--dump-dom", url,
            ],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        assert run.returncode == 0 and b"</html>" in run.stdout
        log = run.stderr.decode(errors="replace").splitlines()
        return [line for line in log if "Content Security Policy" in line]

    assert refusals(serve(CSP)) == []
    assert refusals(serve("default-src 'none'"))  # inline style refused: the check works


def test_the_filter_links_show_one_section_without_a_script(tmp_path):
    """The page has no script; a copy with one added reads what the browser laid out."""
    page = render_status_page(
        document_of(("alpha", [True]), ("broken", [False]), ("flaky", [False, True]))
    )
    probe = (
        "<script>addEventListener('load', () => { document.title = [...document.querySelectorAll"
        "('main > section')].map(s => s.id + '=' + getComputedStyle(s).display).join(' ') })"
        "</script>"
    )
    # The page's own policy (its <meta>) forbids scripts: the copy drops it to let the probe run.
    meta = f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
    assert meta in page
    copy = tmp_path / "page.html"
    copy.write_text(page.replace(meta, "").replace("</body>", probe + "</body>"))
    shown = {}
    for fragment in ("", "#all", "#down", "#up"):
        dom = chromium(tmp_path, "--dump-dom", copy.as_uri() + fragment)
        title = re.search(r"<title>(.*?)</title>", dom)
        assert title is not None
        shown[fragment] = title.group(1)
    every = "down=block unsteady=block up=block"
    assert shown[""] == shown["#all"] == every
    assert shown["#down"] == "down=block unsteady=none up=none"
    assert shown["#up"] == "down=none unsteady=none up=block"
