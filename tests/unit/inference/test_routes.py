"""Sticky A/B assignment of routes to arms."""

from __future__ import annotations

import numpy as np
import pytest

from apex_stream.inference.routes import assign


def test_assignment_is_sticky_and_follows_the_split() -> None:
    routes = [f"route-{i}" for i in range(20_000)]
    arms = assign(routes, [0.8, 0.2])
    assert abs((arms == 1).mean() - 0.2) < 0.01  # binomial sd ~0.003
    again = assign(list(reversed(routes)), [0.8, 0.2])[::-1]
    assert np.array_equal(arms, again)  # a route's arm depends on the route only
    three = assign(routes, [0.5, 0.3, 0.2])
    assert np.allclose(np.bincount(three) / len(routes), [0.5, 0.3, 0.2], atol=0.012)
    assert set(assign(routes[:100], [1.0])) == {0}
    with pytest.raises(ValueError, match="must sum to 1"):
        assign(routes, [0.8, 0.3])
