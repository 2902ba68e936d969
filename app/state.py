"""Qt-free helpers of the GUI: the sliders' strengths as stored, the forehead handle.

The timeline's positions and labels are the engine's (``core.timeline``); the forehead's geometry is
``core.regions``'s (the handle sits in the middle of the edge ``core.regions.forehead_top`` draws).

Strengths as stored in the catalog (``Catalog.save_strengths`` takes any {str: float}): the five region
names and ``"hair"`` (``core.pipeline.STRENGTH_NAMES``) hold the strength the model gets (0 when that
strength is switched off), and ``"off:<name>"`` holds the slider value of one that is switched off, so
turning it on again restores it. Only those six names ever reach the engine
(``core.pipeline.effective_strengths``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.pipeline import OFF_PREFIX, STRENGTH_NAMES
from core.regions import forehead_base, forehead_top

MIN_FOREHEAD, MAX_FOREHEAD = 0.05, 1.2


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


# ------------------------------------------------------------------------------- forehead geometry

def forehead_handle_point(landmarks: np.ndarray, forehead_height: float) -> np.ndarray:
    """Where the handle of the forehead's top edge sits (the middle of that edge)."""
    return forehead_top(landmarks, forehead_height).mean(0)


def forehead_height_at(landmarks: np.ndarray, point: Sequence[float]) -> float:
    """The forehead height whose top edge passes through ``point`` (projected on the face's up axis),
    clamped to [MIN_FOREHEAD, MAX_FOREHEAD]."""
    brows, down, unit = forehead_base(landmarks)
    lift = float(np.dot(brows.mean(0) - np.asarray(point, dtype=np.float64), down))
    return min(max(lift / unit, MIN_FOREHEAD), MAX_FOREHEAD)
