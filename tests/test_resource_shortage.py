"""When the daemon itself runs out of file descriptors (or memory), a probe has no verdict on
its target: nothing is recorded, the shortage is logged and counted, and the probe is tried
again shortly."""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import ssl

import pytest
from prometheus_client import CollectorRegistry

from daemon.model import NoVerdict, Target
from daemon.probe.prober import Prober
from daemon.probe_endpoint import OnDemandProber
from daemon.scheduler import RETRY_AFTER_SHORTAGE, Scheduler
from daemon.store import ResultsStore
from daemon.telemetry import Telemetry
from tests import servers as srv
from tests.fakes import FakeClock, result
from tests.test_app import call
from tests.test_probe_endpoint import app_with

SHORT = NoVerdict("cannot open a socket: Too many open files")


class NoDescriptors:
    """While in force, this process can open no new descriptor (its soft limit is lowered to
    the lowest free descriptor number)."""

    def __enter__(self) -> NoDescriptors:
        self.limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest_free = os.dup(0)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, self.limits[1]))
        return self

    def __exit__(self, *exc: object) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, self.limits)


def test_a_probe_with_no_descriptor_left_has_no_verdict_instead_of_a_down_target(servers):
    port = servers.wsgi(srv.text_app())
    prober = Prober(ssl.create_default_context())
    target = Target(url=f"http://127.0.0.1:{port}/", name="local")
    assert prober.probe(target).up
    with NoDescriptors(), pytest.raises(NoVerdict, match="Too many open files"):
        prober.probe(target)
    assert prober.probe(target).up


def test_a_resolver_out_of_descriptors_is_no_verdict_rather_than_a_dns_failure():
    def resolver(host: str, port: int):
        raise OSError(errno.EMFILE, "Too many open files")

    prober = Prober(ssl.create_default_context(), resolver=resolver)
    with pytest.raises(NoVerdict, match=r"cannot resolve shop\.example: Too many open files"):
        prober.probe(Target(url="http://shop.example/", name="shop"))


def unreachable_name_servers(host: str, port: int):
    """What c-ares says when it cannot send its query, for want of a socket or of a route."""
    raise socket.gaierror(11, "Could not contact DNS servers")


def test_name_servers_out_of_reach_for_want_of_a_descriptor_is_no_verdict():
    prober = Prober(ssl.create_default_context(), resolver=unreachable_name_servers)
    target = Target(url="http://shop.example/", name="shop")
    with NoDescriptors(), pytest.raises(NoVerdict, match="Too many open files"):
        prober.probe(target)
    assert prober.probe(target).error_kind == "dns"  # with descriptors to spare: the target's

    def times_out(host: str, port: int):
        raise socket.gaierror(12, "Timeout while contacting DNS servers")  # 12: also ENOMEM

    timed_out = Prober(ssl.create_default_context(), resolver=times_out).probe(target)
    assert timed_out.error_kind == "dns" and "Timeout" in (timed_out.error or "")


def test_probe_endpoint_answers_503_when_the_daemon_has_no_descriptor_left(servers):
    port = servers.wsgi(srv.text_app())
    on_demand = OnDemandProber(Prober(ssl.create_default_context()).probe, 5.0)
    app = app_with(on_demand)
    query = f"target=http://127.0.0.1:{port}/"
    with NoDescriptors():
        status, _, body = call(app, "/probe", QUERY_STRING=query)
    assert status == "503 Service Unavailable" and b"Too many open files" in body
    assert call(app, "/probe", QUERY_STRING=query)[0] == "200 OK"


class Shortages:
    """A probe that is up, except for the calls (1-based) listed in ``short``."""

    def __init__(self, clock: FakeClock, short: set[int]) -> None:
        self.clock = clock
        self.short = short
        self.times: list[float] = []

    def __call__(self, target: Target):
        self.times.append(self.clock.now)
        if len(self.times) in self.short:
            raise SHORT
        return result(up=True)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def telemetry():
    return Telemetry(CollectorRegistry())


def scheduler_with(probe, clock, telemetry, store) -> Scheduler:
    scheduler = Scheduler(
        probe, store, telemetry, clock, interval=10.0, timeout=5.0, concurrency=10
    )
    scheduler.start()
    return scheduler


def sample(telemetry: Telemetry, name: str, **labels: str) -> float:
    return telemetry.registry.get_sample_value(name, labels) or 0.0


def test_a_probe_the_daemon_could_not_make_records_nothing_and_is_retried_shortly(
    clock, telemetry, caplog
):
    store = ResultsStore()
    probe = Shortages(clock, short={2, 3})
    scheduler = scheduler_with(probe, clock, telemetry, store)
    target = Target(url="http://127.0.0.1/a", name="a")
    start = clock.now
    scheduler.apply([target])
    clock.advance(0.1)
    first = store.get(target.url).last
    assert first is not None and first.up
    with caplog.at_level(logging.WARNING, logger="daemon.scheduler"):
        clock.advance(10.6)  # the second probe (at 10) found no descriptor, nor at 10.5
        assert store.get(target.url).last is first  # the target keeps its state meanwhile
        clock.advance(1.0)  # the third try, 1 s later, worked
    assert [t - start for t in probe.times] == pytest.approx([0.0, 10.0, 10.5, 11.5])
    state = store.get(target.url)
    assert state.last is not first and state.last.up and state.consecutive_failures == 0
    assert sample(telemetry, "upcheck_probe_resource_errors_total") == 2
    assert sample(telemetry, "upcheck_probes_total", result="success") == 2
    assert sample(telemetry, "upcheck_probes_total", result="crash") == 0
    assert sample(telemetry, "upcheck_probes_in_flight") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and all(
        m.startswith("event=probe_resource_error target=http://127.0.0.1/a name=a")
        and "Too many open files" in m
        for m in messages
    )
    assert not any("target_down" in m for m in messages)
    scheduler.stop()


def test_a_shortage_that_lasts_leaves_the_target_as_it_was_until_its_next_slot(clock, telemetry):
    store = ResultsStore()
    attempts = len(RETRY_AFTER_SHORTAGE) + 1
    probe = Shortages(clock, short=set(range(2, 2 + attempts)))
    scheduler = scheduler_with(probe, clock, telemetry, store)
    target = Target(url="http://127.0.0.1/a", name="a")
    start = clock.now
    scheduler.apply([target])
    clock.advance(0.1)
    first = store.get(target.url).last
    clock.advance(19.8)  # every try of the second round failed for want of descriptors
    assert store.get(target.url).last is first
    assert sample(telemetry, "upcheck_probe_resource_errors_total") == attempts
    assert sample(telemetry, "upcheck_probes_in_flight") == 0
    clock.advance(0.2)  # the third round, on the target's own phase, worked
    assert probe.times[-1] - start == pytest.approx(20.0)
    assert store.get(target.url).last is not first
    assert sample(telemetry, "upcheck_probes_total", result="crash") == 0
    scheduler.stop()
