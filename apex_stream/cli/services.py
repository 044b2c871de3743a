"""`apex-stream up`, `down` and `status`: the local Kafka broker and PostgreSQL."""

from __future__ import annotations

import sys

import click

from .. import services
from ..settings import get_settings
from .common import console


def _print_services(rows: list[services.ServiceStatus], verb: str) -> None:
    for row in rows:
        state = "up" if row.up else "down"
        note = verb if row.changed else f"already {state}"
        owner = "managed" if row.managed else "external"
        console.print(f"{row.name:9} {row.address:24} {state:5} ({owner}, {note})")


@click.command()
def up() -> None:
    """Start the local Kafka broker and PostgreSQL (unless configured to external ones)."""
    settings = get_settings()
    rows = services.up(settings)
    _print_services(rows, "started")
    if not rows:
        console.print("KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL are set: nothing to start")


@click.command()
def down() -> None:
    """Stop the local services that `up` started."""
    _print_services(services.down(get_settings()), "stopped")


@click.command()
def status() -> None:
    """Show whether Kafka and PostgreSQL answer, and the database's schema and storage; exit 3
    when a service is down or the database cannot be migrated as configured."""
    from ..sink import migrations
    from .db import print_schema

    settings = get_settings()
    rows = services.status(settings)
    _print_services(rows, "")
    ready = all(r.up for r in rows)
    if next(r.up for r in rows if r.name == "postgres"):
        ready = print_schema(migrations.inspect(settings.db_url)) and ready
    if not ready:
        sys.exit(3)
