"""Who the members are: the ids rendezvous hashing spreads the URLs over.

Two sources sit behind one small :class:`Membership` protocol:

* :class:`StaticMembership` (``--shard INDEX/COUNT``): members ``"0"`` .. ``"COUNT-1"``, fixed
  for the life of the process. For several processes on one machine, or any runtime without an
  API that knows who is alive.
* :class:`EcsMembership` (``--shard ecs``): the running tasks of this task's ECS service, from
  ``ecs:ListTasks`` every 30 s. ECS already knows which tasks are alive, so no coordinator is
  added.

Guiding rule for every choice below: two members that disagree about the member set probe some
URLs twice; a member set that names a process which is not probing leaves URLs unprobed. A few
duplicate probes cost little, a silent gap is what a monitor must never have, so whenever the
truth is uncertain the code leans towards duplicates.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import IO, Any, Literal, Protocol

import gevent
from botocore.exceptions import BotoCoreError, ClientError

from daemon.aws import describe_error
from daemon.clock import Clock
from daemon.logs import event

log = logging.getLogger(__name__)

METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"
REFRESH_INTERVAL = 30.0  # seconds between two ListTasks, per SPEC.md "Sharding"
IDENTITY_TIMEOUT = 30.0  # how long start() keeps trying to learn this task's own ARN
MAX_STATIC_COUNT = 1024  # --shard INDEX/COUNT builds COUNT ids; keep a typo from eating memory
MAX_TASKS = 5000  # ECS's own limit of tasks per service; bounds the ListTasks pagination
_DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks per call
_METADATA_MAX_BYTES = 1 << 20  # a task metadata document is a few KiB
_TASK_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")  # ids name files: <results>.parts/<id>.json
_STATIC = re.compile(r"([0-9]+)/([0-9]+)")

MembersCallback = Callable[[tuple[str, ...]], None]
FailureCallback = Callable[[str], None]


class MembershipError(Exception):
    """This process cannot learn who it is, and waiting will not help: it should exit.

    Exiting is the safe outcome on ECS: the service replaces the task, and meanwhile the task
    drops out of its peers' ListTasks, so they take its share over. A process that stayed up
    without knowing its identity would either probe nothing (its peers still count it in, so
    its share goes unprobed) or everything (duplicates across the whole list).
    """


class Membership(Protocol):
    """A source of member ids, refreshed by its own loop between :meth:`start` and
    :meth:`stop`. The set is never empty and always contains :attr:`me`."""

    on_change: list[MembersCallback]  # called with the new members after each change
    on_failure: list[FailureCallback]  # called with the reason after each failed refresh

    @property
    def me(self) -> str:
        """This process's member id."""

    @property
    def description(self) -> str:
        """Where the members come from, for logs and the status page."""

    @property
    def ready(self) -> bool:
        """True once the member set came from the source itself, not from a placeholder."""

    @property
    def failures(self) -> int:
        """Failed refreshes since start, for a telemetry counter."""

    def members(self) -> tuple[str, ...]:
        """The member ids, sorted."""

    def refresh(self) -> bool:
        """Look at the source once; True when the member set changed."""

    def start(self) -> None:
        """Learn the first member set (may raise :class:`MembershipError`), then refresh every
        interval in a greenlet."""

    def stop(self) -> None:
        """Stop refreshing."""


# --- --shard, parsed ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """``--shard`` parsed: ``off``, ``static`` (with ``index`` and ``count``) or ``ecs``."""

    mode: Literal["off", "static", "ecs"]
    index: int = 0
    count: int = 1


def parse_shard(raw: str) -> ShardSpec:
    """Parse ``off``, ``INDEX/COUNT`` or ``ecs`` (case and surrounding blanks ignored).

    Raises :class:`ValueError` with a message that names the flag and quotes the value, in the
    style of the other settings, so it can go straight into the start-up error.
    """
    text = raw.strip().lower()
    if text in ("off", "ecs"):
        return ShardSpec(mode="off" if text == "off" else "ecs")
    match = _STATIC.fullmatch(text)
    if match is None:
        raise ValueError(f"--shard must be off, ecs or INDEX/COUNT (e.g. 0/3), got {raw!r}")
    index, count = int(match[1]), int(match[2])
    _check_static(index, count, raw)
    return ShardSpec(mode="static", index=index, count=count)


def _check_static(index: int, count: int, raw: str) -> None:
    if count < 1:
        raise ValueError(f"--shard COUNT must be at least 1, got {raw!r}")
    if count > MAX_STATIC_COUNT:
        raise ValueError(f"--shard COUNT must be at most {MAX_STATIC_COUNT}, got {raw!r}")
    if not 0 <= index < count:
        raise ValueError(
            f"--shard INDEX must be 0 to {count - 1} when COUNT is {count}, got {raw!r}"
        )


def ecs_metadata_url(environ: Mapping[str, str]) -> str:
    """The task metadata endpoint v4 base URL that ECS injects, for ``--shard ecs``.

    Raises :class:`ValueError` when it is missing, so ``--shard ecs`` outside ECS (or on a
    platform too old for v4) fails at start-up instead of at the first refresh.
    """
    url = environ.get(METADATA_ENV, "").strip()
    if not url:
        raise ValueError(
            f"--shard ecs needs the ECS task metadata endpoint, but {METADATA_ENV} is not set "
            "(ECS sets it on Fargate platform 1.4.0+ and EC2 container agent 1.39.0+)"
        )
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{METADATA_ENV} must be an http:// URL, got {url!r}")
    return url.rstrip("/")


# --- static -------------------------------------------------------------------------------------


class StaticMembership:
    """``--shard INDEX/COUNT``: members ``"0"`` .. ``"COUNT-1"``, this process is ``INDEX``.

    Nothing to refresh: if a member process is down, its share is unprobed until it is back,
    which is why a supervisor (systemd, a container runtime) should restart each member.
    """

    def __init__(self, index: int, count: int) -> None:
        _check_static(index, count, f"{index}/{count}")
        self._index = index
        self._count = count
        self._members = tuple(str(i) for i in range(count))
        self.on_change: list[MembersCallback] = []
        self.on_failure: list[FailureCallback] = []

    @property
    def me(self) -> str:
        return str(self._index)

    @property
    def description(self) -> str:
        return f"static {self._index}/{self._count}"

    @property
    def ready(self) -> bool:
        return True

    @property
    def failures(self) -> int:
        return 0

    def members(self) -> tuple[str, ...]:
        return self._members

    def refresh(self) -> bool:
        return False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


# --- ECS ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskIdentity:
    """This task, as ECS names it. ``task_id`` is the member id."""

    task_arn: str
    task_id: str
    cluster: str  # ARN or short name, as the metadata gives it; ListTasks takes either
    service: str
    family: str


def task_id(arn: str) -> str:
    """The task ID, the last segment of a task ARN (old ``task/ID`` or new
    ``task/CLUSTER/ID`` format): short, unique, and safe in a file name."""
    candidate = arn.rsplit("/", 1)[-1]
    if not arn.startswith("arn:") or ":task/" not in arn or not _TASK_ID.fullmatch(candidate):
        raise ValueError(f"not an ECS task ARN: {arn!r}")
    return candidate


def _cluster_name(cluster: str) -> str:
    return cluster.rsplit("/", 1)[-1] if cluster.startswith("arn:") else cluster


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The metadata endpoint never redirects; following one could leave the task's host."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


class _IdentityUnavailable(Exception):
    """The task's identity could not be read this time; another try may succeed."""


class EcsMembership:
    """``--shard ecs``: the tasks of this task's ECS service whose last status is RUNNING.

    How the set is formed, and why:

    * This task's ARN, cluster and service come from the task metadata endpoint v4
      (``$ECS_CONTAINER_METADATA_URI_V4/task``). ``ServiceName`` is in that document only on
      recent agents and platforms; without it, the service is read from
      ``ecs:DescribeTasks``' ``group`` (``service:NAME``) for this task.
    * Peers: ``ecs:ListTasks(cluster, serviceName, desiredStatus=RUNNING)``, then
      ``ecs:DescribeTasks`` keeping only tasks whose ``lastStatus`` is ``RUNNING``. A task that
      is still PROVISIONING or PENDING (pulling its image can take a minute on Fargate) is not
      probing yet; counting it in would hand it a share nobody probes. A task being stopped has
      desiredStatus STOPPED and drops out at once, so its peers take over within one refresh.
    * This task always counts itself in, listed or not: ECS lags a little behind a task that
      has just started, and a task that leaves itself out would leave its share unprobed until
      the next refresh.
    * A failed refresh keeps the last member set (logged, counted, ``on_failure`` called):
      never "I own nothing", never "everything". If a peer dies during an ECS API outage its
      share waits for the API to come back; that is the price of not probing everything twice.

    Before the first successful ListTasks, the set is just this task (``ready`` is False):
    with nothing better known, probing the whole list risks duplicates but leaves no gap, and
    :meth:`start` tries a ListTasks before returning, so on a healthy account this lasts no
    time at all. Integrators can hold back what would double-count (the merged results file,
    per-application CloudWatch metrics) until ``ready``.

    Without its own identity the task cannot name itself or find its service; :meth:`start`
    retries the metadata endpoint for ``identity_timeout`` seconds, then raises
    :class:`MembershipError` so the daemon exits (see there for why exiting is the safe choice).
    """

    def __init__(
        self,
        metadata_url: str,
        ecs_client_factory: Callable[[], Any],
        clock: Clock,
        *,
        refresh_interval: float = REFRESH_INTERVAL,
        identity_timeout: float = IDENTITY_TIMEOUT,
        http_timeout: float = 2.0,
    ) -> None:
        """No I/O here: the client is made on first use and the metadata read in :meth:`start`.

        ``ecs_client_factory`` returns a boto3 ECS client; give it short timeouts (a few
        seconds) so one refresh never outlasts the refresh interval by much.
        """
        self._metadata_url = metadata_url.rstrip("/")
        self._client_factory = ecs_client_factory
        self._client: Any | None = None
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._identity_timeout = identity_timeout
        self._http_timeout = http_timeout
        # No proxy: HTTP(S)_PROXY in the task's environment must not send the link-local
        # metadata request (or this task's identity) anywhere else.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        self._identity: TaskIdentity | None = None
        self._members: tuple[str, ...] = ()
        self._ready = False
        self._failing = False
        self._failures = 0
        self._greenlet: gevent.Greenlet | None = None
        self.on_change: list[MembersCallback] = []
        self.on_failure: list[FailureCallback] = []

    # -- the Membership protocol

    @property
    def me(self) -> str:
        return self._require_identity().task_id

    @property
    def identity(self) -> TaskIdentity | None:
        return self._identity

    @property
    def description(self) -> str:
        if self._identity is None:
            return "ecs (task identity not read yet)"
        return f"ecs service {self._identity.service} in {_cluster_name(self._identity.cluster)}"

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def failures(self) -> int:
        return self._failures

    def members(self) -> tuple[str, ...]:
        self._require_identity()
        return self._members

    def refresh(self) -> bool:
        """One ListTasks (+ DescribeTasks) round. True when the member set changed."""
        identity = self._require_identity()
        try:
            running = self._running_task_ids(identity)
        except (ClientError, BotoCoreError, OSError) as exc:
            self._failed(describe_error(exc))
            return False
        if self._failing:
            log.info(event("shard_membership_recovered", source=self.description))
            self._failing = False
        self._ready = True
        return self._set_members(running | {identity.task_id})

    def start(self) -> None:
        """Read this task's identity (retrying up to ``identity_timeout``; raises
        :class:`MembershipError`), try a first refresh, then refresh every interval."""
        self.identify()
        self.refresh()
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)
            self._greenlet = None

    # -- identity

    def identify(self) -> TaskIdentity:
        """This task's identity, read once; retried with backoff up to ``identity_timeout``.

        Raises :class:`MembershipError` when it cannot be had in time, or at once when it can
        never be had (the task was not started by a service).
        """
        if self._identity is not None:
            return self._identity
        deadline = self._clock.monotonic() + self._identity_timeout
        delay = 0.5
        attempt = 0
        while True:
            attempt += 1
            try:
                identity = self._read_identity()
            except _IdentityUnavailable as exc:
                reason = str(exc)
            else:
                self._identity = identity
                self._members = (identity.task_id,)
                log.info(
                    event(
                        "shard_identity",
                        source=self.description,
                        member=identity.task_id,
                        family=identity.family,
                    )
                )
                return identity
            if self._clock.monotonic() + delay > deadline:
                raise MembershipError(
                    f"cannot read this task's identity after {attempt} attempts: {reason}"
                )
            log.warning(
                event("shard_identity_retry", attempt=attempt, error=reason, retry_in=delay)
            )
            self._clock.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _read_identity(self) -> TaskIdentity:
        document = self._task_metadata()
        arn = document.get("TaskARN")
        cluster = document.get("Cluster")
        if not isinstance(arn, str) or not isinstance(cluster, str) or not arn or not cluster:
            raise _IdentityUnavailable("task metadata has no TaskARN or Cluster")
        try:
            member = task_id(arn)
        except ValueError as exc:
            raise _IdentityUnavailable(str(exc)) from exc
        service = document.get("ServiceName")
        if not isinstance(service, str) or not service:
            service = self._service_from_group(arn, cluster)
        family = document.get("Family")
        return TaskIdentity(
            task_arn=arn,
            task_id=member,
            cluster=cluster,
            service=service,
            family=family if isinstance(family, str) else "",
        )

    def _task_metadata(self) -> dict[str, Any]:
        url = self._metadata_url + "/task"
        if not url.startswith(("http://", "https://")):
            raise _IdentityUnavailable(f"{METADATA_ENV} is not an http:// URL")
        try:
            # Scheme checked above: urlopen never sees file:// or the like.
            with self._opener.open(url, timeout=self._http_timeout) as response:
                body = response.read(_METADATA_MAX_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise _IdentityUnavailable(f"task metadata endpoint answered {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _IdentityUnavailable(f"task metadata endpoint unreachable: {reason}") from exc
        if len(body) > _METADATA_MAX_BYTES:
            raise _IdentityUnavailable("task metadata document larger than 1 MiB")
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise _IdentityUnavailable(f"task metadata is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise _IdentityUnavailable("task metadata is not a JSON object")
        return document

    def _service_from_group(self, arn: str, cluster: str) -> str:
        """The service name from DescribeTasks' ``group`` (``service:NAME``), for platforms
        whose metadata has no ``ServiceName``."""
        try:
            answer = self._ecs().describe_tasks(cluster=cluster, tasks=[arn])
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _IdentityUnavailable(
                f"DescribeTasks for this task: {describe_error(exc)}"
            ) from exc
        tasks = answer.get("tasks") or []
        if not tasks:
            raise _IdentityUnavailable("DescribeTasks does not know this task yet")
        group = str(tasks[0].get("group") or "")
        if not group.startswith("service:") or group == "service:":
            raise MembershipError(
                f"this task was not started by an ECS service (group {group!r}); --shard ecs "
                "shares the list between the tasks of one service: run it as a service, or "
                "use --shard INDEX/COUNT"
            )
        return group.removeprefix("service:")

    # -- peers

    def _running_task_ids(self, identity: TaskIdentity) -> set[str]:
        ecs = self._ecs()
        arns: list[str] = []
        pages = ecs.get_paginator("list_tasks").paginate(
            cluster=identity.cluster,
            serviceName=identity.service,
            desiredStatus="RUNNING",
            PaginationConfig={"MaxItems": MAX_TASKS},  # bounds the loop
        )
        for page in pages:
            arns.extend(str(arn) for arn in page.get("taskArns", []))
        others = sorted({arn for arn in arns if arn != identity.task_arn})
        running: set[str] = set()
        for start in range(0, len(others), _DESCRIBE_BATCH):
            answer = ecs.describe_tasks(
                cluster=identity.cluster, tasks=others[start : start + _DESCRIBE_BATCH]
            )
            for task in answer.get("tasks", []):
                if task.get("lastStatus") != "RUNNING":
                    continue  # not probing yet (or any more): counting it in would leave a gap
                try:
                    running.add(task_id(str(task.get("taskArn", ""))))
                except ValueError:
                    log.warning(event("shard_task_skipped", task_arn=task.get("taskArn")))
        return running

    def _ecs(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    # -- state

    def _require_identity(self) -> TaskIdentity:
        if self._identity is None:
            raise MembershipError("task identity not read yet: call start() first")
        return self._identity

    def _set_members(self, members: set[str]) -> bool:
        new = tuple(sorted(members))
        old = self._members
        if new == old:
            return False
        self._members = new
        log.info(
            event(
                "shard_members_changed",
                source=self.description,
                members=len(new),
                joined=",".join(sorted(set(new) - set(old))) or None,
                left=",".join(sorted(set(old) - set(new))) or None,
            )
        )
        for callback in list(self.on_change):
            try:
                callback(new)
            except Exception:
                log.exception(event("shard_on_change_failed", source=self.description))
        return True

    def _failed(self, reason: str) -> None:
        self._failing = True
        log.error(
            event(
                "shard_membership_refresh_failed",
                source=self.description,
                error=reason,
                keeping=f"{len(self._members)} members",
            )
        )
        self._count_failure(reason)

    def _count_failure(self, reason: str) -> None:
        self._failures += 1
        for callback in list(self.on_failure):
            try:
                callback(reason)
            except Exception:
                log.exception(event("shard_on_failure_failed", source=self.description))

    def _loop(self) -> None:
        while True:
            self._clock.sleep(self._refresh_interval)
            try:
                self.refresh()
            except Exception as exc:
                # Unexpected (a malformed answer): count it like a failed ListTasks, keep going.
                log.exception(event("shard_membership_refresh_crashed", source=self.description))
                self._count_failure(describe_error(exc))
