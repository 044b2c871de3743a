"""Waiting for what a test can observe, instead of sleeping for a while and hoping."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def wait_for(
    condition: Callable[[], object | Awaitable[object]],
    timeout: float,
    what: str,
    every: float = 0.5,
) -> None:
    """Poll ``condition`` (a function, or a coroutine function) every ``every`` s until it is
    true; fail the test, naming ``what``, if it is not within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        await asyncio.sleep(every)
