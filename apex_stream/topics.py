"""Topics as code: the declarative files in ``topics/`` and applying them to a broker.

Each ``topics/<name>.json`` (or ``$APEX_TOPICS_DIR/<name>.json``) gives partitions,
replication factor, key, broker config and the JSON Schema of the value. The schema is generated
from :mod:`apex_stream.events` (``python scripts/gen_topic_schemas.py``) so the two cannot
disagree.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, for_code

from .client import kafka_admin
from .errors import TopicError
from .events import EVENT_FOR_TOPIC, Event
from .inputs import INPUT_FORMS
from .settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    """One topic as declared in its topic file."""

    name: str
    description: str
    partitions: int
    replication_factor: int
    key: str
    config: dict[str, str]
    value_schema: dict[str, Any] = field(repr=False)

    @property
    def event_type(self) -> type[Event]:
        return EVENT_FOR_TOPIC[self.name]


def event_schema(cls: type[Event]) -> dict[str, Any]:
    """The JSON Schema of a topic's values, self-contained: the event type's (its definition
    at the top), or for a topic that also takes an input form (:mod:`apex_stream.inputs`) any
    of the two, the canonical first."""
    canonical, defs = _struct_schema(cls)
    form = INPUT_FORMS.get(cls)
    top: dict[str, Any] = canonical
    if form is not None:
        accepted, form_defs = _struct_schema(form)
        defs |= form_defs
        top = {
            "title": canonical["title"],
            "description": f"The canonical {cls.__name__} (first) or {form.__name__}, the "
            "form other systems write, normalized into the first (apex_stream/inputs.py).",
            "anyOf": [canonical, accepted],
        }
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **top} | (
        {"$defs": defs} if defs else {}
    )


def _struct_schema(cls: type[msgspec.Struct]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A struct's own schema and the definitions it refers to."""
    schema = msgspec.json.schema(cls)
    defs = schema.pop("$defs")
    top = defs.pop(cls.__name__)
    top["description"] = inspect.cleandoc(top.get("description", ""))
    return top, defs


def load_specs(directory: Path) -> dict[str, TopicSpec]:
    """Read every topic file; fails on a file that names no known event type."""
    specs: dict[str, TopicSpec] = {}
    for path in sorted(directory.glob("*.json")):
        raw = json.loads(path.read_text())
        if raw.get("name") not in EVENT_FOR_TOPIC:
            raise TopicError(f"{path}: topic {raw.get('name')!r} has no event type in events.py")
        specs[raw["name"]] = TopicSpec(**raw)
    missing = set(EVENT_FOR_TOPIC) - set(specs)
    if missing:
        raise TopicError(f"no topic file in {directory} for: {', '.join(sorted(missing))}")
    return specs


@dataclass(frozen=True)
class TopicState:
    """How one declared topic stands on the broker."""

    spec: TopicSpec
    broker_name: str
    exists: bool
    partitions: int | None
    drift: list[str]


class TopicAdmin:
    """Creates and inspects the declared topics on a broker, idempotently."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.specs = load_specs(settings.topics_dir)
        self._admin = kafka_admin(settings)

    async def __aenter__(self) -> TopicAdmin:
        await self._admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._admin.close()

    async def create(self) -> list[str]:
        """Create the declared topics that are missing; returns the names created."""
        return await self.ensure(
            NewTopic(
                name=self.settings.topic_name(spec.name),
                num_partitions=spec.partitions,
                replication_factor=max(spec.replication_factor, self.settings.replication_factor),
                topic_configs=spec.config,
            )
            for spec in self.specs.values()
        )

    async def ensure(self, topics: Iterable[NewTopic]) -> list[str]:
        """Create those of ``topics`` that are missing and wait until every partition has a
        leader; returns the names created."""
        existing = set(await self._admin.list_topics())
        new = [t for t in topics if t.name not in existing]
        if new:
            response = await self._admin.create_topics(new)
            errors = [
                f"{name}: error {code} {message}"
                for name, code, message in _topic_errors(response)
                if code not in (0, 36)  # 36: TOPIC_ALREADY_EXISTS (a concurrent create)
            ]
            if errors:
                raise TopicError("could not create topics: " + "; ".join(errors))
            await self._wait_for_leaders([t.name for t in new])
        return [t.name for t in new]

    async def _wait_for_leaders(self, names: list[str], timeout: float = 30.0) -> None:
        """Block until every partition of the new topics has a leader (metadata propagates
        asynchronously after CreateTopics returns)."""
        async with asyncio.timeout(timeout):
            while True:
                described = await self._admin.describe_topics(names)
                if all(
                    t["error_code"] == 0
                    and t["partitions"]
                    and all(p["leader"] >= 0 for p in t["partitions"])
                    for t in described
                ):
                    return
                await asyncio.sleep(0.1)

    async def group_members(self, group: str, timeout: float = 30.0) -> int:
        """How many consumers are members of ``group`` now (0 when it is empty or unknown).
        Waits while the group's coordinator is not ready (a broker just started)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    responses = await self._admin.describe_consumer_groups([group])
                except KafkaError as error:
                    if not error.retriable:
                        raise
                else:
                    # each group: (error, id, state, protocol type, protocol, members, ...)
                    groups = [g for r in responses for g in r.groups if g[1] == group]
                    if not any(g[0] and for_code(g[0]).retriable for g in groups):
                        return sum(len(g[5]) for g in groups)
                await asyncio.sleep(0.2)

    async def describe(self) -> list[TopicState]:
        """Each declared topic with its partition count and any drift from its file."""
        names = [self.settings.topic_name(s) for s in self.specs]
        existing = set(await self._admin.list_topics())
        present = [n for n in names if n in existing]
        partitions: dict[str, int] = {}
        configs: dict[str, dict[str, str]] = {}
        if present:
            for topic in await self._admin.describe_topics(present):
                partitions[topic["topic"]] = len(topic["partitions"])
            resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in present]
            for response in await self._admin.describe_configs(resources):
                for result in response.resources:
                    configs[result[3]] = {entry[0]: entry[1] for entry in result[4]}
        states = []
        for spec, name in zip(self.specs.values(), names, strict=True):
            drift: list[str] = []
            if name in partitions and partitions[name] != spec.partitions:
                drift.append(f"partitions {partitions[name]} on broker, {spec.partitions} declared")
            for key, value in spec.config.items():
                actual = configs.get(name, {}).get(key)
                if name in configs and actual != value:
                    drift.append(f"{key}={actual} on broker, {value} declared")
            states.append(TopicState(spec, name, name in existing, partitions.get(name), drift))
        return states


def _topic_errors(response: Any) -> list[tuple[str, int, str]]:
    """(topic, error code, message) from a CreateTopics response of any version."""
    out = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        out.append((name, code, entry[2] if len(entry) > 2 and entry[2] else ""))
    return out
