"""Event validation: every bad value is rejected with a reason a person can act on."""

from __future__ import annotations

import time

import msgspec
import pytest

from apex_stream import events
from apex_stream.errors import InvalidEvent
from apex_stream.events import (
    EVENT_TYPES,
    Alert,
    DeadLetter,
    Metric,
    ModelControl,
    Opportunity,
    Outcome,
    Prediction,
    PriceTick,
    decode,
    decode_batch,
    encode,
)

NOW = time.time()


def opportunity(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = dict(
        opportunity_id="opp-1",
        route_id="r-1",
        chain="ethereum",
        tokens=["WETH", "USDC", "DAI"],
        dexes=["uniswap_v3", "curve", "sushiswap"],
        input_amount=10_000.0,
        expected_output=10_050.0,
        gas_estimate=390_000.0,
        profit_usd=31.5,
        confidence_score=0.8,
        timestamp=NOW,
    )
    return fields | overrides


def raw(fields: dict[str, object]) -> bytes:
    return msgspec.json.encode(fields)


EXAMPLES = [
    Opportunity(**opportunity()),  # type: ignore[arg-type]
    PriceTick(
        chain="ethereum",
        token="WETH",
        dex="curve",
        price=3100.5,
        volume=12.0,
        liquidity=5e6,
        gas_price=21.0,
        timestamp=NOW,
    ),
    Prediction(
        opportunity_id="opp-1",
        route_id="r-1",
        chain="ethereum",
        score=0.7,
        decision=True,
        threshold=0.5,
        strategy="weighted",
        model_scores={"xgboost": 0.8, "onnx": 0.6},
        model_versions={"xgboost": "1.0.0"},
        latency_ms=3.2,
        opportunity_timestamp=NOW,
        timestamp=NOW,
        recommendation="EXECUTE",
        confidence=0.7,
    ),
    Outcome(
        opportunity_id="opp-1",
        route_id="r-1",
        chain="ethereum",
        success=False,
        realized_profit_usd=-12.5,
        gas_used=380_000.0,
        gas_cost_usd=12.5,
        executed_at=NOW,
    ),
    Alert(
        alert_id="a1",
        kind="drift",
        severity="warning",
        message="ADWIN drift",
        data={"feature": "volatility"},
        timestamp=NOW,
    ),
    Metric(source="worker-1", values={"throughput": 1e4}, timestamp=NOW),
    ModelControl(
        revision=3, manifest={"revision": 3, "models": []}, reason="promoted", timestamp=NOW
    ),
    DeadLetter(
        source_topic="opportunities",
        partition=0,
        offset=7,
        source_key=None,
        payload="x",
        reason="not valid JSON",
        timestamp=NOW,
    ),
]


def test_every_event_type_has_an_example() -> None:
    assert {type(e) for e in EXAMPLES} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip(event: msgspec.Struct) -> None:
    assert decode(encode(event), type(event)) == event  # type: ignore[arg-type]


def test_keys_follow_the_topic_files() -> None:
    assert EXAMPLES[0].key() == b"opp-1"
    assert EXAMPLES[1].key() == b"ethereum:WETH"


MALFORMED = [
    (b"\x00\xff garbage", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[1, 2]", "Expected `object`, got `array`"),
    (raw(opportunity(input_amount="10000")), "Expected `float`, got `str` - at `$.input_amount`"),
    (raw(opportunity(tokens="WETH")), "Expected `array`, got `str` - at `$.tokens`"),
    (raw(opportunity()).replace(b'"profit_usd":31.5', b'"profit_usd":NaN'), "not valid JSON"),
    (raw(opportunity()).replace(b"10000.0", b"1e400"), "Number out of range - at `$.input_amount`"),
    (raw(opportunity(gas_estimate=-1.0)), "Expected `float` >= 0.0 - at `$.gas_estimate`"),
    (raw(opportunity(input_amount=0.0)), "Expected `float` > 0.0 - at `$.input_amount`"),
    (raw(opportunity(confidence_score=1.5)), "<= 1.0 - at `$.confidence_score`"),
    (
        raw({k: v for k, v in opportunity().items() if k != "chain"}),
        "Object missing required field `chain`",
    ),
    (raw(opportunity(tokens=[], dexes=[])), "Expected `array` of length >= 2 - at `$.tokens`"),
    (raw(opportunity(dexes=["curve", "curve"])), "route has 3 tokens but 2 dexes"),
    (raw(opportunity(tokens=["WETH", "USDC", "WETH"])), "route tokens repeat"),
    (raw(opportunity(timestamp=NOW + 3600)), "more than 60s in the future"),
    (raw(opportunity(timestamp=NOW * 1000)), "more than 60s in the future"),
    (raw(opportunity(timestamp=1_000_000.0)), "before 2020-01-01; send Unix seconds"),
    (raw(opportunity(extra=1)), "Object contains unknown field `extra`"),
]


@pytest.mark.parametrize(("payload", "reason"), MALFORMED, ids=[r for _, r in MALFORMED])
def test_malformed_opportunities_are_rejected_with_a_specific_reason(
    payload: bytes, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(payload, Opportunity)
    assert reason in caught.value.reason


def test_python_construction_is_validated_too() -> None:
    with pytest.raises(ValueError, match="`profit_usd` must be a finite number"):
        Opportunity(**opportunity(profit_usd=float("nan")))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`price` must be a finite number"):
        PriceTick(
            chain="c",
            token="t",
            dex="d",
            price=float("inf"),
            volume=0.0,
            liquidity=0.0,
            gas_price=0.0,
            timestamp=NOW,
        )


def test_outcome_may_lose_money_but_not_use_negative_gas() -> None:
    loss = Outcome(
        opportunity_id="o",
        route_id="r",
        chain="c",
        success=False,
        realized_profit_usd=-5.0,
        gas_used=1.0,
        gas_cost_usd=5.0,
        executed_at=NOW,
    )
    assert decode(encode(loss), Outcome).realized_profit_usd == -5.0
    with pytest.raises(InvalidEvent, match="gas_used"):
        decode(encode(loss).replace(b'"gas_used":1.0', b'"gas_used":-1.0'), Outcome)


def test_a_batch_is_judged_as_each_message_alone() -> None:
    """decode_batch runs __post_init__'s checks once over the batch: the same events, the same
    reasons, and every invalid message kept apart from the valid ones around it."""
    good = raw(opportunity())
    payloads = [good, *(p for p, _ in MALFORMED), None, good]
    batch = decode_batch(payloads, Opportunity)
    assert batch.index == [0, len(payloads) - 1]
    assert batch.events == [decode(good, Opportunity)] * 2
    assert [i for i, _ in batch.rejected] == list(range(1, len(payloads) - 1))
    for i, reason in batch.rejected:
        with pytest.raises(InvalidEvent) as caught:
            decode(payloads[i], Opportunity)
        assert reason == caught.value.reason


def test_batch_checks_find_what_python_construction_finds() -> None:
    """Events built without the checks (as a decoder does inside decode_batch) fail the batch
    checks with __post_init__'s reasons: non-finite numbers, routes, times."""
    cases = [
        opportunity(profit_usd=float("nan")),
        opportunity(gas_estimate=float("inf")),
        opportunity(dexes=["curve", "curve"]),
        opportunity(tokens=["WETH", "USDC", "WETH"]),
        opportunity(timestamp=NOW + 3600),
        opportunity(timestamp=1_000_000.0),
        opportunity(),
    ]
    token = events._batched.set(True)
    try:
        built = [Opportunity(**fields) for fields in cases]  # type: ignore[arg-type]
    finally:
        events._batched.reset(token)
    found = Opportunity.problems(built)
    assert set(found) == set(range(len(cases) - 1))
    for i, fields in enumerate(cases[:-1]):
        with pytest.raises(ValueError) as caught:
            Opportunity(**fields)  # type: ignore[arg-type]
        assert found[i] == str(caught.value)
