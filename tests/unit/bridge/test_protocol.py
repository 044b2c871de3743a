"""The bridge's protocol: command parsing, envelopes, filters over a batch."""

from __future__ import annotations

import json
from dataclasses import dataclass

import msgspec
import pytest

from apex_stream.bridge.protocol import (
    CHANNELS,
    Filter,
    Offsets,
    Ping,
    ProtocolError,
    Routes,
    Stats,
    Subscribe,
    batch_of,
    parse_command,
    since_ms,
)
from apex_stream.events import Alert, encode
from tests.support import events
from tests.support.seeds import seed_000_opportunity


@dataclass
class Rec:
    partition: int
    offset: int
    timestamp: int
    value: bytes | None


def prediction(i: int, chain: str = "ethereum", route: str = "r1", score: float = 0.5) -> bytes:
    return encode(events.prediction(i, chain, route, score))


def opportunity(i: int, route: str, tokens: list[str]) -> bytes:
    return encode(events.opportunity(i, route, tokens))


def predictions_batch(values: list[bytes], routes: Routes | None = None):
    records = [Rec(i % 3, i, 1_000 + i, v) for i, v in enumerate(values)]
    return batch_of(CHANNELS["predictions"], records, routes or Routes())


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "Expected `object`"),
        ('{"type": "dance"}', "Invalid value 'dance'"),
        ('{"channels": ["predictions"]}', "missing required field `type`"),
        ('{"type": "subscribe", "channels": ["nope"]}', "unknown channel ['nope']"),
        ('{"type": "subscribe", "channels": []}', "at least one channel"),
        (
            '{"type": "subscribe", "channels": ["predictions"], "filters": {"colour": 1}}',
            "unknown field `colour`",
        ),
        (
            '{"type": "subscribe", "channels": ["predictions"], "filters": {"min_score": 2}}',
            "min_score must be within [0, 1]",
        ),
        (
            '{"type": "subscribe", "channels": ["predictions"], "since": "yesterday"}',
            "not an ISO-8601 time",
        ),
        (
            '{"type": "subscribe", "channels": ["predictions"], "since": {"offsets": {"0": -1}}}',
            "must be >= 0",
        ),
        ('{"type": "ping", "extra": true}', "unknown field `extra`"),
        ('{"command": "dance"}', "Invalid value 'dance' - at `$.command`"),
        ('{"command": "subscribe", "channels": ["nope"]}', "unknown channel ['nope']"),
        ('{"command": "ping", "type": "stats"}', "`type` 'stats' and `command` 'ping' differ"),
        ('{"type": "subscribe", "channels": ["alerts"], "framing": "xml"}', "Invalid enum"),
    ],
)
def test_malformed_commands_give_a_reason(frame: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_command(frame)
    assert reason in str(info.value)


def test_subscribe_parses_filters_and_each_form_of_since() -> None:
    command = parse_command(
        '{"type": "subscribe", "channels": ["predictions", "executions"], "id": 3,'
        ' "filters": {"chain": "base", "tokens": ["WETH"], "decision": true}}'
    )
    assert isinstance(command, Subscribe) and command.id == 3
    assert command.filters.chain == "base" and command.filters.decision is True
    assert since_ms(1_700_000_000.5) == 1_700_000_000_500
    assert since_ms("2023-11-14T22:13:20+00:00") == 1_700_000_000_000
    assert since_ms("2023-11-14T22:13:20") == 1_700_000_000_000  # naive means UTC
    assert since_ms(Offsets({0: 5, 2: 7})) == {0: 5, 2: 7}


@pytest.mark.parametrize(
    "frame",
    [
        # seed 000's clients, exactly as they send it (JavaScript, then Python)
        '{"command":"subscribe","channels":["opportunities","predictions","executions"]}',
        '{"command": "subscribe", "channels": ["opportunities", "predictions"]}',
        '{"type": "subscribe", "command": "subscribe", "channels": ["predictions"]}',
    ],
)
def test_a_command_may_be_named_by_command_as_well_as_type(frame: str) -> None:
    command = parse_command(frame)
    assert isinstance(command, Subscribe) and "predictions" in command.channels
    assert command.framing is None  # the connection's framing stays as it is
    assert isinstance(parse_command('{"command": "stats", "id": 4}'), Stats)
    assert isinstance(parse_command('{"command": "ping"}'), Ping)


def test_subscribe_may_choose_the_framing() -> None:
    for framing in ("event", "array"):
        command = parse_command(
            json.dumps({"type": "subscribe", "channels": ["alerts"], "framing": framing})
        )
        assert isinstance(command, Subscribe) and command.framing == framing


def test_envelopes_carry_the_event_and_its_kafka_position() -> None:
    values = [prediction(i) for i in range(4)] + [b"{broken"]
    batch = predictions_batch(values)
    assert len(batch) == 4 and batch.invalid == 1
    envelope = json.loads(batch.encoded[2])
    assert envelope["type"] == "prediction" and envelope["channel"] == "predictions"
    assert (envelope["partition"], envelope["offset"], envelope["ts"]) == (2, 2, 1002)
    assert envelope["data"].items() >= json.loads(values[2]).items()
    assert envelope["time"] == envelope["data"]["timestamp"]
    # other channels' events go exactly as on the topic
    value = opportunity(0, "r1", ["WETH", "USDC"])
    opportunities = batch_of(CHANNELS["opportunities"], [Rec(0, 0, 1, value)], Routes())
    assert opportunities.encoded[0].endswith(b',"data":' + value + b"}")


def test_an_opportunity_in_seed_form_is_relayed_normalized() -> None:
    value = json.dumps(seed_000_opportunity(chain=137)).encode()
    stamp = 1_767_225_600_123
    batch = batch_of(CHANNELS["opportunities"], [Rec(0, 0, stamp, value)], Routes())
    data = json.loads(batch.encoded[0])["data"]
    assert data["tokens"] == ["USDC", "USDT"] and data["chain"] == "polygon"
    assert data["timestamp"] == stamp / 1000 and data["opportunity_id"].startswith("auto-")
    assert batch.invalid == 0


def test_predictions_carry_seed_000s_field_names_beside_ours() -> None:
    event = msgspec.structs.replace(
        events.prediction(0, score=0.873),
        decision=True,
        model_versions={"xgboost": "v1.0.0", "online": "1.0.7"},
        latency_ms=2.5,
    )
    value = encode(event) + b"\n"  # a producer's trailing whitespace (kcat -l) is no matter
    envelope = predictions_batch([value]).encoded[0]
    data = json.loads(envelope)["data"]
    assert data == json.loads(value) | {
        "prediction_score": 0.873,
        "should_execute": True,
        "model_version_xgb": "v1.0.0",
        "model_version_onnx": None,  # not in this ensemble
        "inference_time_ms": 2.5,
    }
    # spliced into the payload as produced, not re-encoded: our fields keep their bytes
    assert encode(event)[:-1] + b',"prediction_score":0.873,' in envelope


def test_filters_select_by_chain_route_score_decision_and_tokens() -> None:
    routes = Routes()
    opportunities = batch_of(
        CHANNELS["opportunities"],
        [
            Rec(0, 0, 1, opportunity(0, "r1", ["WETH", "USDC"])),
            Rec(0, 1, 1, opportunity(1, "r2", ["DAI", "USDT"])),
        ],
        routes,
    )
    assert Filter(tokens=["DAI"]).mask(opportunities).tolist() == [False, True]
    batch = predictions_batch(
        [
            prediction(0, "ethereum", "r1", 0.9),
            prediction(1, "base", "r1", 0.2),
            prediction(2, "ethereum", "r2", 0.7),
            prediction(3, "arbitrum", "r3", 0.95),
        ],
        routes,
    )
    assert Filter().mask(batch) is None
    assert Filter(chain="ethereum").mask(batch).tolist() == [True, False, True, False]
    assert Filter(chain=["base", "arbitrum"]).mask(batch).tolist() == [False, True, False, True]
    assert Filter(route_id="r2").mask(batch).tolist() == [False, False, True, False]
    assert Filter(min_score=0.8).mask(batch).tolist() == [True, False, False, True]
    assert Filter(decision=False).mask(batch).tolist() == [False, True, False, False]
    # a prediction's tokens are those of its route, learned from opportunities; r3 is unknown
    assert Filter(tokens=["USDC"]).mask(batch).tolist() == [True, True, False, False]
    assert Filter(chain="ethereum", min_score=0.8).mask(batch).tolist() == [
        True,
        False,
        False,
        False,
    ]
    alerts = batch_of(
        CHANNELS["alerts"],
        [
            Rec(
                0,
                0,
                1,
                encode(Alert(alert_id="a", kind="drift", severity="warning", message="m", data={})),
            )
        ],
        routes,
    )
    assert Filter(chain="base", min_score=0.9).mask(alerts) is None  # never filtered
