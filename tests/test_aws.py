"""S3 and CloudWatch against moto in server mode, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import urllib.request
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
import gevent
import gevent.event
import pytest
from botocore.exceptions import ClientError
from gevent.server import StreamServer
from prometheus_client import CollectorRegistry

from daemon.aws import make_client
from daemon.model import Target
from daemon.outputs.cloudwatch import (
    MAX_DATUMS_PER_REQUEST,
    MAX_DIMENSION_VALUE,
    MAX_REQUEST_BYTES,
    MAX_VALUES_PER_DATUM,
    CloudWatchSink,
    _refuses_the_data,
    batches,
    dimension_value,
    encoded_size,
)
from daemon.outputs.document import Snapshot
from daemon.outputs.publisher import Publisher
from daemon.outputs.results_file import S3ResultsFile
from daemon.sources.base import SourceError
from daemon.sources.s3 import S3TargetSource
from daemon.store import ResultsStore
from daemon.telemetry import Telemetry
from daemon.web import results_answer
from tests.fakes import FakeClock, result
from tests.support import MotoServer, wait_until


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws(moto, monkeypatch):
    """boto3 in this process talks to moto only; moto's state is wiped per test."""
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    urllib.request.urlopen(
        urllib.request.Request(f"{moto.endpoint_url}/moto-api/reset", method="POST")
    )
    return moto


@pytest.fixture
def s3(aws):
    client = make_client("s3")  # the daemon's own client settings
    client.create_bucket(Bucket="upcheck-targets")
    client.create_bucket(Bucket="upcheck-results")
    return client


# -- targets from S3 -------------------------------------------------------------------------


def test_an_unchanged_s3_list_is_not_downloaded_again(s3):
    s3.put_object(Bucket="upcheck-targets", Key="urls.csv", Body=b"url\nhttps://a.example/\n")
    source = S3TargetSource("s3://upcheck-targets/urls.csv", client=s3)
    statuses: list[int] = []
    s3.meta.events.register(
        "after-call.s3.GetObject",
        lambda http_response, **_: statuses.append(http_response.status_code),
    )
    first = source.fetch(None)
    assert first is not None and first.data == b"url\nhttps://a.example/\n"
    assert source.fetch(first.checksum) is None
    assert source.fetch(first.checksum) is None
    assert statuses == [200, 304, 304]  # one download, then two bodiless answers

    s3.put_object(Bucket="upcheck-targets", Key="urls.csv", Body=b"url\nhttps://b.example/\n")
    second = source.fetch(first.checksum)
    assert second is not None and second.data.endswith(b"b.example/\n")
    assert second.checksum != first.checksum
    assert statuses[-1] == 200


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("s3://upcheck-targets/missing.csv", "NoSuchKey"),
        ("s3://no-such-bucket/u.csv", "NoSuchBucket"),
    ],
)
def test_a_missing_object_or_bucket_is_a_source_error(s3, url, code):
    with pytest.raises(SourceError, match=code):
        S3TargetSource(url, client=s3).fetch(None)


# -- results to S3 ---------------------------------------------------------------------------


def snapshot(store: ResultsStore | None = None, ok: bool = True) -> Snapshot:
    return Snapshot(store or ResultsStore(), "shop", targets_load_success=ok)


def test_results_are_one_json_object_with_the_status_page_beside_it(s3):
    sink = S3ResultsFile("s3://upcheck-results/prod/results.json", client=s3)
    sink.publish(snapshot())
    obj = s3.get_object(Bucket="upcheck-results", Key="prod/results.json")
    assert obj["ContentType"] == "application/json"
    assert obj["CacheControl"] == "no-cache"
    assert json.loads(obj["Body"].read())["application"] == "shop"
    page = s3.get_object(Bucket="upcheck-results", Key="prod/results.html")
    assert page["ContentType"].startswith("text/html")
    assert b"<h1>shop</h1>" in page["Body"].read()


def test_two_applications_sharing_a_prefix_keep_their_own_status_pages(s3):
    shop = S3ResultsFile("s3://upcheck-results/prod/shop.json", client=s3)
    blog = S3ResultsFile("s3://upcheck-results/prod/blog.json", client=s3)
    shop.publish(snapshot())
    blog.publish(Snapshot(ResultsStore(), "blog", targets_load_success=True))
    shop_page = s3.get_object(Bucket="upcheck-results", Key="prod/shop.html")["Body"].read()
    blog_page = s3.get_object(Bucket="upcheck-results", Key="prod/blog.html")["Body"].read()
    assert b"<h1>shop</h1>" in shop_page and b"<h1>blog</h1>" in blog_page


def test_get_results_redirects_to_a_presigned_url_that_expires_within_5_minutes(s3):
    live = b'{"schema":1,"live":true}'
    sink = S3ResultsFile("s3://upcheck-results/prod/results.json", client=s3)
    # Before this process's first write, the object may be missing or a past run's: live.
    status, headers, body = results_answer(sink, False, lambda: live)
    assert status == "200 OK" and ("X-Upcheck-Results", "live") in headers and body == live
    sink.publish(snapshot())
    status, headers, _ = results_answer(sink, True, lambda: live)
    assert status == "302 Found"
    location = dict(headers)["Location"]
    query = parse_qs(urlsplit(location).query)
    assert int(query["X-Amz-Expires"][0]) <= 300
    assert "X-Amz-Signature" in query
    with urllib.request.urlopen(location, timeout=10) as response:
        assert json.loads(response.read())["schema"] == 1
    # Without the signature the private object is not served.
    bare = location.split("?")[0]
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(bare, timeout=10)
    assert denied.value.code == 403


def test_an_s3_write_failure_raises_for_the_publisher_to_count(s3):
    sink = S3ResultsFile("s3://no-such-bucket/results.json", client=s3)
    with pytest.raises(RuntimeError, match="NoSuchBucket"):
        sink.publish(snapshot())


# -- CloudWatch ------------------------------------------------------------------------------


@pytest.fixture
def cloudwatch(aws):
    return make_client("cloudwatch")


def statistics(client, name: str, dims: dict[str, str], stat: str = "SampleCount") -> float:
    now = datetime.now(UTC)
    response = client.get_metric_statistics(
        Namespace="Upcheck/Test",
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
        Period=3600,
        Statistics=[stat],
    )
    return sum(point[stat] for point in response["Datapoints"])


def test_probes_between_pushes_go_out_as_statistic_sets(cloudwatch):
    store = ResultsStore()
    sizes: list[int] = []
    cloudwatch.meta.events.register(
        "before-send.cloudwatch.PutMetricData", lambda request, **_: sizes.append(len(request.body))
    )
    sink = CloudWatchSink(
        "Upcheck/Test", "shop", ("ResponseTime", "Up", "StatusCode"), store, client=cloudwatch
    )
    target = Target(url="https://u:pw@shop.example/", name="shop")
    store.add(target)
    for up in (True, True, True, False):
        store.record(target, result(up=up, duration=0.1, status=200 if up else 503))
    sink.publish(snapshot(store))
    assert len(sizes) == 1  # one request for everything

    url_dims = {"Application": "shop", "Url": "https://xxxxx@shop.example/"}
    assert statistics(cloudwatch, "Up", url_dims) == 4
    assert statistics(cloudwatch, "Up", url_dims, "Sum") == 3
    assert statistics(cloudwatch, "ResponseTime", url_dims) == 3  # failures carry no latency
    assert statistics(cloudwatch, "StatusCode", url_dims) == 4
    app = {"Application": "shop"}
    assert statistics(cloudwatch, "TargetsTotal", app, "Maximum") == 1
    assert statistics(cloudwatch, "TargetsDown", app, "Maximum") == 1
    assert statistics(cloudwatch, "TargetsLoadSuccess", app, "Minimum") == 1
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="Upcheck/Test")["Metrics"]}
    assert names == {"Up", "ResponseTime", "StatusCode", "TargetsTotal", "TargetsUp",
                     "TargetsDown", "TargetsLoadSuccess"}  # fmt: skip
    # A second push with no new probes sends only the per-application figures.
    sink.publish(snapshot(store))
    assert statistics(cloudwatch, "Up", url_dims) == 4


def test_url_metrics_none_sends_only_the_application_figures(cloudwatch):
    store = ResultsStore()
    sink = CloudWatchSink("Upcheck/Test", "shop", (), store, client=cloudwatch)
    target = Target(url="https://shop.example/", name="shop")
    store.add(target)
    store.record(target, result())
    sink.publish(snapshot(store))
    metrics = cloudwatch.list_metrics(Namespace="Upcheck/Test")["Metrics"]
    assert {m["MetricName"] for m in metrics} == {
        "TargetsTotal", "TargetsUp", "TargetsDown", "TargetsLoadSuccess",
    }  # fmt: skip


def test_a_member_that_does_not_merge_sends_only_its_own_urls_figures(cloudwatch):
    """With a shared list every member sends its URLs' figures and only the merging member
    sends the per-application ones, for the whole fleet: nothing is counted twice."""
    store = ResultsStore()
    fleet: dict[str, tuple[int, int, int] | None] = {"counts": None}
    sink = CloudWatchSink(
        "Upcheck/Test", "shop", ("Up",), store, client=cloudwatch,
        application_figures=lambda _: fleet["counts"],
    )  # fmt: skip
    target = Target(url="https://shop.example/", name="shop")
    store.add(target)
    store.record(target, result())
    sink.publish(snapshot(store))
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="Upcheck/Test")["Metrics"]}
    assert names == {"Up"}
    fleet["counts"] = (30, 29, 1)  # this member merges now
    sink.publish(snapshot(store))
    app = {"Application": "shop"}
    assert statistics(cloudwatch, "TargetsTotal", app, "Maximum") == 30
    assert statistics(cloudwatch, "TargetsDown", app, "Maximum") == 1


def test_many_urls_are_split_into_requests_within_the_service_limits(cloudwatch):
    store = ResultsStore()
    bodies: list[int] = []
    counts: list[int] = []

    def measure(request, **_):
        bodies.append(len(request.body))

    def count(params, **_):
        counts.append(len(params["MetricData"]))

    cloudwatch.meta.events.register("before-send.cloudwatch.PutMetricData", measure)
    cloudwatch.meta.events.register("provide-client-params.cloudwatch.PutMetricData", count)
    sink = CloudWatchSink("Upcheck/Test", "shop", ("ResponseTime", "Up"), store, client=cloudwatch)
    long_path = "p" * 1500  # longer than a dimension value may be
    for i in range(1200):
        target = Target(url=f"https://shop.example/{i}/{long_path}", name=str(i))
        store.add(target)
        store.record(target, result(duration=0.001 * (i % 7 + 1)))
    sink.publish(snapshot(store))
    assert sink.pending == 0
    assert sum(counts) == 4 + 2 * 1200
    assert max(counts) <= MAX_DATUMS_PER_REQUEST
    assert len(counts) >= 3
    assert max(bodies) < MAX_REQUEST_BYTES


def test_batches_respect_count_and_size_for_any_input():
    when = datetime.now(UTC)
    big = {
        "MetricName": "Up",
        "Dimensions": [{"Name": "Url", "Value": "€" * 1024}],  # percent-encodes to 9 bytes each
        "Timestamp": when,
        "Values": [float(v) for v in range(MAX_VALUES_PER_DATUM)],
        "Counts": [1.0] * MAX_VALUES_PER_DATUM,
    }
    split = list(batches([big] * 500))
    assert sum(len(b) for b in split) == 500
    for batch in split:
        assert len(batch) <= MAX_DATUMS_PER_REQUEST
        assert sum(encoded_size(d) for d in batch) < MAX_REQUEST_BYTES
    small = [{"MetricName": "Up", "Timestamp": when, "Value": 1.0}] * 2500
    assert [len(b) for b in batches(small)] == [1000, 1000, 500]


def test_more_than_150_distinct_values_are_spread_over_several_datums(cloudwatch):
    store = ResultsStore()
    sent: list[dict] = []
    cloudwatch.meta.events.register(
        "provide-client-params.cloudwatch.PutMetricData",
        lambda params, **_: sent.extend(params["MetricData"]),
    )
    sink = CloudWatchSink("Upcheck/Test", "shop", ("ResponseTime",), store, client=cloudwatch)
    target = Target(url="https://shop.example/", name="shop")
    store.add(target)
    for i in range(400):
        store.record(target, result(duration=0.001 * (i + 1)))
    store.record(target, result(duration=math.inf))
    sink.publish(snapshot(store))
    response_time = [d for d in sent if d["MetricName"] == "ResponseTime"]
    assert [len(d["Values"]) for d in response_time] == [150, 150, 100]
    assert all(math.isfinite(v) for d in response_time for v in d["Values"])
    assert sum(sum(d["Counts"]) for d in response_time) == 400


def test_dimension_values_fit_1024_characters_and_stay_distinct():
    a = dimension_value("https://x.example/" + "a" * 2000)
    b = dimension_value("https://x.example/" + "a" * 1999 + "b")
    assert len(a) <= MAX_DIMENSION_VALUE and len(b) <= MAX_DIMENSION_VALUE
    assert a != b
    assert dimension_value("https://short.example/") == "https://short.example/"


def test_dimension_values_are_printable_ascii_as_cloudwatch_requires():
    values = [
        dimension_value("https://bücher.example/café"),
        dimension_value("https://bücher.example/cafe"),
        dimension_value("Boutique Zürich\tnord"),
        dimension_value("   "),
    ]
    for value in values:
        assert value.isascii() and value.isprintable() and value.strip()
    assert values[0] == "https://b%C3%BCcher.example/caf%C3%A9"
    assert values[0] != values[1]


def test_a_datum_cloudwatch_refuses_is_dropped_and_the_rest_still_go_out(cloudwatch):
    telemetry = Telemetry(CollectorRegistry())
    store = ResultsStore()
    sink = CloudWatchSink(
        "Upcheck/Test", "shop", ("Up",), store, telemetry=telemetry, client=cloudwatch
    )
    target = Target(url="https://shop.example/", name="shop")
    store.add(target)
    store.record(target, result())
    # No code path of the sink builds an invalid datum; this one stands in for whatever the
    # service may refuse one day. Resending it would fail forever and block the queue.
    poison = {"MetricName": "Up", "Value": 1.0, "Values": [1.0], "Counts": [1.0]}
    sink._enqueue([poison])
    with pytest.raises(RuntimeError, match="refused as invalid, their datums dropped"):
        sink.publish(snapshot(store))
    assert sink.pending == 0
    dropped = telemetry.registry.get_sample_value(
        "upcheck_sink_dropped_total", {"sink": "cloudwatch"}
    )
    assert dropped == 1  # only the datum the service named
    url_dims = {"Application": "shop", "Url": "https://shop.example/"}
    assert statistics(cloudwatch, "Up", url_dims) == 1
    assert statistics(cloudwatch, "TargetsTotal", {"Application": "shop"}, "Maximum") == 1
    sink.publish(snapshot(store))  # and the next push goes through cleanly


@pytest.mark.parametrize(
    ("status", "code", "dropped"),
    [
        (400, "InvalidParameterValue", True),
        (400, "InvalidParameterValueException", True),
        (400, "MissingParameter", True),
        (400, "AccessDeniedException", False),  # fix the role and the data still goes out
        (400, "RequestExpired", False),
        (400, "Throttling", False),
        (403, "InvalidClientTokenId", False),
        (500, "InternalServiceError", False),
    ],
)
def test_only_a_refusal_of_the_data_itself_drops_it(status, code, dropped):
    error = ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutMetricData",
    )
    assert _refuses_the_data(error) is dropped


def test_while_cloudwatch_is_down_the_buffer_is_bounded_and_drops_are_counted(aws):
    down = boto3.client("cloudwatch", endpoint_url="http://127.0.0.1:9")  # nothing listens
    telemetry = Telemetry(CollectorRegistry())
    store = ResultsStore()
    sink = CloudWatchSink(
        "Upcheck/Test", "shop", ("Up",), store, telemetry=telemetry, client=down, max_pending=10
    )
    for i in range(5):
        target = Target(url=f"https://shop.example/{i}", name=str(i))
        store.add(target)
        store.record(target, result())
    for _ in range(3):
        with pytest.raises(RuntimeError, match="kept for retry"):
            sink.publish(snapshot(store))
    assert sink.pending == 10
    dropped = telemetry.registry.get_sample_value(
        "upcheck_sink_dropped_total", {"sink": "cloudwatch"}
    )
    assert dropped == (4 + 5) + 4 + 4 - 10


# -- CloudWatch at shutdown: a push whose answer has not come back ---------------------------


class AnswerHoldingProxy:
    """A TCP relay on 127.0.0.1 in front of moto. Every request reaches moto; moto's answer to
    the first one is held back until the test releases it: the datums have landed, the caller
    has not heard so. Later connections pass freely."""

    def __init__(self, upstream: MotoServer) -> None:
        self._upstream = ("127.0.0.1", upstream.port)
        self.answer_held = gevent.event.Event()  # moto answered the first request
        self.release = gevent.event.Event()
        self._first = True
        self._server = StreamServer(("127.0.0.1", 0), self._relay)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def _relay(self, client: socket.socket, _address: object) -> None:
        hold, self._first = self._first, False
        upstream = socket.create_connection(self._upstream, timeout=10)

        def requests() -> None:
            with contextlib.suppress(OSError):
                while data := client.recv(65536):
                    upstream.sendall(data)
                upstream.shutdown(socket.SHUT_WR)

        forward = gevent.spawn(requests)
        try:
            while data := upstream.recv(65536):
                if hold:
                    hold = False
                    self.answer_held.set()
                    self.release.wait(timeout=30)
                client.sendall(data)
        except OSError:
            pass  # the caller hung up while its answer was held
        finally:
            forward.kill()
            upstream.close()

    def __enter__(self) -> AnswerHoldingProxy:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.stop(timeout=1)


def three_probes_of_one_url(store: ResultsStore) -> dict[str, str]:
    target = Target(url="https://shop.example/", name="shop")
    store.add(target)
    for up in (True, True, False):
        store.record(target, result(up=up))
    return {"Application": "shop", "Url": "https://shop.example/"}


def dropped(telemetry: Telemetry) -> float | None:
    return telemetry.registry.get_sample_value("upcheck_sink_dropped_total", {"sink": "cloudwatch"})


def test_a_push_in_flight_at_shutdown_finishes_and_is_not_sent_again(aws, cloudwatch):
    telemetry = Telemetry(CollectorRegistry())
    store = ResultsStore()
    clock = FakeClock()
    with AnswerHoldingProxy(aws) as proxy:
        client = boto3.client("cloudwatch", endpoint_url=proxy.url)
        sink = CloudWatchSink(
            "Upcheck/Test", "shop", ("Up",), store, telemetry=telemetry, client=client
        )
        url_dims = three_probes_of_one_url(store)
        publisher = Publisher(sink, lambda: snapshot(store), telemetry, clock, interval=60)
        publisher.start()
        clock.advance(60)  # the loop's push goes out; moto counts it; its answer is held
        wait_until(proxy.answer_held.is_set, what="moto to answer the loop's push")
        assert statistics(cloudwatch, "Up", url_dims) == 3

        flush = gevent.spawn(publisher.flush, 5.0)  # SIGTERM now, the answer still held
        gevent.idle()  # the flush is under way before the answer comes
        proxy.release.set()
        assert flush.get(timeout=10) is True
    assert statistics(cloudwatch, "Up", url_dims) == 3  # counted once
    assert sink.pending == 0
    assert not dropped(telemetry)  # and nothing given up: the push was let finish


def test_a_push_killed_mid_request_is_dropped_not_sent_again(aws, cloudwatch, caplog):
    """CloudWatch has no idempotency key: a statistic set sent twice is counted twice."""
    telemetry = Telemetry(CollectorRegistry())
    store = ResultsStore()
    with AnswerHoldingProxy(aws) as proxy:
        client = boto3.client("cloudwatch", endpoint_url=proxy.url)
        sink = CloudWatchSink(
            "Upcheck/Test", "shop", ("Up",), store, telemetry=telemetry, client=client
        )
        url_dims = three_probes_of_one_url(store)
        push = gevent.spawn(sink.publish, snapshot(store))
        wait_until(proxy.answer_held.is_set, what="moto to answer the push")
        push.kill(block=True, timeout=5)  # as a shutdown out of time would
        assert push.dead
        sink.publish(snapshot(store))  # the next push: the application figures only
    assert statistics(cloudwatch, "Up", url_dims) == 3  # not 6
    assert sink.pending == 0
    assert dropped(telemetry) == 5  # the four application figures and Up, counted as lost
    assert "event=sink_dropped sink=cloudwatch datums=5" in caplog.text


def test_a_push_unanswered_when_the_shutdown_budget_runs_out_is_given_up_not_resent(
    aws, cloudwatch, caplog
):
    telemetry = Telemetry(CollectorRegistry())
    store = ResultsStore()
    clock = FakeClock()
    with AnswerHoldingProxy(aws) as proxy:
        client = boto3.client("cloudwatch", endpoint_url=proxy.url)
        sink = CloudWatchSink(
            "Upcheck/Test", "shop", ("Up",), store, telemetry=telemetry, client=client
        )
        url_dims = three_probes_of_one_url(store)
        publisher = Publisher(sink, lambda: snapshot(store), telemetry, clock, interval=60)
        publisher.start()
        clock.advance(60)
        wait_until(proxy.answer_held.is_set, what="moto to answer the loop's push")
        assert publisher.flush(0.5) is False  # the answer is never released in time
    assert statistics(cloudwatch, "Up", url_dims) == 3  # counted once, not sent again
    assert dropped(telemetry) == 5
    assert "event=sink_flush_timed_out sink=cloudwatch" in caplog.text
