"""The results-file sink on local disk, GET /results before and after this process wrote it,
and the views of the results shared by GET / and the live /results, in-process."""

from __future__ import annotations

import json

import gevent

from daemon.outputs.document import Snapshot
from daemon.outputs.results_file import LocalResultsFile
from daemon.runtime import Daemon
from daemon.settings import load
from daemon.store import ResultsStore
from daemon.web import results_answer


def test_a_results_file_from_an_earlier_run_is_not_served_as_current(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"schema": 1, "generated_at": "2020-01-01T00:00:00Z"}')
    sink = LocalResultsFile(str(path))
    status, headers, body = results_answer(sink, False, lambda: b'{"live": true}')
    assert status == "200 OK" and ("X-Upcheck-Results", "live") in headers
    assert body == b'{"live": true}'

    sink.publish(Snapshot(ResultsStore(), "shop", targets_load_success=True))
    status, headers, body = results_answer(sink, True, lambda: b'{"live": true}')
    assert status == "200 OK" and ("X-Upcheck-Results", "live") not in headers
    assert json.loads(body)["application"] == "shop" and body == path.read_bytes()


def test_the_status_page_is_named_after_the_results_file(tmp_path):
    shop = LocalResultsFile(str(tmp_path / "shop.json"))
    blog = LocalResultsFile(str(tmp_path / "blog.json"))
    shop.publish(Snapshot(ResultsStore(), "shop", targets_load_success=True))
    blog.publish(Snapshot(ResultsStore(), "blog", targets_load_success=True))
    assert "<h1>shop</h1>" in (tmp_path / "shop.html").read_text()
    assert "<h1>blog</h1>" in (tmp_path / "blog.html").read_text()
    assert not (tmp_path / "status.html").exists()


def test_get_results_serves_the_live_document_when_the_file_became_unreadable(tmp_path):
    path = tmp_path / "results.json"
    sink = LocalResultsFile(str(path))
    sink.publish(Snapshot(ResultsStore(), "shop", targets_load_success=True))
    path.unlink()
    path.mkdir()  # a folder where the file was: reading it fails with IsADirectoryError
    status, headers, body = results_answer(sink, True, lambda: b'{"live": true}')
    assert status == "200 OK" and ("X-Upcheck-Results", "live") in headers
    assert body == b'{"live": true}'


def test_concurrent_views_share_one_recent_build(tmp_path):
    csv = tmp_path / "urls.csv"
    csv.write_text("url\nhttp://127.0.0.1:9/\n")
    daemon = Daemon(load(["--targets", str(csv), "--results", "-"]))
    views = [gevent.spawn(daemon.recent_snapshot) for _ in range(5)]
    gevent.joinall(views, raise_error=True)
    assert len({id(view.value) for view in views}) == 1
    assert daemon.recent_snapshot() is views[0].value  # still fresh: not built again
