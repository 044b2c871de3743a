"""A/B tests of model versions: the decision to promote, roll back or keep testing (pure
functions). Which version scores a route is :func:`apex_stream.inference.routes.assign`.

The decision compares *win rates at the decision threshold* (the share of executed
opportunities that succeeded). The controller looks at a running test again and again, so a
fixed-sample test (a z-test at p < alpha) would find a difference that is not there far more
often than alpha. The test is therefore sequential: the mixture sequential probability ratio
test (mSPRT; Johari, Koomen, Pekelis, Walsh, "Always Valid Inference", 2017) on the
difference of win rates, with a normal mixture N(0, ``effect_sd``²) over the true difference
and the pooled standard error. Its p-value is valid at every look: when the versions do not
differ, the chance that it *ever* falls below alpha is at most alpha. A candidate is promoted
when both arms have at least ``min_samples`` executed outcomes and it is better with
p < ``alpha``; rolled back when it is worse with p < ``alpha``; otherwise the test goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Arm:
    """Executed outcomes of one version in a test."""

    version: str
    wins: int
    trades: int

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0


def two_proportion_z(a: Arm, b: Arm) -> tuple[float, float]:
    """z of ``b``'s win rate minus ``a``'s and its standard error (pooled); (0, 0) when an
    arm is empty or the pooled rate is 0 or 1."""
    if not a.trades or not b.trades:
        return 0.0, 0.0
    pooled = (a.wins + b.wins) / (a.trades + b.trades)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.trades + 1 / b.trades))
    if se == 0:
        return 0.0, 0.0
    return (b.win_rate - a.win_rate) / se, se


def sequential_p(z: float, se: float, effect_sd: float) -> float:
    """The mSPRT's always-valid p-value, 1/Λ (at most 1), of a difference estimated ``z``
    standard errors ``se`` from 0, where Λ = sqrt(se²/(se²+τ²)) · exp(z²τ²/(2(se²+τ²))) is
    the likelihood ratio of the mixture N(0, τ²), τ = ``effect_sd``, against no difference."""
    if se == 0:
        return 1.0
    s2, t2 = se * se, effect_sd * effect_sd
    log_ratio = 0.5 * math.log(s2 / (s2 + t2)) + z * z * t2 / (2 * (s2 + t2))
    return math.exp(-log_ratio) if log_ratio > 0 else 1.0


@dataclass(frozen=True)
class Decision:
    action: Literal["promote", "rollback", "continue"]
    z: float
    p_value: float
    reason: str


def decide(
    control: Arm, candidate: Arm, *, min_samples: int, alpha: float, effect_sd: float
) -> Decision:
    """Promote, roll back or keep testing ``candidate`` against ``control``."""
    z, se = two_proportion_z(control, candidate)
    p = sequential_p(z, se, effect_sd)
    figures = (
        f"win rate {candidate.version} {candidate.win_rate:.3f} ({candidate.trades} trades) vs "
        f"{control.version} {control.win_rate:.3f} ({control.trades}); z={z:.2f}, "
        f"always-valid p={p:.2g}"
    )
    if min(control.trades, candidate.trades) < min_samples:
        return Decision("continue", z, p, f"fewer than {min_samples} trades in an arm: {figures}")
    if p < alpha:
        return Decision("promote" if z > 0 else "rollback", z, p, figures)
    return Decision("continue", z, p, f"no significant difference at {alpha}: {figures}")
