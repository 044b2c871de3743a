"""What the API's routes read of a worker, and who may call them.

The routes get the worker through FastAPI's dependency injection (:func:`worker`), so unit tests
serve the same app over a worker built without a broker.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..features.agent import MarketView
from ..inference.ensemble import Scores
from ..inference.registry import Manifest, Registry
from ..inference.scoring import Scorer
from ..learning.outcomes import Learning
from ..settings import Settings


@dataclass
class WorkerState:
    """The worker behind the API."""

    settings: Settings
    scorer: Scorer  # the stream's: its ``ensemble`` is the revision being served
    learning: Learning
    registry: Registry
    #: a market view of its own for each request: the stream's is refreshed by every batch and
    #: a request is scored in a thread, beside the stream
    market_view: Callable[[], MarketView]
    health: Callable[[], dict[str, Any]]
    #: tells every worker about a manifest revision (live reload)
    publish: Callable[[Manifest, str], Awaitable[None]]
    #: counts a request's member failures and heuristic rows, and sends the alerts due, as the
    #: stream does for its batches
    observe: Callable[[Scores], Awaitable[None]]

    @property
    def mode(self) -> Literal["LIVE", "SIMULATION"]:
        """Seed 002's mode: LIVE with ``APEX_LIVE_TRADING`` (reported only)."""
        return "LIVE" if self.settings.live_trading else "SIMULATION"

    def scorer_for_request(self) -> Scorer:
        return Scorer(self.scorer.ensemble, self.market_view())


async def worker(request: Request) -> WorkerState:
    state: WorkerState = request.app.state.worker
    return state


Worker = Annotated[WorkerState, Depends(worker)]
#: The largest request body read (10,000 opportunities take about 3 MB).
MAX_BODY = 16 * 1024 * 1024
_bearer = HTTPBearer(auto_error=False, description="APEX_API_TOKEN, when the worker has one")


async def json_body(request: Request) -> bytes:
    """The request's body, which must be declared JSON: a cross-site page can send a form or
    ``text/plain`` POST without asking first, but not ``application/json`` (CORS preflight)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPException(415, f"send Content-Type: application/json, not {kind or 'none'!r}")
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise HTTPException(413, f"the body is {declared} bytes; at most {MAX_BODY}")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"the body is {len(body)} bytes; at most {MAX_BODY}")
    return body


JsonBody = Annotated[bytes, Depends(json_body)]


async def authorized(
    state: Worker,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Scoring and model routes need ``Authorization: Bearer <APEX_API_TOKEN>`` when the worker
    has a token; without one they are open (the API listens on loopback by default)."""
    token = state.settings.api_token
    if token is None:
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
