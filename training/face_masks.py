"""Soft masks on a face's 68 landmarks, in the pixels of its aligned crop (numpy, float32 in
[0, 1]): what the prototype model and its wrinkle map leave alone or fade out."""

from __future__ import annotations

import cv2
import numpy as np

from core.regions import REGION_NAMES, region_masks
from .filters import gauss

# the colour and detail changes fade out over the upper part of the forehead (this share of the
# way from the brows to the template's top edge), so a bald head or a high forehead shows no
# line where the averaged faces' hairline was
FOREHEAD_FADE = 0.6

EYES_AND_MOUTH = (list(range(36, 42)), list(range(42, 48)), list(range(60, 68)))


def openings(points: np.ndarray, size: int) -> np.ndarray:
    """The eye openings (36-41, 42-47) and the open mouth (60-67) on a face with these landmarks,
    a little widened, soft-edged."""
    d = float(np.linalg.norm(points[42:48].mean(0) - points[36:42].mean(0)))
    mask = np.zeros((size, size), np.float32)
    for idx in EYES_AND_MOUTH:
        cv2.fillPoly(mask, [np.round(points[idx] * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    r = max(1, int(round(0.06 * d)))
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return np.clip(gauss(mask, 0.04 * d), 0, 1)


def brows_and_eyes(points: np.ndarray, size: int) -> np.ndarray:
    """The brows (17-26) and the eyes with their lash lines (36-47, widened) on a face with these
    landmarks, soft-edged: where an age group's colour says more about its members' eyes (a
    child's iris fills more of the opening) and brows than about aging."""
    d = float(np.linalg.norm(points[42:48].mean(0) - points[36:42].mean(0)))
    mask = np.zeros((size, size), np.float32)
    for idx in (range(17, 22), range(22, 27)):
        line = np.round(points[list(idx)] * 16).astype(np.int32)
        cv2.polylines(mask, [line], False, 1.0, max(1, int(round(0.22 * d))), cv2.LINE_AA, shift=4)
    for idx in (range(36, 42), range(42, 48)):
        cv2.fillPoly(mask, [np.round(points[list(idx)] * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    r = max(1, int(round(0.12 * d)))
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return np.clip(gauss(mask, 0.06 * d), 0, 1)


def top_fade(points: np.ndarray, size: int, share: float = FOREHEAD_FADE) -> np.ndarray:
    """(size, size) in [0, 1]: 1 below the forehead's upper part, falling smoothly (smoothstep) to 0
    at the template's top edge over ``share`` of the way from the brows up to it."""
    brows = float(points[17:27, 1].mean())
    start = brows * share
    t = np.clip(np.arange(size, dtype=np.float64) / max(start, 1e-6), 0, 1)
    col = t * t * (3 - 2 * t)
    return np.repeat(col[:, None], size, 1).astype(np.float32)


def skin_mask(points: np.ndarray, size: int) -> np.ndarray:
    """Forehead, nose and cheeks on a face with these landmarks: where a skin tone is read."""
    masks = region_masks(points, (size, size))
    return np.maximum.reduce([masks[REGION_NAMES.index(n)] for n in ("forehead", "nose", "cheeks")])
