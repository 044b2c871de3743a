"""Fixtures of the unit tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from apex_stream.inference.registry import Registry
from apex_stream.settings import ROOT


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """A registry of a copy of the shipped models, for a test to change."""
    shutil.copytree(ROOT / "models", tmp_path / "models")
    return Registry(tmp_path / "models")
