"""The results-file sink on local disk and the views of the results shared by GET / and the
live /results, in-process."""

from __future__ import annotations

import json

import gevent

from daemon.__main__ import Daemon
from daemon.results import ResultsStore
from daemon.settings import load
from daemon.sinks import LocalResultsFile, Snapshot


def test_a_results_file_from_an_earlier_run_is_not_served_as_current(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"schema": 1, "generated_at": "2020-01-01T00:00:00Z"}')
    sink = LocalResultsFile(str(path), live=lambda: b'{"live": true}')
    status, headers, body = sink.results_answer()
    assert status == "200 OK" and ("X-Upcheck-Results", "live") in headers
    assert body == b'{"live": true}'

    sink.publish(Snapshot(ResultsStore(), "shop", targets_load_success=True))
    status, headers, body = sink.results_answer()
    assert status == "200 OK" and ("X-Upcheck-Results", "live") not in headers
    assert json.loads(body)["application"] == "shop" and body == path.read_bytes()


def test_concurrent_views_share_one_recent_build(tmp_path):
    csv = tmp_path / "urls.csv"
    csv.write_text("url\nhttp://127.0.0.1:9/\n")
    daemon = Daemon(load(["--targets", str(csv), "--results", "-"]))
    views = [gevent.spawn(daemon.recent_snapshot) for _ in range(5)]
    gevent.joinall(views, raise_error=True)
    assert len({id(view.value) for view in views}) == 1
    assert daemon.recent_snapshot() is views[0].value  # still fresh: not built again
