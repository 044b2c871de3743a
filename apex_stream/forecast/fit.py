"""Fitting the forecasts (``python -m apex_stream.forecast.fit``): training time only, needs the
``train`` extra (``arch``); the worker applies the result (``features/forecast.py``).

Fitted on two segments of the models' training day (simulator seeds 88 and 89, the first of
``training.dataset``'s segments of seed 11), kept or dropped on a third (seed 90): a forecast is
kept only when it beats its naive baselines there, the last quote for a price horizon, every
rolling window of ``measure.ROLLING`` and every EWMA of ``measure.EWMA_HALF_LIVES`` for the
volatility. ``bench/forecasts.py`` measures what
is kept on seeds and a day no fit touched.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from ..features.forecast import HORIZONS_S, ForecastParams, save_params
from ..training.dataset import DAY_START, SEGMENTS
from .measure import price_errors, sampled_returns, volatility_errors
from .track import Track, simulate

VERSION = "1.0.0"
SEED = 11
FIT_SEGMENTS, VALIDATION_SEGMENT = (0, 1), 2
SAMPLE_S, VOLATILITY_STEPS = 5.0, 12
#: Long-run variance EWMA of the GARCH's variance targeting, in samples (5 minutes at 5 s).
LONG_RUN_SAMPLES = 60.0


def segment(k: int, duration: float, params: ForecastParams | None) -> Track:
    """Training segment ``k`` of seed ``SEED``: its seed and start as ``training.dataset``."""
    return simulate(SEED * SEGMENTS + k, DAY_START + k * 86_400 / SEGMENTS, duration, params)


def fit_price(tracks: list[Track]) -> np.ndarray:
    """Least-squares coefficients (horizons, EMAs) of the quote h seconds on, relative to the
    last quote, on the last quote's distances from its EMAs (no intercept: no drift)."""
    coef = []
    for h in HORIZONS_S:
        X = np.concatenate(
            [(t.logp[:, :, None] - t.ema).reshape(-1, t.ema.shape[2]) for t in tracks]
        )
        y = np.concatenate([(t.quote_after(h) - t.logp).ravel() for t in tracks])
        ok = np.isfinite(X).all(axis=1) & np.isfinite(y)
        coef.append(-np.linalg.lstsq(X[ok], y[ok], rcond=None)[0])
    return np.array(coef)


def fit_garch(tracks: list[Track]) -> tuple[float, float]:
    """Alpha and beta of GARCH(1,1) fits (``arch``, zero mean) to each token's sampled returns
    in bps, each the median over the tokens, taken separately (so the pair need not be any one
    token's fit; ``ForecastParams`` refuses one outside alpha + beta < 1): the dynamics are
    shared, each token's level comes from variance targeting."""
    try:
        from arch import arch_model
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("fitting forecasts needs the train extra: pip install '.[train]'") from exc
    fitted = []
    for track in tracks:
        returns, _ = sampled_returns(track, SAMPLE_S)
        for r in (returns * 1e4).T:
            r = r[np.isfinite(r)]
            if len(r) < 100 or r.std() == 0:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence chatter on near-constant series
                res = arch_model(r, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fit(
                    disp="off"
                )
            fitted.append((res.params["alpha[1]"], res.params["beta[1]"]))
    alpha, beta = np.median(np.array(fitted), axis=0)
    return float(alpha), float(beta)


def fit(duration: float = 3600.0, validation: float = 1800.0) -> ForecastParams:
    """Fit on the training segments, then keep what beats its baseline on the validation one."""
    tracks = [segment(k, duration, None) for k in FIT_SEGMENTS]
    coef = fit_price(tracks)
    alpha, beta = fit_garch(tracks)
    full = ForecastParams(
        version=VERSION,
        horizons_s=list(HORIZONS_S),
        momentum_coef=coef.tolist(),
        volatility=True,
        sample_s=SAMPLE_S,
        alpha=alpha,
        beta=beta,
        long_run_samples=LONG_RUN_SAMPLES,
        volatility_steps=VOLATILITY_STEPS,
    )
    check = segment(VALIDATION_SEGMENT, validation, full)
    prices = price_errors(check)
    vol = volatility_errors(check, SAMPLE_S, VOLATILITY_STEPS)
    kept = [e.forecast_quote < e.last_quote for e in prices]
    best_baseline = vol.best_baseline()
    figures: dict[str, float | str | list[int]] = {
        "fit_seeds": [SEED * SEGMENTS + k for k in FIT_SEGMENTS],
        "fit_seconds": duration,
        "validation_seed": SEED * SEGMENTS + VALIDATION_SEGMENT,
        "validation_seconds": validation,
    }
    for e in prices:
        figures[f"rmse_bps_{int(e.horizon_s)}s"] = e.forecast_quote
        figures[f"last_rmse_bps_{int(e.horizon_s)}s"] = e.last_quote
    figures["volatility_qlike"] = vol.forecast[0]
    figures["rolling_qlike_best"] = min(q for q, _ in vol.rolling.values())
    figures["ewma_qlike_best"] = min(q for q, _ in vol.ewma.values())
    return ForecastParams(
        version=VERSION,
        horizons_s=[h for h, k in zip(HORIZONS_S, kept, strict=True) if k],
        momentum_coef=[c for c, k in zip(coef.tolist(), kept, strict=True) if k],
        volatility=vol.forecast[0] < best_baseline,
        sample_s=SAMPLE_S,
        alpha=alpha,
        beta=beta,
        long_run_samples=LONG_RUN_SAMPLES,
        volatility_steps=VOLATILITY_STEPS,
        fit=figures,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="models folder")
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds per fit segment")
    parser.add_argument("--validation", type=float, default=1800.0, help="validation seconds")
    args = parser.parse_args(argv)
    params = fit(args.duration, args.validation)
    path = save_params(args.out, params)
    print(f"wrote {path}: horizons kept {params.horizons_s}, volatility {params.volatility}")
    print(f"garch alpha {params.alpha:.4f} beta {params.beta:.4f}; {params.fit}")


if __name__ == "__main__":
    main()
