"""`apex-stream db upgrade|downgrade|current`: Alembic, driven from the settings."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

from ..resources import MIGRATIONS


def alembic_config(url: str, *, quiet: bool = False) -> Config:
    """Alembic's configuration for this project's migrations against ``url``."""
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["quiet"] = quiet
    return config


def upgrade(url: str, revision: str = "head", *, quiet: bool = False) -> None:
    command.upgrade(alembic_config(url, quiet=quiet), revision)


def downgrade(url: str, revision: str = "-1", *, quiet: bool = False) -> None:
    command.downgrade(alembic_config(url, quiet=quiet), revision)


def current(url: str) -> tuple[str | None, str | None]:
    """The database's revision and the storage decision recorded at migration time."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            storage = None
            if revision is not None:
                storage = connection.exec_driver_sql(
                    "SELECT value FROM apex_meta WHERE key = 'storage'"
                ).scalar()
    finally:
        engine.dispose()
    return revision, storage
