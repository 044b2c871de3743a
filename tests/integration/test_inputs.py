"""Input as the seeds write it, on the real broker: seed 000's opportunity, produced unchanged
by kcat (librdkafka, as most scanners are built), gets its prediction on `predictions`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from apex_stream.events import Prediction, decode
from apex_stream.features import FEATURES
from apex_stream.inputs import auto_id
from apex_stream.settings import Settings
from apex_stream.topics import TopicAdmin
from tests.support.seeds import SEED_000_OPPORTUNITY as SEED_000
from tests.support.seeds import seed_000_normalized
from tests.support.worker import collect, running_worker

pytestmark = pytest.mark.slow


async def test_a_kcat_produced_seed_000_opportunity_gets_its_prediction(
    settings: Settings, tmp_path: Path, free_port: int
) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is missing: scripts/setup installs it"
    async with TopicAdmin(settings) as admin:
        await admin.create()
    body = tmp_path / "opportunity.json"
    body.write_bytes(SEED_000)  # a file is one message, its newlines included
    with running_worker(settings, free_port, tmp_path / "worker.log"):
        subprocess.run(
            [kcat, "-P", "-b", settings.bootstrap_servers]
            + ["-t", settings.topic_name("opportunities"), str(body)],
            check=True,
            timeout=30,
        )
        (prediction,) = await collect(settings, "predictions", 1, timeout=60)
    (record,) = await collect(settings, "opportunities", 1, timeout=10)
    assert record.value == SEED_000 and record.key is None

    # what the rules make of it, written out by hand: the route without its repeated token,
    # the record's time in seconds, the id derived from both
    time_s = record.timestamp / 1000
    normalized = seed_000_normalized(time_s)
    scored = decode(prediction.value, Prediction)
    assert scored.opportunity_id == auto_id(normalized)
    assert prediction.key == scored.opportunity_id.encode()
    assert (scored.route_id, scored.chain) == ("usdc_usdt_2hop", "polygon")
    assert scored.opportunity_timestamp == time_s
    assert scored.features[FEATURES.index("route_complexity")] == 2.0  # two tokens, not three
    assert scored.features[FEATURES.index("dex_count")] == 2.0
