"""`apex-stream topics`: the topics declared in topics/ against the broker."""

from __future__ import annotations

import asyncio
import json
import sys

import click
from rich.table import Table

from ..settings import get_settings
from ..topics import TopicAdmin
from .common import console


@click.group()
def topics() -> None:
    """The topics declared in topics/."""


@topics.command("create")
def topics_create() -> None:
    """Create the declared topics that are missing and report drift in the others."""

    async def run() -> int:
        async with TopicAdmin(get_settings()) as admin:
            created = await admin.create()
            states = await admin.describe()
        for name in created:
            console.print(f"created {name}")
        drifted = [s for s in states if s.drift]
        for state in drifted:
            console.print(f"[yellow]drift[/yellow] {state.broker_name}: {'; '.join(state.drift)}")
        console.print(
            f"{len(states)} topics declared, {len(created)} created, {len(drifted)} drifted"
        )
        return 2 if drifted else 0

    sys.exit(asyncio.run(run()))


@topics.command("list")
def topics_list() -> None:
    """List the declared topics and whether they exist."""

    async def run() -> None:
        async with TopicAdmin(get_settings()) as admin:
            states = await admin.describe()
        table = Table("topic", "partitions", "key", "exists", "drift")
        for s in states:
            table.add_row(
                s.broker_name,
                str(s.spec.partitions),
                s.spec.key,
                "yes" if s.exists else "no",
                "; ".join(s.drift) or "-",
            )
        console.print(table)

    asyncio.run(run())


@topics.command("describe")
@click.argument("name")
def topics_describe(name: str) -> None:
    """Show one topic's declaration, broker state and value schema."""

    async def run() -> None:
        async with TopicAdmin(get_settings()) as admin:
            states = {s.spec.name: s for s in await admin.describe()}
        if name not in states:
            raise click.BadParameter(f"unknown topic {name!r}; one of {', '.join(states)}")
        s = states[name]
        console.print(f"[bold]{s.broker_name}[/bold]: {s.spec.description}")
        console.print(
            f"partitions {s.spec.partitions} declared, {s.partitions} on broker; "
            f"key {s.spec.key}; config {s.spec.config}"
        )
        console.print(f"drift: {'; '.join(s.drift) or 'none'}")
        console.print_json(json.dumps(s.spec.value_schema))

    asyncio.run(run())
