"""Name resolution as the daemon does it, against a real DNS server, inside a network namespace.

Each test runs a process in a fresh network and mount namespace (``unshare -mn``): only ``lo``
is up, and a private resolv.conf, bind-mounted over /etc/resolv.conf, names the DNS stub of
tests/dns_stub.py on 127.0.0.1:53. The stub answers ``*.up.test`` with 127.0.0.1 (where it also
serves HTTP on port 8080), never answers ``*.dead.test``, and says NXDOMAIN to anything else.
No packet can leave the namespace, and the host's own resolv.conf is left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_process import ROOT
from tests.support import need_binary

WEB = 8080  # the stub's web server, inside the namespace
# getaddrinfo's defaults, spelled out: 5 s a try, 2 tries, so an unanswered lookup holds a
# system resolver thread for 10 s.
RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:5 attempts:2\n"


class Namespace:
    """Runs commands in a fresh network and mount namespace with the DNS stub serving."""

    def __init__(self, tmp_path: Path, resolv_conf: str = RESOLV_CONF) -> None:
        self.tmp_path = tmp_path
        self.resolv_conf = tmp_path / "resolv.conf"
        self.resolv_conf.write_text(resolv_conf)
        self.queries_log = tmp_path / "queries.log"
        unshare = need_binary("unshare")
        need_binary("ip")
        self.prefix = [
            unshare,
            "--mount",
            "--net",
            "--",
            "sh",
            "-c",
            'ip link set lo up && mount --bind "$0" /etc/resolv.conf && exec "$@"',
            str(self.resolv_conf),
        ]

    def check(self) -> None:
        """Skip where this machine cannot make such a namespace; fail on the project's CI
        machines (root, ``CI=true``), which always can. GitHub's job runs in an unprivileged
        container that cannot, and skips, saying so."""
        trial = subprocess.run([*self.prefix, "true"], capture_output=True, timeout=30)
        if trial.returncode != 0:
            reason = trial.stderr.decode(errors="replace").strip()
            message = f"cannot make a network and mount namespace (root, CAP_SYS_ADMIN): {reason}"
            if os.environ.get("CI") == "true" and "GITHUB_ACTIONS" not in os.environ:
                pytest.fail(message)
            pytest.skip(message)

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        stub = [sys.executable, "-m", "tests.dns_stub", "--http-port", str(WEB)]
        stub += ["--log", str(self.queries_log), "--"]
        return subprocess.run(
            [*self.prefix, *stub, *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def queries(self) -> list[str]:
        """The names the stub was asked about, one per query."""
        if not self.queries_log.exists():
            return []
        return [line.split()[0] for line in self.queries_log.read_text().splitlines()]

    def once(self, rows: list[tuple[str, str]], *extra: str) -> dict[str, str]:
        """``python -m daemon --once`` on these (url, name) rows: each name's line of output."""
        csv = self.tmp_path / "urls.csv"
        csv.write_text("url,name\n" + "".join(f"{url},{name}\n" for url, name in rows))
        argv = [sys.executable, "-m", "daemon", "--once", "--results", "-", "--targets", str(csv)]
        proc = self.run(*argv, *extra)
        assert proc.returncode in (0, 1), proc.stderr
        lines = {}
        for line in proc.stdout.splitlines():
            for _url, name in rows:
                if f"  {name}  " in line:
                    lines[name] = line
        assert len(lines) == len(rows), proc.stdout
        return lines


@pytest.fixture
def namespace(tmp_path) -> Namespace:
    ns = Namespace(tmp_path)
    ns.check()
    return ns


def test_a_dead_domain_does_not_take_down_the_healthy_hostname_targets(namespace):
    dead = [(f"http://site{i}.dead.test:{WEB}/", f"dead{i}") for i in range(50)]
    healthy = [(f"http://site{i}.up.test:{WEB}/", f"healthy{i}") for i in range(50)]
    lines = namespace.once(dead + healthy, "--timeout", "3")
    down = [line for name, line in lines.items() if name.startswith("healthy") and line[:2] != "UP"]
    assert not down, "\n".join(down)
    for i in range(50):
        assert lines[f"dead{i}"].startswith("DOWN"), lines[f"dead{i}"]
        assert "timeout: no complete answer within 3s" in lines[f"dead{i}"]


# Probes through the prober the daemon itself builds (runtime.Daemon), in the namespace.
DEAD_THEN_HEALTHY = """
from gevent import monkey

monkey.patch_all()

import json, sys
import gevent
from daemon.model import Target
from daemon.runtime import Daemon
from daemon.settings import load

prober = Daemon(load(["--targets", sys.argv[1], "--results", "-"])).prober


def probe_all(urls, timeout):
    jobs = [gevent.spawn(prober.probe, Target(url=u, name=u, timeout=timeout)) for u in urls]
    gevent.joinall(jobs, raise_error=True)
    return [[job.value.error_kind, list(job.value.phases)] for job in jobs]


dead = probe_all([f"http://site{i}.dead.test:8080/" for i in range(50)], 1.0)
# Every dead probe has ended (at its deadline); their names are still unanswered.
healthy = probe_all([f"http://site{i}.up.test:8080/" for i in range(50)], 2.0)
print(json.dumps({"dead": dead, "healthy": healthy}))
"""


def test_a_lookup_that_gets_no_answer_ends_with_its_probes_deadline(namespace, tmp_path):
    csv = tmp_path / "urls.csv"
    csv.write_text("url\nhttp://127.0.0.1:8080/\n")
    proc = namespace.run(sys.executable, "-c", DEAD_THEN_HEALTHY, str(csv))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    for kind, (resolve, connect, *_rest) in results["dead"]:
        assert kind == "timeout"
        assert resolve > 0.0 and connect == 0.0  # cut off while resolving
    # Nothing of the dead lookups is left to hold up the next ones.
    assert [kind for kind, _phases in results["healthy"]] == [None] * 50
    assert all(phases[0] > 0.0 for _kind, phases in results["healthy"])


def test_hosts_file_names_resolve_and_a_missing_name_fails_at_once_as_dns(namespace):
    lines = namespace.once(
        [
            (f"http://localhost:{WEB}/", "local"),
            (f"http://shop.up.test:{WEB}/", "shop"),
            (f"http://missing.test:{WEB}/", "missing"),
        ],
        "--timeout",
        "30",
    )
    assert lines["local"].startswith("UP"), lines["local"]
    assert lines["shop"].startswith("UP"), lines["shop"]
    # NXDOMAIN ends the probe long before its deadline, as dns.
    assert "DOWN" in lines["missing"]
    assert "dns: cannot resolve missing.test: Name or service not known" in lines["missing"]
    assert "localhost" not in namespace.queries()  # /etc/hosts answered, not the server


def test_a_name_server_that_gives_up_is_reported_as_dns_in_plain_words(tmp_path):
    # One try of one second: the resolver gives up long before the probe's deadline.
    namespace = Namespace(tmp_path, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    namespace.check()
    lines = namespace.once([(f"http://gone.dead.test:{WEB}/", "gone")], "--timeout", "30")
    assert "DOWN" in lines["gone"]
    assert "dns: cannot resolve gone.dead.test: " in lines["gone"]
    assert "ARES" not in lines["gone"]


CHANGED_RESOLV_CONF = """
from gevent import monkey

monkey.patch_all()

import sys
from daemon.model import Target
from daemon.runtime import Daemon
from daemon.settings import load

prober = Daemon(load(["--targets", sys.argv[1], "--results", "-"])).prober
target = Target(url="http://shop.up.test:8080/", name="shop")
before = prober.probe(target)
with open("/etc/resolv.conf", "w") as conf:
    conf.write("nameserver 127.0.0.1\\n")
after = prober.probe(target)
print(before.error_kind, before.error)
print(after.error_kind, after.error)
"""


def test_a_changed_resolv_conf_is_followed_without_a_restart(tmp_path):
    # Nothing answers on 127.0.0.2 until resolv.conf names the stub on 127.0.0.1.
    namespace = Namespace(tmp_path, "nameserver 127.0.0.2\n")
    namespace.check()
    csv = tmp_path / "urls.csv"
    csv.write_text("url\nhttp://127.0.0.1:8080/\n")
    proc = namespace.run(sys.executable, "-c", CHANGED_RESOLV_CONF, str(csv))
    assert proc.returncode == 0, proc.stderr
    before, after = proc.stdout.splitlines()
    assert before.startswith("dns cannot resolve shop.up.test: ")
    assert after == "None None"


def test_old_forms_of_an_ipv4_address_are_addresses_not_names(namespace):
    # getaddrinfo reads these as addresses (inet_aton), as browsers do; c-ares asks the name
    # server about the first ones and reads 0177.0.0.1 as 177.0.0.1.
    lines = namespace.once(
        [
            (f"http://2130706433:{WEB}/", "decimal"),
            (f"http://0x7f.1:{WEB}/", "hex"),
            (f"http://0177.0.0.1:{WEB}/", "octal"),
            ("http://2852039166/latest/meta-data/", "metadata"),
        ]
    )
    for name in ("decimal", "hex", "octal"):
        assert lines[name].startswith("UP"), lines[name]
    assert "blocked: 2852039166 resolves to 169.254.169.254" in lines["metadata"]
    assert namespace.queries() == []
