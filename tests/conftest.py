"""Shared fixtures. GUI tests run offscreen; tests that need ../shared/data skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real portrait (512x512 RGB uint8) shipped by scikit-image."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (developer data, not shipped)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def album_dir(shared_data: Path) -> Path:
    d = shared_data / "album"
    if not d.is_dir():
        pytest.skip(f"{d} is absent")
    return d


@pytest.fixture(scope="session")
def contract_models_dir(tmp_path_factory) -> Path:
    """A models folder holding contract-honouring stand-ins for the trained models, built once per
    session (tests/contract_model.py): ``aging.onnx`` (64 px, the 8 decade groups; its output
    visibly brightens with older targets and scales with the region strengths, exactly the input
    where all strengths are 0), ``age.onnx`` (48 px, its own template; brighter faces read older)
    and ``manifest.json``. Shared: copy it before damaging anything in it."""
    from contract_model import write_contract_models

    return write_contract_models(tmp_path_factory.mktemp("contract_models"))
