"""The retrain gate: a retrained candidate takes A/B traffic only when, on the held-out tail both
were scored on, it is not worse than the active version.

"Not worse" is a margin on two figures: AUC (ranking) may fall by at most ``auc_margin`` and log
loss (calibration, what the threshold and the stacking vote read) may rise by at most
``logloss_margin``. A figure that cannot be computed (an AUC on a tail of one class is NaN)
proves nothing, so it refuses: traffic is only ever given on evidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: member -> {"active": metrics, "candidate": metrics}, as :func:`..retrain.retrain` compares
Comparison = Mapping[str, Mapping[str, Mapping[str, float]]]


def gate(comparison: Comparison, auc_margin: float, logloss_margin: float) -> dict[str, str | None]:
    """Per member, why its candidate is refused traffic, or None when it may take its share."""
    return {
        member: _refusal(sides["active"], sides["candidate"], auc_margin, logloss_margin)
        for member, sides in comparison.items()
    }


def _refusal(
    active: Mapping[str, float],
    candidate: Mapping[str, float],
    auc_margin: float,
    logloss_margin: float,
) -> str | None:
    reasons = []
    old, new = active["auc"], candidate["auc"]
    if math.isnan(old) or math.isnan(new):
        reasons.append("AUC undefined on the held-out tail (one class only)")
    elif new < old - auc_margin:
        reasons.append(
            f"AUC {new:.4f} is {old - new:.4f} below the active {old:.4f} (margin {auc_margin:g})"
        )
    old, new = active["logloss"], candidate["logloss"]
    if not (math.isfinite(old) and math.isfinite(new)):
        reasons.append(f"log loss undefined on the held-out tail ({new} against {old})")
    elif new > old + logloss_margin:
        reasons.append(
            f"log loss {new:.4f} is {new - old:.4f} above the active {old:.4f} "
            f"(margin {logloss_margin:g})"
        )
    return "; ".join(reasons) or None
