"""Rendezvous (highest random weight) hashing: which member owns a key.

Every member scores every key; the highest score wins. Adding a member moves only the keys the
new member now wins (about 1/N of them), and removing one moves only the keys it owned, so a
change of membership never reshuffles the rest of the list. There is no ring to rebalance and
no state to share: members that agree on the member set agree on every owner.

The score is the first 8 bytes of BLAKE2b over ``member + "\\0" + key`` (UTF-8), compared as a
big-endian unsigned number. It is fixed here, not Python's ``hash()`` (salted per process), so
every process, every version and every machine computes the same owners; changing it would move
nearly every URL at the next deployment. Ties (no two members ever score the same in practice)
go to the smaller member id so the answer stays total and deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import blake2b

_DIGEST_SIZE = 8  # 64 bits: ties are out of reach for any realistic member count


def _prefix(member: str) -> blake2b:
    """The hash state after ``member + "\\0"``; copied per key, so the member part is hashed
    once per ring instead of once per key (about 1.5x faster than hashing the concatenation)."""
    return blake2b((member + "\0").encode(), digest_size=_DIGEST_SIZE)


def weight(member: str, key: str) -> bytes:
    """The score of ``member`` for ``key``: 8 bytes, compared as a big-endian number."""
    state = _prefix(member)
    state.update(key.encode())
    return state.digest()


class Ring:
    """A fixed member set, ready to answer "who owns this key" for many keys quickly.

    Build one per membership change and reuse it for the whole targets list: 50,000 URLs over
    10 members take a fraction of a second. Members are deduplicated and kept sorted, so two
    processes given the same ids in any order build equal rings.
    """

    __slots__ = ("_prefixes", "members")

    def __init__(self, members: Iterable[str]) -> None:
        unique = tuple(sorted(set(members)))
        if not unique:
            raise ValueError("a ring needs at least one member")
        for member in unique:
            if not member or "\0" in member:
                # "\0" separates member from key in the hashed bytes; inside an id it would
                # let two different (member, key) pairs hash the same bytes.
                raise ValueError(f"member ids must be non-empty and free of NUL, got {member!r}")
        self.members: tuple[str, ...] = unique
        self._prefixes = tuple((member, _prefix(member)) for member in unique)

    def owner(self, key: str) -> str:
        """The member that ranks first for ``key``."""
        data = key.encode()
        best = b""
        best_member = ""
        for member, prefix in self._prefixes:  # sorted, so a tie keeps the smaller id
            state = prefix.copy()
            state.update(data)
            score = state.digest()
            if score > best:
                best = score
                best_member = member
        return best_member

    def owns(self, key: str, me: str) -> bool:
        """True when ``me`` is the owner of ``key`` (False for an ``me`` outside the ring)."""
        return self.owner(key) == me

    def rank(self, key: str) -> list[str]:
        """All members, best first for ``key``: the owner, then who takes over if it leaves."""
        data = key.encode()
        scores: dict[str, bytes] = {}
        for member, prefix in self._prefixes:
            state = prefix.copy()
            state.update(data)
            scores[member] = state.digest()
        # Python's sort is stable even with reverse=True: equal scores keep the sorted order.
        return sorted(self.members, key=scores.__getitem__, reverse=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ring) and other.members == self.members

    def __hash__(self) -> int:
        return hash(self.members)

    def __repr__(self) -> str:
        return f"Ring({list(self.members)!r})"


def owner(key: str, members: Sequence[str]) -> str:
    """The member that ranks first for ``key``; for many keys build a :class:`Ring` once."""
    return Ring(members).owner(key)


def rank(key: str, members: Sequence[str]) -> list[str]:
    """``members`` (deduplicated), best first for ``key``."""
    return Ring(members).rank(key)


def phase(key: str, interval: float, now: float) -> float:
    """Seconds from ``now`` (unix time) to the next probe slot of ``key`` on a shared list.

    Every member places a key's slots at the same wall-clock offsets within its interval (from
    the key's hash), so a URL that moves to another member is probed at its usual cadence, not
    at once, and a list's probes stay spread over the interval.
    """
    fraction = int.from_bytes(blake2b(key.encode(), digest_size=_DIGEST_SIZE).digest()) / 2**64
    return (fraction * interval - now) % interval
