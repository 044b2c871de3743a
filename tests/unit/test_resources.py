"""The files apex-stream reads at run time come with the package (apex_stream/resources/, whose
topics/ and migrations/ link to the repository's top-level folders), so an installed wheel finds
them; pyproject's package-data names every one of them."""

from __future__ import annotations

import os
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

from alembic.script import ScriptDirectory

import apex_stream
from apex_stream.events import EVENT_FOR_TOPIC
from apex_stream.resources import HERE, KAFKA_POM, MIGRATIONS, TOPICS
from apex_stream.settings import Settings
from apex_stream.sink.migrations import alembic_config
from apex_stream.topics import load_specs

PACKAGE = Path(apex_stream.__file__).parent


def test_resources_lie_inside_the_package() -> None:
    for path in (TOPICS, MIGRATIONS, KAFKA_POM):
        assert path.exists() and path.is_relative_to(PACKAGE), path


def test_the_packaged_topic_files_are_the_default_topics_dir() -> None:
    assert Settings.model_fields["topics_dir"].default == TOPICS
    assert set(load_specs(TOPICS)) == set(EVENT_FOR_TOPIC)


def test_alembic_finds_every_packaged_migration_in_one_line() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("postgresql+psycopg://unused"))
    files = sorted((MIGRATIONS / "versions").glob("*.py"))
    assert [script.revision for script in scripts.walk_revisions()][::-1] == [
        path.name.split("_")[0] for path in files
    ]
    assert scripts.get_heads() == [files[-1].name.split("_")[0]]


def test_the_kafka_pom_fetches_the_broker() -> None:
    pom = ET.parse(KAFKA_POM)
    artifacts = [a.text for a in pom.iterfind(".//{*}dependency/{*}artifactId")]
    assert "kafka_2.13" in artifacts


def test_package_data_ships_every_resource_file() -> None:
    """A data file that package-data misses is in a checkout but not in the wheel."""
    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["apex_stream.resources"]
    shipped = {path for pattern in patterns for path in HERE.glob(pattern)}
    data = {
        Path(folder, name)
        for folder, _, names in os.walk(HERE, followlinks=True)  # as the wheel build does
        for name in names
        if not name.endswith((".py", ".pyc"))
    }
    assert data == shipped
