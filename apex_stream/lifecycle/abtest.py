"""A/B tests of model versions: the decision to promote, roll back or keep testing (pure
functions). Which version scores a route is :func:`apex_stream.inference.routes.assign`.

What the decision compares follows the decision rule (``APEX_DECISION_RULE``): under the
threshold rule, *win rates* (the share of executed opportunities that succeeded); under the
expected-profit rule, *realized profit per opportunity* (the executed trades' realized profit
over every outcome of the arm, rows not executed counting 0), which is what that rule
maximizes: it gives up success rate for profit on purpose, so a version better under it can
have the lower win rate. Per opportunity rather than per trade, so a version is not penalized
for taking more trades that make money.

The controller looks at a running test again and again, so a fixed-sample test (a z-test at
p < alpha) would find a difference that is not there far more often than alpha. The test is
therefore sequential: the mixture sequential probability ratio test (mSPRT; Johari, Koomen,
Pekelis, Walsh, "Always Valid Inference", 2017) on the difference of win rates (pooled
standard error) or of mean profits per opportunity (Welch's standard error from each arm's
sample variance: profits are skewed, and the normal approximation the mSPRT rests on holds by
the central limit theorem at the thousands of outcomes a test sees), with a normal mixture
N(0, τ²) over the true difference, τ in the compared figure's unit (``effect_sd``,
``profit_effect_sd_usd``). Its p-value is valid at every look: when the versions do not
differ, the chance that it *ever* falls below alpha is at most alpha. A candidate is promoted
when both arms have at least ``min_samples`` executed outcomes and it is better with
p < ``alpha``; rolled back when it is worse with p < ``alpha``; otherwise the test goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..inference.decision import Rule


@dataclass(frozen=True)
class Arm:
    """Outcomes of one version in a test: its executed trades and their wins, and (for the
    profit comparison) every outcome with the sum and the sum of squares of the executed
    trades' realized profits (USD)."""

    version: str
    wins: int
    trades: int
    outcomes: int = 0
    profit_usd: float = 0.0
    profit_sq_usd: float = 0.0

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0

    @property
    def profit_per_opportunity(self) -> float:
        return self.profit_usd / self.outcomes if self.outcomes else 0.0

    @property
    def profit_variance(self) -> float:
        """Sample variance (ddof 1) of the realized profit per opportunity (0 for one not
        executed); 0 with fewer than 2 outcomes."""
        n = self.outcomes
        if n < 2:
            return 0.0
        mean = self.profit_usd / n
        return max(self.profit_sq_usd - n * mean * mean, 0.0) / (n - 1)


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


def profit_z(a: Arm, b: Arm) -> tuple[float, float]:
    """z of ``b``'s mean profit per opportunity minus ``a``'s and its standard error (Welch's);
    (0, 0) when an arm has fewer than 2 outcomes or neither varies."""
    if a.outcomes < 2 or b.outcomes < 2:
        return 0.0, 0.0
    se = math.sqrt(a.profit_variance / a.outcomes + b.profit_variance / b.outcomes)
    if se == 0:
        return 0.0, 0.0
    return (b.profit_per_opportunity - a.profit_per_opportunity) / se, se


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
    control: Arm,
    candidate: Arm,
    *,
    min_samples: int,
    alpha: float,
    effect_sd: float,
    rule: Rule,
    profit_effect_sd_usd: float,
) -> Decision:
    """Promote, roll back or keep testing ``candidate`` against ``control``, on win rates
    (mixture spread ``effect_sd``) under the threshold rule, on profit per opportunity (spread
    ``profit_effect_sd_usd``) under the expected-profit rule."""
    if rule == "expected_profit":
        z, se = profit_z(control, candidate)
        p = sequential_p(z, se, profit_effect_sd_usd)
        compared = (
            f"profit per opportunity {candidate.version} {candidate.profit_per_opportunity:.3f} "
            f"USD ({candidate.outcomes} outcomes, {candidate.trades} trades, win rate "
            f"{candidate.win_rate:.3f}) vs {control.version} "
            f"{control.profit_per_opportunity:.3f} ({control.outcomes}, {control.trades}, "
            f"{control.win_rate:.3f})"
        )
    else:
        z, se = two_proportion_z(control, candidate)
        p = sequential_p(z, se, effect_sd)
        compared = (
            f"win rate {candidate.version} {candidate.win_rate:.3f} ({candidate.trades} "
            f"trades) vs {control.version} {control.win_rate:.3f} ({control.trades})"
        )
    figures = f"{compared}; z={z:.2f}, always-valid p={p:.2g}"
    if min(control.trades, candidate.trades) < min_samples:
        return Decision("continue", z, p, f"fewer than {min_samples} trades in an arm: {figures}")
    if p < alpha:
        return Decision("promote" if z > 0 else "rollback", z, p, figures)
    return Decision("continue", z, p, f"no significant difference at {alpha}: {figures}")
