"""The age timeline: positions, the ages they stand for, and their labels.

Timeline positions are continuous group indices (``core.pipeline``): ``g`` is group g, ``g + 0.5`` is
halfway to g + 1. An age maps to a position by linear interpolation between the groups' centres (the
open-ended last group is taken as ten years wide). Groups are the model's ``(lo, hi)`` pairs
(``AgingModel.age_groups``; ``hi`` None for the open-ended last one).
"""

from __future__ import annotations

from collections.abc import Sequence

Groups = Sequence[tuple[int, "int | None"]]


def group_centres(groups: Groups) -> list[float]:
    return [(lo + (hi if hi is not None else lo + 9) + 1) / 2 for lo, hi in groups]


def age_to_position(age: float, groups: Groups) -> float:
    """The timeline position of an age (clamped to the first and last group's centres)."""
    centres = group_centres(groups)
    if age <= centres[0]:
        return 0.0
    for i in range(len(centres) - 1):
        if age <= centres[i + 1]:
            return i + (age - centres[i]) / (centres[i + 1] - centres[i])
    return float(len(centres) - 1)


def position_to_age(position: float, groups: Groups) -> float:
    """The age a timeline position stands for (inverse of :func:`age_to_position`)."""
    centres = group_centres(groups)
    p = min(max(float(position), 0.0), len(centres) - 1.0)
    i = min(int(p), len(centres) - 2)
    return centres[i] + (p - i) * (centres[i + 1] - centres[i])


def position_label(position: float, labels: Sequence[str], groups: Groups | None = None) -> str:
    """The group label at an integer position, else "about N" years (or the two nearest labels)."""
    if abs(position - round(position)) < 1e-3:
        return labels[int(round(position))]
    if groups is not None:
        return f"about {position_to_age(position, groups):.0f}"
    lo = int(position)
    return f"{labels[lo]} / {labels[min(lo + 1, len(labels) - 1)]}"
