"""Throwaway databases on the configured PostgreSQL server, for the benchmarks and the
integration tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

from apex_stream.settings import Settings
from apex_stream.sink import migrations


@contextmanager
def temporary_database(prefix: str = "apex_bench") -> Iterator[str]:
    """The URL of a new, empty database on the configured server, dropped afterwards (the
    integration tests use it too)."""
    server = make_url(Settings().db_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        server.set(database="postgres"), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def migrated_database(revision: str = "head") -> Iterator[str]:
    """The URL of a new database with the schema at ``revision``, dropped afterwards."""
    with temporary_database() as url:
        migrations.upgrade(url, revision, quiet=True)
        yield url
