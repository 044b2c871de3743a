"""The member catalogue's contract: every spec loads the shipped model file into a member with
the one surface (name, version, provider, predict), and the manifest agrees with the spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from apex_stream.features import FEATURES
from apex_stream.inference.ensemble import load_member, voting_config
from apex_stream.inference.members import MEMBERS, SPECS, VOTING_WEIGHTS
from apex_stream.inference.registry import Manifest, ModelError, Registry
from apex_stream.inference.voting import VotingConfig
from apex_stream.settings import Settings


@pytest.mark.parametrize("name", MEMBERS)
def test_every_member_loads_with_the_one_surface(name: str) -> None:
    registry = Registry(Settings().models_dir)
    entry = registry.active(name)
    spec = SPECS[name]
    assert entry.type == spec.type and Path(entry.path or "").suffix == f".{spec.suffix}"
    member = load_member(registry, entry, device="cpu", threads=spec.threads(Settings()))
    assert (member.name, member.version) == (name, entry.version)
    assert isinstance(member.provider, str) and member.provider
    p = member.predict(np.random.default_rng(0).normal(size=(5, len(FEATURES))))
    assert p.dtype == np.float64 and p.shape == (5,)
    assert ((p >= 0) & (p <= 1)).all()


def test_settings_and_voting_take_their_defaults_from_the_catalogue() -> None:
    assert VotingConfig().weights == VOTING_WEIGHTS
    assert voting_config(Settings(), Manifest(0, ())).weights == VOTING_WEIGHTS
    assert SPECS["onnx"].threads(Settings(onnx_threads=3)) == 3
    assert SPECS["online"].threads(Settings()) == 1


def test_registering_an_unknown_model_names_the_models(tmp_path: Path) -> None:
    file = tmp_path / "model.bin"
    file.write_bytes(b"model")
    with pytest.raises(
        ModelError, match="unknown model 'stacking'; models are xgboost, onnx, online, engine"
    ):
        Registry(tmp_path).register("stacking", "1.0.0", file, created="x")
