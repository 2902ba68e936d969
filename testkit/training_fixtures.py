"""The training tests' tiny dataset and the runs made from it, shared by tests/test_training.py,
tests/test_gan.py and any other test that needs them (registered as a pytest plugin by
tests/conftest.py, so each session-scoped fixture is built once per test session).

24 UTKFace-style chips of a real portrait (scikit-image's astronaut), a 64 px cache and a
4-step age run: everything tiny, on the CPU. torch is imported only when a fixture runs.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

SIZE = 64  # cache size
AGES = [4, 15, 25, 34, 45, 56, 65, 78]  # one per decade group
PLAN = ["train"] * 16 + ["val"] * 4 + ["test"] * 4  # 2 train faces per group, 4 val, 4 test
UNREADABLE = "33_0_0_20170101000000001.jpg"
NOFACE = "44_1_1_20170101000000002.jpg"


def hash_split(name: str) -> str:
    h = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 100  # training/data.py's rule, restated
    return "train" if h < 80 else "val" if h < 90 else "test"


def utk_name(age: int, i: int, split: str) -> str:
    """A UTKFace-style name for face ``i`` that the fixed hash split sends to ``split``."""
    for k in range(10_000):
        name = f"{age}_{i % 2}_{i % 5}_20170116{k:09d}.jpg.chip.jpg"
        if hash_split(name) == split:
            return name
    raise AssertionError("no name found")


def age_cfg(**kw):
    from training.config import AgeConfig

    base = dict(width=8, input_size=32, batch=4, steps=4, workers=0, device="cpu", log_every=1, checkpoint_every=1000)
    return AgeConfig(**{**base, **kw})


# ------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, astronaut) -> Path:
    """24 UTKFace-style 200x200 chips of the astronaut (random shift, scale, flip, brightness),
    ages over all 8 decade groups, names chosen so the split is 16 / 4 / 4; plus one unreadable
    file and one image without a face."""
    root = tmp_path_factory.mktemp("utk_tiny")
    r = np.random.default_rng(0)
    for i, split in enumerate(PLAN):
        age = AGES[i % 8] + i // 8
        cx, cy = 222 + r.uniform(-8, 8), 128 + r.uniform(-8, 8)  # the face's centre in the portrait
        half = 95 * r.uniform(0.92, 1.08)
        crop = astronaut[int(cy - half):int(cy + half), int(cx - half):int(cx + half)]
        crop = cv2.resize(crop, (200, 200), interpolation=cv2.INTER_AREA)
        if r.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.clip(crop.astype(np.float32) * r.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / utk_name(age, i, split)), np.ascontiguousarray(crop[..., ::-1]))
    (root / UNREADABLE).write_bytes(b"this is not a JPEG")
    cv2.imwrite(str(root / NOFACE), np.full((240, 320, 3), 128, np.uint8))  # not a chip: no fallback box
    return root


@pytest.fixture(scope="session")
def tiny_cache(tiny_dataset, tmp_path_factory) -> Path:
    from training.data import load_dataset
    from training.preprocess import preprocess

    samples, problems = load_dataset(tiny_dataset)
    assert problems == [] and len(samples) == 26
    return preprocess(samples, tmp_path_factory.mktemp("cache") / "utk_64", size=SIZE, workers=1, chip_frame=200.0)


@pytest.fixture(scope="session")
def age_run(tiny_cache, tmp_path_factory) -> Path:
    from training import train_age

    return train_age.train(age_cfg(), tiny_cache, tmp_path_factory.mktemp("runs") / "age")


def flatten(obj, prefix=""):
    """A checkpoint as {path: leaf} (nested dicts/lists of tensors and plain values)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}/{k}"))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}/{i}"))
        return out
    return {prefix: obj}


def assert_same_state(a: dict, b: dict):
    import torch

    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    different = []
    for key in fa:
        x, y = fa[key], fb[key]
        if isinstance(x, torch.Tensor):
            if not (isinstance(y, torch.Tensor) and x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)):
                different.append(key)
        elif x != y and not (isinstance(x, float) and math.isnan(x) and isinstance(y, float) and math.isnan(y)):
            different.append(key)
    assert not different, f"{len(different)} entries differ, e.g. {different[:8]}"
