"""Input forms: opportunities and prices as our users' systems already write them.

Scanners and bots written against the systems apex-stream replaces send events in their own
shapes (seed 000's opportunity has no id, no timestamp and a closed route; seed 001's price record
is camelCase with milliseconds and a numeric chain). A message that decodes as the canonical
event (:mod:`apex_stream.events`) is taken as it is, at no extra cost; only a message the strict
decoder rejects is read again as its topic's input form (:class:`OpportunityInput`,
:class:`PriceTickInput`) and normalized by these rules:

- **Closed route**: ``tokens`` whose last token repeats the first, with one dex per hop
  (``len(dexes) == len(tokens) - 1``), drop that last token (the canonical route closes on its
  first token by itself).
- **Timestamp**: a number above 1e11 counts milliseconds (1e11 s is the year 5138, 1e11 ms is
  1973), anything else Unix seconds; a string is an ISO-8601 date and time as RFC 3339 writes
  it (``2024-01-15T10:30:00``, optional fraction, ``Z`` or offset; UTC without one); missing or
  ``null``, the Kafka record's timestamp (ms to s), or for callers without a record (the HTTP
  API) their ``default_time``.
- **Chain**: an EIP-155 chain id (a JSON integer) becomes our name for it (:data:`CHAIN_NAMES`);
  an id not listed there becomes ``"eip155:<id>"`` (CAIP-2), so its prices and opportunities
  still meet. A string is a name and is kept as it is.
- **Opportunity id**: missing or ``null``, :func:`auto_id` derives it from the normalized
  opportunity, its timestamp included, so a redelivered record gets the same id.
- **Price fields**: ``tokenAddress`` for ``token`` and ``gasPrice`` for ``gas_price`` (gwei, as
  ours); no ``dex``: :data:`DEFAULT_DEX`.

What the rules cannot make into a valid event raises :class:`InvalidEvent` with the reason (the
stream dead-letters the message with it).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Annotated, Any, TypeVar, cast

import msgspec

from .errors import InvalidEvent
from .events import (
    Batch,
    Event,
    Identifier,
    Name,
    NonNegative,
    Opportunity,
    Positive,
    PriceTick,
    Probability,
    checked,
    checks_deferred,
    decode,
    decode_batch,
    encode,
)

#: EIP-155 chain ids by the chain names the simulator, the features and the topics use.
CHAIN_NAMES: dict[int, str] = {
    1: "ethereum",
    10: "optimism",
    25: "cronos",
    56: "bsc",
    100: "gnosis",
    137: "polygon",
    250: "fantom",
    324: "zksync",
    1101: "polygon_zkevm",
    5000: "mantle",
    8453: "base",
    42161: "arbitrum",
    42220: "celo",
    43114: "avalanche",
    59144: "linea",
    81457: "blast",
    534352: "scroll",
}
#: Numeric timestamps above this count milliseconds.
MS_ABOVE = 1e11
#: The start of every derived opportunity id.
AUTO_ID_PREFIX = "auto-"
#: The dex of a price record that names none: a quote for the token, not for one pool.
DEFAULT_DEX = "aggregate"

ChainId = Annotated[
    int,
    msgspec.Meta(
        gt=0,
        description=(
            "An EIP-155 chain id (1 ethereum, 10 optimism, 56 bsc, 137 polygon, 8453 base, "
            "42161 arbitrum, 43114 avalanche, ...), read as our name for the chain; an unlisted "
            'id becomes "eip155:<id>".'
        ),
    ),
]
Moment = (
    Annotated[
        float,
        msgspec.Meta(gt=0, description="Unix time in seconds, or milliseconds when above 1e11."),
    ]
    | Annotated[
        datetime, msgspec.Meta(description="ISO-8601 date and time; UTC unless it names an offset.")
    ]
    | None
)
_RECORD_TIME = "Missing or null: the Kafka record's timestamp."


class OpportunityInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An opportunity as scanners write it (seed 000): read as an ``Opportunity``.

    ``tokens`` may close the route by repeating the first token at the end, with one dex per
    hop (``len(dexes) == len(tokens) - 1``); the repeated token is dropped. Without
    ``opportunity_id``, the id is ``"auto-"`` and the blake2b-128 hex digest of the normalized
    opportunity's JSON (``opportunity_id`` empty, ``timestamp`` included), so a redelivered
    record gets the same id.
    """

    route_id: Identifier
    chain: Name | ChainId
    tokens: Annotated[list[Name], msgspec.Meta(min_length=2, max_length=9)]
    dexes: Annotated[list[Name], msgspec.Meta(min_length=2, max_length=8)]
    input_amount: Positive
    expected_output: NonNegative
    gas_estimate: NonNegative
    profit_usd: float
    confidence_score: Probability
    opportunity_id: Annotated[
        Identifier | None, msgspec.Meta(description='Missing or null: "auto-" and a digest.')
    ] = None
    timestamp: Annotated[Moment, msgspec.Meta(description=_RECORD_TIME)] = None


class PriceTickInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A price record as bots write it (seed 001's ``recordPrice``): read as a ``PriceTick``.

    Give ``token`` or ``tokenAddress``, and ``gas_price`` or ``gasPrice`` (gwei); without
    ``dex`` the quote is for the token (dex ``"aggregate"``).
    """

    chain: Name | ChainId
    price: Positive
    volume: NonNegative
    liquidity: NonNegative
    token: Name | None = None
    tokenAddress: Name | None = None  # spelled as seed 001's TypeScript writes it
    dex: Name | None = None
    gas_price: NonNegative | None = None
    gasPrice: NonNegative | None = None
    timestamp: Annotated[Moment, msgspec.Meta(description=_RECORD_TIME)] = None


#: The input form each topic's event type also accepts.
INPUT_FORMS: dict[type[Event], type[msgspec.Struct]] = {
    Opportunity: OpportunityInput,
    PriceTick: PriceTickInput,
}
_form_decoders = {cls: msgspec.json.Decoder(form) for cls, form in INPUT_FORMS.items()}

E = TypeVar("E", bound=Event)
_first = itemgetter(0)
Payload = bytes | None


def read(raw: Payload, cls: type[E], default_time: float | None) -> E:
    """One message of any topic: the canonical event, else (where the topic has one) the input
    form; raises :class:`InvalidEvent` with the input form's reason."""
    try:
        return decode(raw, cls)
    except msgspec.ValidationError as exc:
        reason = f"invalid {cls.__name__}: {exc}"
    except InvalidEvent as exc:
        reason = exc.reason
    if cls not in INPUT_FORMS:
        raise InvalidEvent(reason)
    with checks_deferred():
        event = _from_form(raw, cls, default_time)
    batch = checked(Batch([event], [0], []), cls)
    if batch.rejected:
        raise InvalidEvent(batch.rejected[0][1])
    return event


def read_batch(
    payloads: Sequence[bytes | None],
    cls: type[E],
    record_time: Callable[[int], float | None] = lambda _: None,
) -> Batch[E]:
    """:func:`decode_batch`, then each rejected message of a topic with an input form read
    again as that form; ``record_time(i)`` is message ``i``'s record time (Unix seconds) for a
    missing timestamp. A batch of canonical events costs one emptiness check more."""
    batch = decode_batch(payloads, cls)
    if not batch.rejected or cls not in INPUT_FORMS:
        return batch
    events: list[E] = []
    index: list[int] = []
    rejected: list[tuple[int, str]] = []
    with checks_deferred():
        for i, _ in batch.rejected:
            try:
                events.append(_from_form(payloads[i], cls, record_time(i)))
                index.append(i)
            except InvalidEvent as exc:
                rejected.append((i, exc.reason))
    found = checked(Batch(events, index, rejected), cls)
    if not found.events:
        return Batch(batch.events, batch.index, found.rejected)
    strict = zip(batch.index, batch.events, strict=True)
    merged = list(heapq.merge(strict, zip(found.index, found.events, strict=True), key=_first))
    return Batch([e for _, e in merged], [i for i, _ in merged], found.rejected)


def kafka_time(timestamp: int | None) -> float | None:
    """A Kafka record's timestamp (ms; -1 or None where it has none) in Unix seconds, divided
    as Faust divides it, so every reader of one record derives the same opportunity id."""
    return timestamp / 1000.0 if timestamp is not None and timestamp > 0 else None


def auto_id(opportunity: Opportunity) -> str:
    """The id of an opportunity sent without one: ``"auto-"`` and the blake2b-128 hex digest of
    its JSON (:func:`encode`, fields in declared order) with ``opportunity_id`` empty."""
    blank = msgspec.structs.replace(opportunity, opportunity_id="")
    return AUTO_ID_PREFIX + hashlib.blake2b(encode(blank), digest_size=16).hexdigest()


def _chain_name(chain: str | int) -> str:
    """Our name of a chain given by name or EIP-155 id."""
    if isinstance(chain, str):
        return chain
    return CHAIN_NAMES.get(chain, f"eip155:{chain}")


def unix_seconds(value: float | datetime | None, default: float | None) -> float:
    """Unix seconds from seconds, milliseconds (above :data:`MS_ABOVE`) or a datetime (UTC when
    naive); ``default`` when missing."""
    if value is None:
        if default is None:
            raise ValueError("`timestamp` is missing and there is no record time to use")
        return default
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return value / 1000.0 if value > MS_ABOVE else value


def _from_form(raw: Payload, cls: type[E], default_time: float | None) -> E:
    """Read ``raw`` as the input form of ``cls`` and normalize it."""
    name = cls.__name__
    if raw is None:
        raise InvalidEvent("message has no value (a tombstone?); send the event as JSON")
    try:
        form = _form_decoders[cls].decode(raw)
        if isinstance(form, OpportunityInput):
            return cast(E, _opportunity(form, default_time))
        return cast(E, _price_tick(cast(PriceTickInput, form), default_time))
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"invalid {name}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None
    except ValueError as exc:
        raise InvalidEvent(f"invalid {name}: {exc}") from None


def _opportunity(form: OpportunityInput, default_time: float | None) -> Opportunity:
    tokens, dexes = form.tokens, form.dexes
    if len(dexes) == len(tokens) - 1 and tokens[0] == tokens[-1]:
        tokens = tokens[:-1]
    fields = {
        "opportunity_id": form.opportunity_id or AUTO_ID_PREFIX,
        "route_id": form.route_id,
        "chain": _chain_name(form.chain),
        "tokens": tokens,
        "dexes": dexes,
        "input_amount": form.input_amount,
        "expected_output": form.expected_output,
        "gas_estimate": form.gas_estimate,
        "profit_usd": form.profit_usd,
        "confidence_score": form.confidence_score,
        "timestamp": unix_seconds(form.timestamp, default_time),
    }
    opportunity = msgspec.convert(fields, Opportunity)  # the canonical checks and reasons
    if form.opportunity_id is None:
        return msgspec.structs.replace(opportunity, opportunity_id=auto_id(opportunity))
    return opportunity


def _price_tick(form: PriceTickInput, default_time: float | None) -> PriceTick:
    fields = {
        "chain": _chain_name(form.chain),
        "token": _one_of(form.token, "token", form.tokenAddress, "tokenAddress"),
        "dex": form.dex or DEFAULT_DEX,
        "price": form.price,
        "volume": form.volume,
        "liquidity": form.liquidity,
        "gas_price": _one_of(form.gas_price, "gas_price", form.gasPrice, "gasPrice"),
        "timestamp": unix_seconds(form.timestamp, default_time),
    }
    return msgspec.convert(fields, PriceTick)


def _one_of(value: Any, name: str, alias: Any, alias_name: str) -> Any:
    """The one of two spellings of a field that is given."""
    if value is None and alias is None:
        raise ValueError(f"Object missing required field `{name}` (or `{alias_name}`)")
    if value is not None and alias is not None:
        raise ValueError(f"give `{name}` or `{alias_name}`, not both")
    return alias if value is None else value
