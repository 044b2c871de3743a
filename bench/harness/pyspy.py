"""Reading py-spy's raw recordings (``py-spy record --format raw``), for the benchmarks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def stacks(raw: Path) -> Iterator[tuple[list[str], int]]:
    """Each recorded stack, outermost frame first, with its sample count; frames drop their
    line numbers, so the samples of one function add up."""
    for line in raw.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        yield [_LINE.sub(")", f) for f in stack.split(";")], int(count)
