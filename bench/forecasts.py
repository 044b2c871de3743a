"""Forecasts against their naive baselines on held-out simulator seeds (``python -m
bench.forecasts``, ~1.5 minutes): the shipped models/forecast.json applied by the worker's own
MarketState to simulated quotes of seeds and a day no fit touched (the backtest's week-later
day), errors from ``apex_stream.forecast.measure``. Writes forecasts.json and forecasts.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import msgspec
import numpy as np

from apex_stream.features.forecast import load_params
from apex_stream.forecast.measure import EWMA_HALF_LIVES, ROLLING, price_errors, volatility_errors
from apex_stream.forecast.track import simulate
from apex_stream.lifecycle.backtest import START

HERE = Path(__file__).resolve().parent
SEEDS = (2027, 2028, 2029)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="simulated s per seed")
    parser.add_argument("--models", type=Path, default=HERE.parent / "models")
    args = parser.parse_args(argv)
    params = load_params(args.models)
    if params is None:
        sys.exit(f"no forecast.json in {args.models}: python -m apex_stream.forecast.fit")
    runs = []
    # the GARCH is measured whether the fit kept it or not (its parameters are in the file)
    measured = msgspec.structs.replace(params, volatility=True)
    for seed in SEEDS:
        track = simulate(seed, START, args.duration, measured, params.sample_s)
        prices = price_errors(track)
        volatile = price_errors(track, ~track.stable)
        vol = volatility_errors(track, params.sample_s, params.volatility_steps)
        runs.append(
            {
                "seed": seed,
                "price": [vars(e) for e in prices],
                "price_volatile": [vars(e) for e in volatile],
                "volatility": {
                    "garch": vol.forecast,
                    "rolling": {str(w): v for w, v in vol.rolling.items()},
                    "ewma": {str(h): v for h, v in vol.ewma.items()},
                    "n": vol.n,
                },
            }
        )
        print(f"seed {seed} done", flush=True)
    command = "python -m bench.forecasts" + (
        f" --duration {args.duration:g}" if args.duration != 1800.0 else ""
    )
    result = {
        "command": command,
        "duration_s": args.duration,
        "params": params.version,
        "runs": runs,
    }
    (HERE / "forecasts.json").write_text(json.dumps(result, indent=1) + "\n")
    report = render(result, params.horizons_s, params.volatility)
    (HERE / "forecasts.md").write_text(report)
    print(report)


def _mean(runs: list[dict], path: tuple[str, ...]) -> float:
    values = []
    for run in runs:
        value = run
        for key in path:
            value = value[int(key)] if isinstance(value, list | tuple) else value[key]
        values.append(float(value))
    return float(np.mean(values))


def render(result: dict, kept: list[float], volatility_kept: bool) -> str:
    runs = result["runs"]
    seeds = ", ".join(str(r["seed"]) for r in runs)
    lines = [
        "# Forecasts against naive baselines",
        "",
        f"`{result['command']}`: seeds {seeds}, {result['duration_s']:g} simulated seconds each "
        "from 2026-01-08 (the backtest's day; the fit used seeds 88-90 on 2026-01-01), every "
        "token of every chain, recorded every 2.5 s. Forecasts are what the worker's "
        "MarketState holds with models/forecast.json "
        f"(version {result['params']}).",
        "",
        "## Price: RMSE in bps, mean over the seeds",
        "",
        "Against the token's first quote at or after t + h (observable) and against the "
        "simulator's hidden mid at t + h. Baseline: the last quote. Margin: how much lower the "
        "forecast's RMSE is (worst seed in brackets).",
        "",
        "| horizon | kept | forecast vs quote | last quote vs quote | margin | forecast vs mid "
        "| last quote vs mid | margin | margin, volatile tokens only (quote) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, e in enumerate(runs[0]["price"]):
        h = e["horizon_s"]

        def margin(key: str, base: str, group: str = "price", i: int = i) -> str:
            per_seed = [1 - r[group][i][key] / r[group][i][base] for r in runs]
            return f"{np.mean(per_seed):.1%} ({min(per_seed):.1%})"

        fq, lq = (
            _mean(runs, ("price", str(i), "forecast_quote")),
            _mean(runs, ("price", str(i), "last_quote")),
        )
        fm, lm = (
            _mean(runs, ("price", str(i), "forecast_mid")),
            _mean(runs, ("price", str(i), "last_mid")),
        )
        lines.append(
            f"| {h:g} s | {'yes' if h in kept else 'no'} | {fq:.2f} | {lq:.2f} | "
            f"{margin('forecast_quote', 'last_quote')} | {fm:.2f} | {lm:.2f} | "
            f"{margin('forecast_mid', 'last_mid')} | "
            f"{margin('forecast_quote', 'last_quote', 'price_volatile')} |"
        )
    lines += [
        "",
        "## Volatility over the next minute: QLIKE (lower is better), mean over the seeds",
        "",
        "Realized: the summed squared returns of the last quote sampled every 5 s over the next "
        "12 samples. Baselines: the mean squared sampled return over the last 1, 5 and 10 "
        "minutes, and EWMAs of the squared sampled returns (RiskMetrics-style) with half-lives "
        "of 30 s to 5 minutes, each times 12. RMSE in bps^2 beside it. Margin: how much lower "
        "the GARCH's QLIKE is (negative: the baseline is better), mean over the seeds (worst "
        "seed in brackets).",
        "",
        "| forecast | kept | QLIKE | RMSE (bps^2) | GARCH's QLIKE margin (worst seed) |",
        "|---|---|---|---|---|",
        f"| GARCH(1,1) | {'yes' if volatility_kept else 'no'} | "
        f"{_mean(runs, ('volatility', 'garch', '0')):.4f} | "
        f"{_mean(runs, ('volatility', 'garch', '1')):.0f} | |",
    ]
    baselines = [("rolling", w, f"rolling {w * 5 // 60} min") for w in ROLLING] + [
        ("ewma", h, f"EWMA, half-life {h * 5:g} s") for h in EWMA_HALF_LIVES
    ]
    for kind, w, name in baselines:
        per_seed = [
            1 - r["volatility"]["garch"][0] / r["volatility"][kind][str(w)][0] for r in runs
        ]
        lines.append(
            f"| {name} | | "
            f"{_mean(runs, ('volatility', kind, str(w), '0')):.4f} | "
            f"{_mean(runs, ('volatility', kind, str(w), '1')):.0f} | "
            f"{np.mean(per_seed):.1%} ({min(per_seed):.1%}) |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
