"""The topic files and events.py are one source of truth: the files' schemas are the events'
schemas (and, where a topic takes one, their input forms')."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from apex_stream.events import EVENT_FOR_TOPIC, encode
from apex_stream.inputs import INPUT_FORMS
from apex_stream.resources import TOPICS
from apex_stream.topics import event_schema, load_specs
from tests.support.seeds import seed_000_opportunity
from tests.unit.test_events import EXAMPLES, opportunity, raw
from tests.unit.test_inputs import SEED_001_PRICE

SPECS = load_specs(TOPICS)


def canonical(schema: dict[str, Any]) -> dict[str, Any]:
    """The event type's part of a topic's value schema."""
    return schema["anyOf"][0] if "anyOf" in schema else schema


def test_every_event_type_has_one_topic_file() -> None:
    assert set(SPECS) == set(EVENT_FOR_TOPIC)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_topic_file_schema_matches_event_type_field_by_field(name: str) -> None:
    spec = SPECS[name]
    expected, found = canonical(event_schema(spec.event_type)), canonical(spec.value_schema)
    assert found["properties"].keys() == expected["properties"].keys()
    for field, schema in expected["properties"].items():
        assert found["properties"][field] == schema, field
    assert spec.value_schema == event_schema(spec.event_type), (
        "run `python scripts/gen_topic_schemas.py`"
    )


@pytest.mark.parametrize("name", sorted(SPECS))
def test_declarations_are_complete(name: str) -> None:
    spec = SPECS[name]
    assert spec.partitions >= 1 and spec.replication_factor >= 1
    assert spec.config["cleanup.policy"] in {"delete", "compact", "compact,delete"}
    if "delete" in spec.config["cleanup.policy"]:
        assert int(spec.config["retention.ms"]) > 0
    key_fields = spec.key.split(":")
    assert set(key_fields) <= set(canonical(spec.value_schema)["properties"]), spec.key
    assert tuple(key_fields) == spec.event_type.key_fields


def test_opportunities_and_outcomes_are_co_partitioned() -> None:
    assert SPECS["opportunities"].partitions == SPECS["outcomes"].partitions
    assert SPECS["opportunities"].key == SPECS["outcomes"].key == "opportunity_id"


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_encoded_events_validate_against_their_topic_schema(event: object) -> None:
    schema = SPECS[type(event).topic].value_schema  # type: ignore[attr-defined]
    jsonschema.validate(json.loads(encode(event)), schema)  # type: ignore[arg-type]


def test_schema_rejects_what_the_decoder_rejects() -> None:
    schema = SPECS["opportunities"].value_schema
    with pytest.raises(jsonschema.ValidationError) as error:
        jsonschema.validate(json.loads(raw(opportunity(gas_estimate=-1.0))), schema)
    assert "-1.0 is less than the minimum of 0" in {e.message for e in error.value.context}


def test_topics_with_an_input_form_describe_it() -> None:
    """Seed 000's opportunity and seed 001's price record validate against their topics'
    schemas, as the second of the accepted forms; what neither form takes does not."""
    for topic, example in (("opportunities", seed_000_opportunity()), ("prices", SEED_001_PRICE)):
        schema = SPECS[topic].value_schema
        first, form = schema["anyOf"]
        assert (first["title"], form["title"]) == (
            EVENT_FOR_TOPIC[topic].__name__,
            INPUT_FORMS[EVENT_FOR_TOPIC[topic]].__name__,
        )
        jsonschema.validate(example, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(example | {"extra": 1}, schema)
