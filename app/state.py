"""Qt-free helpers of the GUI: the age <-> timeline mapping, strengths as stored, file-name labels.

Timeline positions are continuous group indices (``core.pipeline``): ``g`` is group g, ``g + 0.5`` is
halfway to g + 1. An age maps to a position by linear interpolation between the groups' centres (the
open-ended last group is taken as ten years wide).

Strengths as stored in the catalog (``Catalog.save_strengths`` takes any {str: float}): the five region
names and ``"hair"`` (``core.pipeline.STRENGTH_NAMES``) hold the strength the model gets (0 when that
strength is switched off), and ``"off:<name>"`` holds the slider value of one that is switched off, so
turning it on again restores it. Only those six names ever reach the engine (:func:`effective_strengths`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.pipeline import MAX_STRENGTH, STRENGTH_NAMES
from core.regions import BROWS, face_frame

Groups = Sequence[tuple[int, "int | None"]]
OFF_PREFIX = "off:"
MIN_FOREHEAD, MAX_FOREHEAD = 0.05, 1.2


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
    """The group label at an integer position, else "about N years" (or the nearest labels)."""
    if abs(position - round(position)) < 1e-3:
        return labels[int(round(position))]
    if groups is not None:
        return f"about {position_to_age(position, groups):.0f}"
    lo = int(position)
    return f"{labels[lo]} / {labels[min(lo + 1, len(labels) - 1)]}"


def file_label(text: str) -> str:
    """A label made safe for a file name ("60\u201369" -> "60-69", "about 63" -> "about-63")."""
    text = text.replace("\u2013", "-").replace("\u2014", "-").replace("/", "-").replace(" ", "-")
    return "".join(c for c in text if c.isalnum() or c in "-+_")


@dataclass
class RegionSetting:
    value: float = 1.0  # the slider, 0 .. 1.5
    enabled: bool = True

    @property
    def effective(self) -> float:
        return self.value if self.enabled else 0.0


def settings_from_stored(stored: Mapping[str, float] | None) -> dict[str, RegionSetting]:
    """The slider values and toggles (five regions and the hair) from a catalog strengths dict."""
    stored = stored or {}
    out = {}
    for name in STRENGTH_NAMES:
        off = stored.get(OFF_PREFIX + name)
        if off is not None:
            out[name] = RegionSetting(float(off), False)
        else:
            out[name] = RegionSetting(float(stored.get(name, 1.0)), True)
    return out


def stored_from_settings(settings: Mapping[str, RegionSetting]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in STRENGTH_NAMES:
        s = settings.get(name, RegionSetting())
        out[name] = float(s.effective)
        if not s.enabled:
            out[OFF_PREFIX + name] = float(s.value)
    return out


def describe_strengths(before: Mapping[str, float] | None, after: Mapping[str, float] | None) -> str:
    """Undo text of a strengths change: "Eyes strength 130 %", "Hair off", "Change 6 strengths"."""
    a, b = settings_from_stored(before), settings_from_stored(after)
    changed = [n for n in STRENGTH_NAMES if a[n] != b[n]]
    if len(changed) != 1:
        return f"Change {len(changed)} strengths" if changed else "Change strengths"
    name, s = changed[0], b[changed[0]]
    if not s.enabled:
        return f"{name.capitalize()} off"
    return f"{name.capitalize()} strength {round(s.value * 100)} %"


def effective_strengths(stored: Mapping[str, float] | None) -> dict[str, float]:
    """What the engine gets: the five regions and the hair (no "off:" keys), clamped to 0 .. MAX_STRENGTH."""
    stored = stored or {}
    return {n: min(max(float(stored.get(n, 1.0)), 0.0), MAX_STRENGTH) for n in STRENGTH_NAMES}


# ------------------------------------------------------------------------------- forehead geometry

def forehead_anchor(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(middle of the brows as core.regions.forehead_top widens them, the face's down vector, the unit
    of ``forehead_height`` in pixels: max(brow-to-chin distance, inter-ocular distance))."""
    pts = np.asarray(landmarks, dtype=np.float64)
    right, down, d = face_frame(pts)
    brows = pts[BROWS] - 0.06 * d * right
    brows[0] -= 0.1 * d * right
    brows[-1] += 0.16 * d * right
    brow_to_chin = float(np.dot(pts[8] - pts[BROWS].mean(0), down))
    return brows.mean(0), down, max(brow_to_chin, d)


def forehead_handle_point(landmarks: np.ndarray, forehead_height: float) -> np.ndarray:
    """Where the handle of the forehead's top edge sits (the middle of that edge)."""
    mid, down, unit = forehead_anchor(landmarks)
    return mid - forehead_height * unit * down


def forehead_height_at(landmarks: np.ndarray, point: Sequence[float]) -> float:
    """The forehead height whose top edge passes through ``point`` (projected on the face's up axis),
    clamped to [MIN_FOREHEAD, MAX_FOREHEAD]."""
    mid, down, unit = forehead_anchor(landmarks)
    lift = float(np.dot(mid - np.asarray(point, dtype=np.float64), down))
    return min(max(lift / unit, MIN_FOREHEAD), MAX_FOREHEAD)
