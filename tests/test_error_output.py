"""Every line the daemon writes to stderr is one logfmt event, whatever the targets hold.

A host with a 300-character or an empty label printed two raw Python tracebacks per probe
(gevent's hub prints the error of a failed resolver call itself, over many lines), and a name
holding NEL or U+2028 split a log line: a log reader took each piece for an event.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import textwrap

import pytest
from gevent.server import DatagramServer

from tests import servers as srv
from tests.daemon_process import ROOT, DaemonProcess
from tests.support import need_binary, wait_until

# ts=... level=... logger=... event=NAME, then key=value pairs (or nothing).
LOGFMT = re.compile(r"ts=\S+ level=(debug|info|warning|error|critical) logger=\S+ event=\w+( |$)")


def not_logfmt(text: str) -> list[str]:
    """The lines of ``text`` that are not one logfmt event each. Split as strictly as any
    reader might: at every line break str.splitlines knows (NEL and U+2028 included)."""
    return [line for line in text.splitlines() if not LOGFMT.match(line)]


class NxDomain:
    """A DNS server on 127.x.y.z:53 that answers NXDOMAIN to every query: the daemon's only
    name server, so a lookup ends at once and nothing leaves the machine."""

    def __init__(self) -> None:
        self.address = (
            f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(1, 250)}"
        )
        self.queries = 0
        self._server = DatagramServer((self.address, 53), self._answer)

    def _answer(self, query: bytes, client: tuple[str, int]) -> None:
        if len(query) < 12:
            return
        self.queries += 1
        # Same id and question; QR=1, the query's RD, RA=1, RCODE=3; no answers.
        flags = bytes([0x80 | (query[2] & 0x01), 0x83])
        reply = query[:2] + flags + query[4:6] + b"\x00\x00\x00\x00\x00\x00" + query[12:]
        self._server.sendto(reply, client)

    def __enter__(self) -> NxDomain:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


@pytest.fixture
def private_dns(tmp_path):
    """(stub, wrapper): a command prefix under which a process's resolv.conf names only the
    stub (a private mount namespace, the rest of the machine untouched)."""
    unshare = need_binary("unshare")
    try:
        stub = NxDomain()
        stub.__enter__()
    except OSError as exc:
        pytest.skip(f"cannot serve DNS on a loopback port 53 here: {exc}")
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {stub.address}\noptions attempts:1 timeout:1\n")
    wrapper = [
        unshare, "--mount", "--", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
        str(conf),
    ]  # fmt: skip
    check = subprocess.run([*wrapper, "cat", "/etc/resolv.conf"], capture_output=True, timeout=30)
    if check.returncode != 0 or stub.address not in check.stdout.decode():
        stub.__exit__()
        pytest.skip(f"cannot give a process its own resolv.conf: {check.stderr.decode().strip()}")
    try:
        yield stub, wrapper
    finally:
        stub.__exit__()


def test_odd_hosts_and_names_never_put_anything_but_logfmt_on_stderr(
    tmp_path, servers, private_dns
):
    stub, wrapper = private_dns
    ok = f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/"
    # 254 characters, every label within 63: refused at load, as DNS allows 253.
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57]) + ".test"
    assert len(longest) == 254
    rows = [
        (ok, "ok"),
        ("http://" + "a" * 300 + ".test/", "300-character label"),
        ("http://a..b.test/", "empty label"),
        ("http://a%2e%2eb.test/", "escaped empty label"),
        (f"http://{longest}/", "254 characters"),
        ("http://xn--zz.test/", "bad punycode"),
        ("http://1.2.3.4.5/", "five\x85numbers \u2028 in a name"),  # shown in target_down
        ("http://a_b.test/", "underscore"),
    ]
    csv = tmp_path / "urls.csv"
    csv.write_text("url,name\n" + "".join(f"{url},{name}\n" for url, name in rows))
    flags = ("--interval", "1", "--timeout", "1", "--reload-interval", "60", "--results", "-")
    with DaemonProcess(
        "--targets", str(csv), *flags, wrapper=wrapper, log=tmp_path / "log"
    ) as daemon:
        wait_until(lambda: daemon.get("/ready")[0] == 200, what="the list loaded")
        # Every odd host that loads is probed (and fails) several times over.
        wait_until(
            lambda: (daemon.sample('upcheck_probes_total{result="dns"}') or 0) >= 3 * 4,
            timeout=30,
            what="several rounds of failed lookups",
        )
        loaded = daemon.sample("upcheck_targets")
        code, _ = daemon.stop()
    log = daemon.log()
    assert not_logfmt(log) == []
    assert "Traceback" not in log
    assert code == 0 and loaded == 4
    assert stub.queries > 0  # the lookups went to the stub, and nowhere else
    assert "line 3: bad url 'http://aaa" in log and "label longer than 63 characters" in log
    assert "line 6: bad url 'http://aaa" in log and "longer than 253 characters" in log
    assert "line 4: bad url 'http://a..b.test/': the host has an empty label" in log
    assert "line 5: bad url 'http://a%2e%2eb.test/': the host has an empty label" in log
    assert 'name="five\\u0085numbers \\u2028 in a name"' in log


def test_errors_gevent_and_python_would_print_are_one_event_each():
    """A greenlet that dies, a resolver call that raises in the thread pool, a warning, an
    error in a __del__ and an uncaught exception: each becomes one logfmt line."""
    script = textwrap.dedent(
        """
        from gevent import monkey
        monkey.patch_all()
        import gc, socket, warnings
        import gevent
        from daemon.logs import configure
        from daemon.runtime import errors_as_events

        configure("info")
        errors_as_events()

        def dies():
            raise RuntimeError("greenlet died\\nover two lines")

        gevent.spawn(dies).join()
        try:
            socket.getaddrinfo("a..b.test", 80)  # refused by the idna codec, in a thread
        except UnicodeError:
            pass
        warnings.warn("something is deprecated")

        class Broken:
            def __del__(self):
                raise ValueError("token=s3cret in a finaliser")

        Broken()
        gc.collect()
        raise SystemError("the end, token=s3cret")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert not_logfmt(proc.stderr) == [], proc.stderr
    events = [re.search(r" event=(\w+)", line)[1] for line in proc.stderr.splitlines()]
    assert events == ["unhandled_error", "unhandled_error", "log", "unraisable_error", "crashed"]
    assert "greenlet died\\nover two lines" in proc.stderr
    assert "getaddrinfo" in proc.stderr.splitlines()[1]
    assert "s3cret" not in proc.stderr
