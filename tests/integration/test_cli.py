"""The `apex-stream` command on the real broker: topics created, the market produced and
consumed back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from apex_stream.events import Opportunity, decode
from apex_stream.settings import Settings


@pytest.mark.slow
def test_cli_produce_and_consume(settings: Settings) -> None:
    env = os.environ | {"APEX_TOPIC_PREFIX": settings.topic_prefix}
    cli = [sys.executable, "-m", "apex_stream.cli"]
    created = subprocess.run([*cli, "topics", "create"], env=env, capture_output=True, text=True)
    assert created.returncode == 0, created.stdout + created.stderr
    produced = subprocess.run(
        [*cli, "produce", "--rate", "0", "--count", "2000", "--seed", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert produced.returncode == 0, produced.stdout + produced.stderr
    assert "2,000 opportunities" in produced.stdout
    consumed = subprocess.run(
        [*cli, "consume", "opportunities", "--from-beginning", "--count", "2000"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert consumed.returncode == 0, consumed.stderr
    lines = consumed.stdout.splitlines()
    assert len(lines) == 2000
    ids = {decode(line, Opportunity).opportunity_id for line in lines}
    assert len(ids) == 2000
