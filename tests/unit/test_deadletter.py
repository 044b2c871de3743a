"""The dead-letter path: valid events keep their messages, and every rejected message becomes a
DeadLetter saying where it came from, what it held and exactly why it was refused."""

from __future__ import annotations

import json
from dataclasses import dataclass

from apex_stream.deadletter import dead_letter, split_valid
from apex_stream.events import DeadLetter, PriceTick, decode, encode

GOOD = {
    "chain": "eth",
    "token": "WETH",
    "dex": "uniswap",
    "price": 3000.0,
    "volume": 1.5,
    "liquidity": 2e6,
    "gas_price": 25.0,
    "timestamp": 1.7e9,
}


@dataclass
class Message:
    """The parts of a consumed Kafka message that the dead-letter path reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | str | None
    value: bytes | None
    timestamp: int | None = None


def payload(**changes: object) -> bytes:
    return json.dumps(GOOD | changes).encode()


def message(offset: int, value: bytes | None, key: bytes | str | None = b"eth:WETH") -> Message:
    return Message("prices", 3, offset, key, value)


def test_split_valid_keeps_valid_events_and_explains_every_rejection() -> None:
    second = PriceTick(**GOOD | {"token": "USDC", "price": 1.0})
    messages = [
        message(10, payload()),
        message(11, b"{not json", key=None),
        message(12, payload(price="3000")),
        message(13, payload(price=-1.0), key="eth:WETH"),
        message(14, encode(second), key=b"eth:USDC"),
        message(15, payload(timestamp=1e10)),
        message(16, payload(extra=1)),
        message(17, b"\xff\xfe{", key=b"\xffkey"),
    ]
    valid, kept, rejected = split_valid(messages, PriceTick)

    assert valid == [PriceTick(**GOOD), second]
    assert kept == [messages[0], messages[4]]
    assert kept[0] is messages[0] and kept[1] is messages[4]

    assert [d.offset for d in rejected] == [11, 12, 13, 15, 16, 17]
    for d in rejected:
        assert isinstance(d, DeadLetter)
        assert (d.source_topic, d.partition) == ("prices", 3)
    by_offset = {d.offset: d for d in rejected}
    assert [by_offset[o].source_key for o in (11, 12, 13, 17)] == [
        None,
        "eth:WETH",
        "eth:WETH",
        "\\xffkey",
    ]
    for o in (12, 13, 15, 16):
        assert by_offset[o].payload == messages[o - 10].value.decode()
    assert by_offset[11].payload == "{not json"
    assert by_offset[17].payload == "\\xff\\xfe{"

    reasons = {o: d.reason for o, d in by_offset.items()}
    assert reasons[11].startswith("not valid JSON: ")
    assert reasons[12] == "invalid PriceTick: Expected `float`, got `str` - at `$.price`"
    assert reasons[13] == "invalid PriceTick: Expected `float` > 0.0 - at `$.price`"
    assert reasons[15] == (
        "invalid PriceTick: `timestamp` 10000000000.0 is more than 60s in the future"
    )
    assert reasons[16] == "invalid PriceTick: Object contains unknown field `extra`"
    assert reasons[17].startswith("not valid JSON: ")


def test_dead_letters_are_valid_events_themselves() -> None:
    _, _, (letter,) = split_valid([message(5, payload(dex=""))], PriceTick)
    assert "`$.dex`" in letter.reason
    assert decode(encode(letter), DeadLetter) == letter


def test_all_valid_or_all_invalid_batches() -> None:
    good = [message(i, payload(price=100.0 + i)) for i in range(3)]
    valid, kept, rejected = split_valid(good, PriceTick)
    assert [t.price for t in valid] == [100.0, 101.0, 102.0] and kept == good and rejected == []

    bad = [message(i, b"[]") for i in range(3)]
    valid, kept, rejected = split_valid(bad, PriceTick)
    assert valid == [] and kept == []
    assert [d.reason for d in rejected] == ["invalid PriceTick: Expected `object`, got `array`"] * 3


def test_dead_letter_of_a_message_without_a_value() -> None:
    letter = dead_letter(message(7, None, key=None), "processing failed: boom")
    assert (letter.payload, letter.source_key, letter.reason) == (
        "",
        None,
        "processing failed: boom",
    )


def test_a_message_without_a_value_becomes_a_dead_letter() -> None:
    valid, kept, rejected = split_valid([message(8, None), message(9, payload())], PriceTick)
    assert valid == [PriceTick(**GOOD)] and kept[0].offset == 9
    (letter,) = rejected
    assert (letter.offset, letter.payload) == (8, "")
    assert "message has no value" in letter.reason
