"""Shared fixtures. Integration tests (tests/integration) run against the real services that
`apex-stream up` starts (or KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL), each test on its own
topic prefix so tests never see each other's messages."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from apex_stream.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.fspath).parent.name == "integration":
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def settings() -> Settings:
    """Settings from the environment with a topic prefix unique to this test."""
    return Settings(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
