"""Alignment of a face to a model's template, its inverse, and paste-back into the photo.

A template is the 68 landmark positions of the model's canonical face, normalised to [0, 1] of
the aligned square; it lives in each model's metadata. The alignment is the least-squares
similarity transform (Umeyama) of the landmarks that do not move with pose or expression much
(brows, eyes, nose, mouth corners) onto the template. Training and the app share this code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np

# Landmarks used to fit the similarity: brows, nose, eyes, mouth corners and the chin.
ALIGN_POINTS = np.array(list(range(17, 48)) + [48, 54, 8])


@dataclass(frozen=True)
class Template:
    points: np.ndarray  # float32 (68, 2) in [0, 1] of the aligned square

    def __post_init__(self):
        pts = np.asarray(self.points, dtype=np.float32).reshape(68, 2)
        object.__setattr__(self, "points", pts)

    def at_size(self, size: int) -> np.ndarray:
        return self.points * np.float32(size)

    def to_json(self) -> str:
        return json.dumps([[round(float(x), 5), round(float(y), 5)] for x, y in self.points])

    @classmethod
    def from_json(cls, text: str) -> "Template":
        pts = np.array(json.loads(text), dtype=np.float32)
        if pts.shape != (68, 2) or not np.isfinite(pts).all():
            raise ValueError(f"template must be 68 [x, y] pairs, got shape {pts.shape}")
        return cls(pts)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst, (2, 3)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ fix @ vt
    var = (s0 ** 2).sum() / len(src)
    scale = float((sig * np.diag(fix)).sum() / var) if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - m[:, :2] @ ms
    return m


def estimate_alignment(landmarks: np.ndarray, template: Template, size: int) -> np.ndarray:
    """(2, 3) matrix taking photo pixels to the pixels of the size x size aligned crop."""
    return similarity(np.asarray(landmarks)[ALIGN_POINTS], template.at_size(size)[ALIGN_POINTS])


def invert(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]).astype(np.float32)


def _scale(m: np.ndarray) -> float:
    return float(np.sqrt(abs(np.linalg.det(np.asarray(m)[:, :2]))))


def source_rect(m: np.ndarray, size: int, shape_hw: tuple[int, int], pad: int = 2) -> tuple[int, int, int, int]:
    """The photo rectangle (x0, y0, x1, y1), clipped, that the aligned square comes from."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    pts = transform_points(corners, invert(m))
    h, w = shape_hw
    x0, y0 = np.floor(pts.min(0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(0)).astype(int) + pad
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def warp_face(rgb: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The aligned (size, size, 3) crop. Large faces are area-downscaled first (no aliasing);
    only the face's rectangle of the photo is touched. Outside the photo: edge pixels replicated."""
    m = np.asarray(m, dtype=np.float64)
    x0, y0, x1, y1 = source_rect(m, size, rgb.shape[:2])
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, 3), dtype=np.uint8)
    crop = rgb[y0:y1, x0:x1]
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    mc = m @ shift  # crop pixels -> aligned
    s = _scale(mc)
    if s < 0.5:
        f = min(1.0, 2 * s)
        small = cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))), interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / crop.shape[1], small.shape[0] / crop.shape[0]
        mc = mc @ np.diag([1 / fx, 1 / fy, 1.0])
        crop = small
    return cv2.warpAffine(np.ascontiguousarray(crop), mc[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def paste_back_region(
    photo: np.ndarray,
    m: np.ndarray,
    aligned_input: np.ndarray,
    aligned_result: np.ndarray,
    mask: np.ndarray,
    rect: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The model's change composed over one rectangle of the photo: (new pixels, (x0, y0, x1, y1)).

    ``rect`` defaults to the face's rectangle (``source_rect``, the only part the change reaches). The
    pixels are exactly those of ``paste_back(...)[y0:y1, x0:x1]``, but ``photo`` is only read, never
    copied: one base photo serves every age group, and a view or exporter draws the region at its offset.
    """
    size = aligned_input.shape[0]
    h, w = photo.shape[:2]
    fx0, fy0, fx1, fy1 = source_rect(m, size, (h, w))
    if rect is None:
        rect = (fx0, fy0, fx1, fy1)
    x0, y0, x1, y1 = (int(v) for v in rect)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    out = np.array(photo[y0:max(y0, y1), x0:max(x0, x1)])  # a copy of the rectangle only
    if fx1 <= fx0 or fy1 <= fy0:
        return out, (x0, y0, x1, y1)
    # |change| < 0.5 rounds back to the original byte, so unchanged pixels stay byte-identical
    delta = cv2.subtract(aligned_result, aligned_input, dtype=cv2.CV_32F)
    delta *= np.asarray(mask, dtype=np.float32)[..., None]
    back = invert(m)
    back[:, 2] -= (fx0, fy0)  # aligned -> face-rectangle pixels (the same warp whatever ``rect`` is)
    s = _scale(m)  # aligned pixels per photo pixel
    if s > 2:
        # a small face (a group photo's): the change area-downscaled first to twice the photo's
        # scale, as ``warp_face`` does the other way; sampled by the bilinear warp alone, the
        # crop's fine lines fell on every third or fourth pixel and read as streaks and dots
        f = 2 / s
        delta = cv2.resize(delta, (max(1, round(size * f)), max(1, round(size * f))), interpolation=cv2.INTER_AREA)
        kx, ky = size / delta.shape[1], size / delta.shape[0]  # a small pixel's centre in the crop: k x + (k - 1) / 2
        back = back @ np.array([[kx, 0, (kx - 1) / 2], [0, ky, (ky - 1) / 2], [0, 0, 1.0]])
    change = cv2.warpAffine(delta, back, (fx1 - fx0, fy1 - fy0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # the part of the face's rectangle inside ``rect``
    ix0, iy0, ix1, iy1 = max(fx0, x0), max(fy0, y0), min(fx1, x1), min(fy1, y1)
    if ix1 <= ix0 or iy1 <= iy0:
        return out, (x0, y0, x1, y1)
    if (ix0, iy0, ix1, iy1) != (fx0, fy0, fx1, fy1):
        change = np.ascontiguousarray(change[iy0 - fy0:iy1 - fy0, ix0 - fx0:ix1 - fx0])
    target = out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    cv2.add(change, target, dst=change, dtype=cv2.CV_32F)  # in place: no further full-size buffers
    cv2.max(change, 0.0, dst=change)
    target[...] = cv2.convertScaleAbs(change)  # saturating round to uint8
    return out, (x0, y0, x1, y1)


def paste_back(
    photo: np.ndarray,
    m: np.ndarray,
    aligned_input: np.ndarray,
    aligned_result: np.ndarray,
    mask: np.ndarray,
) -> np.ndarray:
    """A new photo with the model's change (result - input) warped back and added under ``mask``.

    The photo keeps its full-resolution detail; every pixel where the warped mask or the change
    is zero is byte-identical to ``photo``. Only the face's rectangle is computed
    (``paste_back_region``); this copies the whole photo, so draw many results with the region instead.
    """
    out = photo.copy()
    region, (x0, y0, x1, y1) = paste_back_region(photo, m, aligned_input, aligned_result, mask)
    out[y0:y1, x0:x1] = region
    return out


def make_template(landmark_sets: np.ndarray, frame: float | None = None, margin: float = 0.35, iterations: int = 4) -> Template:
    """A template from many faces' landmarks (Generalised Procrustes on ALIGN_POINTS).

    ``frame``: when the landmarks already share a square frame of this size (e.g. 200 for
    UTKFace's aligned 200x200 chips), the mean is expressed in it, so aligned crops are framed as
    those images were. Without it, the mean shape is centred with ``margin`` (a fraction of the
    landmarks' extent) added on each side.
    """
    sets = np.asarray(landmark_sets, dtype=np.float64).reshape(-1, 68, 2)
    mean = sets[0] if frame is None else np.median(sets, axis=0)
    for _ in range(iterations):
        aligned = np.stack([transform_points(s, similarity(s[ALIGN_POINTS], mean[ALIGN_POINTS])) for s in sets])
        mean = aligned.mean(0)
    if frame is not None:
        return Template((mean / frame).astype(np.float32))
    lo, hi = mean.min(0), mean.max(0)
    extent = float((hi - lo).max())
    side = extent * (1 + 2 * margin)
    centre = (lo + hi) / 2
    return Template(((mean - centre) / side + 0.5).astype(np.float32))
