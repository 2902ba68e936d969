"""Age groups: which group an age falls in, and a distribution over years summed into groups.

One module for what the training loops, the prototype model, the evaluation and the showcase all
need (``group_index`` used to live in train_aging.py, imported from there by the others). Groups
are ``[lo, hi]`` pairs in years, ``hi`` None for the open-ended last group (config.DECADES).
"""

from __future__ import annotations

import numpy as np


def group_index(age: int, groups: list) -> int:
    """The group ``age`` falls in; an age past the last bound goes to the last group, below the
    first to the first."""
    for k, (lo, hi) in enumerate(groups):
        if age >= lo and (hi is None or age <= hi):
            return k
    return len(groups) - 1 if age > groups[-1][0] else 0


def group_indices(ages, groups: list) -> np.ndarray:
    """``group_index`` of every age, as an int64 array."""
    return np.array([group_index(int(a), groups) for a in ages], dtype=np.int64)


def group_probs(age_probs, groups: list):
    """A distribution over years (N, A) (torch) summed into one probability per age group (N, K)."""
    import torch

    cols = []
    n = age_probs.shape[1]
    for lo, hi in groups:
        hi = n - 1 if hi is None else min(hi, n - 1)
        cols.append(age_probs[:, lo : hi + 1].sum(1))
    return torch.stack(cols, 1)
