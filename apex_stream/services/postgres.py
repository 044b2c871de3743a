"""A local PostgreSQL cluster for apex-stream, used when no DATABASE_URL is configured.

PostgreSQL refuses to run as root, so under root the cluster runs as the ``postgres`` OS user
with its data in ``/var/lib/apex-stream/postgres`` (root's home is closed to that user);
otherwise it lives in ``$APEX_HOME/postgres``; ``APEX_POSTGRES_DATA`` overrides either. It
listens on 127.0.0.1 only, trusting local connections, with a role and database both named
``apex``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg

from ..errors import ServiceError
from ..settings import Settings

INSTALL_HINT = (
    "install the PostgreSQL server (apt-get install postgresql), set APEX_POSTGRES_BIN to its "
    "bin folder, or point DATABASE_URL at an existing database"
)
ROLE = "apex"


def find_bin(configured: Path | None) -> Path:
    """The folder holding initdb and pg_ctl: configured, on PATH, or Debian's newest."""
    candidates = [configured] if configured else []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "pg_ctl").exists() and (folder / "initdb").exists():
            return folder
    raise ServiceError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")


def timescaledb_installed(bin_dir: Path) -> bool:
    """Whether TimescaleDB's library is installed for the server in ``bin_dir`` (its package
    library folder, ``pg_config --pkglibdir``, is ``../lib`` beside ``bin`` in Debian's and the
    PostgreSQL packages' layouts)."""
    return (bin_dir.parent / "lib" / "timescaledb.so").exists()


class PostgresService:
    """Initialises, starts, stops and reports on the local cluster; idempotent.

    The cluster preloads TimescaleDB when its library is installed (``scripts/timescaledb``
    builds and installs it), so new schemas become hypertables; ``timescaledb=False`` starts it
    as a bare package install does, without the preload.
    """

    def __init__(self, settings: Settings, *, timescaledb: bool = True) -> None:
        self.settings = settings
        self.timescaledb = timescaledb
        self.as_postgres_user = os.geteuid() == 0
        default = Path("/var/lib/apex-stream") if self.as_postgres_user else settings.home
        self.data = settings.postgres_data or default / "postgres"
        self.log_file = self.data / "postgres.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.postgres_port}"

    def _run(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(a) for a in args]
        if self.as_postgres_user:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise ServiceError(f"{' '.join(cmd)} failed:\n{result.stdout}{result.stderr}")
        return result

    def running(self) -> bool:
        """True when our cluster's postmaster is alive."""
        if not (self.data / "PG_VERSION").exists():
            return False
        return (
            self._run(
                find_bin(self.settings.postgres_bin) / "pg_ctl",
                "status",
                "-D",
                self.data,
                check=False,
            ).returncode
            == 0
        )

    def _initdb(self, bin_dir: Path) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        if self.as_postgres_user:
            shutil.chown(self.data, "postgres", "postgres")
        self._run(
            bin_dir / "initdb",
            "-D",
            self.data,
            "-U",
            ROLE,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        )

    def start(self) -> bool:
        """Start the cluster (initialising it first) and ensure the ``apex`` database exists."""
        if self.running():
            return False
        bin_dir = find_bin(self.settings.postgres_bin)
        if not (self.data / "PG_VERSION").exists():
            self._initdb(bin_dir)
        options = (
            f"-p {self.settings.postgres_port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.data} -c max_connections=200 "
            "-c shared_buffers=256MB -c synchronous_commit=off"
        )
        if self.timescaledb and timescaledb_installed(bin_dir):
            options += " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
        try:
            self._run(
                bin_dir / "pg_ctl",
                "start",
                "-D",
                self.data,
                "-l",
                self.log_file,
                "-w",
                "-t",
                "60",
                "-o",
                options,
            )
        except ServiceError as exc:  # pg_ctl says "see the log": show it
            log = Path(self.log_file)
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            raise ServiceError(f"{exc}\nthe end of {log}:\n{tail}") from None
        self._ensure_database()
        return True

    def _ensure_database(self) -> None:
        with psycopg.connect(
            host="127.0.0.1",
            port=self.settings.postgres_port,
            user=ROLE,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (ROLE,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{ROLE}"')

    def stop(self) -> bool:
        """Stop the cluster (fast shutdown); False when it was not running."""
        if not self.running():
            return False
        self._run(
            find_bin(self.settings.postgres_bin) / "pg_ctl",
            "stop",
            "-D",
            self.data,
            "-m",
            "fast",
            "-w",
        )
        return True
