"""A log line repeated during an outage goes through once per interval, with the count held."""

from __future__ import annotations

import logging

import pytest

from apex_stream.logs import Repeats, quiet_repeats


def record(msg: str, at: float, *args: object) -> logging.LogRecord:
    entry = logging.LogRecord("aiokafka.conn", logging.ERROR, __file__, 1, msg, args, None)
    entry.created = at
    return entry


def test_each_template_goes_through_once_per_interval_with_the_count_held() -> None:
    repeats = Repeats(every_s=10.0)
    template = "Unable connect to node with id %s: %s"
    passed = [repeats.filter(record(template, t, 1, "refused")) for t in (0.0, 1.0, 2.0, 3.0)]
    assert passed == [True, False, False, False]
    assert repeats.filter(record("Failed fetch messages from %s", 4.0, 1))  # another template
    late = record(template, 12.5, 1, "refused")
    assert repeats.filter(late)
    assert late.getMessage() == (
        "Unable connect to node with id 1: refused [3 more like this in 12 s]"
    )


def test_quiet_repeats_reaches_the_loggers_below(caplog: pytest.LogCaptureFixture) -> None:
    child = logging.getLogger("apex_test_repeats.child")
    quiet_repeats("apex_test_repeats", every_s=60.0)
    with caplog.at_level(logging.ERROR, "apex_test_repeats"):
        for _ in range(50):
            child.error("broker down")
    assert [r.getMessage() for r in caplog.records] == ["broker down"]
