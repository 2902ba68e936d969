"""Agelapse engine: photos, faces, landmarks, regions, alignment, ONNX inference, export, catalog.

Knows nothing of Qt or torch (enforced by tests/test_layers.py).

Importing ``core`` switches off onnxruntime's telemetry (``ORT_DISABLE_TELEMETRY``, unless already set),
before anything imports onnxruntime: on its first import onnxruntime would otherwise write a device id
and a database under ``~/.cache/Microsoft/DeveloperTools``; Agelapse writes only inside its own data and
cache folders.
"""

import os as _os

_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
