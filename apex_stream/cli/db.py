"""`apex-stream db` (the schema's migrations) and `apex-stream analytics` (queries over it)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click
from rich.table import Table

from ..settings import get_settings
from ..sink.analytics import QUERIES
from .common import console, parse_since

if TYPE_CHECKING:
    from ..sink.migrations import Schema


@click.group()
def db() -> None:
    """The database schema (Alembic migrations in migrations/)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    from ..sink import migrations

    migrations.upgrade(get_settings().db_url, revision)
    _print_revision()


@db.command("downgrade")
@click.argument("revision", default="-1")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (default: one step; `base` removes everything)."""
    from ..sink import migrations

    migrations.downgrade(get_settings().db_url, revision)
    _print_revision()


@db.command("current")
def db_current() -> None:
    """Show the database's revision and storage (timescaledb or postgresql); exit 1 when the
    server cannot migrate it (TimescaleDB installed but not preloaded)."""
    if not _print_revision():
        sys.exit(1)


def _print_revision() -> bool:
    """Print the schema's state; False when migrating it would be refused."""
    from ..sink import migrations

    return print_schema(migrations.inspect(get_settings().db_url))


def print_schema(schema: Schema) -> bool:
    """One line of revision and storage, and the problem in red; False when there is one."""
    revision = schema.revision or "none (empty database)"
    console.print(
        f"revision {revision}; storage {schema.storage or '-'}; server: {schema.offer.describe()}"
    )
    if schema.problem:
        console.print(f"[red]{schema.problem}[/red]")
    return schema.problem is None


@click.command()
@click.argument("name", type=click.Choice(list(QUERIES)))
@click.option(
    "--since",
    default="1h",
    show_default=True,
    help="Window start: an ISO time, or a duration back from now (30m, 6h, 7d).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
def analytics(name: str, since: str, fmt: str) -> None:
    """Run one of the analytics queries (their SQL is in README.md)."""
    import csv

    from sqlalchemy import create_engine

    from ..sink.analytics import run

    start = parse_since(since)
    engine = create_engine(get_settings().db_url)
    columns, rows = run(engine, name, start)
    engine.dispose()
    if fmt == "json":
        sys.stdout.write(
            json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, indent=1)
            + "\n"
        )
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = Table(*columns, title=f"{name} since {start:%Y-%m-%d %H:%M} UTC")
        for row in rows:
            table.add_row(*(f"{v:,.4g}" if isinstance(v, float) else str(v) for v in row))
        console.print(table)
