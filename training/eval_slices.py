"""What the evaluation measures per face beyond age and identity, and how it slices the faces.

- **Skin-tone drift**: the CIEDE2000 difference between the median CIELAB colour of the cheek
  skin (the cheeks region where its mask is above 0.9, eroded by 2 px: away from its edge) of
  the input and of the output. The median over the pixels is the skin's tone; wrinkles and pores
  barely move it, a lightened or reddened skin does. Reported as the median over faces.
- **Head yaw**, estimated from the landmarks: where the nose tip (30) sits between the two ends
  of the jaw line (0, 16), as a fraction r of the half-width (-1 .. 1); yaw = asin(1.25 r).
  A rough estimate (no 3D model), good enough to bin faces into |yaw| < 15, 15-30, > 30 degrees.
- **Artefact score**: the largest local colour jump of the change map (output - input, 0-255
  units, smoothed by a Gaussian of sigma 1): the 99th percentile over the crop of its gradient
  magnitude (Sobel, the largest of the three channels). Bands, blotches and seams are sharp
  edges in the change; aging that follows the face's own folds changes more smoothly.
- Slices: UTKFace's race label (0 White, 1 Black, 2 Asian, 3 Indian, 4 Other), the source's true
  age (children 0-19, adults 20-59, elderly 60+) and the yaw bin.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.text import ascii_text

RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Other"}
AGE_BANDS = (("children 0-19", 0, 19), ("adults 20-59", 20, 59), ("elderly 60+", 60, 200))
YAW_BINS = (("|yaw| < 15", 0, 15), ("|yaw| 15-30", 15, 30), ("|yaw| > 30", 30, 91))
CHEEKS = 4  # index of the cheeks in the cache's region masks (core.regions.REGION_NAMES order)


def yaw_sine(landmarks):
    """(N, 68, 2) torch tensor -> (N,) sin of the estimated head yaw (sign: towards the image's
    right), from the nose tip's offset between the jaw's ends; differentiable and exportable (the
    strength controller computes it in the aging model's graph)."""
    import torch

    left, right, nose = landmarks[:, 0], landmarks[:, 16], landmarks[:, 30]
    axis = right - left
    width = torch.sqrt((axis * axis).sum(1) + 1e-9)
    pos = ((nose - (left + right) / 2) * axis).sum(1) / width / (width / 2)
    return (1.25 * pos).clamp(-1.0, 1.0)


def yaw_degrees(landmarks: np.ndarray) -> np.ndarray:
    """(N, 68, 2) -> (N,) estimated head yaw in degrees (sign: towards the image's right)."""
    import torch

    lm = torch.from_numpy(np.asarray(landmarks, dtype=np.float64).reshape(-1, 68, 2))
    return np.degrees(np.arcsin(yaw_sine(lm).numpy()))


def cheek_mask(masks: np.ndarray) -> np.ndarray:
    """(5, S, S) uint8 region masks of a face -> (S, S) bool: its cheek skin away from the edge."""
    inner = (np.asarray(masks[CHEEKS]) > 0.9 * 255).astype(np.uint8)
    return cv2.erode(inner, np.ones((5, 5), np.uint8)).astype(bool)


def skin_tone(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB -> (N, 3) the median CIELAB colour of the pixels under ``mask``."""
    from skimage.color import rgb2lab

    pixels = np.asarray(images)[:, mask]  # (N, P, 3)
    if pixels.shape[1] == 0:
        return np.full((len(images), 3), np.nan)
    lab = rgb2lab(pixels.astype(np.float64) / 255.0)
    return np.median(lab, axis=1)


def tone_drift(reference: np.ndarray, outputs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """CIEDE2000 between the cheek skin tone of ``reference`` (S, S, 3) and each of ``outputs``
    (N, S, S, 3): (N,), NaN when the face has no cheek skin away from the region's edge."""
    from skimage.color import deltaE_ciede2000

    ref = skin_tone(reference[None], mask)
    return deltaE_ciede2000(np.repeat(ref, len(outputs), 0), skin_tone(outputs, mask))


def artefact_score(reference: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """(S, S, 3) and (N, S, S, 3) uint8 -> (N,) the 99th percentile of the change map's gradient."""
    scores = []
    for out in outputs:
        change = cv2.GaussianBlur(out.astype(np.float32) - reference.astype(np.float32), (0, 0), 1.0)
        gx = cv2.Sobel(change, cv2.CV_32F, 1, 0, ksize=3) / 8
        gy = cv2.Sobel(change, cv2.CV_32F, 0, 1, ksize=3) / 8
        mag = np.sqrt(gx * gx + gy * gy).max(-1)
        scores.append(float(np.percentile(mag, 99)))
    return np.array(scores)


def slice_members(races: np.ndarray, ages: np.ndarray, yaws: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """{slice kind: {slice name: bool mask over the faces}}; empty slices left out."""
    kinds = {
        "race": {name: races == r for r, name in RACES.items()},
        "source age": {name: (ages >= lo) & (ages <= hi) for name, lo, hi in AGE_BANDS},
        "yaw": {name: (np.abs(yaws) >= lo) & (np.abs(yaws) < hi) for name, lo, hi in YAW_BINS},
    }
    return {kind: {name: m for name, m in members.items() if m.any()} for kind, members in kinds.items()}


def median_or_none(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return round(float(np.median(values)), 2) if len(values) else None


def slice_table(members: dict, labels: list[str], dist: np.ndarray, drift: np.ndarray, est: np.ndarray,
                artefact: np.ndarray, threshold: float) -> dict:
    """Per slice and target group: n, verification rate, median skin-tone drift, mean estimated
    age (by the judge), mean artefact score."""
    out: dict = {}
    for kind, slices in members.items():
        out[kind] = {}
        for name, m in slices.items():
            out[kind][name] = {"n": int(m.sum()), "per_group": {
                label: {"verification_rate": round(float((dist[m, t] < threshold).mean()), 4),
                        "skin_tone_drift": median_or_none(drift[m, t]),
                        "mean_estimated_age": round(float(est[m, t].mean()), 2),
                        "artefact": round(float(artefact[m, t].mean()), 2)}
                for t, label in enumerate(labels)}}
    return out


def badness(dist: np.ndarray, artefact: np.ndarray) -> np.ndarray:
    """(N, K) -> (N,): how bad a face's worst output is, for the galleries: its largest identity
    distance plus its largest artefact score relative to the typical one (half weight)."""
    typical = float(np.median(artefact)) or 1.0
    return dist.max(1) + 0.5 * artefact.max(1) / typical


def save_gallery(path: Path, rows: list[np.ndarray], labels: list[str], captions: list[str]) -> Path:
    """A picture of ``rows`` (each (K + 1) faces: input, then every group), a header of labels and
    one caption per row, written as JPEG."""
    size = rows[0].shape[0]
    head = np.full((18, rows[0].shape[1], 3), 255, np.uint8)
    for i, text in enumerate(["input"] + labels):
        cv2.putText(head, ascii_text(text), (i * size + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    body = []
    for row, caption in zip(rows, captions):
        row = row.copy()
        cv2.putText(row, caption, (3, size - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(row, caption, (3, size - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
        body.append(row)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate([head] + body, 0)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path
