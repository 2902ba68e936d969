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
