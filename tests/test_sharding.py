"""Sharding core: rendezvous ownership."""

from __future__ import annotations

import pytest

from daemon.sharding.rendezvous import Ring, owner, rank, weight

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
