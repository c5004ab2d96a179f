"""Sharding core: rendezvous ownership, --shard parsing, and ECS membership.

ECS membership runs against a stand-in task metadata endpoint (a WSGI app on 127.0.0.1 that
answers the real v4 ``/task`` JSON shape) and moto in server mode for ListTasks/DescribeTasks.
Nothing here sends a packet beyond 127.0.0.1.

What moto 5.2.5 can and cannot do, and how these tests live with it:

* ``RunTask`` with ``launchType="FARGATE"`` creates tasks without container instances, and it
  records the ``group`` we pass (``service:NAME``), as ECS does for a service's tasks. moto's
  CreateService starts no tasks, so the tests start "the service's tasks" with RunTask.
* The task definition uses ``networkMode="bridge"``: moto's awsvpc path crashes building the
  ENI attachment (``NetworkInterface`` has no ``private_dns_name``).
* ``ListTasks`` ignores ``serviceName`` (a TODO in moto's ``list_tasks``) and never paginates;
  it does filter on cluster and ``desiredStatus``. So each test gets its own cluster holding
  only that service's tasks, and pagination is covered with a botocore Stubber instead.
* ``DescribeTasks`` advances a task's ``lastStatus`` (RUNNING -> DEACTIVATING -> ...) on every
  call through moto's state manager; the fixture switches ``ecs::task`` to manual progression
  so tasks stay RUNNING. moto tasks are born RUNNING, so a PENDING peer is also a Stubber test.
"""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid

import boto3
import gevent
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from daemon.sharding.membership import (
    MAX_STATIC_COUNT,
    METADATA_ENV,
    EcsMembership,
    MembershipError,
    ShardSpec,
    StaticMembership,
    ecs_metadata_url,
    parse_shard,
    task_id,
)
from daemon.sharding.rendezvous import Ring, owner, rank, weight
from tests.fakes import FakeClock
from tests.support import MotoServer, free_port, wait_until

KEYS = [f"https://site{i}.example.com/health?check={i}" for i in range(3000)]

# --- rendezvous ---------------------------------------------------------------------------------


def test_every_key_has_exactly_one_owner_and_it_ranks_first():
    members = ["0", "1", "2"]
    ring = Ring(members)
    for key in KEYS:
        owners = [m for m in members if ring.owns(key, m)]
        assert owners == [ring.owner(key)]
        ranking = ring.rank(key)
        assert ranking[0] == owners[0] == owner(key, members)
        assert sorted(ranking) == members
    # and the spread is even enough that no member is starved
    shares = {m: sum(ring.owner(k) == m for k in KEYS) for m in members}
    assert all(800 < share < 1200 for share in shares.values()), shares


def test_adding_a_fourth_member_moves_about_a_quarter_of_keys_all_to_the_new_member():
    before = Ring(["a", "b", "c"])
    after = Ring(["a", "b", "c", "d"])
    moved = [k for k in KEYS if before.owner(k) != after.owner(k)]
    assert {after.owner(k) for k in moved} == {"d"}
    assert all(after.owner(k) == "d" for k in KEYS if after.owner(k) != before.owner(k))
    assert [k for k in KEYS if after.owner(k) == "d"] == moved  # d took nothing else
    assert 0.2 * len(KEYS) < len(moved) < 0.3 * len(KEYS), len(moved)


def test_removing_a_member_moves_only_its_keys_each_to_its_runner_up():
    before = Ring(["a", "b", "c", "d"])
    after = Ring(["a", "b", "d"])
    moved = [k for k in KEYS if before.owner(k) != after.owner(k)]
    assert moved == [k for k in KEYS if before.owner(k) == "c"]
    assert moved  # c owned something, so the assertion above had something to compare
    for key in moved:
        assert after.owner(key) == before.rank(key)[1]


def test_owners_are_the_same_in_every_process_and_version():
    # Hard-coded: Python's hash() is salted per process, blake2b is not. If these change, every
    # deployment would move nearly every URL at once; change them only on purpose.
    assert weight("0", "https://example.com/").hex() == "551bfcd3fb779730"
    assert rank("https://example.com/", ["0", "1", "2"]) == ["1", "2", "0"]
    assert owner("https://example.org/health", ["0", "1", "2"]) == "2"
    tasks = [
        "3f1c0e9a2b7d4c5e8f90a1b2c3d4e5f6",
        "9b8a7c6d5e4f40312a1b0c9d8e7f6a5b",
        "e9028f8d5d8e4f258373e7b93ce9a3c3",
    ]
    assert owner("merge", tasks) == "3f1c0e9a2b7d4c5e8f90a1b2c3d4e5f6"
    assert owner("https://example.com/", tasks) == "e9028f8d5d8e4f258373e7b93ce9a3c3"


def test_member_order_and_duplicates_do_not_change_the_ring():
    assert Ring(["c", "a", "b", "a"]) == Ring(["a", "b", "c"])
    assert Ring(["c", "a", "b", "a"]).members == ("a", "b", "c")
    assert all(owner(k, ["c", "a", "b"]) == owner(k, ["a", "b", "c"]) for k in KEYS[:200])


def test_a_process_outside_the_ring_owns_nothing():
    ring = Ring(["0", "1"])
    assert not any(ring.owns(k, "2") for k in KEYS[:200])


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([], "a ring needs at least one member"),
        (["a", ""], "member ids must be non-empty and free of NUL, got ''"),
        (["a\0b"], "member ids must be non-empty and free of NUL, got 'a\\x00b'"),
    ],
)
def test_a_ring_refuses_no_members_and_ambiguous_ids(members, message):
    with pytest.raises(ValueError) as error:
        Ring(members)
    assert str(error.value) == message


# --- --shard and static membership --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "spec"),
    [
        ("off", ShardSpec("off")),
        (" OFF ", ShardSpec("off")),
        ("ecs", ShardSpec("ecs")),
        ("0/1", ShardSpec("static", 0, 1)),
        ("2/3", ShardSpec("static", 2, 3)),
        ("00/3", ShardSpec("static", 0, 3)),
    ],
)
def test_shard_values_parse(raw, spec):
    assert parse_shard(raw) == spec


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "--shard must be off, ecs or INDEX/COUNT (e.g. 0/3), got ''"),
        ("on", "--shard must be off, ecs or INDEX/COUNT (e.g. 0/3), got 'on'"),
        ("-1/3", "--shard must be off, ecs or INDEX/COUNT (e.g. 0/3), got '-1/3'"),
        ("1/2/3", "--shard must be off, ecs or INDEX/COUNT (e.g. 0/3), got '1/2/3'"),
        ("1 / 3", "--shard must be off, ecs or INDEX/COUNT (e.g. 0/3), got '1 / 3'"),
        ("0/0", "--shard COUNT must be at least 1, got '0/0'"),
        ("3/3", "--shard INDEX must be 0 to 2 when COUNT is 3, got '3/3'"),
        ("0/5000", f"--shard COUNT must be at most {MAX_STATIC_COUNT}, got '0/5000'"),
    ],
)
def test_bad_shard_values_are_refused_with_a_clear_message(raw, message):
    with pytest.raises(ValueError) as error:
        parse_shard(raw)
    assert str(error.value) == message


def test_static_members_are_the_indexes_and_never_change():
    membership = StaticMembership(1, 3)
    membership.start()
    assert membership.members() == ("0", "1", "2")
    assert membership.me == "1"
    assert membership.ready
    assert membership.refresh() is False
    assert membership.description == "static 1/3"
    membership.stop()


def test_static_membership_refuses_an_index_outside_the_count():
    with pytest.raises(ValueError, match="INDEX must be 0 to 2 when COUNT is 3, got '3/3'"):
        StaticMembership(3, 3)


def test_ecs_mode_needs_the_metadata_endpoint_variable():
    with pytest.raises(ValueError) as error:
        ecs_metadata_url({})
    assert str(error.value).startswith(
        f"--shard ecs needs the ECS task metadata endpoint, but {METADATA_ENV} is not set"
    )
    assert ecs_metadata_url({METADATA_ENV: " http://169.254.170.2/v4/abc/ "}) == (
        "http://169.254.170.2/v4/abc"
    )


def test_task_ids_come_from_both_arn_formats():
    assert task_id("arn:aws:ecs:us-east-1:123456789012:task/prod/e9028f8d5d8e4f25") == (
        "e9028f8d5d8e4f25"
    )
    assert task_id("arn:aws:ecs:us-east-1:123456789012:task/9781c248-0edd-4cdb") == (
        "9781c248-0edd-4cdb"
    )
    for bad in (
        "arn:aws:ecs:us-east-1:123456789012:task/prod/..",  # would name a file outside .parts/
        "arn:aws:ecs:us-east-1:123456789012:service/prod/upcheck",
        "task/prod/e9028f8d5d8e4f25",
    ):
        with pytest.raises(ValueError, match="not an ECS task ARN"):
            task_id(bad)


# --- ECS: stand-ins -----------------------------------------------------------------------------


def fargate_task_metadata(task_arn: str, cluster: str, service: str | None) -> dict:
    """The v4 ``/task`` document as Fargate platform 1.4 serves it (values are made up).
    ``ServiceName`` is only there on recent platforms and agents."""
    document = {
        "Cluster": cluster,
        "TaskARN": task_arn,
        "Family": "upcheck",
        "Revision": "7",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": {"CPU": 0.5, "Memory": 1024},
        "PullStartedAt": "2026-11-30T16:01:02.123456789Z",
        "PullStoppedAt": "2026-11-30T16:01:09.987654321Z",
        "AvailabilityZone": "us-east-1a",
        "LaunchType": "FARGATE",
        "Containers": [
            {
                "DockerId": task_arn.rsplit("/", 1)[-1] + "-1234567890",
                "Name": "upcheck",
                "DockerName": "upcheck",
                "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/upcheck:1.4.0",
                "ImageID": "sha256:" + "ab" * 32,
                "Labels": {
                    "com.amazonaws.ecs.cluster": cluster,
                    "com.amazonaws.ecs.container-name": "upcheck",
                    "com.amazonaws.ecs.task-arn": task_arn,
                    "com.amazonaws.ecs.task-definition-family": "upcheck",
                    "com.amazonaws.ecs.task-definition-version": "7",
                },
                "DesiredStatus": "RUNNING",
                "KnownStatus": "RUNNING",
                "Limits": {"CPU": 2},
                "CreatedAt": "2026-11-30T16:01:10.000000000Z",
                "StartedAt": "2026-11-30T16:01:10.500000000Z",
                "Type": "NORMAL",
                "ContainerARN": "arn:aws:ecs:us-east-1:123456789012:container/prod/x/y",
                "LogDriver": "awslogs",
                "LogOptions": {
                    "awslogs-group": "/ecs/upcheck",
                    "awslogs-region": "us-east-1",
                    "awslogs-stream": "ecs/upcheck/x",
                },
                "Networks": [
                    {
                        "NetworkMode": "awsvpc",
                        "IPv4Addresses": ["10.0.1.23"],
                        "AttachmentIndex": 0,
                        "MACAddress": "0a:1b:2c:3d:4e:5f",
                        "IPv4SubnetCIDRBlock": "10.0.1.0/24",
                        "DomainNameServers": ["10.0.0.2"],
                        "DomainNameSearchList": ["us-east-1.compute.internal"],
                        "PrivateDNSName": "ip-10-0-1-23.ec2.internal",
                        "SubnetGatewayIpv4Address": "10.0.1.1/24",
                    }
                ],
                "Snapshotter": "overlayfs",
            }
        ],
        "ClockDrift": {
            "ClockErrorBound": 0.3,
            "ReferenceTimestamp": "2026-11-30T16:00:00Z",
            "ClockSynchronizationStatus": "SYNCHRONIZED",
        },
        "EphemeralStorageMetrics": {"Utilized": 261, "Reserved": 20496},
    }
    if service is not None:
        document["ServiceName"] = service
    return document


class MetadataEndpoint:
    """The task metadata endpoint v4, on 127.0.0.1: ``/task`` answers ``document`` (or
    ``status`` when that is not 200). Counts the requests it serves."""

    def __init__(self, servers) -> None:
        self.document: dict = {}
        self.status = 200
        self.requests = 0
        self.paths: list[str] = []
        port = servers.wsgi(self._app)
        self.url = f"http://127.0.0.1:{port}/v4/0123456789abcdef-1234567890"

    def _app(self, environ, start_response):
        self.requests += 1
        self.paths.append(environ["PATH_INFO"])
        if self.status != 200 or not environ["PATH_INFO"].endswith("/task"):
            start_response(f"{self.status if self.status != 200 else 404} Error", [])
            return [b"error"]
        body = json.dumps(self.document).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]


class SteppingClock:
    """Fake time that moves by exactly what is slept, at once: retries run instantly.
    ``on_sleep`` runs after each sleep, so a test can change the world between two tries."""

    def __init__(self, on_sleep=None) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self._on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        gevent.sleep(0)
        if self._on_sleep is not None:
            self._on_sleep()

    def wait(self, event, seconds):
        raise AssertionError("not used by membership")


# A client that fails fast: one attempt, short timeouts (a stopped moto must not stall tests).
TEST_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1})


def ecs_client(endpoint_url: str):
    return boto3.client(
        "ecs",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="moto-secret-never-logged",
        config=TEST_CLIENT_CONFIG,
    )


def moto_post(endpoint_url: str, path: str, body: dict | None = None) -> None:
    request = urllib.request.Request(
        endpoint_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10):
        pass


class EcsService:
    """One cluster and one service's tasks in moto, started with RunTask (see module doc)."""

    def __init__(self, moto: MotoServer, cluster_name: str | None = None) -> None:
        moto_post(moto.endpoint_url, "/moto-api/reset")
        # Keep tasks RUNNING however often DescribeTasks is called.
        moto_post(
            moto.endpoint_url,
            "/moto-api/state-manager/set-transition",
            {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}},
        )
        self.client = ecs_client(moto.endpoint_url)
        self.service = "upcheck"
        self.cluster_name = cluster_name or "c" + uuid.uuid4().hex
        self.cluster_arn = self.client.create_cluster(clusterName=self.cluster_name)["cluster"][
            "clusterArn"
        ]
        self.client.register_task_definition(
            family="upcheck",
            networkMode="bridge",
            containerDefinitions=[{"name": "upcheck", "image": "upcheck:test", "memory": 512}],
        )

    def run(self, count: int, group: str | None = None) -> list[str]:
        tasks = self.client.run_task(
            cluster=self.cluster_name,
            taskDefinition="upcheck",
            count=count,
            launchType="FARGATE",
            group=group or f"service:{self.service}",
        )["tasks"]
        return [task["taskArn"] for task in tasks]

    def stop(self, arn: str) -> None:
        self.client.stop_task(cluster=self.cluster_name, task=arn, reason="scaled in")


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch):
    """boto3 finds fake credentials in the environment and never asks an instance role."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto-secret-never-logged")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def ecs(moto, aws_env):
    return EcsService(moto)


@pytest.fixture
def metadata(servers):
    return MetadataEndpoint(servers)


class CountingClient:
    """An ECS client that counts ListTasks rounds. The count moves before the request goes
    out, so right after FakeClock.advance() it says whether a refresh began."""

    def __init__(self, client) -> None:
        self._client = client
        self.listings = 0

    def get_paginator(self, name):
        if name == "list_tasks":
            self.listings += 1
        return self._client.get_paginator(name)

    def __getattr__(self, name):
        return getattr(self._client, name)


def ids(arns: list[str]) -> tuple[str, ...]:
    return tuple(sorted(task_id(arn) for arn in arns))


# --- ECS: membership ----------------------------------------------------------------------------


def test_ecs_members_are_the_running_tasks_of_the_service(ecs, metadata):
    arns = ecs.run(3)
    metadata.document = fargate_task_metadata(arns[0], ecs.cluster_arn, "upcheck")
    membership = EcsMembership(metadata.url, lambda: ecs.client, FakeClock())
    assert not membership.ready
    membership.start()
    try:
        assert membership.me == task_id(arns[0])
        assert membership.members() == ids(arns)
        assert membership.ready
        assert membership.failures == 0
        assert membership.description == f"ecs service upcheck in {ecs.cluster_name}"
        assert metadata.paths == ["/v4/0123456789abcdef-1234567890/task"]
    finally:
        membership.stop()


def test_without_service_name_in_metadata_the_service_comes_from_the_task_group(ecs, metadata):
    arns = ecs.run(2)
    metadata.document = fargate_task_metadata(arns[1], ecs.cluster_arn, service=None)
    membership = EcsMembership(metadata.url, lambda: ecs.client, FakeClock())
    identity = membership.identify()
    assert identity.service == "upcheck"
    assert identity.family == "upcheck"
    assert identity.cluster == ecs.cluster_arn
    assert membership.refresh() is True
    assert membership.members() == ids(arns)


def test_a_task_outside_a_service_refuses_to_start(ecs, metadata):
    arns = ecs.run(1, group="family:upcheck")
    metadata.document = fargate_task_metadata(arns[0], ecs.cluster_arn, service=None)
    membership = EcsMembership(metadata.url, lambda: ecs.client, SteppingClock())
    with pytest.raises(MembershipError, match=r"not started by an ECS service \(group 'family"):
        membership.start()
    assert metadata.requests == 1  # a permanent answer: not retried


def test_a_task_not_yet_listed_counts_itself_in(ecs, metadata):
    peers = ecs.run(2)
    me = f"arn:aws:ecs:us-east-1:123456789012:task/{ecs.cluster_name}/{'f' * 32}"
    metadata.document = fargate_task_metadata(me, ecs.cluster_arn, "upcheck")
    membership = EcsMembership(metadata.url, lambda: ecs.client, FakeClock())
    membership.start()
    try:
        assert membership.members() == tuple(sorted([*ids(peers), "f" * 32]))
        assert membership.ready
    finally:
        membership.stop()


def test_a_service_with_no_listed_task_still_has_this_task(ecs, metadata):
    me = f"arn:aws:ecs:us-east-1:123456789012:task/{ecs.cluster_name}/{'a' * 32}"
    metadata.document = fargate_task_metadata(me, ecs.cluster_arn, "upcheck")
    membership = EcsMembership(metadata.url, lambda: ecs.client, FakeClock())
    membership.identify()
    assert membership.refresh() is False  # (me,) before and after
    assert membership.members() == ("a" * 32,)
    assert membership.ready


def test_a_stopped_member_disappears_at_the_next_refresh(ecs, metadata):
    arns = ecs.run(3)
    metadata.document = fargate_task_metadata(arns[0], ecs.cluster_arn, "upcheck")
    clock = FakeClock()
    client = CountingClient(ecs.client)
    membership = EcsMembership(metadata.url, lambda: client, clock, refresh_interval=30)
    seen: list[tuple[str, ...]] = []
    membership.on_change.append(seen.append)
    membership.start()
    try:
        assert seen == [ids(arns)]
        assert client.listings == 1
        ecs.stop(arns[2])
        clock.advance(29)
        assert client.listings == 1  # no refresh before the interval is up
        clock.advance(1)
        assert client.listings == 2
        wait_until(lambda: len(seen) == 2, what="the refresh after the interval")
        assert seen[1] == membership.members() == ids(arns[:2])
        joined = ecs.run(1)
        clock.advance(30)
        wait_until(lambda: len(seen) == 3, what="the next refresh")
        assert membership.members() == ids(arns[:2] + joined)
    finally:
        membership.stop()


def test_a_failed_list_keeps_the_last_members_and_is_counted_once_per_failure(
    aws_env, metadata, caplog
):
    caplog.set_level(logging.INFO, logger="daemon.sharding.membership")
    with MotoServer() as moto:
        ecs = EcsService(moto)
        arns = ecs.run(3)
        metadata.document = fargate_task_metadata(arns[0], ecs.cluster_arn, "upcheck")
        reasons: list[str] = []
        client = ecs.client  # the same client before and after the outage
        membership = EcsMembership(metadata.url, lambda: client, FakeClock())
        membership.on_failure.append(reasons.append)
        membership.start()
        try:
            assert membership.members() == ids(arns)
            moto.stop()
            assert membership.refresh() is False
            assert membership.refresh() is False
            assert membership.members() == ids(arns)  # not (me,), not ()
            assert membership.ready
            assert membership.failures == 2
            assert len(reasons) == 2
            assert reasons[0].startswith("EndpointConnectionError")
            failed = [r for r in caplog.records if "shard_membership_refresh_failed" in r.message]
            assert len(failed) == 2
            assert 'keeping="3 members"' in failed[0].message
            assert "moto-secret-never-logged" not in caplog.text

            moto.start()  # same port, fresh state: the service now runs other tasks
            ecs = EcsService(moto, cluster_name=ecs.cluster_name)
            arns_after = ecs.run(2)
            assert membership.refresh() is True
            assert membership.members() == tuple(sorted([*ids(arns_after), task_id(arns[0])]))
            assert membership.failures == 2
            assert "shard_membership_recovered" in caplog.text
        finally:
            membership.stop()


def test_tasks_still_starting_are_left_out_and_every_page_is_read(aws_env, metadata):
    # moto tasks are born RUNNING and ListTasks never paginates: a Stubber stands in.
    client = ecs_client(f"http://127.0.0.1:{free_port()}")  # never reached: the stub answers
    cluster = "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
    arn = "arn:aws:ecs:us-east-1:123456789012:task/prod/{}".format
    me, a, b, pending = arn("0" * 32), arn("a" * 32), arn("b" * 32), arn("c" * 32)
    metadata.document = fargate_task_metadata(me, cluster, "upcheck")
    listing = {"cluster": cluster, "serviceName": "upcheck", "desiredStatus": "RUNNING"}
    with Stubber(client) as stub:
        stub.add_response("list_tasks", {"taskArns": [me, a], "nextToken": "t1"}, listing)
        stub.add_response("list_tasks", {"taskArns": [b, pending]}, {**listing, "nextToken": "t1"})
        stub.add_response(
            "describe_tasks",
            {
                "tasks": [
                    {"taskArn": a, "lastStatus": "RUNNING"},
                    {"taskArn": b, "lastStatus": "RUNNING"},
                    {"taskArn": pending, "lastStatus": "PENDING"},
                ]
            },
            {"cluster": cluster, "tasks": [a, b, pending]},
        )
        membership = EcsMembership(metadata.url, lambda: client, FakeClock())
        membership.identify()
        assert membership.refresh() is True
        stub.assert_no_pending_responses()
    assert membership.members() == ("0" * 32, "a" * 32, "b" * 32)


def test_the_metadata_endpoint_is_retried_until_it_answers(ecs, metadata):
    arns = ecs.run(1)
    metadata.document = fargate_task_metadata(arns[0], ecs.cluster_arn, "upcheck")
    metadata.status = 503

    def recover_after_two_failures():
        if len(clock.slept) == 2:
            metadata.status = 200

    clock = SteppingClock(on_sleep=recover_after_two_failures)
    membership = EcsMembership(metadata.url, lambda: ecs.client, clock)
    membership.start()
    try:
        assert metadata.requests == 3
        assert clock.slept == [0.5, 1.0]
        assert membership.members() == ids(arns)
    finally:
        membership.stop()


def test_an_unreadable_metadata_endpoint_stops_the_start_after_the_identity_timeout(metadata):
    metadata.status = 500
    clock = SteppingClock()
    membership = EcsMembership(
        metadata.url, _no_client, clock, identity_timeout=30, refresh_interval=30
    )
    with pytest.raises(MembershipError) as error:
        membership.start()
    assert "answered 500" in str(error.value)
    assert sum(clock.slept) <= 30
    assert clock.slept[:4] == [0.5, 1.0, 2.0, 4.0]
    assert metadata.requests == len(clock.slept) + 1
    with pytest.raises(MembershipError, match="call start"):
        _ = membership.me


def test_a_closed_metadata_port_is_reported_as_unreachable():
    url = f"http://127.0.0.1:{free_port()}/v4/x"
    membership = EcsMembership(url, _no_client, SteppingClock(), identity_timeout=1)
    with pytest.raises(MembershipError, match="task metadata endpoint unreachable"):
        membership.identify()


def test_the_metadata_request_never_goes_through_a_proxy(metadata, monkeypatch):
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    me = "arn:aws:ecs:us-east-1:123456789012:task/prod/" + "d" * 32
    metadata.document = fargate_task_metadata(me, "prod", "upcheck")
    membership = EcsMembership(metadata.url, _no_client, SteppingClock(), identity_timeout=1)
    assert membership.identify().task_id == "d" * 32
    assert metadata.requests == 1


def _no_client():
    raise AssertionError("these tests never reach ECS")
