"""One fetch through a worker without a broker: predictions per partition encoded exactly as the
Prediction event, invalid messages dead-lettered with their reason, outcomes joined whichever
comes first, and a partition's join state rebuilt from its stored predictions."""

from __future__ import annotations

import copy
import re
import time
from collections import namedtuple
from dataclasses import replace

import msgspec
import numpy as np
import pytest

from apex_stream.events import Alert, DeadLetter, Prediction, PriceTick, decode, encode
from apex_stream.features import FEATURE_VERSION, FEATURES, MarketState
from apex_stream.features.forecast import ForecastParams
from apex_stream.inference.ensemble import Ensemble
from apex_stream.inference.members import MEMBERS
from apex_stream.inference.scoring import Scorer, encode_predictions
from apex_stream.learning.monitor import Monitor
from apex_stream.learning.outcomes import Learning
from apex_stream.settings import Settings
from apex_stream.stream.process import Process
from tests.support.events import opportunity, outcome_for

Record = namedtuple("Record", "topic partition offset timestamp key value")


class View:
    """A market view without prices (every route gets NaN market features)."""

    def __init__(self) -> None:
        self.state = MarketState()

    def refresh(self, keys: set[str]) -> MarketState:
        return self.state


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    return Ensemble(Settings())


@pytest.fixture
def process(ensemble: Ensemble) -> Process:
    settings = Settings()
    learning = Learning(ensemble.online, ensemble.online_means, 0.5, 10_000)
    return Process(settings, Scorer(ensemble, View()), learning, Monitor(settings, "test"))


def records(events: list, topic: str, partition: int = 0, first: int = 0) -> list[Record]:
    now_ms = int(time.time() * 1000)
    return [
        Record(topic, partition, first + i, now_ms, e.key(), encode(e))
        for i, e in enumerate(events)
    ]


def test_predictions_go_to_their_opportunity_partition_encoded_as_the_event(
    process: Process,
) -> None:
    a = [opportunity(i, f"r{i}", ["WETH", "USDC"]) for i in range(3)]
    b = [opportunity(i, f"r{i}", ["WETH", "DAI", "USDC"]) for i in range(3, 5)]
    fetch = [*records(a, "opportunities", 0), *records(b, "opportunities", 4)]
    bad = Record("opportunities", 4, 9, 0, b"x", b'{"opportunity_id": 1}')
    out = process.run([*fetch, bad], [])
    assert sorted(out.predictions) == [0, 4]
    assert [k for k, _ in out.predictions[0]] == [o.key() for o in a]
    predictions = [decode(v, Prediction) for p in (0, 4) for _, v in out.predictions[p]]
    assert [p.opportunity_id for p in predictions] == [o.opportunity_id for o in (*a, *b)]
    for p in predictions:
        assert set(p.model_scores) == set(MEMBERS)
        assert p.decision == (p.score > p.threshold) and len(p.features) == len(FEATURES)
        assert p.decision_rule == "threshold" and p.expected_profit_usd is not None
    (letter,) = out.events
    assert isinstance(letter, DeadLetter) and letter.offset == 9
    assert "got `int` - at `$.opportunity_id`" in letter.reason
    assert len(process.joins[0]) == 3 and len(process.joins[4]) == 2


def test_encoded_predictions_are_the_prediction_events_bytes(ensemble: Ensemble) -> None:
    opportunities = [opportunity(i, "r", ["WETH", "USDC"]) for i in range(4)]
    scorer = Scorer(ensemble, View())
    X, scores = scorer.score(opportunities)
    X[1, 3] = np.nan  # a missing feature is null
    latency = np.array([1.5, 2.0, 0.25, 3.0])
    payloads = encode_predictions(opportunities, X, scores, latency, 1_800_000_000.0)
    for i, (o, payload) in enumerate(zip(opportunities, payloads, strict=True)):
        expected = Prediction(
            opportunity_id=o.opportunity_id,
            route_id=o.route_id,
            chain=o.chain,
            score=float(scores.vote.score[i]),
            decision=bool(scores.vote.decision[i]),
            threshold=scores.voting.threshold,
            strategy=scores.voting.strategy,
            model_scores=scores.rows[i],
            model_versions=scores.version_rows[i],
            latency_ms=float(latency[i]),
            opportunity_timestamp=o.timestamp,
            timestamp=1_800_000_000.0,
            recommendation="EXECUTE" if scores.vote.decision[i] else "SKIP",
            confidence=float(
                scores.vote.score[i] if scores.vote.decision[i] else 1 - scores.vote.score[i]
            ),
            feature_version=FEATURE_VERSION,
            features=[None if np.isnan(v) else v for v in X[i].tolist()],
            voters=list(MEMBERS),
            expected_profit_usd=float(scores.expected_profit_usd[i]),
            decision_rule="threshold",
        )
        assert payload == encode(expected)


def test_a_failing_member_sits_out_without_dead_lettering_anything(ensemble: Ensemble) -> None:
    class Raises:
        name, version, provider = "onnx", "1.0.0", "cpu"

        def predict(self, X: np.ndarray) -> np.ndarray:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    broken = copy.copy(ensemble)
    broken.arms = dict(ensemble.arms) | {"onnx": replace(ensemble.arms["onnx"], models=(Raises(),))}
    settings = Settings()
    learning = Learning(broken.online, broken.online_means, 0.5, 10_000)
    process = Process(settings, Scorer(broken, View()), learning, Monitor(settings, "test"))
    opportunities = [opportunity(i, f"r{i}", ["WETH", "USDC"]) for i in range(5)]
    first = process.run(records(opportunities, "opportunities"), [])
    predictions = [decode(v, Prediction) for _, v in first.predictions[0]]
    assert len(predictions) == 5
    assert all(p.voters == ["xgboost", "online"] for p in predictions)
    assert all(set(p.model_scores) == {"xgboost", "online"} for p in predictions)
    (alert,) = first.events  # no dead letter
    assert isinstance(alert, Alert) and alert.kind == "member.failed"
    assert alert.message.startswith("onnx@1.0.0 failed to score and is left out of the vote")
    # one alert per cooldown, however many batches fail; /health says so meanwhile
    second = process.run(records(opportunities, "opportunities", first=5), [])
    assert second.events == [] and len(second.predictions[0]) == 5
    [reason] = process.failures.recent(60.0)
    assert re.match(r"onnx@1\.0\.0 failed to score \d+ s ago: RuntimeError: CUDA error", reason)
    # its outcomes teach the learner and book the members that voted
    learned = process.learning.learned
    outcomes = [outcome_for(o, i % 2 == 0) for i, o in enumerate(opportunities)]
    joined = process.run([], records(outcomes, "outcomes"))
    assert not any(isinstance(e, DeadLetter) for e in joined.events)
    assert process.learning.learned == learned + 5
    assert set(process.learning.book.versions) == {("xgboost", "1.0.0"), ("online", "1.0.0")}


def test_outcomes_join_in_either_order_and_teach_the_learner(process: Process) -> None:
    early, late = opportunity(1, "r1", ["WETH", "USDC"]), opportunity(2, "r2", ["WETH", "DAI"])
    learned = process.learning.learner.learned
    process.run(records([late], "opportunities", 2), [])
    # late's outcome after it; early's outcome before early itself
    out = process.run(
        [], records([outcome_for(late, True), outcome_for(early, False)], "outcomes", 2)
    )
    assert process.learning.learner.learned == learned + 1
    assert list(process.joins[2].pending) == ["o1"]
    assert process.joins[2].floor() == 1  # the outcomes partition is committed no further
    process.run(records([early], "opportunities", 2, first=1), [])
    assert process.learning.learner.learned == learned + 2
    assert process.joins[2].pending == {} and process.joins[2].floor() is None
    summary = process.learning.book.summary()["xgboost@1.0.0"]
    assert summary["samples"] == 2 and summary["realized_profit_usd"] <= 4.0
    assert out.snapshot is None  # every 10,000 outcomes here


def test_a_partition_rebuilt_from_its_predictions_joins_later_outcomes(
    process: Process, ensemble: Ensemble
) -> None:
    opportunities = [opportunity(i, f"r{i}", ["WETH", "USDC"]) for i in range(5)]
    out = process.run(records(opportunities, "opportunities", 3), [])
    stored = [v for _, v in out.predictions[3]]
    rebuilt = Process(process.settings, process.scorer, process.learning, process.monitor)
    # o0's outcome was consumed before the worker stopped: not waited for again
    assert rebuilt.restore(3, stored, consumed={"o0"}) == 4
    np.testing.assert_array_equal(
        rebuilt.joins[3].X[: len(rebuilt.joins[3])],
        process.joins[3].X[1:5],
    )
    learned = process.learning.learner.learned
    rebuilt.run([], records([outcome_for(o, True) for o in opportunities[1:]], "outcomes", 3))
    assert process.learning.learner.learned == learned + 4
    assert len(rebuilt.joins[3]) == 0
    assert msgspec.json.decode(stored[0])["opportunity_id"] == "o0"


def test_predictions_carry_the_forecasts_of_their_route_tokens(ensemble: Ensemble) -> None:
    params = ForecastParams(
        version="test",
        horizons_s=[5.0, 30.0],
        momentum_coef=[[0.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]],
        volatility=True,
        sample_s=5.0,
        alpha=0.2,
        beta=0.7,
        long_run_samples=10.0,
        volatility_steps=12,
    )
    view = View()
    view.state = MarketState(forecast=params)
    start = time.time() - 42.0  # the last quotes 3 s before the opportunities: all still due
    view.state.update(
        [
            PriceTick(
                chain="ethereum",
                token=token,
                dex=f"d{i % 2}",
                price=price * (1.0 + 0.001 * (-1) ** i),
                volume=1.0,
                liquidity=1e6,
                gas_price=20.0,
                timestamp=start + i,
            )
            for token, price in (("WETH", 3000.0), ("USDC", 1.0))
            for i in range(40)
        ]
    )
    settings = Settings()
    learning = Learning(ensemble.online, ensemble.online_means, 0.5, 10_000)
    process = Process(settings, Scorer(ensemble, view), learning, Monitor(settings, "test"))
    routes = [["WETH", "USDC"], ["WETH", "DAI"], ["DAI", "LINK"]]
    out = process.run(
        records([opportunity(i, f"r{i}", r) for i, r in enumerate(routes)], "opportunities"), []
    )
    both, weth_only, unquoted = (decode(v, Prediction) for _, v in out.predictions[0])
    assert both.price_forecasts is not None and both.volatility_forecast is not None
    assert set(both.price_forecasts) == {"WETH", "USDC"} == set(both.volatility_forecast)
    assert set(both.price_forecasts["WETH"]) == {"5s", "30s"}
    assert both.price_forecasts["WETH"]["5s"] == pytest.approx(3000.0, rel=2e-3)
    assert both.price_forecasts["USDC"]["30s"] == pytest.approx(1.0, rel=2e-3)
    assert both.volatility_forecast["WETH"] > 0
    assert weth_only.price_forecasts == {"WETH": both.price_forecasts["WETH"]}
    assert unquoted.price_forecasts is None and unquoted.volatility_forecast is None
