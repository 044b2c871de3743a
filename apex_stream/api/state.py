"""What the API's routes read of a worker, and who may call them.

The routes get the worker through FastAPI's dependency injection (:func:`worker`), so unit tests
serve the same app over a worker built without a broker.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..features.agent import MarketView
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

    def scorer_for_request(self) -> Scorer:
        return Scorer(self.scorer.ensemble, self.market_view())


def worker(request: Request) -> WorkerState:
    state: WorkerState = request.app.state.worker
    return state


Worker = Annotated[WorkerState, Depends(worker)]
_bearer = HTTPBearer(auto_error=False, description="APEX_API_TOKEN, when the worker has one")


def authorized(
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
