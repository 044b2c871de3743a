"""The engine model behind seed 002's /predict: shipped and verified through the registry, its
test AUC a real figure, request vectors checked, versioned like the members (register, promote,
rollback; never split), loaded with every revision, and outside the ensemble's vote: a missing or
broken engine leaves the members scoring as before."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from apex_stream.cli import models as models_cli
from apex_stream.cli.models import models
from apex_stream.features import FEATURE_VERSION, FEATURES
from apex_stream.features.engine import ENGINE_FEATURE_VERSION, engine_features
from apex_stream.inference.engine import EngineModel, FeatureVectorError, engine_vector
from apex_stream.inference.ensemble import Ensemble
from apex_stream.inference.members import (
    CATALOGUE,
    ENGINE,
    MEMBERS,
    SPECS,
    SPLITTABLE,
    VOTING_WEIGHTS,
)
from apex_stream.inference.registry import Manifest, ModelError, Registry, sha256_of, validate
from apex_stream.settings import Settings
from apex_stream.training.metrics import roc_auc

#: the /predict example of seed 002, sent by its curl, Node.js and Rust clients
EXAMPLE = [10.5, 1.012, 3, 0.35, 0.87, 0.5, 2, 1.0]


@pytest.fixture(scope="module")
def shipped() -> Ensemble:
    return Ensemble(Settings())


def engine_of(ensemble: Ensemble) -> EngineModel:
    assert ensemble.engine is not None
    return ensemble.engine


def test_the_shipped_engine_loads_through_the_registry_and_its_checksum() -> None:
    registry = Registry(Settings().models_dir)
    entry = registry.active("engine")
    assert (entry.type, entry.feature_version) == (ENGINE.type, ENGINE_FEATURE_VERSION)
    assert entry.path == f"engine-{entry.version}.ubj" and entry.version == "1.0.0"
    model = ENGINE.load(registry.load_bytes(entry), entry.version, "cpu", 1)  # sha256 checked
    assert isinstance(model, EngineModel)
    assert (model.name, model.version, model.model_type, model.provider) == (
        "engine",
        "1.0.0",
        "xgboost",
        "cpu",
    )
    assert model.n_features == 8


def test_seed_002s_example_gives_a_probability(shipped: Ensemble) -> None:
    p = engine_of(shipped).predict(engine_vector(EXAMPLE)[None, :])
    assert p.dtype == np.float64 and p.shape == (1,)
    assert 0.0 <= p[0] <= 1.0


def test_the_manifests_test_auc_holds_on_fresh_simulated_history(
    shipped: Ensemble, simulated
) -> None:
    """The recorded figure is on the chronological held-out 15 %; a simulation the model never
    saw (another seed) ranks as well, and no model can beat the hidden truth."""
    metrics = Registry(Settings().models_dir).active("engine").metrics
    auc = metrics["test_auc"]
    assert metrics["test_samples"] > 20_000
    assert 0.75 < auc < metrics["truth_auc_test"]
    assert 0.75 < metrics["val_auc"] < metrics["truth_auc_test"]

    X, truth, _ = simulated
    success = np.random.default_rng(0).random(len(truth)) < truth
    fresh = roc_auc(success, engine_of(shipped).predict(engine_features(X)))
    assert fresh > 0.75 and abs(fresh - auc) < 0.05


@pytest.mark.parametrize(
    ("features", "reason"),
    [
        ({"profit_usd": 10.5}, "must be a list of 8 numbers .*got dict"),
        ("10.5, 1.012", "must be a list of 8 numbers .*got str"),
        (None, "got NoneType"),
        (EXAMPLE[:7], "exactly 8 numbers .*got 7"),
        ([*EXAMPLE, 1.0], "exactly 8 numbers .*got 9"),
        ([10.5, 1.012, "3", 0.35, 0.87, 0.5, 2, 1.0], r"features\[2\] \(route_complexity\)"),
        ([10.5, 1.012, 3, 0.35, True, 0.5, 2, 1.0], r"features\[4\] \(confidence_score\)"),
        ([10.5, 1.012, 3, 0.35, 0.87, float("nan"), 2, 1.0], r"\(time_of_day\) is nan, must be"),
        ([float("inf"), 1.012, 3, 0.35, 0.87, 0.5, 2, 1.0], r"\(profit_usd\) is inf, must be"),
        ([10.5, 1.012, 3, 0.35, 0.87, 0.5, None, 1.0], r"\(dex_count\) is None, not a number"),
    ],
)
def test_a_bad_vector_is_refused_with_its_reason(features: object, reason: str) -> None:
    with pytest.raises(FeatureVectorError, match=reason):
        engine_vector(features)


def test_a_vector_of_8_finite_numbers_is_accepted_ints_included() -> None:
    vector = engine_vector(EXAMPLE)
    assert vector.dtype == np.float64 and vector.shape == (8,)
    np.testing.assert_array_equal(vector, EXAMPLE)
    np.testing.assert_array_equal(engine_vector(tuple(EXAMPLE)), EXAMPLE)


def test_the_engine_scores_only_8_column_matrices(shipped: Ensemble) -> None:
    engine = engine_of(shipped)
    batch = np.tile(engine_vector(EXAMPLE), (5, 1))
    p = engine.predict(batch)
    assert p.shape == (5,) and np.all(p == p[0])
    width = len(FEATURES)
    with pytest.raises(FeatureVectorError, match=rf"\(n, 8\) matrices .*shape \(2, {width}\)"):
        engine.predict(np.zeros((2, width)))
    with pytest.raises(FeatureVectorError, match=r"shape \(8,\)"):
        engine.predict(engine_vector(EXAMPLE))


def test_the_engine_is_catalogued_but_no_ensemble_member() -> None:
    assert MEMBERS == ("xgboost", "onnx", "online")
    assert "engine" not in SPECS and "engine" not in SPLITTABLE
    assert VOTING_WEIGHTS == {"xgboost": 0.6, "onnx": 0.4}
    assert list(CATALOGUE) == [*MEMBERS, "engine"] and CATALOGUE["engine"] is ENGINE
    assert not ENGINE.splittable and ENGINE.vote_weight is None
    assert {SPECS[m].feature_version for m in MEMBERS} == {FEATURE_VERSION}


def test_the_vote_is_the_same_with_or_without_the_engine(shipped: Ensemble, simulated) -> None:
    X, _, opportunities = simulated
    routes = [o.route_id for o in opportunities]
    manifest = Registry(Settings().models_dir).manifest()
    without = Manifest(manifest.revision, tuple(e for e in manifest.entries if e.name != "engine"))
    members_only = Ensemble(Settings(), without)
    assert members_only.engine is None and shipped.engine is not None
    assert shipped.arms.keys() == members_only.arms.keys() == set(MEMBERS)
    a, b = shipped.score(X, routes), members_only.score(X, routes)
    assert a.members.keys() == set(MEMBERS)
    for name in MEMBERS:
        np.testing.assert_array_equal(a.members[name], b.members[name])
    np.testing.assert_array_equal(a.vote.score, b.vote.score)
    np.testing.assert_array_equal(a.vote.decision, b.vote.decision)


def test_registry_refuses_an_engine_on_another_feature_list(registry: Registry) -> None:
    entries = registry.entries()
    validate(entries)
    engine = registry.active("engine")
    xgb = registry.active("xgboost")
    with pytest.raises(
        ModelError,
        match=rf"engine@1\.0\.0: feature-list mismatch: .* {re.escape(FEATURE_VERSION)},",
    ):
        validate(
            [replace(e, feature_version=FEATURE_VERSION) if e == engine else e for e in entries]
        )
    with pytest.raises(ModelError, match=r"xgboost@1\.0\.0: feature-list mismatch"):
        validate(
            [replace(e, feature_version=ENGINE_FEATURE_VERSION) if e == xgb else e for e in entries]
        )
    with pytest.raises(
        ModelError,
        match=rf"trained on feature list {re.escape(FEATURE_VERSION)}, .* computes seed002-1\.0",
    ):
        registry.load_bytes(replace(engine, feature_version=FEATURE_VERSION))
    file = registry.folder / engine.path  # type: ignore[operator]
    with pytest.raises(
        ModelError,
        match=rf"engine@1\.1\.0: feature-list mismatch: .* list {re.escape(FEATURE_VERSION)}, but "
        "engine models",
    ):
        registry.register("engine", "1.1.0", file, feature_version=FEATURE_VERSION, created="x")
    assert not (registry.folder / "engine-1.1.0.ubj").exists()


def test_engine_versions_register_promote_and_roll_back_but_never_split(
    registry: Registry,
) -> None:
    file = registry.folder / "engine-1.0.0.ubj"
    entry = registry.register("engine", "1.1.0", file, created="2026-11-21T00:00:00+00:00")
    assert (entry.feature_version, entry.type) == (ENGINE_FEATURE_VERSION, ENGINE.type)
    assert (entry.status, entry.traffic) == ("candidate", 0.0)
    assert entry.params == registry.active("engine").params  # its feature list
    with pytest.raises(ModelError, match="engine serves one version at a time.*promote"):
        registry.split("engine", {"1.0.0": 0.8, "1.1.0": 0.2})

    settings = Settings(models_dir=registry.folder)
    before = Ensemble(settings)
    assert engine_of(before).version == "1.0.0"
    registry.promote("engine", "1.1.0")
    after = Ensemble(settings, registry.manifest(), previous=before)
    assert engine_of(after).version == "1.1.0" and after.engine is not before.engine
    assert after.xgboost is before.xgboost  # the members are reused as ever
    assert registry.rollback("engine").version == "1.0.0"
    back = Ensemble(settings, registry.manifest(), previous=after)
    assert engine_of(back).version == "1.0.0"
    again = Ensemble(settings, registry.manifest(), previous=back)
    assert again.engine is back.engine  # the same version is not loaded twice


def test_a_broken_engine_leaves_the_stream_scoring(
    registry: Registry, simulated, caplog: pytest.LogCaptureFixture
) -> None:
    X = simulated[0][:50]
    settings = Settings(models_dir=registry.folder)
    served = Ensemble(settings)
    healthy = served.score(X).vote.score

    # the xgboost member (every feature) as an engine version: registering (and promoting) refuses
    # it, a manifest written by hand may still make it the active one
    member = registry.folder / "xgboost-1.0.0.ubj"
    wide_list = rf"engine@2\.0\.0 expects {len(FEATURES)} features"
    with pytest.raises(ModelError, match=rf"{wide_list}, .* computes 8 "):
        registry.register("engine", "2.0.0", member, created="x")
    engine = registry.active("engine")
    registry.add(
        [
            replace(engine, status="archived", traffic=0.0),
            replace(
                engine,
                version="2.0.0",
                path=member.name,
                sha256=sha256_of(member),
                previous=engine.version,
            ),
        ]
    )
    with caplog.at_level(logging.ERROR, "apex_stream.inference"):
        wide = Ensemble(settings)
    assert wide.engine is None
    assert (
        f"engine@2.0.0 expects {len(FEATURES)} features, but the worker computes 8" in caplog.text
    )
    np.testing.assert_array_equal(wide.score(X).vote.score, healthy)
    # a live reload to it is refused: the engine served goes on serving
    with pytest.raises(ModelError, match=rf"engine@2\.0\.0 did not load: .* {len(FEATURES)} feat"):
        Ensemble(settings, registry.manifest(), previous=served, strict=True)

    registry.rollback("engine")
    (registry.folder / "engine-1.0.0.ubj").write_bytes(b"tampered")
    caplog.clear()
    with caplog.at_level(logging.ERROR, "apex_stream.inference"):
        tampered = Ensemble(settings)
    assert tampered.engine is None and "checksum mismatch for engine@1.0.0" in caplog.text
    np.testing.assert_array_equal(tampered.score(X).vote.score, healthy)
    assert tampered.describe().endswith("; engine none")


def test_a_manifest_without_an_engine_says_so(
    shipped: Ensemble, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = Registry(Settings().models_dir).manifest()
    without = Manifest(manifest.revision, tuple(e for e in manifest.entries if e.name != "engine"))
    with caplog.at_level(logging.WARNING, "apex_stream.inference"):
        ensemble = Ensemble(Settings(), without, previous=shipped)
    assert ensemble.engine is None
    assert "no engine model, seed 002's /predict is unavailable: no active 'engine'" in caplog.text


def test_the_models_commands_version_the_engine(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """register (on the engine's own feature list by default), promote, rollback, list, show;
    ab-test refuses. Publishing to the workers is recorded instead of sent."""
    published: list[str] = []
    settings = Settings(models_dir=registry.folder)
    monkeypatch.setattr(models_cli, "get_settings", lambda: settings)
    monkeypatch.setattr(models_cli, "_publish", lambda _registry, reason: published.append(reason))
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(models, list(args), env={"COLUMNS": "200"}, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    file = str(registry.folder / "engine-1.0.0.ubj")
    run("register", "engine", "1.1.0", file)
    assert registry.get("engine", "1.1.0").feature_version == ENGINE_FEATURE_VERSION
    run("promote", "engine", "1.1.0")
    assert registry.active("engine").version == "1.1.0"
    run("rollback", "engine")
    assert registry.active("engine").version == "1.0.0"
    listing = [line.split("│") for line in run("list").splitlines() if "engine@" in line]
    assert [(row[1].strip(), row[3].strip()) for row in listing] == [
        ("engine@1.0.0", "active"),
        ("engine@1.1.0", "archived"),
    ]
    assert '"feature_version": "seed002-1.0"' in run("show", "engine@1.0.0")
    assert published == [
        "registered engine@1.1.0",
        "promoted engine@1.1.0",
        "rolled engine back to 1.0.0",
    ]
    with pytest.raises(ModelError, match="cannot be A/B tested"):
        runner.invoke(
            models, ["ab-test", "engine", "1.0.0=0.5", "1.1.0=0.5"], catch_exceptions=False
        )
