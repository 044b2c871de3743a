"""The seed documents' examples, verbatim, for the tests that run them (``../shared/seeds``)."""

from __future__ import annotations

import json
from typing import Any

from apex_stream.events import Opportunity

#: Seed 000's opportunity, byte for byte as its `POST /predict/batch` example writes it.
SEED_000_OPPORTUNITY = b"""{
      "route_id": "usdc_usdt_2hop",
      "tokens": ["USDC", "USDT", "USDC"],
      "dexes": ["quickswap", "sushiswap"],
      "input_amount": 1000.0,
      "expected_output": 1012.0,
      "gas_estimate": 350000,
      "profit_usd": 12.0,
      "confidence_score": 0.85,
      "chain": "polygon"
    }"""
#: Seed 000's `POST /predict/batch` request example.
SEED_000_BATCH = (
    b"""{
  "opportunities": [
    %s
  ],
  "threshold": 0.8,
  "use_gpu": false
}"""
    % SEED_000_OPPORTUNITY
)
#: Seed 002's `POST /predict` body.
SEED_002_PREDICT = b"""{
    "features": [10.5, 1.012, 3, 0.35, 0.87, 0.5, 2, 1.0]
  }"""


def seed_000_opportunity(**changes: Any) -> dict[str, Any]:
    """Seed 000's opportunity as a dict, with ``changes``."""
    opportunity: dict[str, Any] = json.loads(SEED_000_OPPORTUNITY)
    return opportunity | changes


def seed_000_normalized(timestamp: float, opportunity_id: str = "") -> Opportunity:
    """Seed 000's opportunity as the input rules make it, written out by hand: the route without
    its repeated token, the given time."""
    return Opportunity(
        opportunity_id=opportunity_id,
        route_id="usdc_usdt_2hop",
        chain="polygon",
        tokens=["USDC", "USDT"],
        dexes=["quickswap", "sushiswap"],
        input_amount=1000.0,
        expected_output=1012.0,
        gas_estimate=350000.0,
        profit_usd=12.0,
        confidence_score=0.85,
        timestamp=timestamp,
    )
