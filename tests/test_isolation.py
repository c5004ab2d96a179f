"""Real resolver and real sockets inside an empty network namespace (only ``lo`` up).

Here the daemon uses the system resolver and the kernel's routing, unlike the probe tests'
injected resolver; the namespace guarantees that not one packet can leave the machine.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.daemon_process import ROOT
from tests.support import need_binary


@pytest.fixture(scope="module")
def isolated() -> list[str]:
    """The command prefix that runs a process in a fresh, empty network namespace."""
    unshare = need_binary("unshare")
    prefix = [unshare, "--net", "--", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "-"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.decode().strip()}")
    return prefix


def run_once(isolated: list[str], tmp_path, rows: str, *extra: str):
    csv = tmp_path / "urls.csv"
    csv.write_text("url,name\n" + rows)
    argv = [sys.executable, "-m", "daemon", "--once", "--results", "-", "--targets", str(csv)]
    return subprocess.run(
        [*isolated, *argv, *extra], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_an_unresolvable_name_fails_as_dns(isolated, tmp_path):
    proc = run_once(
        isolated, tmp_path, "http://shop.upcheck-test.invalid/,shop\n", "--timeout", "5"
    )
    assert proc.returncode == 1
    (line,) = [row for row in proc.stdout.splitlines() if "shop" in row]
    assert line.startswith("DOWN") and "dns: cannot resolve shop.upcheck-test.invalid" in line


def test_metadata_addresses_are_refused_as_blocked(isolated, tmp_path):
    rows = "http://169.254.169.254/latest/meta-data/,ec2\nhttp://169.254.170.2/v2/credentials,ecs\n"
    proc = run_once(isolated, tmp_path, rows)
    assert proc.returncode == 1
    lines = [row for row in proc.stdout.splitlines() if row.startswith("DOWN")]
    assert len(lines) == 2
    assert all("blocked:" in line for line in lines)


def test_allow_link_local_lets_the_probe_try_the_address(isolated, tmp_path):
    proc = run_once(
        isolated, tmp_path, "http://169.254.169.254/,ec2\n", "--allow-link-local", "--timeout", "2"
    )
    assert proc.returncode == 1
    (line,) = [row for row in proc.stdout.splitlines() if row.startswith("DOWN")]
    assert "blocked" not in line
    assert "connect:" in line or "timeout:" in line  # no route in an empty namespace
