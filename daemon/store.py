"""The results store: the latest result, failure streak and recent history of every target.

The scheduler writes into it; the Prometheus exposition, the results document, the status page
and the sinks read from it. Everything runs on one gevent hub, so plain dicts are safe: no
greenlet switch can happen in the middle of these methods.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from daemon.model import ProbeResult, Target

HISTORY = 20  # results kept per target for the status page


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    up: bool
    response_time_ms: float


class TargetState:
    """One target's place in the store. ``version`` changes whenever ``last`` does."""

    __slots__ = (
        "_ring",
        "_ring_len",
        "_ring_pos",
        "consecutive_failures",
        "last",
        "target",
        "version",
    )

    def __init__(self, target: Target) -> None:
        self.target = target
        self.last: ProbeResult | None = None
        self.consecutive_failures = 0
        self.version = 0
        # History as a compact ring of response times in ms, negative for a failed probe:
        # 50k targets x 20 points stay under 5 MB this way.
        self._ring = array("f", bytes(4 * HISTORY))
        self._ring_len = 0
        self._ring_pos = 0

    def record(self, result: ProbeResult) -> None:
        self.last = result
        self.version += 1
        self.consecutive_failures = 0 if result.up else self.consecutive_failures + 1
        millis = result.duration * 1000.0
        self._ring[self._ring_pos] = millis if result.up else -max(millis, 0.001)
        self._ring_pos = (self._ring_pos + 1) % HISTORY
        self._ring_len = min(self._ring_len + 1, HISTORY)

    def seed(self, history: Sequence[float | None], consecutive_failures: int) -> None:
        """Carry over what an earlier owner of this target saw (the results document's
        ``history``, oldest first, None for a failure), before this process's first probe."""
        if self.last is not None or self._ring_len:
            return  # this process has its own results already: they win
        for millis in list(history)[-HISTORY:]:
            up = isinstance(millis, int | float) and millis >= 0
            self._ring[self._ring_pos] = float(millis) if up and millis is not None else -0.001
            self._ring_pos = (self._ring_pos + 1) % HISTORY
            self._ring_len = min(self._ring_len + 1, HISTORY)
        self.consecutive_failures = max(0, int(consecutive_failures))

    def history(self) -> list[HistoryPoint]:
        """Oldest first."""
        start = (self._ring_pos - self._ring_len) % HISTORY
        points = []
        for i in range(self._ring_len):
            value = self._ring[(start + i) % HISTORY]
            points.append(HistoryPoint(value >= 0, abs(value)))
        return points


ResultListener = Callable[[Target, ProbeResult], None]


class ResultsStore:
    def __init__(self) -> None:
        self._states: dict[str, TargetState] = {}
        self._listeners: list[ResultListener] = []
        self.generation = 0  # bumps whenever the set of targets changes
        self.version = 0  # bumps whenever anything changes: the set of targets or a result

    def subscribe(self, listener: ResultListener) -> None:
        """Call ``listener`` with every new result (e.g. to aggregate between two pushes)."""
        self._listeners.append(listener)

    def add(self, target: Target) -> None:
        self._states[target.url] = TargetState(target)
        self.generation += 1
        self.version += 1

    def remove(self, url: str) -> None:
        if self._states.pop(url, None) is not None:
            self.generation += 1
            self.version += 1

    def record(self, target: Target, result: ProbeResult) -> None:
        state = self._states.get(target.url)
        if state is None or state.target is not target:
            return  # the target was removed or replaced while this probe ran
        state.record(result)
        self.version += 1
        for listener in self._listeners:
            listener(target, result)

    def get(self, url: str) -> TargetState | None:
        return self._states.get(url)

    def states(self) -> Iterator[TargetState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    def counts(self) -> tuple[int, int, int]:
        """(total, up, down); a target not probed yet counts in total only."""
        up = down = 0
        for state in self._states.values():
            if state.last is not None:
                if state.last.up:
                    up += 1
                else:
                    down += 1
        return len(self._states), up, down
