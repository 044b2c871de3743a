"""Input forms: the seeds' opportunities and price records become canonical events by rules
that are each checked here, and whatever they cannot fix keeps a reason."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import pytest

from apex_stream.deadletter import split_valid
from apex_stream.errors import InvalidEvent
from apex_stream.events import (
    Event,
    Opportunity,
    Outcome,
    PriceTick,
    decode,
    decode_batch,
    encode,
)
from apex_stream.inputs import (
    CHAIN_NAMES,
    DEFAULT_DEX,
    INPUT_FORMS,
    auto_id,
    read_batch,
)
from apex_stream.inputs import (
    read as read_json,
)
from apex_stream.simulator import SimConfig
from tests.support.seeds import SEED_000_OPPORTUNITY, seed_000_normalized, seed_000_opportunity
from tests.unit.test_events import opportunity, raw

E = TypeVar("E", bound=Event)

SEED_000 = SEED_000_OPPORTUNITY
NOW_MS = int(time.time() * 1000)
#: Seed 001's `collector.recordPrice({...})`, as JSON.stringify writes it.
SEED_001_PRICE: dict[str, Any] = {
    "timestamp": NOW_MS,
    "chain": 1,
    "tokenAddress": "0xToken",
    "price": 100,
    "volume": 1000,
    "liquidity": 50000,
    "gasPrice": 50,
}


def read(raw: bytes | dict[str, Any], cls: type[E], default_time: float | None) -> E:
    """:func:`apex_stream.inputs.read` of a payload (a dict is sent as its JSON)."""
    body = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    return read_json(body, cls, default_time)


def opportunity_from(raw: bytes | dict[str, Any], default_time: float | None) -> Opportunity:
    return read(raw, Opportunity, default_time)


@dataclass
class Record:
    """The parts of a consumed Kafka record that the stream reads (timestamp in ms)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None


def seed_000(**changes: object) -> bytes:
    return json.dumps(seed_000_opportunity(**changes)).encode()


def record(offset: int, value: bytes | None, timestamp: int | None = NOW_MS) -> Record:
    return Record("opportunities", 2, offset, None, value, timestamp)


def reason(raw: bytes | dict[str, Any], cls: type[Any] = Opportunity) -> str:
    with pytest.raises(InvalidEvent) as caught:
        read(raw, cls, NOW_MS / 1000)
    return caught.value.reason


# -- seed 000's opportunity -----------------------------------------------------------------------


def test_seed_000_opportunity_as_written_normalizes() -> None:
    (event,), kept, rejected = split_valid([record(0, SEED_000)], Opportunity)
    assert rejected == [] and kept[0].offset == 0
    assert event == seed_000_normalized(NOW_MS / 1000, event.opportunity_id)
    blank = encode(msgspec.structs.replace(event, opportunity_id=""))
    assert event.opportunity_id == "auto-" + hashlib.blake2b(blank, digest_size=16).hexdigest()
    assert event.key() == event.opportunity_id.encode()


def test_a_redelivered_record_gets_the_same_id_and_another_record_another() -> None:
    first = split_valid([record(0, SEED_000)], Opportunity)[0][0]
    again = split_valid([record(0, SEED_000)], Opportunity)[0][0]
    assert again == first
    later = split_valid([record(1, SEED_000, NOW_MS + 1)], Opportunity)[0][0]
    other = split_valid([record(2, seed_000(profit_usd=12.5))], Opportunity)[0][0]
    assert len({first.opportunity_id, later.opportunity_id, other.opportunity_id}) == 3


def test_the_sink_and_the_worker_derive_the_same_id() -> None:
    """The sink reads one record at a time (read), the worker per batch (split_valid)."""
    worker = split_valid([record(0, SEED_000, NOW_MS + 7)], Opportunity)[0][0]
    assert read(SEED_000, Opportunity, (NOW_MS + 7) / 1000.0) == worker


def test_a_given_id_is_kept() -> None:
    event = opportunity_from(seed_000(opportunity_id="scan-42"), NOW_MS / 1000)
    assert event.opportunity_id == "scan-42" and event.tokens == ["USDC", "USDT"]


def test_opportunity_from_takes_bytes_or_a_parsed_object_canonical_or_not() -> None:
    from_bytes = opportunity_from(SEED_000, 1.7e9)
    assert opportunity_from(seed_000_opportunity(), 1.7e9) == from_bytes
    assert from_bytes.timestamp == 1.7e9
    assert auto_id(from_bytes) == from_bytes.opportunity_id
    canonical = opportunity()
    assert opportunity_from(canonical, 1.7e9) == Opportunity(**canonical)  # type: ignore[arg-type]
    assert opportunity_from(raw(canonical), 1.7e9) == decode(raw(canonical), Opportunity)
    with pytest.raises(InvalidEvent, match="missing required field `route_id`"):
        opportunity_from(
            {k: v for k, v in seed_000_opportunity().items() if k != "route_id"}, 1.7e9
        )


# -- routes ---------------------------------------------------------------------------------------


def test_a_closed_route_of_any_length_drops_its_repeated_token() -> None:
    event = opportunity_from(
        seed_000(tokens=["WETH", "USDC", "DAI", "WETH"], dexes=["a", "b", "c"]), 1.7e9
    )
    assert (event.tokens, event.dexes) == (["WETH", "USDC", "DAI"], ["a", "b", "c"])


@pytest.mark.parametrize(
    ("tokens", "dexes", "expected"),
    [
        (
            ["USDC", "USDT", "DAI", "USDC"],
            ["quickswap", "sushiswap"],
            "invalid Opportunity: route has 4 tokens but 2 dexes; give one dex per hop: "
            "len(dexes) == len(tokens), or len(tokens) - 1 when the route repeats its first "
            "token at the end",
        ),
        (
            ["USDC", "USDT", "USDC"],
            ["quickswap", "sushiswap", "curve"],
            "invalid Opportunity: route tokens repeat: ['USDC', 'USDT', 'USDC']; list each "
            "token once (a route written closed repeats only its first token, at the end)",
        ),
        (["USDC", "USDT", "USDC"], ["quickswap"], "Expected `array` of length >= 2 - at `$.dexes`"),
        (["USDC"] + [f"T{i}" for i in range(8)], ["d"] * 8, "of length <= 8 - at `$.tokens`"),
    ],
)
def test_a_route_the_rules_cannot_fix_keeps_its_reason(
    tokens: list[str], dexes: list[str], expected: str
) -> None:
    (letter,) = split_valid([record(5, seed_000(tokens=tokens, dexes=dexes))], Opportunity)[2]
    assert expected in letter.reason and letter.offset == 5


# -- timestamps -----------------------------------------------------------------------------------


def test_a_record_timestamp_fills_a_missing_timestamp() -> None:
    (event,) = split_valid([record(0, SEED_000, 1_700_000_000_123)], Opportunity)[0]
    assert event.timestamp == 1_700_000_000.123
    assert opportunity_from(seed_000(timestamp=None), 1.7e9).timestamp == 1.7e9


def test_faust_messages_count_their_timestamp_in_seconds() -> None:
    price = {k: v for k, v in SEED_001_PRICE.items() if k != "timestamp"}
    message = Record("prices", 0, 0, None, json.dumps(price).encode(), 1_700_000_000.5)  # type: ignore[arg-type]
    (tick,) = split_valid([message], PriceTick, timestamps_ms=False)[0]
    assert tick.timestamp == 1_700_000_000.5


def test_without_a_timestamp_or_a_record_time_there_is_a_reason() -> None:
    for stamp in (None, -1):
        (letter,) = split_valid([record(3, SEED_000, stamp)], Opportunity)[2]
        assert letter.reason == (
            "invalid Opportunity: `timestamp` is missing and there is no record time to use"
        )
    with pytest.raises(InvalidEvent, match="no record time"):
        opportunity_from(SEED_000, None)


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        (1_700_000_000_123, 1_700_000_000.123),  # milliseconds
        (1_700_000_000.5, 1_700_000_000.5),  # seconds
        ("2024-01-15T10:30:00", datetime(2024, 1, 15, 10, 30, tzinfo=UTC).timestamp()),
        ("2024-01-15T10:30:00Z", datetime(2024, 1, 15, 10, 30, tzinfo=UTC).timestamp()),
        ("2024-01-15T12:30:00+02:00", datetime(2024, 1, 15, 10, 30, tzinfo=UTC).timestamp()),
    ],
)
def test_milliseconds_and_iso_times_become_unix_seconds(stamp: object, seconds: float) -> None:
    assert opportunity_from(seed_000(timestamp=stamp), None).timestamp == seconds
    assert read(SEED_001_PRICE | {"timestamp": stamp}, PriceTick, None).timestamp == seconds


def test_a_canonical_event_in_milliseconds_is_read_in_seconds() -> None:
    """Strict decoding takes it (a float), the batch checks reject it (far future), and the
    input form reads it as milliseconds."""
    batch = read_batch([raw(opportunity(timestamp=1_700_000_000_000.0))], Opportunity)
    assert batch.rejected == [] and batch.events[0].timestamp == 1_700_000_000.0
    assert batch.events[0].opportunity_id == "opp-1"


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (1e11, "`timestamp` 100000000000.0 is more than 60s in the future"),  # seconds, not ms
        (1_500_000_000_000, "`timestamp` 1500000000.0 is before 2020-01-01; send Unix seconds"),
        ("2019-12-31T23:00:00", "`timestamp` 1577833200.0 is before 2020-01-01"),
        ("yesterday", "Invalid RFC3339 encoded datetime - at `$.timestamp`"),
        (True, "got `bool` - at `$.timestamp`"),
    ],
)
def test_a_time_the_rules_cannot_use_keeps_its_reason(stamp: object, expected: str) -> None:
    assert expected in reason(seed_000(timestamp=stamp))


# -- chains ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chain", "name"),
    [
        (1, "ethereum"),
        (10, "optimism"),
        (56, "bsc"),
        (137, "polygon"),
        (8453, "base"),
        (42161, "arbitrum"),
        (43114, "avalanche"),
        (250, "fantom"),
        (324, "zksync"),
        (59144, "linea"),
        (31337, "eip155:31337"),  # not listed: CAIP-2
        ("137", "137"),  # a string is a name
    ],
)
def test_numeric_chain_ids_become_our_chain_names(chain: object, name: str) -> None:
    assert opportunity_from(seed_000(chain=chain), 1.7e9).chain == name
    assert read(SEED_001_PRICE | {"chain": chain}, PriceTick, None).chain == name


def test_every_simulated_chain_has_its_id() -> None:
    """The names the simulator (and so the features and the models) use are the names ids
    map to."""
    assert {c.name for c in SimConfig().chains} <= set(CHAIN_NAMES.values())


@pytest.mark.parametrize(("chain", "expected"), [(0, ">= 1"), (-137, ">= 1"), (True, "`bool`")])
def test_a_chain_id_that_is_no_id_keeps_its_reason(chain: object, expected: str) -> None:
    found = reason(seed_000(chain=chain))
    assert expected in found and "`$.chain`" in found


# -- seed 001's price record ----------------------------------------------------------------------


def test_seed_001_price_record_becomes_a_price_tick() -> None:
    payload = json.dumps(SEED_001_PRICE).encode()
    message = Record("prices", 1, 4, None, payload, NOW_MS + 5)
    (tick,), _, rejected = split_valid([message], PriceTick)
    assert rejected == []
    assert tick == PriceTick(
        chain="ethereum",
        token="0xToken",
        dex=DEFAULT_DEX,
        price=100.0,
        volume=1000.0,
        liquidity=50000.0,
        gas_price=50.0,
        timestamp=NOW_MS / 1000,
    )
    assert tick.key() == b"ethereum:0xToken" and DEFAULT_DEX == "aggregate"


def test_a_price_record_may_use_our_names_and_name_its_dex() -> None:
    ours = {k: v for k, v in SEED_001_PRICE.items() if k not in ("tokenAddress", "gasPrice")}
    tick = read(ours | {"token": "WETH", "gas_price": 20, "dex": "curve"}, PriceTick, None)
    assert (tick.token, tick.gas_price, tick.dex) == ("WETH", 20.0, "curve")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"token": "WETH"}, "give `token` or `tokenAddress`, not both"),
        ({"gas_price": 1.0}, "give `gas_price` or `gasPrice`, not both"),
        ({"tokenAddress": None}, "Object missing required field `token` (or `tokenAddress`)"),
        ({"gasPrice": None}, "Object missing required field `gas_price` (or `gasPrice`)"),
        ({"gasPrice": -1}, "Expected `float` >= 0.0 - at `$.gasPrice`"),
        ({"price": 0}, "Expected `float` > 0.0 - at `$.price`"),
        ({"volume": "1000"}, "Expected `float`, got `str` - at `$.volume`"),
        ({"chainId": 1}, "Object contains unknown field `chainId`"),
    ],
)
def test_a_price_record_the_rules_cannot_fix_keeps_its_reason(
    changes: dict[str, object], expected: str
) -> None:
    assert reason(SEED_001_PRICE | changes, PriceTick) == f"invalid PriceTick: {expected}"


# -- batches --------------------------------------------------------------------------------------


def test_a_mixed_batch_keeps_every_position() -> None:
    """Canonical, input-form and invalid messages interleaved: valid events in input order
    with their positions, each rejection at its own position with its reason."""
    canonical = [raw(opportunity(opportunity_id=f"c{i}")) for i in range(3)]
    payloads = [
        canonical[0],
        SEED_000,
        b"{not json",
        canonical[1],
        seed_000(tokens=["USDC", "USDT", "DAI", "USDC"]),
        seed_000(timestamp=NOW_MS, chain=137, opportunity_id="s1"),
        None,
        canonical[2],
        raw(opportunity(opportunity_id="c3", dexes=["curve"] * 2)),
    ]
    batch = read_batch(payloads, Opportunity, lambda i: NOW_MS / 1000)
    assert batch.index == [0, 1, 3, 5, 7]
    assert [e.opportunity_id for e in batch.events][::2] == ["c0", "c1", "c2"]
    assert batch.events[1] == opportunity_from(SEED_000, NOW_MS / 1000)
    assert batch.events[3].opportunity_id == "s1" and batch.events[3].chain == "polygon"
    assert [i for i, _ in batch.rejected] == [2, 4, 6, 8]
    reasons = dict(batch.rejected)
    assert reasons[2].startswith("not valid JSON: ")
    assert reasons[4].startswith("invalid Opportunity: route has 4 tokens but 2 dexes")
    assert reasons[6].startswith("message has no value")
    assert reasons[8].startswith("invalid Opportunity: route has 3 tokens but 2 dexes")

    records = [record(i, p) for i, p in enumerate(payloads)]
    valid, kept, letters = split_valid(records, Opportunity)
    assert valid == batch.events
    assert [r.offset for r in kept] == batch.index and kept[1] is records[1]
    assert [(d.offset, d.reason) for d in letters] == batch.rejected


def test_a_canonical_batch_is_the_strict_decoders_batch() -> None:
    payloads = [raw(opportunity(opportunity_id=f"c{i}")) for i in range(4)]
    assert read_batch(payloads, Opportunity) == decode_batch(payloads, Opportunity)


def test_a_topic_without_an_input_form_is_read_strictly() -> None:
    assert Outcome not in INPUT_FORMS
    assert reason(b'{"opportunity_id": "o1"}', Outcome).startswith(
        "invalid Outcome: Object missing required field"
    )
    with pytest.raises(InvalidEvent, match="invalid Outcome"):
        read({"opportunity_id": "o1"}, Outcome, None)


@pytest.mark.parametrize("cls", sorted(INPUT_FORMS, key=lambda c: c.__name__))
def test_an_input_form_takes_every_canonical_field(cls: type[Any]) -> None:
    """A field added to the event must be added to its input form too."""
    assert set(cls.__struct_fields__) <= set(INPUT_FORMS[cls].__struct_encode_fields__)
