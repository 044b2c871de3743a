"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.database import temporary_database


@pytest.fixture
def database() -> Iterator[str]:
    """The URL of a new, empty database on the configured server, dropped afterwards."""
    with temporary_database() as url:
        yield url
