"""Model quality on held-out simulator seeds, and what each training choice gained or cost.

    python -m bench.quality                            # ~10 minutes on 2 busy cores
    python -m bench.quality --before /tmp/old/models   # and another folder's models

(an earlier commit's models: ``git archive COMMIT models | tar -x -C /tmp/old``).

Writes bench/quality.md and bench/quality.json. Held out: ``simulate_history`` of seeds 2027,
2028 and 2029 from a week after the training day (as ``apex-stream backtest`` builds them; no
training segment uses these seeds), ``--opportunities`` each. Every table gives, per seed, the
AUC as a share of the hidden truth's AUC on the same rows, and the calibration error (ECE, 10
equal-width bins).

1. The shipped models (``models/``, and ``--before``): each member, the weighted vote (the
   default) and the stacking vote.
2. The training choices, each next to its alternative, on the training day of ``models train``
   (seed 11, 200,000 opportunities, the same 70/15/15 split): XGBoost's default against the
   cross-validated hyper-parameters (those the shipped version records), class weights, profit
   weights (with the net profit of the expected-profit decision), warm start in a retrain, the
   stacking meta-learner fitted on the validation slice against out of fold, and the ONNX
   network dynamically quantized.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from apex_stream.features import impute
from apex_stream.inference.ensemble import voting_config
from apex_stream.inference.members import SPECS
from apex_stream.inference.registry import Registry
from apex_stream.inference.voting import StackingParams, VotingConfig, fit_stacking, vote
from apex_stream.lifecycle.backtest import START, simulate_history
from apex_stream.settings import ROOT, Settings
from apex_stream.simulator import SimConfig
from apex_stream.training.dataset import Dataset, simulate, simulate_run
from apex_stream.training.metrics import expected_calibration_error, roc_auc
from apex_stream.training.train import SPLIT
from apex_stream.training.xgb import PARAMS, PATIENCE, ROUNDS, train_xgboost

HERE = Path(__file__).parent
SEEDS = (2027, 2028, 2029)
TRAINING_SEED, TRAINING_OPPORTUNITIES = 11, 200_000
#: retrain windows (a few ten thousand stored outcomes, as the lifecycle controller retrains on)
WINDOW, WINDOW_SEEDS = 60_000, (3031, 3032)
BATCH, REPEATS = 1024, 300

Figures = list[tuple[float, float]]  # per held-out seed: (AUC / truth's AUC, ECE)


def figures(histories: Mapping[int, Dataset], score: Callable[[Dataset], np.ndarray]) -> Figures:
    out = []
    for h in histories.values():
        p = score(h)
        out.append((roc_auc(h.y, p) / roc_auc(h.y, h.truth), expected_calibration_error(h.y, p)))
    return out


def row(name: str, f: Figures, *extra: str) -> str:
    cells = [f"{ratio:.4f} / {ece:.4f}" for ratio, ece in f]
    return "| " + " | ".join([name, *cells, *extra]) + " |"


def shipped_models(folder: Path, histories: Mapping[int, Dataset]) -> list[str]:
    """Every member, the weighted vote and the stacking vote of ``folder``'s active versions."""
    registry = Registry(folder)
    manifest = registry.manifest()
    members, means = {}, {}
    for name, spec in SPECS.items():
        entry = manifest.active(name)
        members[name] = spec.load(registry.load_bytes(entry), entry.version, "cpu", 1)
        means[name] = np.array(entry.params["impute"])
    scores = {
        seed: {m: model.predict(impute(h.X, means[m])) for m, model in members.items()}
        for seed, h in histories.items()
    }

    def by(pick: Callable[[dict[str, np.ndarray]], np.ndarray]) -> Callable[[Dataset], np.ndarray]:
        lookup = {id(h): seed for seed, h in histories.items()}
        return lambda h: pick(scores[lookup[id(h)]])

    weighted = voting_config(Settings(models_dir=folder), manifest)
    stacking = voting_config(Settings(models_dir=folder, voting_strategy="stacking"), manifest)
    rows = [row(m, figures(histories, by(lambda s, m=m: s[m]))) for m in members]
    rows.append(row("**weighted vote**", figures(histories, by(lambda s: vote(s, weighted).score))))
    rows.append(row("stacking vote", figures(histories, by(lambda s: vote(s, stacking).score))))
    return rows


def boost(
    train: Dataset, val: Dataset, params: Mapping[str, Any], weight: np.ndarray | None = None
) -> xgb.Booster:
    """A booster as ``train_xgboost`` trains it, with sample weights (which it does not take)."""
    booster = xgb.train(
        PARAMS | dict(params) | {"seed": TRAINING_SEED},
        xgb.DMatrix(train.X, train.y, weight=weight),
        num_boost_round=ROUNDS,
        evals=[(xgb.DMatrix(val.X, val.y), "val")],
        early_stopping_rounds=PATIENCE,
        verbose_eval=False,
    )
    return booster[: booster.best_iteration + 1]


def expected_profit_net(h: Dataset, p: np.ndarray) -> float:
    """Net realized profit of executing where p * profit > (1 - p) * gas (quoted figures from
    the features: gas = gross - net profit)."""
    profit, ratio, amount = h.X[:, 0], h.X[:, 1], h.X[:, 7] * 1e3
    gas = np.maximum((ratio - 1.0) * amount - profit, 0.0)
    return float(h.profit_usd[p * profit - (1.0 - p) * gas > 0].sum())


def training_choices(
    histories: Mapping[int, Dataset], registry: Registry, opportunities: int
) -> tuple[list[str], list[str], dict[str, Any]]:
    """XGBoost variants on the training day, and the stacking meta-learners."""
    data = simulate(TRAINING_SEED, opportunities)
    n = len(data)
    a, b = int(n * SPLIT[0]), int(n * SPLIT[1])
    means = np.nanmean(data.X[:a], axis=0)
    train, val = data.imputed(means).slice(0, a), data.imputed(means).slice(a, b)
    held = {s: h.imputed(means) for s, h in histories.items()}
    tuned = registry.active("xgboost").params.get("xgboost", {})
    negatives = float((train.y == 0).sum() / max((train.y == 1).sum(), 1))
    magnitude = np.abs(train.profit_usd)
    variants: dict[str, tuple[Mapping[str, Any], np.ndarray | None]] = {
        "defaults (depth 6, min_child_weight 5)": ({}, None),
        f"cross-validated {tuned}": (tuned, None),
        f"+ scale_pos_weight {negatives:.3f}": (tuned | {"scale_pos_weight": negatives}, None),
        "+ sample weights abs(realized profit)": (tuned, magnitude / magnitude.mean()),
        "+ sample weights sqrt(abs(realized profit))": (
            tuned,
            np.sqrt(magnitude) / np.sqrt(magnitude).mean(),
        ),
    }
    rows, raw = [], {}
    tuned_booster = None
    for name, (params, weight) in variants.items():
        started = time.perf_counter()
        booster = boost(train, val, params, weight)
        if name.startswith("cross-validated"):
            tuned_booster = booster
        f = figures(held, lambda h, bst=booster: bst.inplace_predict(h.X))
        profit = [expected_profit_net(h, booster.inplace_predict(h.X)) for h in held.values()]
        raw[name] = {"figures": f, "expected_profit_net": profit}
        rows.append(
            row(
                name,
                f,
                " / ".join(f"{p / 1e3:,.0f}k" for p in profit),
                f"{booster.num_boosted_rounds()}",
                f"{time.perf_counter() - started:.0f}",
            )
        )
        print(rows[-1], flush=True)
    oracle = [expected_profit_net(h, h.truth) for h in held.values()]
    rows.append(
        row(
            "hidden truth", [(1.0, expected_calibration_error(h.y, h.truth)) for h in held.values()]
        ).removesuffix(" |")
        + " | "
        + " / ".join(f"{p / 1e3:,.0f}k" for p in oracle)
        + " | | |"
    )
    raw["oracle_expected_profit_net"] = oracle

    # stacking: the shipped meta-learner (fitted on the validation slice, which no member trained
    # or early-stopped on) against one fitted there over an XGBoost early-stopped on it (the
    # tuned booster above), with the shipped network and online learner
    manifest = registry.manifest()
    members: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        m: SPECS[m].load(registry.load_bytes(manifest.active(m)), "x", "cpu", 1).predict
        for m in SPECS
    }
    own = {m: np.array(manifest.active(m).params["impute"]) for m in SPECS}
    leaky = members | {"xgboost": lambda X: tuned_booster.inplace_predict(X)}

    def scores(of: Mapping[str, Callable[[np.ndarray], np.ndarray]], X: np.ndarray) -> dict:
        return {m: predict(impute(X, own[m])) for m, predict in of.items()}

    shipped = voting_config(Settings(voting_strategy="stacking"), manifest).stacking
    assert shipped is not None
    refitted = fit_stacking(scores(leaky, data.X[a:b]), data.y[a:b], tuple(SPECS))
    stack_rows = []
    for name, of, config in (
        ("weighted vote (shipped members)", members, VotingConfig()),
        (
            "stacking fitted where XGBoost early-stopped",
            leaky,
            VotingConfig(strategy="stacking", stacking=refitted),
        ),
        (
            "stacking as shipped (fitted out of fold)",
            members,
            VotingConfig(strategy="stacking", stacking=shipped),
        ),
    ):
        f = figures(histories, lambda h, of=of, c=config: vote(scores(of, h.X), c).score)
        coef = _coefficients(config.stacking) if config.stacking else ""
        stack_rows.append(row(name, f, coef))
        raw[name] = {"figures": f}
        print(stack_rows[-1], flush=True)
    return rows, stack_rows, raw


def _coefficients(params: StackingParams) -> str:
    return ", ".join(f"{m} {c:.2f}" for m, c in zip(params.members, params.coef, strict=True))


def warm_start(registry: Registry) -> tuple[list[str], dict[str, Any]]:
    """A retrain of XGBoost on a window of new outcomes, fresh against continuing the active
    booster, scored on the window's newest 15 %."""
    entry = registry.active("xgboost")
    active = registry.load_bytes(entry)
    means = np.array(entry.params["impute"])
    rows, raw = [], {}
    for seed, shifted in zip(WINDOW_SEEDS, (False, True), strict=True):
        config = SimConfig(regime_shift_at=0.0) if shifted else None
        window = simulate_run(seed, START, WINDOW, config).imputed(means)
        n = len(window)
        a, b = int(n * SPLIT[0]), int(n * SPLIT[1])
        train, val, tail = window.slice(0, a), window.slice(a, b), window.slice(b, n)
        truth = roc_auc(tail.y, tail.truth)
        cells = []
        for base in (None, active):
            blob, metrics = train_xgboost(
                train.X, train.y, val.X, val.y, 0, params=entry.params.get("xgboost"), base=base
            )
            p = SPECS["xgboost"].load(blob, "x", "cpu", 1).predict(tail.X)
            f = (roc_auc(tail.y, p) / truth, expected_calibration_error(tail.y, p))
            cells.append(f"{f[0]:.4f} / {f[1]:.4f} ({metrics['trees']:.0f} trees)")
            raw[f"{seed} {'warm' if base else 'fresh'}"] = f
        p = SPECS["xgboost"].load(active, "x", "cpu", 1).predict(tail.X)
        kept = f"{roc_auc(tail.y, p) / truth:.4f} / {expected_calibration_error(tail.y, p):.4f}"
        what = "after a regime shift" if shifted else "same market"
        rows.append(f"| seed {seed}, {what}, {n:,} outcomes | {kept} | {cells[0]} | {cells[1]} |")
        print(rows[-1], flush=True)
    return rows, raw


def quantized(registry: Registry, histories: Mapping[int, Dataset]) -> list[str]:
    """The ONNX network as shipped and dynamically quantized to int8: figures and CPU speed."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    entry = registry.active("onnx")
    model = registry.load_bytes(entry)
    means = np.array(entry.params["impute"])
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(model)
        quantize_dynamic(
            source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["Gemm", "MatMul"]
        )
        int8 = target.read_bytes()
    rows = []
    for name, blob in (("float32 (shipped)", model), ("int8, dynamic quantization", int8)):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])

        def predict(X: np.ndarray, s: ort.InferenceSession = session) -> np.ndarray:
            return np.asarray(s.run(None, {"features": X.astype(np.float32)})[0], np.float64)

        f = figures(histories, lambda h, p=predict: p(impute(h.X, means)))
        batch = impute(next(iter(histories.values())).X[:BATCH], means).astype(np.float32)
        for _ in range(20):
            predict(batch)
        started = time.perf_counter()
        for _ in range(REPEATS):
            predict(batch)
        micros = (time.perf_counter() - started) / REPEATS * 1e6
        rows.append(row(name, f, f"{micros:,.0f}", f"{len(blob):,}"))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="another models folder to measure")
    parser.add_argument("--opportunities", type=int, default=100_000, help="per held-out seed")
    parser.add_argument(
        "--training-opportunities", type=int, default=TRAINING_OPPORTUNITIES, help="training day"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    histories = {s: simulate_history(s, args.opportunities).data for s in SEEDS}
    truth = {s: roc_auc(h.y, h.truth) for s, h in histories.items()}
    registry = Registry(ROOT / "models")
    head = "| | " + " | ".join(f"seed {s}: AUC / truth, ECE" for s in SEEDS) + " |"
    rule = "|---" * (len(SEEDS) + 1) + "|"
    shipped = shipped_models(ROOT / "models", histories)
    before = shipped_models(args.before, histories) if args.before else []
    choices, stacking, raw = training_choices(histories, registry, args.training_opportunities)
    warm, warm_raw = warm_start(registry)
    quant = quantized(registry, histories)
    rows = {s: len(h) for s, h in histories.items()}
    command = f" --before {args.before}" if args.before else ""
    lines = [
        "# Model quality on held-out simulator seeds",
        "",
        f"Measured by `python -m bench.quality{command}`"
        f" in {time.perf_counter() - started:,.0f} s. Held out: seeds "
        + ", ".join(f"{s} ({rows[s]:,} rows, truth AUC {truth[s]:.4f})" for s in SEEDS)
        + f", each {args.opportunities:,} simulated opportunities from a week after the "
        "training day. Cells: the AUC as a share of the hidden truth's AUC on the same rows "
        "/ the calibration error (ECE, 10 bins). Goals: 0.98 and 0.02.",
        "",
        "## 1. The shipped models (`models/`)",
        "",
        head,
        rule,
        *shipped,
        *(["", f"Before (`{args.before}`):", "", head, rule, *before] if before else []),
        "",
        "## 2. Training choices",
        "",
        "XGBoost retrained on the training day of `models train` (seed 11, "
        f"{args.training_opportunities:,} opportunities; 70 % trains, the next 15 % early-stops). "
        "Expected-profit net: realized net "
        "profit (USD) of executing where p x quoted profit > (1 - p) x gas, per seed.",
        "",
        head.removesuffix(" |") + " | expected-profit net | trees | seconds |",
        rule + "---|---|---|",
        *choices,
        "",
        "The vote and the stacking meta-learner, fitted on the validation slice two ways:",
        "",
        head.removesuffix(" |") + " | coefficients |",
        rule + "---|",
        *stacking,
        "",
        "Warm start: XGBoost retrained on a window of new outcomes (70 % trains, 15 % "
        "early-stops), scored on its newest 15 %; AUC / truth, ECE.",
        "",
        "| window | active version kept | fresh booster | continuing the active booster |",
        "|---|---|---|---|",
        *warm,
        "",
        f"ONNX network, one CPU thread; µs per batch of {BATCH:,} rows ({REPEATS} batches).",
        "",
        head.removesuffix(" |") + " | µs per batch | bytes |",
        rule + "---|---|",
        *quant,
        "",
    ]
    (HERE / "quality.md").write_text("\n".join(lines))
    (HERE / "quality.json").write_text(json.dumps(raw | {"warm_start": warm_raw}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
