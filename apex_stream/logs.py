"""Repeated log lines, once in a while: during a broker outage aiokafka logs every failed
connection and fetch, about 270 ERROR lines a second (measured in the broker-restart drill,
5,000 lines in 19 s), which buries everything else. Each distinct message of a logger is let
through once per interval, with the count of those held back since."""

from __future__ import annotations

import logging


class Repeats(logging.Filter):
    """Lets a logger's message template through once per ``every_s`` seconds."""

    def __init__(self, every_s: float) -> None:
        super().__init__()
        self.every_s = every_s
        #: (logger, template) -> (when it last went through, how many were held back since)
        self.seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        last, held = self.seen.get(key, (float("-inf"), 0))
        if record.created - last < self.every_s:
            self.seen[key] = (last, held + 1)
            return False
        self.seen[key] = (record.created, 0)
        if held:
            record.msg = f"{record.msg} [{held} more like this in {record.created - last:.0f} s]"
        return True


def quiet_repeats(prefix: str, every_s: float = 10.0) -> None:
    """Apply :class:`Repeats` to ``prefix``'s logger and every logger below it that exists (a
    filter on a logger does not reach its children's records)."""
    names = [n for n in logging.root.manager.loggerDict if n.startswith(prefix + ".")]
    repeats = Repeats(every_s)
    for name in [prefix, *names]:
        logging.getLogger(name).addFilter(repeats)
