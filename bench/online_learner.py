"""The online learner's batched update against river's per-sample ``learn_one``.

    python -m bench.online_learner      # ~1 minute; writes bench/online_learner.md

On a simulated stream the worker never trained on (seed 2028, 120,000 outcomes, with the
regime shift halfway), the shipped online model 1.0.0 learns prequentially: each batch of 256
outcomes is scored, then learned. Compared for river's own ``learn_one`` per outcome and the
worker's :class:`OnlineLearner` at several chunk sizes: prequential AUC and log loss over the
whole stream and after the shift, the largest score difference from ``learn_one`` at the end,
and CPU time per outcome.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from apex_stream.features import impute
from apex_stream.inference.online_member import CHUNK, OnlineLearner
from apex_stream.inference.registry import Registry
from apex_stream.settings import ROOT
from apex_stream.simulator import SimConfig
from apex_stream.training.dataset import DAY_START, simulate_run
from apex_stream.training.metrics import classification_metrics

HERE = Path(__file__).parent
N = 120_000
BATCH = 256
CHUNKS = (1, CHUNK, 32, 128)


def river_learn(learner: OnlineLearner, X: np.ndarray, y: np.ndarray, model) -> None:
    names = learner.features
    for row, label in zip(X.tolist(), y.tolist(), strict=True):
        model.learn_one(dict(zip(names, row, strict=True)), bool(label))


def run(shipped: bytes, X: np.ndarray, y: np.ndarray, chunk: int | None) -> dict[str, object]:
    """Prequential scores of one learning method (``chunk=None``: river's learn_one)."""
    learner = OnlineLearner.restore(shipped)
    model = learner.to_river() if chunk is None else None
    if chunk is not None:
        learner.chunk = chunk
    scores, spent = [], 0.0
    for start in range(0, len(X), BATCH):
        xb, yb = X[start : start + BATCH], y[start : start + BATCH]
        if model is not None:
            learner = OnlineLearner.from_river(model, learner.features, "river", 0)
        scores.append(learner.predict(xb))
        t0 = time.process_time()
        if model is not None:
            river_learn(learner, xb, yb, model)
        else:
            learner.learn(xb, yb)
        spent += time.process_time() - t0
    if model is not None:
        learner = OnlineLearner.from_river(model, learner.features, "river", 0)
    return {
        "scores": np.concatenate(scores),
        "us_per_outcome": spent / len(X) * 1e6,
        "end": learner,
    }


def main() -> None:
    registry = Registry(ROOT / "models")
    entry = registry.active("online")
    shipped = registry.load_bytes(entry)
    means = np.array(entry.params["impute"])
    config = SimConfig(regime_shift_at=N / 2 / SimConfig().opportunity_rate)
    data = simulate_run(2028, DAY_START + 40 * 86_400, N, config)
    X, y = impute(data.X, means).astype(np.float64), data.y
    half = len(y) // 2
    probe = X[-5000:]
    reference = run(shipped, X, y, None)
    rows = []
    for name, chunk in [("river learn_one", None), *((f"chunk {c}", c) for c in CHUNKS)]:
        result = reference if chunk is None else run(shipped, X, y, chunk)
        p = result["scores"]
        whole, after = classification_metrics(y, p), classification_metrics(y[half:], p[half:])
        diff = np.abs(result["end"].predict(probe) - reference["end"].predict(probe)).max()
        rows.append(
            f"| {name} | {whole['auc']:.4f} | {whole['logloss']:.4f} | {after['auc']:.4f} | "
            f"{after['logloss']:.4f} | {diff:.4f} | {result['us_per_outcome']:.2f} |"
        )
        print(rows[-1], flush=True)
    lines = [
        "# Online learner: batched update against river's learn_one",
        "",
        "Measured by `python -m bench.online_learner`: the shipped online model 1.0.0 learning "
        f"prequentially (score a batch of {BATCH}, then learn it) on {len(y):,} simulated "
        "outcomes of seed 2028 (unseen in training), regime shift halfway.",
        "",
        "| learning | AUC | log loss | AUC after the shift | log loss after the shift | "
        "largest score difference from learn_one at the end | CPU µs per outcome |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"The worker learns with chunk {CHUNK} (`apex_stream/inference/online_member.py`); "
        "chunk 1 is river's per-sample SGD computed on arrays (a unit test holds it equal to "
        "`learn_one`).",
        "",
    ]
    (HERE / "online_learner.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
