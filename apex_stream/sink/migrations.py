"""`apex-stream db upgrade|downgrade|current`: Alembic, driven from the settings.

Every migration command first checks that the server can hold the schema as asked
(:mod:`.storage`), so a TimescaleDB that is installed but not preloaded is refused with its fix
before anything is migrated.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

from ..resources import MIGRATIONS
from ..settings import get_settings
from .storage import Offer, Storage, StorageError, Wanted, offer, problem


def alembic_config(url: str, *, quiet: bool = False, storage: Wanted = "auto") -> Config:
    """Alembic's configuration for this project's migrations against ``url``; 0001 reads the
    wanted ``storage`` from its attributes."""
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["quiet"] = quiet
    config.attributes["storage"] = storage
    return config


@dataclass(frozen=True)
class Schema:
    """A database's revision, the storage recorded when its schema was created, what the server
    offers, and why migrating it would fail (None when it would not)."""

    revision: str | None
    storage: Storage | None
    offer: Offer
    problem: str | None


def inspect(url: str, storage: Wanted | None = None) -> Schema:
    """The database's :class:`Schema`, judged for the ``storage`` asked (default: settings)."""
    wanted = storage or get_settings().storage
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            recorded = None
            if revision is not None:
                recorded = connection.exec_driver_sql(
                    "SELECT value FROM apex_meta WHERE key = 'storage'"
                ).scalar()
            offered = offer(connection)
    finally:
        engine.dispose()
    return Schema(revision, recorded, offered, problem(offered, recorded, wanted))


def _checked(url: str, storage: Wanted | None, quiet: bool) -> Config:
    wanted = storage or get_settings().storage
    found = inspect(url, wanted).problem
    if found:
        raise StorageError(found)
    return alembic_config(url, quiet=quiet, storage=wanted)


def upgrade(
    url: str, revision: str = "head", *, quiet: bool = False, storage: Wanted | None = None
) -> None:
    command.upgrade(_checked(url, storage, quiet), revision)


def downgrade(
    url: str, revision: str = "-1", *, quiet: bool = False, storage: Wanted | None = None
) -> None:
    command.downgrade(_checked(url, storage, quiet), revision)


def current(url: str) -> tuple[str | None, str | None]:
    """The database's revision and the storage decision recorded at migration time."""
    schema = inspect(url)
    return schema.revision, schema.storage
