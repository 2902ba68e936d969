"""Agelapse engine: photos, faces, landmarks, regions, alignment, ONNX inference, export, catalog.

Knows nothing of Qt or torch (enforced by tests/test_layers.py).
"""

__version__ = "0.1.0"
