"""What the command groups share: the console they print to and the start of a time window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from rich.console import Console

console = Console()

#: the spans ``parse_since`` accepts, by their last letter
SPAN_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(since: str) -> datetime:
    """An ISO time, or a span back from now: 30m, 6h, 7d."""
    if since[-1:] in SPAN_UNITS and since[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{SPAN_UNITS[since[-1]]: int(since[:-1])})
    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        raise click.BadParameter(f"{since!r}: use an ISO time or 30m / 6h / 7d") from None
    return start if start.tzinfo else start.replace(tzinfo=UTC)
