"""Validation before traffic: the reference batch is the worker's own kind of rows, every
shipped model passes, and each kind of bad model is refused with a message naming the fix, at
registration (nothing written) and when a split or promotion would give a changed file
traffic."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from apex_stream.features import FEATURE_VERSION, FEATURES
from apex_stream.features.engine import ENGINE_FEATURE_VERSION, ENGINE_FEATURES, engine_features
from apex_stream.inference import validation
from apex_stream.inference.members import CATALOGUE
from apex_stream.inference.registry import ModelError, Registry, sha256_of
from apex_stream.inference.validation import FEATURE_WIDTHS, check, reference_batch
from apex_stream.settings import Settings
from tests.support.models import bad_models, booster

WIDTH = len(FEATURES)


def test_the_reference_batch_is_simulated_feature_rows_built_once() -> None:
    X = reference_batch(WIDTH)
    assert X is reference_batch(WIDTH)  # cached
    assert X.dtype == np.float64 and X.shape == (validation.OPPORTUNITIES + 1, WIDTH)
    assert not X.flags.writeable and np.isfinite(X).all()
    np.testing.assert_array_equal(X, validation._opportunity_rows.__wrapped__())  # deterministic
    assert (X.std(axis=0) > 0).sum() >= WIDTH - 2  # real spread, not a constant row
    np.testing.assert_allclose(X[-1], X[:-1].mean(axis=0), rtol=0.1)  # the all-missing row
    confidence = X[:, FEATURES.index("confidence_score")]
    assert ((confidence >= 0) & (confidence <= 1)).all()
    E = reference_batch(len(ENGINE_FEATURES))
    assert E.shape == (len(X), len(ENGINE_FEATURES)) and not E.flags.writeable
    np.testing.assert_array_equal(E, engine_features(X))
    with pytest.raises(ValueError, match="no feature list has 5 features"):
        reference_batch(5)


@pytest.mark.parametrize("name", CATALOGUE)
def test_every_shipped_model_passes(name: str) -> None:
    registry = Registry(Settings().models_dir)
    entry = registry.active(name)
    member = CATALOGUE[name].load(registry.load_bytes(entry), entry.version, "cpu", 1)
    check(member, entry.key, FEATURE_WIDTHS[entry.feature_version])
    validated = validation.validate(
        name, entry.version, registry.load_bytes(entry), entry.feature_version
    )
    assert (validated.name, validated.version) == (member.name, member.version)


class Fake:
    """A member that returns whatever it is given to return (or raises it)."""

    name, version, provider = "xgboost", "9.0.0", "cpu"

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def predict(self, X: np.ndarray) -> object:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(X) if callable(self.answer) else self.answer


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            RuntimeError("boom\nsecond line"),
            r"fails to score 257 reference rows .*RuntimeError: boom;",
        ),
        (lambda X: np.full((len(X), 1), 0.5), r"returns float64 of shape \(257, 1\) for 257 rows"),
        (lambda X: np.zeros(len(X), np.int64), r"returns int64 of shape \(257,\)"),
        (lambda X: [0.5] * len(X), r"returns list for 257 rows, not one float probability"),
        (lambda X: np.where(np.arange(len(X)) == 3, np.inf, 0.5), r"infinity for 1 of 257 .*row 3"),
        (lambda X: np.linspace(-0.5, 0.5, len(X)), r"128 of 257 reference rows outside \[0, 1\]"),
    ],
)
def test_check_refuses_anything_but_one_finite_probability_per_row(
    answer: object, reason: str
) -> None:
    check(Fake(lambda X: np.full(len(X), 0.5)), "xgboost@9.0.0", WIDTH)
    with pytest.raises(ModelError, match=reason) as info:
        check(Fake(answer), "xgboost@9.0.0", WIDTH)
    assert str(info.value).startswith("xgboost@9.0.0 ")


def test_check_refuses_a_member_of_another_width_before_scoring() -> None:
    fake = Fake(RuntimeError("never called"))
    fake.n_features = 8  # type: ignore[attr-defined]
    with pytest.raises(ModelError, match=rf"expects 8 features, but the worker computes {WIDTH} "):
        check(fake, "xgboost@9.0.0", WIDTH)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_each_bad_kind_is_refused_at_registration_and_nothing_is_written(
    registry: Registry, tmp_path: Path
) -> None:
    before = files(registry.folder)
    for kind, bad in bad_models(tmp_path).items():
        with pytest.raises(ModelError, match=f"^{bad.name}@1\\.1\\.0") as info:
            registry.register(
                bad.name, "1.1.0", bad.file, feature_version=bad.feature_version, created="x"
            )
        assert bad.reason in str(info.value), kind
        assert "`apex-stream models train`" in str(info.value) or "saved by" in str(info.value)
        assert files(registry.folder) == before, kind  # no manifest revision, no copied file


def test_an_online_snapshot_of_another_width_is_refused(registry: Registry, tmp_path: Path) -> None:
    from apex_stream.inference.online_member import OnlineLearner

    file = tmp_path / "online.json"
    file.write_bytes(OnlineLearner(FEATURES[:8], "1.1.0").snapshot())
    with pytest.raises(
        ModelError, match=rf"online@1\.1\.0 expects 8 features, .* computes {WIDTH}"
    ):
        registry.register("online", "1.1.0", file, created="x")


def test_engine_models_are_checked_on_seed_002s_features(
    registry: Registry, tmp_path: Path
) -> None:
    file = booster(tmp_path / "engine.ubj", len(ENGINE_FEATURES), "binary:logistic")
    entry = registry.register("engine", "1.1.0", file, created="x")
    assert entry.feature_version == ENGINE_FEATURE_VERSION
    regressor = booster(
        tmp_path / "reg.ubj", len(ENGINE_FEATURES), "reg:squarederror", np.full(400, 3.0)
    )
    with pytest.raises(ModelError, match=r"engine@1\.2\.0 scores 257 of 257 .* outside \[0, 1\]"):
        registry.register("engine", "1.2.0", regressor, created="x")


@pytest.mark.parametrize("edit", ["split", "promote"])
def test_a_file_changed_after_registration_gets_no_traffic(
    registry: Registry, tmp_path: Path, edit: str
) -> None:
    good = registry.folder / "xgboost-1.0.0.ubj"
    registry.register("xgboost", "1.1.0", good, created="x")
    copy = registry.folder / "xgboost-1.1.0.ubj"

    def give_traffic() -> None:
        if edit == "split":
            registry.split("xgboost", {"1.0.0": 0.8, "1.1.0": 0.2})
        else:
            registry.promote("xgboost", "1.1.0")

    copy.write_text("{}")  # corrupted on disk
    before = files(registry.folder)
    with pytest.raises(ModelError, match=r"checksum mismatch for xgboost@1\.1\.0"):
        give_traffic()
    assert files(registry.folder) == before

    # a manifest edited by hand to vouch for a regressor: its checksum holds, its scores do not
    regressor = booster(copy, WIDTH, "reg:squarederror", np.full(400, 3.0))
    entry = registry.get("xgboost", "1.1.0")
    registry.add([replace(entry, sha256=sha256_of(regressor))])
    before = files(registry.folder)
    with pytest.raises(ModelError, match=r"xgboost@1\.1\.0 scores .* outside \[0, 1\]"):
        give_traffic()
    assert files(registry.folder) == before

    booster(copy, WIDTH, "binary:logistic")  # a good model again
    registry.add([replace(entry, sha256=sha256_of(copy))])
    give_traffic()
    assert registry.get("xgboost", "1.1.0").traffic > 0


def test_a_split_validates_the_active_version_too(registry: Registry) -> None:
    registry.register("xgboost", "1.1.0", registry.folder / "xgboost-1.0.0.ubj", created="x")
    (registry.folder / "xgboost-1.0.0.ubj").write_bytes(b"{}")
    with pytest.raises(ModelError, match=r"checksum mismatch for xgboost@1\.0\.0"):
        registry.split("xgboost", {"1.0.0": 0.8, "1.1.0": 0.2})
    assert registry.get("xgboost", "1.1.0").traffic == 0


def test_the_feature_list_is_checked_before_the_file_is_read() -> None:
    with pytest.raises(ModelError, match="feature-list mismatch") as info:
        validation.validate("onnx", "1.1.0", b"not read", "0.9")
    message = str(info.value)
    assert f"onnx models score feature list {FEATURE_VERSION} ({WIDTH} features)" in message
    assert "leave out --feature-version" in message
