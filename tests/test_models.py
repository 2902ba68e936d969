"""Model resolver, manifest, contract validation and the two model wrappers."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from testkit.contract_model import DECADES, build_age_model, build_aging_model
from core.errors import ModelError
from core.models import AgeModel, AgingModel, Manifest, load_models, models_dir, sha256_of
from core.regions import REGION_NAMES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path, contract_models_dir) -> Path:
    """A private copy of the contract models (safe to damage)."""
    d = tmp_path / "models"
    shutil.copytree(contract_models_dir, d)
    return d


# ------------------------------------------------------------------------------------- resolver

def test_models_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("AGELAPSE_MODELS_DIR", raising=False)
    monkeypatch.delattr(sys, "_MEIPASS", raising=False)
    assert models_dir() == ROOT / "resources" / "models"
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "bundle"), raising=False)
    assert models_dir() == tmp_path / "bundle" / "resources" / "models"
    monkeypatch.setenv("AGELAPSE_MODELS_DIR", str(tmp_path / "mine"))
    assert models_dir() == tmp_path / "mine"  # the environment wins over the bundle


def test_load_models_uses_the_resolver_by_default(monkeypatch, contract_models_dir):
    monkeypatch.setenv("AGELAPSE_MODELS_DIR", str(contract_models_dir))
    loaded = load_models()
    assert loaded.errors == [] and loaded.aging is not None and loaded.age is not None
    assert loaded.aging.path == contract_models_dir / "aging.onnx"


# ------------------------------------------------------------------------------------- manifest

def test_manifest_entries_match_the_files(contract_models_dir):
    data = json.loads((contract_models_dir / "manifest.json").read_text())
    for name, fmt in (("aging.onnx", "agelapse-aging/2"), ("age.onnx", "agelapse-age/1")):
        entry = data["models"][name]
        path = contract_models_dir / name
        assert entry == {"sha256": sha256_of(path), "bytes": path.stat().st_size, "format": fmt}


def test_manifest_update_refreshes_one_entry_atomically(folder):
    before = json.loads((folder / "manifest.json").read_text())["models"]
    build_aging_model(folder / "aging.onnx", size=32)  # a different model under the same name
    with pytest.raises(ModelError, match="damaged"):
        Manifest.load(folder).verify("aging.onnx")
    entry = Manifest.update(folder, "aging.onnx")
    after = json.loads((folder / "manifest.json").read_text())["models"]
    assert entry["sha256"] == sha256_of(folder / "aging.onnx") != before["aging.onnx"]["sha256"]
    assert after["age.onnx"] == before["age.onnx"]  # the other entry is kept
    assert sorted(p.name for p in folder.iterdir()) == ["age.onnx", "aging.onnx", "manifest.json"]  # no temp left
    assert AgingModel.load(folder).image_size == 32


def test_manifest_update_creates_the_manifest(tmp_path):
    build_age_model(tmp_path / "age.onnx")
    Manifest.update(tmp_path, "age.onnx")
    assert Manifest.load(tmp_path).entries["age.onnx"]["format"] == "agelapse-age/1"
    with pytest.raises(ModelError) as info:
        Manifest.update(tmp_path, "aging.onnx")
    assert info.value.name == "aging.onnx"


# ------------------------------------------------------------------- missing and damaged models

def test_missing_model_is_named_and_the_other_loads(folder):
    (folder / "aging.onnx").unlink()
    loaded = load_models(folder)
    assert loaded.aging is None and isinstance(loaded.age, AgeModel)
    assert [e.name for e in loaded.errors] == ["aging.onnx"] and [e.kind for e in loaded.errors] == ["aging"]
    assert "missing" in loaded.errors[0].reason and str(folder / "aging.onnx") in str(loaded.errors[0])


def test_flipped_bytes_are_damage(folder):
    path = folder / "age.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    loaded = load_models(folder)
    assert loaded.age is None and isinstance(loaded.aging, AgingModel)
    assert [e.name for e in loaded.errors] == ["age.onnx"] and [e.kind for e in loaded.errors] == ["age"]
    assert "damaged" in loaded.errors[0].reason and "sha256" in loaded.errors[0].reason


def test_truncated_model_is_damage_and_unloadable(folder):
    path = folder / "aging.onnx"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ModelError, match="damaged") as info:
        AgingModel.load(folder)
    assert info.value.name == "aging.onnx"
    with pytest.raises(ModelError, match="cannot load") as info:
        AgingModel.load(folder, verify=False)  # even without the manifest check it is refused
    assert info.value.name == "aging.onnx"


def test_unlisted_model_is_refused(tmp_path):
    build_aging_model(tmp_path / "aging.onnx")
    with pytest.raises(ModelError, match="not listed") as info:
        AgingModel.load(tmp_path)
    assert info.value.name == "aging.onnx"
    assert AgingModel.load(tmp_path, verify=False).num_groups == 8


def test_both_missing(tmp_path):
    loaded = load_models(tmp_path / "nowhere")
    assert loaded.aging is None and loaded.age is None
    assert sorted(e.name for e in loaded.errors) == ["age.onnx", "aging.onnx"]


# --------------------------------------------------------------------------- metadata contract

@pytest.mark.parametrize("key", ["format", "image_size", "age_groups", "template", "regions",
                                 "trained_on", "license", "metrics", "created"])
def test_aging_metadata_key_missing(tmp_path, key):
    build_aging_model(tmp_path / "aging.onnx", drop_metadata=(key,))
    with pytest.raises(ModelError, match=key) as info:
        AgingModel.load(tmp_path / "aging.onnx", verify=False)
    assert info.value.name == "aging.onnx"


@pytest.mark.parametrize("meta, words", [
    ({"regions": json.dumps(["eyes", "forehead", "nose", "mouth", "cheeks"])}, "regions"),
    ({"regions": json.dumps(list(REGION_NAMES[:4]))}, "regions"),
    ({"format": "agelapse-aging/3"}, "format"),
    ({"image_size": "32"}, "axis"),  # the metadata disagrees with the tensors (64)
    ({"image_size": "big"}, "image_size"),
    ({"age_groups": json.dumps([[0, 9], [10, None], [20, 29], [30, 39], [40, 49], [50, 59], [60, 69], [70, None]])}, "open-ended"),
    ({"age_groups": json.dumps(DECADES[:7])}, "axis 1"),  # 7 groups for an 8-wide target
    ({"template": json.dumps([[0.5, 0.5]] * 67)}, "template"),
    ({"metrics": "not json"}, "metrics"),
])
def test_aging_metadata_rejected(tmp_path, meta, words):
    build_aging_model(tmp_path / "aging.onnx", metadata=meta)
    with pytest.raises(ModelError, match=words):
        AgingModel.load(tmp_path / "aging.onnx", verify=False)


def test_age_model_metadata_and_wrong_format(tmp_path):
    build_age_model(tmp_path / "age.onnx", drop_metadata=("template",))
    with pytest.raises(ModelError, match="template"):
        AgeModel.load(tmp_path / "age.onnx", verify=False)
    build_aging_model(tmp_path / "aging.onnx")
    with pytest.raises(ModelError, match="format") as info:
        AgeModel.load(tmp_path / "aging.onnx", verify=False)  # an aging model is not an age model
    assert info.value.kind == "age"  # the kind of model that failed to load, whatever the file's name


def test_the_contract_table_names_formats_inputs_and_outputs():
    from core.contracts import AGE, AGING, contract_of

    assert contract_of("agelapse-aging/2") is contract_of("agelapse-aging/1") is AGING
    assert contract_of("agelapse-age/1") is AGE and AGE.inputs_of("agelapse-age/1") == ("image",)
    assert AGING.inputs_of("agelapse-aging/1") == ("image", "target", "regions")
    assert AGING.inputs_of(AGING.format)[3:] == ("landmarks", "hair")
    with pytest.raises(ValueError, match="agelapse-aging/3"):
        contract_of("agelapse-aging/3")


def test_static_batch_axis_is_rejected(tmp_path):
    path = build_aging_model(tmp_path / "aging.onnx")
    model = onnx.load(str(path))
    for vi in list(model.graph.input) + list(model.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="dynamic batch"):
        AgingModel.load(path, verify=False)


def test_wrong_input_names_are_rejected(tmp_path):
    path = build_aging_model(tmp_path / "aging.onnx")
    model = onnx.load(str(path))
    model.graph.input[1].name = "age"
    for node in model.graph.node:
        node.input[:] = ["age" if i == "target" else i for i in node.input]
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="contract needs"):
        AgingModel.load(path, verify=False)


# ------------------------------------------------------------------------------- the wrappers

def test_aging_model_metadata(contract_models_dir):
    m = AgingModel.load(contract_models_dir, providers="cpu")
    assert m.image_size == 64 and m.num_groups == 8
    assert m.group_labels == ["0\u20139", "10\u201319", "20\u201329", "30\u201339", "40\u201349",
                              "50\u201359", "60\u201369", "70+"]
    assert m.age_groups[-1] == (70, None)
    assert m.template.points.shape == (68, 2) and 0 < m.template.points.min() < m.template.points.max() < 1
    assert m.regions == REGION_NAMES and m.license and m.trained_on and m.created and m.metrics == {}
    assert m.group_index("60-69") == m.group_index("60\u201369") == m.group_index("65") == 6
    assert m.group_index("70+") == m.group_index("93") == 7
    with pytest.raises(ValueError, match="0\u20139"):
        m.group_index("65-74")


def test_aging_run_converts_and_depends_on_target_and_regions(contract_models_dir):
    m = AgingModel.load(contract_models_dir, providers="cpu")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    regions = np.zeros((8, 5, 64, 64), np.float32)
    regions[:, 1, 16:48, 16:48] = 1.0
    aged, attention = m.run(images, np.eye(8, dtype=np.float32), regions, np.repeat(_face_points(64), 8, 0), 0.0)
    assert aged.dtype == np.uint8 and aged.shape == (8, 64, 64, 3)
    assert attention.dtype == np.float32 and attention.shape == (8, 64, 64)
    outside = np.ones((64, 64), bool)
    outside[16:48, 16:48] = False
    np.testing.assert_array_equal(aged[:, outside], images[:, outside])  # exact uint8 round trip
    assert (attention[:, outside] == 1).all() and (attention[:, 20, 20] == 0).all()
    inside = aged[:, 16:48, 16:48].astype(int).mean(axis=(1, 2, 3))
    assert (np.diff(inside) > 0).all()  # older target -> brighter in the contract model
    with pytest.raises(ValueError, match="targets"):
        m.run(images, np.eye(7, dtype=np.float32), regions)
    with pytest.raises(ValueError, match="uint8"):
        m.run(images.astype(np.float32), np.eye(8, dtype=np.float32), regions)


def _face_points(size: int) -> np.ndarray:
    from testkit.contract_model import AGING_TEMPLATE

    return (np.array(AGING_TEMPLATE, np.float32) * size)[None]


def test_aging_v2_takes_landmarks_and_hair(contract_models_dir):
    m = AgingModel.load(contract_models_dir, providers="cpu")
    assert m.format == "agelapse-aging/2" and m.takes_landmarks
    images = np.full((2, 64, 64, 3), 100, np.uint8)
    regions = np.zeros((2, 5, 64, 64), np.float32)
    target = np.eye(8, dtype=np.float32)[[3, 3]]
    pts = np.repeat(_face_points(64), 2, 0)
    with pytest.raises(ValueError, match="landmarks"):
        m.run(images, target, regions)
    with pytest.raises(ValueError, match="landmarks must be"):
        m.run(images, target, regions, pts[:, :5])
    aged, _ = m.run(images, target, regions, pts, np.array([0.0, 1.0], np.float32))
    assert np.array_equal(aged[0], images[0])  # hair 0, regions 0: nothing changes
    assert (aged[1, :5] > images[1, :5]).all() and np.array_equal(aged[1, -5:], images[1, -5:])
    lower = pts.copy()
    lower[:, :, 1] += 10  # the face lower in the crop: the hair band follows the landmarks
    moved, _ = m.run(images, target, regions, lower, 1.0)
    band = lambda a: int((a[:, 0] > 100).sum())  # rows changed in column 0
    assert band(moved[1]) > band(aged[1])


def test_aging_v1_files_still_load_and_run(tmp_path):
    path = build_aging_model(tmp_path / "aging.onnx", version=1)
    m = AgingModel.load(path, providers="cpu", verify=False)
    assert m.format == "agelapse-aging/1" and not m.takes_landmarks
    images = np.full((1, 64, 64, 3), 100, np.uint8)
    regions = np.ones((1, 5, 64, 64), np.float32)
    aged, _ = m.run(images, np.eye(8, dtype=np.float32)[[7]], regions, landmarks=None, hair=0.0)
    assert (aged > images).all()
    aged_with, _ = m.run(images, np.eye(8, dtype=np.float32)[[7]], regions, _face_points(64), 1.0)
    assert np.array_equal(aged, aged_with)  # a /1 file has no say over hair and landmarks


def test_aging_v2_without_landmark_inputs_is_rejected(tmp_path):
    path = build_aging_model(tmp_path / "aging.onnx", version=1, metadata={"format": "agelapse-aging/2"})
    with pytest.raises(ModelError, match="landmarks"):
        AgingModel.load(path, providers="cpu", verify=False)


def test_age_estimate(contract_models_dir):
    m = AgeModel.load(contract_models_dir, providers="cpu")
    assert m.image_size == 48
    dark = np.full((48, 48, 3), 40, np.uint8)
    bright = np.full((48, 48, 3), 220, np.uint8)
    ages, probs = m.estimate(np.stack([dark, bright, dark]))
    assert ages.shape == (3,) and probs.shape == (3, 101)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(ages, (probs * np.arange(101)).sum(1), rtol=1e-4)
    assert ages[1] > ages[0] + 30 and ages[0] == pytest.approx(ages[2])
    with pytest.raises(ValueError):
        m.estimate(np.zeros((1, 64, 64, 3), np.uint8))  # the aging model's size, not this one's
