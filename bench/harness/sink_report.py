"""bench/sink.md, which both storage benchmarks write: the storage figures of
`python -m bench.sink` (sink.json) and the sink's lag of `python -m bench.sink_lag`
(sink_lag.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.harness.offsets import SINK_TOPICS

BENCH = Path(__file__).resolve().parents[1]
#: rows/s from one sink process that issue 4 asks for
GOAL = 300_000


def write_report() -> None:
    """bench/sink.md from sink.json and, when there, sink_lag.json."""
    r = json.loads((BENCH / "sink.json").read_text())
    w = r["writer"]
    lines = [
        "# Storage benchmark",
        "",
        f"`{r['command']}` on {r['machine']}, PostgreSQL {r['postgres']} (the local cluster, "
        "`synchronous_commit=off`, as `apex-stream up` starts it); the broker, PostgreSQL "
        f"and the benchmark share the machine. {r['batch_rows']:,}-row batches, a transaction "
        "each.",
        "",
        "## (1) The writer, per table",
        "",
        "| table | rows | encode + write | encode alone | write alone (the database) "
        "| write alone, staging path | write alone, schema before 0005 "
        "| redelivery (adds nothing) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for table, x in w.items():
        lines.append(
            f"| {table} | {x['rows']:,} | **{x['encode_and_write']:,.0f}/s** "
            f"| {x['encode']:,.0f}/s | {x['write']:,.0f}/s | {x['write_staged']:,.0f}/s "
            f"| {x['write_with_time_index']:,.0f}/s | {x['redelivery']:,.0f}/s |"
        )
    lines += [
        "",
        "- encode + write: events to rows to the table, one batch after the other;",
        "- encode alone: the Python side, `TableSpec.encode` (one binary COPY tuple per event);",
        "- write alone: rows already encoded, one `COPY ... FROM STDIN (FORMAT BINARY)` into "
        "the table per batch: what the database takes;",
        "- staging path: the same rows through a temporary staging table and "
        "`INSERT ... ON CONFLICT DO NOTHING`, the path a batch takes only when its COPY meets a "
        "stored key;",
        "- schema before 0005: with the `(time DESC)` indexes that migration 0005 drops;",
        "- redelivery: the same batches again; each COPY stops at its first duplicate key and "
        "the staging path adds nothing.",
        "",
        f"## (2) The four tables together, as the sink writes them: "
        f"**{r['together_rows_per_s']:,.0f} rows/s**",
        "",
        "Each batch's tables are written in parallel (one connection each) while the next "
        "batch is encoded.",
        "",
        f"## (3) The sink process, Kafka to the tables: **{r['sink']['rows_per_s']:,.0f} rows/s**",
        "",
        f"`apex-stream sink` draining {r['sink']['rows']:,} events already in Kafka "
        "(rows/s between 10% and 90% of the committed offsets).",
        "",
        "Cores in use meanwhile (of the machine's {cores}): the sink process {sink}, the "
        "PostgreSQL processes serving it {postgres}, the broker {kafka}; the whole machine "
        "{machine}.".format(cores=os.cpu_count(), **r["sink"]["cores"]),
    ]
    two = r["sink"].get("two_processes")
    if two:
        lines += [
            "",
            f"Two sink processes in one consumer group on the same events: "
            f"{two['rows_per_s']:,.0f} rows/s; cores in use: the sink processes "
            "{sink}, PostgreSQL {postgres}, the broker {kafka}; the whole machine "
            "{machine}.".format(**two["cores"]),
        ]
    profile = r["sink"].get("profile")
    if profile:
        lines += [
            "",
            "Where the sink's Python time goes (py-spy `--gil` at 100 Hz for "
            f"{profile['seconds']} s of a second run, "
            f"{profile['rows_per_s']:,.0f} rows/s under the profiler, "
            "`bench/sink-profile.txt`): some thread held the GIL "
            f"{profile['gil_busy']:.0%} of the time; shares of those samples, inclusive:",
            "",
            "| stage | share |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.1%} |" for k, v in profile["stages"].items()]
        lines += ["", "Top functions by own samples:", "", "| function | share |", "|---|---|"]
        lines += [f"| `{f}` | {s:.1%} |" for f, s in profile["top_self"]]
    lines += ["", *limits(r)]
    lag_file = BENCH / "sink_lag.json"
    if lag_file.exists():
        lines += ["", *lag_lines(json.loads(lag_file.read_text()))]
    (BENCH / "sink.md").write_text("\n".join(lines) + "\n")


def limits(r: dict[str, Any]) -> list[str]:
    """What stands between the figures and the goal of 300,000 rows/s from one sink process."""
    w, sink = r["writer"], r["sink"]
    over = [t for t, x in w.items() if x["write"] >= GOAL]
    lines = [
        "## Against the goal of 300,000 rows/s from one sink process",
        "",
        f"Not reached: the sink process stores {sink['rows_per_s']:,.0f} rows/s from Kafka and "
        f"the writer {r['together_rows_per_s']:,.0f} rows/s with the four tables together.",
        "",
        "- PostgreSQL: with the rows already encoded, one COPY per batch and table takes "
        + ", ".join(f"{x['write']:,.0f}/s into {t}" for t, x in w.items())
        + f" ({', '.join(over) or 'none'} over 300,000/s). Predictions are the heaviest rows "
        "(three indexes, two jsonb documents and 29 features each).",
        "- Python: encoding alone runs at "
        + ", ".join(f"{x['encode']:,.0f}/s ({t})" for t, x in w.items())
        + ", so one table after the other, encoding then writing, gives the encode + write "
        "column.",
    ]
    profile = sink.get("profile")
    if profile:
        per_row = profile["gil_busy"] / profile["rows_per_s"] * 1e6
        stages = profile["stages"]
        lines.append(
            f"- The sink process: its Python work takes {per_row:.1f} µs of GIL per row "
            f"(fetching {stages['aiokafka: fetch responses to ConsumerRecords']:.0%}, decoding "
            f"and validating {stages['decode + validate (msgspec, __post_init__)']:.0%}, "
            f"encoding {stages['encode binary COPY rows']:.0%}), so one interpreter carries "
            f"at most about {1e6 / per_row:,.0f} rows/s however the database keeps up; the "
            f"rest of the time ({1 - profile['gil_busy']:.0%}) it waits on fetches and on "
            "PostgreSQL. Two cores hold the sink, PostgreSQL and the broker."
        )
    if profile:
        cores, rate = sink["cores"], sink["rows_per_s"]
        sink_us, pg_us = (cores[p] / rate * 1e6 for p in ("sink", "postgres"))
        pg_cores = GOAL * pg_us / 1e6
        left_us = (os.cpu_count() - pg_cores) / GOAL * 1e6
        fetch_decode = sink_us * (
            stages["aiokafka: fetch responses to ConsumerRecords"]
            + stages["decode + validate (msgspec, __post_init__)"]
        )
        lines.append(
            f"- CPU per row (cores in use / rows/s in (3)): the sink process {sink_us:.1f} µs, "
            f"PostgreSQL {pg_us:.1f} µs. At {GOAL:,} rows/s that is "
            f"{GOAL * (sink_us + pg_us) / 1e6:.2f} cores of the machine's {os.cpu_count()}, "
            f"before the broker's share. PostgreSQL alone would take {pg_cores:.2f} cores, "
            f"leaving the sink {left_us:.1f} µs of CPU per row, while aiokafka's record "
            f"objects and msgspec's decoding take {fetch_decode:.1f} µs by themselves (their "
            "shares above). So the goal needs more cores (several sink processes in one "
            "consumer group, PostgreSQL on cores of its own) rather than a faster loop."
        )
    return lines


def lag_lines(r: dict[str, Any]) -> list[str]:
    """The lag section of bench/sink.md."""
    rates = r["rates_during_load"]
    c = r["cores_during_load"]
    during = r["lag_during_load"]
    after = r["lag_after_load"]
    worst = max(during[t]["max_seconds"] for t in SINK_TOPICS)
    saturated = r["worker_backlog_at_load_end"] > 0.05 * r["produced"]["opportunities"]
    kept_up = worst <= 5 and all(after[t]["max_seconds"] <= 5 for t in SINK_TOPICS)
    lines = [
        "## (4) The sink's lag beside the pipeline at its full rate",
        "",
        f"`{r['command']}`: a worker, `apex-stream sink` and `apex-stream produce --rate "
        f"{r['offered_opportunities_per_s']:,}` (prices, opportunities, outcomes) for "
        f"{r['load_seconds']:.0f} s on {r['machine']}, together with the broker and PostgreSQL. "
        + (
            "The offer exceeded what the worker could score, so the worker ran at its full rate"
            if saturated
            else "The worker kept up with the offer (so it did not run at its full rate)"
        )
        + f": it scored {rates['predictions']:,.0f} predictions/s while the producer wrote "
        f"{rates['opportunities']:,.0f} opportunities/s, {rates['prices']:,.0f} prices/s and "
        f"{rates['outcomes']:,.0f} outcomes/s; the worker's backlog was "
        f"{r['worker_backlog_at_load_end']:,} opportunities when the producer stopped.",
        "",
        "Cores in use during the load (of {n}): worker {worker}, producer {producer}, sink "
        "{sink}, PostgreSQL {postgres}, broker {kafka}; the whole machine {machine}.".format(
            n=os.cpu_count(), **c
        ),
        "",
        "The sink's lag per topic while the producer ran (sampled every 0.5 s; seconds: the "
        "age of the oldest message it had not committed, from its Kafka timestamp):",
        "",
        "| topic | max messages | p95 messages | max seconds | p95 seconds |",
        "|---|---|---|---|---|",
    ]
    for topic in SINK_TOPICS:
        x = during[topic]
        lines.append(
            f"| {topic} | {x['max_messages']:,} | {x['p95_messages']:,.0f} "
            f"| {x['max_seconds']:.1f} | {x['p95_seconds']:.1f} |"
        )
    lines += [
        "",
        (
            f"For {r['after_load_seconds']:.0f} s after the producer stopped the worker went on "
            f"scoring its backlog at {r['rates_after_load']['predictions']:,.0f}/s"
            + (
                f", and finished; the sink committed the last prediction within "
                f"{r['sink_done_after_s'] - r['worker_done_after_s']:.1f} s of its write"
                if r["sink_done_after_s"] is not None
                else f" (the run stopped with {r['worker_backlog_at_end']:,} left)"
            )
            + f". The sink's lag on predictions meanwhile: max "
            f"{after['predictions']['max_messages']:,} messages, "
            f"{after['predictions']['max_seconds']:.1f} s."
        ),
        "",
        (
            f"**The sink kept up**: its lag stayed within {worst:.1f} s on every topic while its "
            f"process used {c['sink']} of a core, so it is not the pipeline's bottleneck"
            + (" (the worker is)." if saturated else ".")
            if kept_up
            else f"**The sink fell behind**: its lag reached {worst:.1f} s."
        ),
    ]
    return lines
