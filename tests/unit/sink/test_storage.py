"""The storage decision: every combination of what the server offers and what is asked."""

from __future__ import annotations

import pytest

from apex_stream.sink.storage import Offer, StorageError, choose, problem

MISSING = Offer(available=False, preloaded=False, version=None)
UNLOADED = Offer(available=True, preloaded=False, version="2.22.1")
LOADED = Offer(available=True, preloaded=True, version="2.22.1")


@pytest.mark.parametrize(
    ("offered", "wanted", "storage"),
    [
        (LOADED, "auto", "timescaledb"),
        (LOADED, "timescaledb", "timescaledb"),
        (LOADED, "postgresql", "postgresql"),
        (MISSING, "auto", "postgresql"),
        (MISSING, "postgresql", "postgresql"),
        (UNLOADED, "postgresql", "postgresql"),
    ],
)
def test_what_a_new_schema_gets(offered: Offer, wanted: str, storage: str) -> None:
    assert choose(offered, wanted) == storage  # type: ignore[arg-type]
    assert problem(offered, None, wanted) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("wanted", ["auto", "timescaledb"])
def test_installed_but_not_preloaded_is_refused_with_the_fix(wanted: str) -> None:
    with pytest.raises(StorageError) as refused:
        choose(UNLOADED, wanted)  # type: ignore[arg-type]
    message = str(refused.value)
    assert "shared_preload_libraries = 'timescaledb'" in message
    assert "restart PostgreSQL" in message and "APEX_STORAGE=postgresql" in message
    assert problem(UNLOADED, None, wanted) == message  # type: ignore[arg-type]


def test_asking_for_timescaledb_where_it_is_not_installed_is_refused() -> None:
    with pytest.raises(StorageError, match="not installed"):
        choose(MISSING, "timescaledb")
    assert "scripts/timescaledb" in (problem(MISSING, None, "timescaledb") or "")


def test_a_timescaledb_schema_needs_the_library_whatever_the_setting() -> None:
    for wanted in ("auto", "timescaledb", "postgresql"):
        found = problem(UNLOADED, "timescaledb", wanted)  # type: ignore[arg-type]
        assert found and "shared_preload_libraries" in found
        assert problem(LOADED, "timescaledb", wanted) is None  # type: ignore[arg-type]
    gone = problem(MISSING, "timescaledb", "auto")
    assert gone and "install it" in gone and "shared_preload_libraries" in gone
    # a plain schema does not care what the server offers
    assert problem(UNLOADED, "postgresql", "auto") is None


def test_the_offer_says_what_the_server_has() -> None:
    assert MISSING.describe() == "TimescaleDB not installed"
    assert UNLOADED.describe() == "TimescaleDB 2.22.1 (not preloaded)"
    assert LOADED.describe() == "TimescaleDB 2.22.1 (preloaded)"
