"""One face through the aging model: align, one batched inference for every age group, paste back.

    prepared = pipeline.prepare(photo, face, {"eyes": 0.5})   # align + region masks, no inference
    results  = pipeline.age_all_groups(prepared)              # ONE model call, batch = K groups
    image    = pipeline.render_position(photo, prepared, results, 5.3)   # cheap: no inference

Timeline positions are continuous group indices: ``g`` is group g, ``g + 0.5`` halfway to g + 1.
Between groups the two neighbouring aligned outputs are blended linearly (the GUI drags at 30 fps,
so no inference there); the model's own ``target`` input also accepts such blends
(:func:`target_weights`) for callers that want the model's interpolation instead.

Strengths (per region, 0 .. 1.5, default 1): each region mask is multiplied by its strength before
it goes to the model (the contract: that is what scales the effect). So that 0 really means "leave
it alone" whatever the model does, the paste mask is also lowered inside a region whose strength is
below ZERO_RAMP (by strength / ZERO_RAMP: continuous, exactly 0 at strength 0, untouched above the
ramp so moderate strengths are not attenuated twice). Outside the five regions the paste mask is a
feathered rounded square covering the aligned crop: the model's attention already localises the
change, and changes outside the regions (grey hair) are wanted.

A ``agelapse-aging/2`` model also gets the face's 68 landmarks in the aligned crop's pixels
(``PreparedFace.landmarks``, the person's own, edits included) and the hair strength
(``strengths["hair"]``, 0 .. 1.5, default 1): it puts what it learned on the person's features and
greys the hair by that much. A ``/1`` model gets neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from core.align import estimate_alignment, paste_back, transform_points, warp_face
from core.faces import Face
from core.models import AgeModel, AgingModel
from core.regions import REGION_NAMES, region_masks

MAX_STRENGTH = 1.5
ZERO_RAMP = 0.25  # below this strength a region's paste weight falls linearly to 0
HAIR = "hair"
# Every strength a person sets: the five regions (the model's ``regions`` input) and the hair (its
# ``hair`` input in ``agelapse-aging/2``; a ``/1`` model has no hair input and ignores it).
STRENGTH_NAMES = REGION_NAMES + (HAIR,)
OFF_PREFIX = "off:"  # catalog key prefix: the remembered slider value of a strength switched off


@dataclass(eq=False)
class PreparedFace:
    """A face made ready for the aging model (all in the model's aligned S x S coordinates)."""

    face: Face
    matrix: np.ndarray  # (2, 3) float64, photo -> aligned
    aligned: np.ndarray  # (S, S, 3) uint8, the model's input
    regions: np.ndarray  # (5, S, S) float32, region masks x strengths, REGION_NAMES order
    mask: np.ndarray  # (S, S) float32 in [0, 1], the paste mask
    strengths: dict[str, float] = field(default_factory=dict)
    landmarks: np.ndarray | None = None  # (68, 2) float32, the face's landmarks in the aligned crop

    @property
    def hair(self) -> float:
        return float(self.strengths.get(HAIR, 1.0))

    @property
    def size(self) -> int:
        return self.aligned.shape[0]


@dataclass(eq=False)
class GroupResults:
    """The model's aligned outputs for every age group of one prepared face."""

    labels: list[str]
    aged: np.ndarray  # (K, S, S, 3) uint8
    attention: np.ndarray  # (K, S, S) float32, 1 = input kept

    def __len__(self) -> int:
        return len(self.labels)


def target_weights(position: float, k: int) -> np.ndarray:
    """(K,) float32 weights for a timeline position in [0, K-1] (clamped): one-hot at an integer,
    ``g + f`` gives weight 1 - f to group g and f to group g + 1. Sums to 1."""
    p = min(max(float(position), 0.0), float(k - 1))
    g = min(int(math.floor(p)), k - 1)
    f = p - g
    w = np.zeros(k, dtype=np.float32)
    w[g] = 1.0 - f
    if f > 0:
        w[g + 1] = f
    return w


def check_strengths(strengths: dict[str, float] | None) -> dict[str, float]:
    """Every strength of STRENGTH_NAMES (the five regions and the hair; default 1.0); ValueError
    for an unknown name or a value outside 0 .. MAX_STRENGTH."""
    out = {name: 1.0 for name in STRENGTH_NAMES}
    for name, value in (strengths or {}).items():
        if name not in out:
            raise ValueError(f"unknown strength {name!r}; strengths are {', '.join(STRENGTH_NAMES)}")
        value = float(value)
        if not 0.0 <= value <= MAX_STRENGTH:
            raise ValueError(f"strength of {name} must be within 0 .. {MAX_STRENGTH}, not {value}")
        out[name] = value
    return out


def effective_strengths(stored: dict[str, float] | None) -> dict[str, float]:
    """The strengths the engine gets from strengths as stored in the catalog: the six STRENGTH_NAMES only
    (the app also stores ``OFF_PREFIX + name``, the slider value of a strength switched off, whose own
    value is then 0), each clamped to 0 .. MAX_STRENGTH, default 1."""
    stored = stored or {}
    return {n: min(max(float(stored.get(n, 1.0)), 0.0), MAX_STRENGTH) for n in STRENGTH_NAMES}


@lru_cache(maxsize=8)
def crop_mask(size: int, inner: float = 0.78, outer: float = 0.96) -> np.ndarray:
    """(S, S) float32: 1 inside a rounded square (superellipse, radius ``inner``), falling smoothly
    to exactly 0 at radius ``outer`` and beyond, so the crop's border never shows. Read-only."""
    u = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    r = (np.abs(u)[None, :] ** 4 + np.abs(u)[:, None] ** 4) ** 0.25
    t = np.clip((outer - r) / (outer - inner), 0, 1)
    mask = (t * t * (3 - 2 * t)).astype(np.float32)
    mask.setflags(write=False)
    return mask


class AgingPipeline:
    """Ages one face at a time with ``aging``; ``age`` (optional) estimates ages."""

    def __init__(self, aging: AgingModel, age: AgeModel | None = None):
        self.aging = aging
        self.age = age

    @property
    def labels(self) -> list[str]:
        return self.aging.group_labels

    def prepare(self, photo_rgb: np.ndarray, face: Face, strengths: dict[str, float] | None = None) -> PreparedFace:
        s = self.aging.image_size
        strengths = check_strengths(strengths)
        m = estimate_alignment(face.landmarks, self.aging.template, s)
        aligned = warp_face(photo_rgb, m, s)
        points = transform_points(face.landmarks, m)
        masks = region_masks(points, (s, s), face.forehead_height)
        factors = np.array([strengths[n] for n in REGION_NAMES], dtype=np.float32)
        regions = masks * factors[:, None, None]
        mask = crop_mask(s).copy()
        for i, f in enumerate(factors):
            if f < ZERO_RAMP:
                mask *= 1.0 - (1.0 - f / ZERO_RAMP) * masks[i]
        return PreparedFace(face, m, aligned, np.ascontiguousarray(regions), mask, strengths, points)

    def infer(self, prepared: PreparedFace, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One model call for the (N, K) ``targets`` -> (aged (N, S, S, 3), attention (N, S, S))."""
        n = len(targets)
        images = np.broadcast_to(prepared.aligned, (n, *prepared.aligned.shape))
        regions = np.broadcast_to(prepared.regions, (n, *prepared.regions.shape))
        landmarks = np.broadcast_to(prepared.landmarks, (n, *prepared.landmarks.shape))
        return self.aging.run(images, targets, regions, landmarks, prepared.hair)

    def age_all_groups(self, prepared: PreparedFace) -> GroupResults:
        """Every age group in one batched inference (batch = K, one-hot targets)."""
        k = self.aging.num_groups
        aged, attention = self.infer(prepared, np.eye(k, dtype=np.float32))
        return GroupResults(self.labels, aged, attention)

    def render(self, photo_rgb: np.ndarray, prepared: PreparedFace, aligned_result: np.ndarray) -> np.ndarray:
        """The full-resolution photo with ``aligned_result`` (the model's output) pasted back."""
        return paste_back(photo_rgb, prepared.matrix, prepared.aligned, aligned_result, prepared.mask)

    @staticmethod
    def blend(results: GroupResults, position: float) -> np.ndarray:
        """The aligned output at a timeline position: the neighbouring groups' outputs blended
        linearly (exactly the group's output at an integer position)."""
        w = target_weights(position, len(results))
        nz = np.flatnonzero(w)
        if len(nz) == 1:
            return results.aged[nz[0]]
        a, b = results.aged[nz[0]].astype(np.float32), results.aged[nz[1]].astype(np.float32)
        return np.rint(a * w[nz[0]] + b * w[nz[1]]).astype(np.uint8)

    def render_position(self, photo_rgb: np.ndarray, prepared: PreparedFace, results: GroupResults,
                        position: float) -> np.ndarray:
        return self.render(photo_rgb, prepared, self.blend(results, position))

    def age_face(self, photo_rgb: np.ndarray, face: Face, strengths: dict[str, float] | None = None,
                 groups=None) -> dict[str, np.ndarray]:
        """{group label: full-resolution aged photo} for ``groups`` (labels, "60-69" style text,
        or indices; default all), computed in one batched inference."""
        if groups is None:
            indices = list(range(self.aging.num_groups))
        else:
            indices = [g if isinstance(g, (int, np.integer)) else self.aging.group_index(g) for g in groups]
        prepared = self.prepare(photo_rgb, face, strengths)
        targets = np.eye(self.aging.num_groups, dtype=np.float32)[indices]
        aged, _ = self.infer(prepared, targets)
        return {self.labels[i]: self.render(photo_rgb, prepared, out) for i, out in zip(indices, aged)}

    def estimate_age(self, photo_rgb: np.ndarray, face: Face) -> float | None:
        """The face's estimated age in years (None without an age model), aligned with the age
        model's own template and size."""
        return None if self.age is None else estimate_age(self.age, photo_rgb, face)


def estimate_age(age: AgeModel, photo_rgb: np.ndarray, face: Face) -> float:
    """The face's estimated age in years, aligned with the age model's own template and size."""
    s = age.image_size
    aligned = warp_face(photo_rgb, estimate_alignment(face.landmarks, age.template, s), s)
    ages, _ = age.estimate(aligned[None])
    return float(ages[0])
