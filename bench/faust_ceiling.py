"""The ceiling of Faust's per-event stream machinery here: an agent that only counts events
from ``take_events`` (no decoding, no models, no output).

    python bench/faust_ceiling.py TOPIC N     # TOPIC already holds at least N messages

Prints ``<rate>`` (events/s) on its last line. Run by bench/pipeline.py as measurement (e).
"""

import os
import sys
import time

import faust

from apex_stream.settings import Settings

TOPIC, N = sys.argv[1], int(sys.argv[2])
settings = Settings()
app = faust.App(
    f"ceiling-{TOPIC}",
    broker=f"kafka://{settings.bootstrap_servers}",
    store="memory://",
    web_enabled=False,
    broker_max_poll_records=5000,
    stream_buffer_maxsize=16384,
    consumer_auto_offset_reset="earliest",
    datadir=f"/tmp/faust-ceiling-{TOPIC}",
)
topic = app.topic(TOPIC, key_serializer="raw", value_serializer="raw")
seen = {"n": 0, "t0": 0.0}


@app.agent(topic)
async def count(stream):  # noqa: ANN001, ANN201
    async for events in stream.take_events(1024, within=0.005):
        seen["t0"] = seen["t0"] or time.perf_counter()
        seen["n"] += len(events)
        if seen["n"] >= N:
            # the Faust worker redirects print() into its log: write to fd 1 itself
            os.write(1, f"{N / (time.perf_counter() - seen['t0']):.0f}\n".encode())
            os._exit(0)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    worker = faust.Worker(app, loglevel="warn")
    worker.spinner = None
    worker.execute_from_commandline()
