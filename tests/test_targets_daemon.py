"""The targets file as a running daemon sees it while someone rewrites it.

`cat > urls.csv` leaves the file empty for a moment; a reload that catches it then applied an
empty list, which removed every target and its history.
"""

from __future__ import annotations

import subprocess
import sys

from tests import servers as srv
from tests.daemon_process import ROOT, DaemonProcess
from tests.support import wait_until

FAST = ("--interval", "1", "--reload-interval", "1", "--results", "-")


def test_an_emptied_file_keeps_the_list_in_force_until_a_good_one_comes(tmp_path, servers):
    ok = f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/"
    more = f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/more"
    up = f'probe_success{{name="ok",url="{ok}"}}'
    streak = f'upcheck_consecutive_failures{{name="ok",url="{ok}"}}'
    csv = tmp_path / "urls.csv"
    good = f"url,name\n{ok},ok\n"
    csv.write_text(good)
    with DaemonProcess("--targets", str(csv), *FAST, log=tmp_path / "log") as daemon:
        wait_until(lambda: daemon.sample(up) == 1, what="the first probe")
        probes = daemon.sample('upcheck_probes_total{result="success"}')

        csv.write_bytes(b"")  # as `cat > urls.csv` leaves it before the first line comes
        wait_until(
            lambda: daemon.sample("upcheck_targets_last_load_success") == 0, what="the refusal"
        )
        samples = daemon.metrics()
        assert samples["upcheck_targets"] == 1 and samples[up] == 1 and samples[streak] == 0
        assert samples["upcheck_targets_load_errors_total"] == 1
        wait_until(
            lambda: daemon.sample('upcheck_probes_total{result="success"}') > probes,
            what="probing to go on",
        )
        assert daemon.get("/ready")[0] == 200
        assert "event=targets_load_failed" in daemon.log()
        assert 'error="' + str(csv) + ': no targets: the file is empty"' in daemon.log()

        csv.write_text(good + f"{more},more\n")
        wait_until(
            lambda: daemon.sample("upcheck_targets_last_load_success") == 1, what="the recovery"
        )
        wait_until(
            lambda: daemon.sample(f'probe_success{{name="more",url="{more}"}}') == 1,
            what="the added target probed",
        )
        assert daemon.sample("upcheck_targets") == 2
        assert "added=1 removed=0 changed=0" in daemon.log()


def test_once_exits_2_on_a_file_without_targets(tmp_path):
    csv = tmp_path / "urls.csv"
    csv.write_text("# nothing here yet\n")
    run = [sys.executable, "-m", "daemon", "--once", "--results", "-", "--targets", str(csv)]
    proc = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (
        "upcheck: error: cannot load targets: no targets: the file holds only comments and"
        " blank lines\n"
    )
    assert proc.stdout == ""
