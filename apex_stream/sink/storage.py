"""Which storage a database gets: TimescaleDB hypertables or plain PostgreSQL tables.

TimescaleDB works only when its library is preloaded by the server
(``shared_preload_libraries``); a package installed but not configured still lists the extension
in ``pg_available_extensions``, and ``CREATE EXTENSION`` then fails with an internal-looking
error halfway through a migration. So the decision is made here, before anything is migrated,
from what the server offers and the ``APEX_STORAGE`` setting:

- ``auto`` (default): TimescaleDB when it is installed and preloaded, plain PostgreSQL when it is
  not installed, and a refusal naming the fix when it is installed but not preloaded;
- ``timescaledb``: TimescaleDB or a refusal;
- ``postgresql``: plain PostgreSQL tables even where TimescaleDB is offered.

A schema created on TimescaleDB (``apex_meta.storage``) needs the library loaded for every later
migration too, whatever the setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection

from ..errors import ApexStreamError

Storage = Literal["timescaledb", "postgresql"]
Wanted = Literal["auto", "timescaledb", "postgresql"]

PRELOAD_FIX = (
    "add it to the server's configuration (postgresql.conf: shared_preload_libraries = "
    "'timescaledb'), restart PostgreSQL and run the command again"
)
PLAIN_OPT_IN = "or set APEX_STORAGE=postgresql to create plain PostgreSQL tables instead"


class StorageError(ApexStreamError):
    """The database cannot get (or keep) the storage asked for; the message names the fix."""


@dataclass(frozen=True)
class Offer:
    """What the server offers for TimescaleDB."""

    available: bool  # installed: listed in pg_available_extensions
    preloaded: bool  # named in shared_preload_libraries, so the extension can be created
    version: str | None  # the version created in this database, else the one installed

    def describe(self) -> str:
        if not self.available:
            return "TimescaleDB not installed"
        loaded = "preloaded" if self.preloaded else "not preloaded"
        return f"TimescaleDB {self.version} ({loaded})"


def offer(connection: Connection) -> Offer:
    """Ask the server what it offers."""
    installed = connection.exec_driver_sql(
        "SELECT coalesce(installed_version, default_version) FROM pg_available_extensions "
        "WHERE name = 'timescaledb'"
    ).scalar()
    libraries = connection.exec_driver_sql("SHOW shared_preload_libraries").scalar_one()
    preloaded = "timescaledb" in (name.strip() for name in str(libraries).split(","))
    return Offer(installed is not None, preloaded, installed)


def choose(offered: Offer, wanted: Wanted) -> Storage:
    """The storage a new schema gets (see the module docstring); raises :class:`StorageError`
    where the server cannot give what is asked."""
    if wanted == "postgresql":
        return "postgresql"
    if offered.available and offered.preloaded:
        return "timescaledb"
    if offered.available:
        raise StorageError(
            "TimescaleDB is installed on this PostgreSQL server but not preloaded, so its "
            f"extension cannot be created: {PRELOAD_FIX}; {PLAIN_OPT_IN}"
        )
    if wanted == "timescaledb":
        raise StorageError(
            "APEX_STORAGE=timescaledb but the TimescaleDB extension is not installed on this "
            "PostgreSQL server: install it (scripts/timescaledb builds it from source) or set "
            "APEX_STORAGE=auto"
        )
    return "postgresql"


def problem(offered: Offer, recorded: Storage | None, wanted: Wanted) -> str | None:
    """Why migrating this database would fail, or None: a TimescaleDB schema on a server that
    no longer loads the library, or a new schema the server cannot create as asked."""
    if recorded == "timescaledb" and not offered.available:
        return (
            "the schema was created on TimescaleDB, which this server does not have now: "
            f"install it (scripts/timescaledb builds it from source) and {PRELOAD_FIX}"
        )
    if recorded == "timescaledb" and not offered.preloaded:
        return (
            "the schema was created on TimescaleDB, but the server does not preload it now: "
            f"{PRELOAD_FIX}"
        )
    if recorded is None:
        try:
            choose(offered, wanted)
        except StorageError as exc:
            return str(exc)
    return None
