"""The `apex-stream` command: the root group here, each group of commands in its own module
(services, topics, db, models, run, backtest)."""

from __future__ import annotations

import sys

import click

from ..errors import ApexStreamError
from . import backtest, db, models, run, services, topics
from .common import console


class Group(click.Group):
    """Turns apex-stream's own errors into one clear line and exit code 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ApexStreamError as exc:
            console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
            sys.exit(1)


@click.group(
    cls=Group,
    commands=[
        services.up,
        services.down,
        services.status,
        topics.topics,
        db.db,
        db.analytics,
        models.models,
        run.worker,
        run.sink,
        run.bridge,
        run.lifecycle,
        run.demo,
        run.produce,
        run.consume,
        backtest.backtest,
    ],
)
def main() -> None:
    """apex-stream: real-time ML scoring of arbitrage opportunities on Kafka."""
