"""The `apex-stream` command on the real broker: topics created, the market produced and
consumed back; bad models refused by `models register` and `models ab-test`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from apex_stream.events import Opportunity, decode
from apex_stream.inference.registry import MANIFEST
from apex_stream.settings import ROOT, Settings
from tests.support.models import bad_models


@pytest.mark.slow
def test_cli_produce_and_consume(settings: Settings) -> None:
    env = os.environ | {"APEX_TOPIC_PREFIX": settings.topic_prefix}
    cli = [sys.executable, "-m", "apex_stream.cli"]
    created = subprocess.run([*cli, "topics", "create"], env=env, capture_output=True, text=True)
    assert created.returncode == 0, created.stdout + created.stderr
    produced = subprocess.run(
        [*cli, "produce", "--rate", "0", "--count", "2000", "--seed", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert produced.returncode == 0, produced.stdout + produced.stderr
    assert "2,000 opportunities" in produced.stdout
    consumed = subprocess.run(
        [*cli, "consume", "opportunities", "--from-beginning", "--count", "2000"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert consumed.returncode == 0, consumed.stderr
    lines = consumed.stdout.splitlines()
    assert len(lines) == 2000
    ids = {decode(line, Opportunity).opportunity_id for line in lines}
    assert len(ids) == 2000


def test_cli_refuses_each_kind_of_bad_model(settings: Settings, tmp_path: Path) -> None:
    """The drill of issue 13: every kind of bad registration is refused with its reason and exit
    code 1, and so is an A/B test of a file changed after it was registered; the manifest is
    never written."""
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    env = os.environ | {
        "APEX_TOPIC_PREFIX": settings.topic_prefix,
        "APEX_MODELS_DIR": str(models),
        "COLUMNS": "1000",  # one line per message: rich wraps at the terminal's width
    }

    def cli(*args: str) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-m", "apex_stream.cli", "models", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.returncode, done.stdout + done.stderr

    manifest = (models / MANIFEST).read_bytes()
    for kind, bad in bad_models(tmp_path).items():
        given = ["--feature-version", bad.feature_version] if bad.feature_version else []
        code, out = cli("register", bad.name, "1.1.0", str(bad.file), *given)
        assert code == 1, (kind, out)
        assert f"error: {bad.name}@1.1.0" in out and bad.reason in out, (kind, out)
        assert (models / MANIFEST).read_bytes() == manifest, kind
        assert not list(models.glob(f"{bad.name}-1.1.0.*")), kind

    code, out = cli("register", "xgboost", "1.1.0", str(models / "xgboost-1.0.0.ubj"))
    assert code == 0, out
    registered = (models / MANIFEST).read_bytes()
    (models / "xgboost-1.1.0.ubj").write_text("{}")  # corrupted after registration
    code, out = cli("ab-test", "xgboost", "1.0.0=0.8", "1.1.0=0.2")
    assert code == 1 and "error: checksum mismatch for xgboost@1.1.0" in out, out
    assert (models / MANIFEST).read_bytes() == registered

    # a manifest edited by hand to vouch for a regressor's file
    regressor = bad_models(tmp_path)["a regressor"].file
    shutil.copyfile(regressor, models / "xgboost-1.1.0.ubj")
    raw = json.loads(registered)
    for entry in raw["models"]:
        if entry["name"] == "xgboost" and entry["version"] == "1.1.0":
            entry["sha256"] = hashlib.sha256(regressor.read_bytes()).hexdigest()
    (models / MANIFEST).write_text(json.dumps(raw))
    edited = (models / MANIFEST).read_bytes()
    code, out = cli("ab-test", "xgboost", "1.0.0=0.8", "1.1.0=0.2")
    assert code == 1 and "error: xgboost@1.1.0 scores" in out and "outside [0, 1]" in out, out
    code, out = cli("promote", "xgboost", "1.1.0")
    assert code == 1 and "error: xgboost@1.1.0 scores" in out, out
    assert (models / MANIFEST).read_bytes() == edited
