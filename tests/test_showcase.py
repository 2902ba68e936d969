"""training/showcase.py: two models side by side (``showcase --compare``)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from training import showcase  # noqa: E402
from training.preprocess import FaceCache  # noqa: E402


def test_two_models_side_by_side_on_the_same_test_faces(tiny_cache, monkeypatch):
    """Each row: the input, then for each chosen group one cell per model; a model compared with
    itself gives the same cells, a model that changes nothing gives the input back."""
    from core.models import AgingModel

    shipped = AgingModel.load()
    cache = FaceCache(tiny_cache)
    picks = showcase._test_picks(shipped, cache, rows=8)
    assert len(picks) >= 2 and len({int(p) for p in picks}) == len(picks)
    cells = []
    monkeypatch.setattr(showcase, "make_strip", lambda images, labels, columns: cells.append((list(images), list(labels), columns)))
    showcase.compare_grid({"a": shipped, "b": shipped}, cache, [0, 7])
    images, labels, columns = cells[0]
    assert columns == 1 + 2 * 2 and len(images) == len(picks) * columns
    assert labels[:5] == [labels[0], "0–9 a", "0–9 b", "70+ a", "70+ b"] and labels[0].startswith("input (")
    row = images[:columns]
    assert np.array_equal(row[1], row[2]) and np.array_equal(row[3], row[4])
    assert not np.array_equal(row[0], row[3])  # the shipped model does change the face at 70+
