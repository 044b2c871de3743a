"""Turn the ensemble members' success probabilities into one score and an execute decision.

Every strategy is a pure, vectorised function of a micro-batch: ``scores`` maps a member name
(:data:`apex_stream.inference.members.MEMBERS`) to a float array of shape ``(n,)``. Execution
is always strict (``score > threshold``) so that a neutral 0.5 at the default threshold of 0.5
never trades: the neutral value is what the strategies return when they have no opinion, and no
opinion must not spend gas. The vote's decision is the threshold rule's; under the
expected-profit rule (``VotingConfig.rule``) the ensemble decides from the score and what each
trade can win or lose instead (:mod:`apex_stream.inference.decision`).

NaN marks a member that did not answer for a row (it failed, or its version could not load):
every strategy re-weights over the members that answered that row, and stacking, whose
meta-learner was fitted on all its members, falls back to the re-weighted vote for rows where
one is missing. A row no member answered scores NaN; the ensemble scores it by
:mod:`apex_stream.inference.heuristic`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from ..errors import ApexStreamError
from .decision import RULES, Rule
from .members import VOTING_WEIGHTS

Strategy = Literal["weighted", "majority", "unanimous", "stacking"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
ONLINE = "online"
NEUTRAL = 0.5
CLIP = 1e-6


class VotingError(ApexStreamError, ValueError):
    """Invalid voting configuration or member scores; the message names the fix."""


@dataclass(frozen=True)
class StackingParams:
    """A logistic meta-learner over the members' logits, as fitted by :func:`fit_stacking`."""

    members: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float

    def __post_init__(self) -> None:
        if not self.members or len(self.coef) != len(self.members):
            raise VotingError(
                f"stacking needs one coefficient per member, got {len(self.members)} members "
                f"and {len(self.coef)} coefficients"
            )


@dataclass(frozen=True)
class VotingConfig:
    """How to vote; ``weights`` weigh the batch models, ``online_weight`` blends in the learner.
    ``rule`` decides from the vote (:mod:`apex_stream.inference.decision`)."""

    strategy: Strategy = "weighted"
    threshold: float = 0.5
    weights: dict[str, float] = field(default_factory=lambda: dict(VOTING_WEIGHTS))
    online_weight: float = 0.2
    stacking: StackingParams | None = None
    rule: Rule = "threshold"
    min_expected_profit_usd: float = 0.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise VotingError(f"unknown strategy {self.strategy!r}; use one of {STRATEGIES}")
        if not 0.0 < self.threshold < 1.0:
            raise VotingError(f"threshold must lie strictly between 0 and 1, got {self.threshold}")
        if not 0.0 <= self.online_weight <= 1.0:
            raise VotingError(f"online_weight must lie in [0, 1], got {self.online_weight}")
        if ONLINE in self.weights:
            raise VotingError("weights are for the batch models; set online_weight for 'online'")
        if not self.weights or not all(w >= 0.0 for w in self.weights.values()):
            raise VotingError(f"weights must be non-empty and non-negative, got {self.weights}")
        total = math.fsum(self.weights.values())
        if abs(total - 1.0) > 1e-9:
            raise VotingError(f"weights must sum to 1, got {total} from {self.weights}")
        if self.strategy == "stacking" and self.stacking is None:
            raise VotingError(
                "strategy 'stacking' needs stacking params; fit them with fit_stacking"
            )
        self._check_rule()

    def _check_rule(self) -> None:
        if self.rule not in RULES:
            raise VotingError(f"unknown decision rule {self.rule!r}; use one of {RULES}")
        if self.rule == "expected_profit" and self.strategy in ("majority", "unanimous"):
            raise VotingError(
                f"the expected_profit rule needs a probability, and a {self.strategy} vote "
                "scores a share of votes: use the weighted or stacking strategy with it"
            )
        if not math.isfinite(self.min_expected_profit_usd):
            raise VotingError(
                f"min_expected_profit_usd must be finite, got {self.min_expected_profit_usd}"
            )


@dataclass(frozen=True, eq=False)
class Vote:
    """The final score per opportunity (float64) and whether to execute it (bool)."""

    score: np.ndarray
    decision: np.ndarray


def vote(scores: Mapping[str, np.ndarray], config: VotingConfig) -> Vote:
    """Combine the member scores of one micro-batch according to ``config.strategy``.

    Majority and unanimous votes count every member in ``scores``, so the caller picks the voters;
    weighted and stacking votes read only the members their configuration names. A member left
    out of ``scores``, or NaN in a row, did not answer (see the module docstring).
    """
    if any(np.isnan(a).any() for a in scores.values()):
        return _partial(scores, config)
    match config.strategy:
        case "weighted":
            return _weighted(scores, config)
        case "majority":
            return _majority(_checked(scores, tuple(scores)), config.threshold)
        case "unanimous":
            return _unanimous(_checked(scores, tuple(scores)), config.threshold)
        case _:  # "stacking"
            assert config.stacking is not None  # guaranteed by VotingConfig
            s = _checked(scores, config.stacking.members)
            score = _stack(config.stacking, np.stack([s[m] for m in config.stacking.members]))
            return Vote(score, score > config.threshold)


def fit_stacking(
    scores: Mapping[str, np.ndarray],
    labels: np.ndarray,
    members: tuple[str, ...],
    l2: float = 1e-3,
    iterations: int = 200,
) -> StackingParams:
    """Fit the meta-learner by Newton's method on the mean log loss plus ``l2/2 * |coef|^2``.

    Newton converges in a handful of steps on this convex, low-dimensional problem, so
    ``iterations`` is only a cap; the intercept is not penalised so base rates stay unbiased.
    """
    s = _checked(scores, members)
    y = np.asarray(labels, dtype=np.float64)
    if y.shape != s[members[0]].shape or not np.isin(y, (0.0, 1.0)).all():
        raise VotingError("labels must be 0/1 (or bool) with one label per scored row")
    if l2 < 0 or iterations < 1:
        raise VotingError(f"need l2 >= 0 and iterations >= 1, got l2={l2}, iterations={iterations}")
    x = np.column_stack([np.ones_like(y), *(_logit(s[m]) for m in members)])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    beta = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = _sigmoid(x @ beta)
        grad = x.T @ (p - y) / len(y) + penalty * beta
        hess = (x.T * (p * (1.0 - p))) @ x / len(y) + np.diag(penalty)
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return StackingParams(members, tuple(float(c) for c in beta[1:]), float(beta[0]))


def _partial(scores: Mapping[str, np.ndarray], config: VotingConfig) -> Vote:
    """The vote over the members that answered each row (the slow path: only batches in which
    a member failed take it)."""
    s = {m: np.asarray(a, dtype=np.float64) for m, a in scores.items()}
    if config.strategy in ("majority", "unanimous"):
        stacked = np.stack(list(s.values()))
        answered = ~np.isnan(stacked)
        count = answered.sum(axis=0)
        yes = (stacked > config.threshold).sum(axis=0)  # NaN is never above the threshold
        if config.strategy == "majority":
            share = np.divide(yes, count, out=np.full(count.shape, np.nan), where=count > 0)
            return Vote(share, 2 * yes > count)
        agree = (yes == count) | (yes == 0)
        mean = _nanmean(stacked, answered, count)
        return Vote(np.where(agree, mean, NEUTRAL), (yes == count) & (count > 0))
    weights = {m: w for m, w in config.weights.items() if w > 0.0 and m in s}
    num = np.zeros(len(next(iter(s.values()))))
    den = np.zeros_like(num)
    for m, w in weights.items():
        ok = ~np.isnan(s[m])
        num += np.where(ok, w * s[m], 0.0)
        den += np.where(ok, w, 0.0)
    score = np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)
    if config.online_weight > 0.0 and ONLINE in s:
        online = s[ONLINE]
        both = ~np.isnan(score) & ~np.isnan(online)
        blended = (1.0 - config.online_weight) * score + config.online_weight * online
        score = np.where(both, blended, np.where(np.isnan(score), online, score))
    if config.strategy == "stacking":
        assert config.stacking is not None  # guaranteed by VotingConfig
        members = config.stacking.members
        if all(m in s for m in members):
            full = np.all([~np.isnan(s[m]) for m in members], axis=0)
            stacked = np.stack([np.nan_to_num(s[m], nan=NEUTRAL) for m in members])
            score = np.where(full, _stack(config.stacking, stacked), score)
    return Vote(score, score > config.threshold)


def _nanmean(stacked: np.ndarray, answered: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The mean of the members that answered each row (NaN where none did)."""
    total = np.where(answered, stacked, 0.0).sum(axis=0)
    mean: np.ndarray = np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)
    return mean


def _weighted(scores: Mapping[str, np.ndarray], config: VotingConfig) -> Vote:
    """Zero-weight members are not needed; without "online" the batch score stands alone, so a
    learner that has not started yet costs nothing rather than dragging scores to zero."""
    active = {m: w for m, w in config.weights.items() if w > 0.0}
    blend = config.online_weight > 0.0 and ONLINE in scores
    s = _checked(scores, (*active, ONLINE) if blend else tuple(active))
    score = np.sum([w * s[m] for m, w in active.items()], axis=0)
    if blend:
        score = (1.0 - config.online_weight) * score + config.online_weight * s[ONLINE]
    return Vote(score, score > config.threshold)


def _majority(s: dict[str, np.ndarray], threshold: float) -> Vote:
    """Each member votes yes above ``threshold``; the score is the share of yes votes and only a
    strict majority executes, so a tie (exactly 0.5) never does, whatever the threshold."""
    yes = np.sum([s[m] > threshold for m in s], axis=0)
    return Vote(yes / len(s), 2 * yes > len(s))


def _unanimous(s: dict[str, np.ndarray], threshold: float) -> Vote:
    """Agreement keeps the members' mean; any disagreement is neutral (0.5) and never executes."""
    stacked = np.stack(list(s.values()))
    votes = stacked > threshold
    agree = votes.all(axis=0) | ~votes.any(axis=0)
    decision = votes.all(axis=0)
    # numpy's stubs type all(axis=...) as a scalar or an array, whatever the array's dimensions
    return Vote(np.where(agree, stacked.mean(axis=0), NEUTRAL), decision)  # type: ignore[arg-type]


def _stack(params: StackingParams, stacked: np.ndarray) -> np.ndarray:
    return _sigmoid(params.intercept + np.asarray(params.coef) @ _logit(stacked))


def _checked(scores: Mapping[str, np.ndarray], members: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named members' scores as float64 arrays of one common length, free of NaN and inf."""
    if not members:
        raise VotingError("no member scores to vote on")
    missing = [m for m in members if m not in scores]
    if missing:
        raise VotingError(f"missing scores for {missing}; got members {sorted(scores)}")
    out = {m: np.asarray(scores[m], dtype=np.float64) for m in members}
    shapes = {m: a.shape for m, a in out.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
        raise VotingError(f"member scores must be 1-D arrays of one length, got shapes {shapes}")
    bad = [m for m, a in out.items() if not np.isfinite(a).all()]
    if bad:
        raise VotingError(f"scores of {bad} contain NaN or inf; drop or impute those rows first")
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, CLIP, 1.0 - CLIP)
    return np.log(p / (1.0 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """``exp(-log(1 + exp(-z)))`` neither overflows for very negative ``z`` (as ``1 / (1 +
    exp(-z))`` does) nor loses the relative precision of tiny probabilities (as the tanh form does).
    """
    p: np.ndarray = np.exp(-np.logaddexp(0.0, -z))
    return p
