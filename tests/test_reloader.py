"""The reloader on a real local file: what it reports when the source fails, recovers, or
holds a file it rejected."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from daemon.model import Target
from daemon.sources.file import LocalFileSource
from daemon.sources.reloader import Reloader
from daemon.telemetry import Telemetry
from tests.fakes import FakeClock

GOOD = b"url,name\nhttp://127.0.0.1:9/,shop\n"
BAD = b"url\nnot a url\n"


class Applied:
    """Stands in for the scheduler's apply: remembers each list it was given."""

    def __init__(self) -> None:
        self.lists: list[list[str]] = []

    def apply(self, targets: list[Target]) -> tuple[int, int, int]:
        self.lists.append([t.url for t in targets])
        return len(targets), 0, 0


@pytest.fixture
def telemetry():
    return Telemetry(CollectorRegistry())


def gauge(telemetry: Telemetry, name: str) -> float | None:
    return telemetry.registry.get_sample_value(name)


def make(path, telemetry) -> tuple[Reloader, Applied]:
    applied = Applied()
    source = LocalFileSource(str(path))
    reloader = Reloader(source, applied.apply, telemetry, FakeClock(), 60.0)
    return reloader, applied


def test_an_unreadable_then_unchanged_file_is_reported_as_recovered(tmp_path, telemetry, caplog):
    caplog.set_level(logging.INFO, logger="daemon.sources.reloader")
    path = tmp_path / "urls.csv"
    path.write_bytes(GOOD)
    reloader, applied = make(path, telemetry)
    assert reloader.check() is True

    path.rename(tmp_path / "away.csv")
    assert reloader.check() is False
    assert "cannot read" in (reloader.last_error or "")
    assert gauge(telemetry, "upcheck_targets_last_load_success") == 0
    assert gauge(telemetry, "upcheck_targets_load_errors_total") == 1

    (tmp_path / "away.csv").rename(path)  # the same bytes come back: nothing to re-apply
    assert reloader.check() is True
    assert reloader.last_error is None
    assert gauge(telemetry, "upcheck_targets_last_load_success") == 1
    assert gauge(telemetry, "upcheck_targets_load_errors_total") == 1
    assert len(applied.lists) == 1
    assert "targets_source_recovered" in caplog.text


def test_a_rejected_file_stays_reported_until_a_good_one_replaces_it(tmp_path, telemetry):
    path = tmp_path / "urls.csv"
    path.write_bytes(GOOD)
    reloader, applied = make(path, telemetry)
    reloader.check()

    path.write_bytes(BAD)
    assert reloader.check() is False
    rejection = reloader.last_error
    assert rejection is not None and "no valid target" in rejection
    # Looked at again, unchanged: still rejected, but not counted (or parsed) twice.
    assert reloader.check() is False
    assert reloader.last_error == rejection
    assert gauge(telemetry, "upcheck_targets_last_load_success") == 0
    assert gauge(telemetry, "upcheck_targets_load_errors_total") == 1
    assert reloader.loaded and applied.lists == [["http://127.0.0.1:9/"]]

    path.write_bytes(GOOD.replace(b"shop", b"store"))
    assert reloader.check() is True
    assert reloader.last_error is None
    assert gauge(telemetry, "upcheck_targets_last_load_success") == 1
    assert len(applied.lists) == 2
