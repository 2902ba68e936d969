"""Agelapse training: learns the aging and age models with PyTorch and exports them to ONNX.

Uses core/ for landmarks, alignment and region masks, so training sees what the app feeds the
models. Never imports Qt.
"""
