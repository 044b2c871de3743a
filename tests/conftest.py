"""Shared fixtures. Integration tests (tests/integration) run against the real services that
`apex-stream up` starts (or KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL), each test on its own
topic prefix so tests never see each other's messages; its topics are deleted afterwards so
the broker does not accumulate them run after run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from apex_stream.client import kafka_admin
from apex_stream.settings import Settings

INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration/, at any depth, is marked ``integration``."""
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)


async def delete_topics(settings: Settings, marker: str) -> None:
    """Delete every topic whose name contains ``marker`` (the test's and Faust's own)."""
    admin = kafka_admin(settings)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if marker in t]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings from the environment with a topic prefix unique to this test."""
    marker = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(topic_prefix=f"{marker}.")
    yield settings
    if request.node.get_closest_marker("integration"):
        # on a thread of its own: asyncio.run here would unset pytest-asyncio's loop
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, delete_topics(settings, marker)).result()
