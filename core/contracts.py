"""The model contracts, in one table: what each ONNX file is called, which ``format`` ids it may carry, its
inputs and outputs by name and order, and the metadata it must have (docs/DESIGN.md, "Model contracts").

Imported by everything that reads or writes a model: ``core.models`` checks files against it, the training
exporter (``training/export.py``) names a graph's inputs and outputs from it, the app tells which model
failed by its ``kind``. Plain data: no onnxruntime, no torch.

Aging model, ``agelapse-aging/2`` (``/1`` files, without ``landmarks`` and ``hair``, still load):

- ``image``     float32 (N, 3, S, S), RGB in [-1, 1], aligned to the model's template
- ``target``    float32 (N, K), weights over the K age groups (one-hot, or two neighbours blended)
- ``regions``   float32 (N, 5, S, S), the five region masks (``core.regions.REGION_NAMES`` order), each x its strength
- ``landmarks`` float32 (N, 68, 2), the face's own points in the pixels of the aligned S x S crop
- ``hair``      float32 (N,), the hair strength (0 leaves hair and brows alone, 1 as trained, <= 1.5)
- outputs ``aged`` float32 (N, 3, S, S) in [-1, 1] and ``attention`` float32 (N, 1, S, S) in [0, 1], 1 = input kept

Age model, ``agelapse-age/1``: ``image`` as above -> ``age`` float32 (N,) in years and ``probs`` float32
(N, A), the distribution over 0 .. A-1 years.

A models folder lists each file in ``manifest.json`` with its :func:`sha256_of` (``core.models.Manifest``;
the bundle's build and smoke test check the same digest).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

AGING_V1 = "agelapse-aging/1"  # the first aging contract: no ``landmarks``, no ``hair``
COMMON_KEYS = ("format", "image_size", "template", "trained_on", "license", "metrics", "created")
LANDMARK_COUNT = 68


@dataclass(frozen=True)
class Contract:
    kind: str  # "aging" | "age": what ModelError.kind says
    file: str  # the file's name in a models folder
    format: str  # the format id a new export writes
    inputs: tuple[str, ...]  # in the graph's order
    outputs: tuple[str, ...]
    metadata: tuple[str, ...]  # metadata_props every file must carry
    older: dict[str, tuple[str, ...]] = field(default_factory=dict)  # older format id -> its inputs

    @property
    def formats(self) -> tuple[str, ...]:
        """Every format id that still loads, oldest first."""
        return (*self.older, self.format)

    def inputs_of(self, fmt: str) -> tuple[str, ...]:
        """The inputs of a file of format ``fmt`` (KeyError for a format of another contract)."""
        if fmt == self.format:
            return self.inputs
        return self.older[fmt]


AGING = Contract(
    kind="aging", file="aging.onnx", format="agelapse-aging/2",
    inputs=("image", "target", "regions", "landmarks", "hair"), outputs=("aged", "attention"),
    metadata=COMMON_KEYS + ("age_groups", "regions"),
    older={AGING_V1: ("image", "target", "regions")},
)
AGE = Contract(
    kind="age", file="age.onnx", format="agelapse-age/1",
    inputs=("image",), outputs=("age", "probs"), metadata=COMMON_KEYS,
)
CONTRACTS = (AGING, AGE)


def contract_of(fmt: str) -> Contract:
    """The contract a format id belongs to (ValueError for an unknown one)."""
    for contract in CONTRACTS:
        if fmt in contract.formats:
            return contract
    raise ValueError(f"unknown model format {fmt!r}; known: {', '.join(f for c in CONTRACTS for f in c.formats)}")


def sha256_of(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, as ``manifest.json`` records it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
