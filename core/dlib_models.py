"""Locate and load dlib's model files from the `face-recognition-models` package.

The package's own ``__init__`` imports ``pkg_resources`` (absent from new setuptools), so the files
are located with ``importlib.util.find_spec`` without importing it. Loaded models are cached per
process; dlib objects are not thread-safe, so callers keep one FaceFinder per thread.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from functools import lru_cache
from pathlib import Path

from .errors import ModelError

log = logging.getLogger(__name__)

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
FACE_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"

_lock = threading.Lock()
LOCKS = {kind: threading.Lock() for kind in ("hog", "landmarks", "cnn", "descriptor")}


def models_folder() -> Path:
    """The folder holding dlib's .dat files (a PyInstaller bundle ships them under its data dir)."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        candidate = Path(bundle) / "face_recognition_models" / "models"
        if candidate.is_dir():
            return candidate
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("face_recognition_models", "package not installed (pip install face-recognition-models)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_file(name: str) -> Path:
    path = models_folder() / name
    if not path.is_file():
        raise ModelError(name, f"not found at {path}")
    return path


@lru_cache(maxsize=None)
def _load(kind: str):
    import dlib

    with _lock:
        if kind == "hog":
            return dlib.get_frontal_face_detector()
        if kind == "landmarks":
            return dlib.shape_predictor(str(model_file(LANDMARKS_68)))
        if kind == "cnn":
            return dlib.cnn_face_detection_model_v1(str(model_file(CNN_DETECTOR)))
        if kind == "descriptor":
            return dlib.face_recognition_model_v1(str(model_file(FACE_DESCRIPTOR)))
    raise ValueError(kind)


def hog_detector():
    return _load("hog")


def shape_predictor():
    return _load("landmarks")


def cnn_detector():
    return _load("cnn")


def face_descriptor_model():
    return _load("descriptor")
