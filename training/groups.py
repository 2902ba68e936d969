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


def child_groups(groups: list) -> list[float]:
    """1.0 for each group of children (ending below 20 years), else 0.0: the faces the strength
    controller leaves to the model, and that have no beard to grey."""
    return [1.0 if g[1] is not None and g[1] < 20 else 0.0 for g in groups]


def group_indices(ages, groups: list) -> np.ndarray:
    """``group_index`` of every age, as an int64 array."""
    return np.array([group_index(int(a), groups) for a in ages], dtype=np.int64)


def random_targets(r: np.random.Generator, n: int, k: int, blend: float = 0.25) -> np.ndarray:
    """(N, K) float32 training targets: one-hot groups, a share ``blend`` of them two neighbouring
    groups mixed (a position between them on the timeline)."""
    t = np.zeros((n, k), dtype=np.float32)
    g = r.integers(0, k, n)
    t[np.arange(n), g] = 1
    mix = (r.random(n) < blend) & (g < k - 1)
    a = r.uniform(0, 1, n).astype(np.float32)
    t[mix, g[mix]] = 1 - a[mix]
    t[mix, g[mix] + 1] = a[mix]
    return t


def group_probs(age_probs, groups: list):
    """A distribution over years (N, A) (torch) summed into one probability per age group (N, K)."""
    import torch

    cols = []
    n = age_probs.shape[1]
    for lo, hi in groups:
        hi = n - 1 if hi is None else min(hi, n - 1)
        cols.append(age_probs[:, lo : hi + 1].sum(1))
    return torch.stack(cols, 1)
