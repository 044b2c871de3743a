"""What failover costs: the shipped ensemble's quality with every member, with each member (or
two) left out and the vote re-weighted over the rest, and the heuristic alone.

    python -m bench.failover      # ~1 minute; writes bench/failover.md

Scored on three simulated days no model was trained on (seeds 97, 98, 99; 30,000 opportunities
each, features computed as the worker does), against realised outcomes: AUC, log loss and
accuracy at the 0.5 threshold, with the simulator's hidden success probability as the ceiling.
A member is left out exactly as a failing one is: its scores are NaN, so the worker's own vote
(:func:`apex_stream.inference.voting.vote`) re-weights over the others.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from apex_stream.inference.ensemble import Ensemble
from apex_stream.inference.heuristic import heuristic
from apex_stream.inference.members import MEMBERS
from apex_stream.inference.voting import vote
from apex_stream.settings import Settings
from apex_stream.training.dataset import simulate
from apex_stream.training.metrics import classification_metrics

HERE = Path(__file__).parent
SEEDS = (97, 98, 99)
N = 30_000


def main() -> None:
    ensemble = Ensemble(Settings())
    cases = [(), *[(m,) for m in MEMBERS], *combinations(MEMBERS, 2)]
    rows: dict[str, list[dict[str, float]]] = {}
    for seed in SEEDS:
        data = simulate(seed=seed, opportunities=N)
        scores = ensemble.score(data.X)
        for out in cases:
            members = {
                m: np.full(len(data), np.nan) if m in out else s for m, s in scores.members.items()
            }
            score = vote(members, ensemble.voting).score
            label = "all members" if not out else "without " + " and ".join(out)
            rows.setdefault(label, []).append(classification_metrics(data.y, score, 0.5))
        rows.setdefault("heuristic alone", []).append(
            classification_metrics(data.y, heuristic(data.X), 0.5)
        )
        rows.setdefault("hidden truth (ceiling)", []).append(
            classification_metrics(data.y, data.truth, 0.5)
        )
    lines = [
        "# Failover: quality with members left out",
        "",
        "`python -m bench.failover`: the shipped models on seeds "
        f"{', '.join(map(str, SEEDS))} ({N:,} simulated opportunities each; mean over seeds).",
        "",
        "| scored by | AUC | log loss | accuracy at 0.5 |",
        "|---|---|---|---|",
    ]
    for label, figures in rows.items():
        mean = {k: float(np.mean([f[k] for f in figures])) for k in ("auc", "logloss", "accuracy")}
        lines.append(
            f"| {label} | {mean['auc']:.4f} | {mean['logloss']:.4f} | {mean['accuracy']:.4f} |"
        )
    (HERE / "failover.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
