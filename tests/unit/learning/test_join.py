"""The outcome join without a broker: every outcome is matched once, whichever of it and its
opportunity comes first; expiry and eviction are bounded and counted; the commit floor holds
back at the earliest outcome still waiting."""

from __future__ import annotations

import numpy as np

from apex_stream.learning.join import PartitionJoin, Scored

FEATURES, MEMBERS = 3, 2


def scored(ids: list[str], at: float = 100.0) -> Scored:
    n = len(ids)
    base = np.array([float(i[1:]) for i in ids])
    return Scored(
        ids,
        np.repeat(base[:, None], FEATURES, axis=1).astype(np.float32),
        np.column_stack([base / 1000, base / 2000]),
        np.full((n, MEMBERS), "1.0.0", object),
        base / 10,
        np.full(n, at),
    )


def outcomes(join: PartitionJoin, ids: list[str], now: float = 100.0, first: int = 0):
    n = len(ids)
    return join.outcomes(
        ids, np.arange(n) % 2 == 0, np.arange(n, dtype=float), np.arange(first, first + n), now
    )


def test_an_outcome_after_its_opportunity_joins_its_scored_row() -> None:
    join = PartitionJoin(100, FEATURES, MEMBERS)
    assert len(join.scored(scored(["o1", "o2", "o3"]))) == 0
    joined = outcomes(join, ["o3", "o1"])
    assert joined.ids == ["o3", "o1"]
    np.testing.assert_array_equal(joined.X[:, 0], [3, 1])
    np.testing.assert_array_equal(joined.scores[:, 0], [0.003, 0.001])
    np.testing.assert_array_equal(joined.latency_ms, [0.3, 0.1])
    np.testing.assert_array_equal(joined.success, [True, False])
    assert len(join) == 1
    assert len(outcomes(join, ["o1"])) == 0  # joined once: a second outcome waits instead
    assert join.floor() == 0


def test_an_outcome_before_its_opportunity_joins_when_it_is_scored() -> None:
    join = PartitionJoin(100, FEATURES, MEMBERS)
    assert len(outcomes(join, ["o7", "o8"], first=40)) == 0
    assert join.floor() == 40
    joined = join.scored(scored(["o5", "o8"]))
    assert joined.ids == ["o8"] and joined.X[0, 0] == 8 and joined.profit[0] == 1.0
    assert join.floor() == 40  # o7 still waits
    assert join.scored(scored(["o7"])).ids == ["o7"]
    assert join.floor() is None and join.pending == {}
    assert len(join) == 1  # o5 waits for its outcome


def test_expiry_drops_only_what_is_older_than_the_horizon() -> None:
    join = PartitionJoin(100, FEATURES, MEMBERS)
    join.scored(scored(["o1", "o2"], at=10.0))
    join.scored(scored(["o3"], at=20.0))
    outcomes(join, ["o2"])
    assert join.expire(15.0) == 1  # o1; o2 had joined
    assert list(join.index) == ["o3"]
    assert join.expire(15.0) == 0
    outcomes(join, ["o9"], now=30.0, first=5)
    assert join.expire_outcomes(29.0) == 0 and join.expire_outcomes(31.0) == 1
    assert join.floor() is None


def test_a_full_ring_evicts_its_oldest_entries_and_counts_them() -> None:
    join = PartitionJoin(4, FEATURES, MEMBERS)
    join.scored(scored(["o1", "o2", "o3"]))
    outcomes(join, ["o2"])
    join.scored(scored(["o4", "o5", "o6"]))  # overwrites o1 (waiting), o2 (joined)
    assert join.evicted == 1
    assert sorted(join.index) == ["o3", "o4", "o5", "o6"]
    assert outcomes(join, ["o6", "o3"]).X[:, 0].tolist() == [6, 3]
    join.scored(scored([f"o{i}" for i in range(10, 16)]))  # more than the ring holds
    assert sorted(join.index) == ["o12", "o13", "o14", "o15"]
    assert join.evicted == 1 + 2 + 2


def test_a_redelivered_opportunity_keeps_one_entry() -> None:
    join = PartitionJoin(10, FEATURES, MEMBERS)
    join.scored(scored(["o1", "o2"], at=1.0))
    join.scored(scored(["o1"], at=2.0))
    assert join.expire(1.5) == 1  # o2; o1's newer entry stays
    assert outcomes(join, ["o1"]).ids == ["o1"] and len(join) == 0
