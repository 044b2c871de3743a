"""Fixtures of the integration tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

from apex_stream.settings import Settings


@pytest.fixture
def database() -> Iterator[str]:
    """The URL of a new, empty database on the configured server, dropped afterwards."""
    server = make_url(Settings().db_url)
    name = f"apex_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        server.set(database="postgres"), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
