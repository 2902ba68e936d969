"""The five facial regions as data: polygons built from the 68 iBUG landmarks.

Each polygon is a list of point specs ``(index, dx, dy)``: landmark ``index`` moved by ``dx`` along
the face's left-to-right axis and ``dy`` down the face, both in units of the inter-ocular
distance, so the regions follow the face's size and roll. The forehead is not covered by the 68
points: its bottom edge is the brows and its top edge lies ``forehead_height`` times the
brow-to-chin distance above them (the person can move that edge).

The order of REGION_NAMES is the order of the aging model's ``regions`` input.
"""

from __future__ import annotations

import cv2
import numpy as np

from .faces import DEFAULT_FOREHEAD_HEIGHT

REGION_NAMES = ("forehead", "eyes", "nose", "mouth", "cheeks")

# Region colours for display (RGB), one per region.
REGION_COLORS = {
    "forehead": (236, 180, 60),
    "eyes": (70, 160, 240),
    "nose": (120, 210, 110),
    "mouth": (230, 80, 110),
    "cheeks": (180, 120, 230),
}

# Which region each of the 68 landmarks is edited as (for colouring the points).
LANDMARK_REGION = (
    ["cheeks"] * 17 + ["eyes"] * 10 + ["nose"] * 9 + ["eyes"] * 12 + ["mouth"] * 20
)

# Mirror permutation of the 68 points (for horizontal flips): FLIP[i] is the index of the point
# that lands where point i was.
FLIP = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46]  # left eye <- right eye
    + [39, 38, 37, 36, 41, 40]  # right eye <- left eye
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lip
)

_P = tuple[int, float, float]

# "Left"/"right" are in the image (the person's right eye is the image's left).
POLYGONS: dict[str, list[list[_P]]] = {
    "eyes": [
        [(17, -0.12, 0.0), (18, 0, -0.04), (19, 0, -0.04), (20, 0, -0.04), (21, 0.04, 0.0),
         (39, 0.06, 0.06), (40, 0, 0.24), (41, 0, 0.24), (36, -0.22, 0.12)],
        [(22, -0.04, 0.0), (23, 0, -0.04), (24, 0, -0.04), (25, 0, -0.04), (26, 0.12, 0.0),
         (45, 0.22, 0.12), (46, 0, 0.24), (47, 0, 0.24), (42, -0.06, 0.06)],
    ],
    "nose": [
        [(27, -0.14, 0.0), (31, -0.1, 0.0), (32, 0, 0.04), (33, 0, 0.06), (34, 0, 0.04),
         (35, 0.1, 0.0), (27, 0.14, 0.0)],
    ],
    "mouth": [
        [(48, -0.16, 0.0), (49, 0, -0.12), (50, 0, -0.14), (51, 0, -0.14), (52, 0, -0.14),
         (53, 0, -0.12), (54, 0.16, 0.0), (55, 0, 0.12), (56, 0, 0.14), (57, 0, 0.16),
         (58, 0, 0.14), (59, 0, 0.12)],
    ],
    "cheeks": [
        [(1, 0.08, 0.0), (2, 0.08, 0.0), (3, 0.08, 0.0), (4, 0.08, 0.0), (5, 0.08, -0.04),
         (48, -0.22, 0.04), (31, -0.14, 0.06), (40, 0, 0.3), (41, 0, 0.3), (36, -0.12, 0.3)],
        [(15, -0.08, 0.0), (14, -0.08, 0.0), (13, -0.08, 0.0), (12, -0.08, 0.0), (11, -0.08, -0.04),
         (54, 0.22, 0.04), (35, 0.14, 0.06), (47, 0, 0.3), (46, 0, 0.3), (45, 0.12, 0.3)],
    ],
}

BROWS = list(range(17, 27))


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit right and down vectors of the face and its inter-ocular distance."""
    pts = np.asarray(landmarks, dtype=np.float64)
    left_eye, right_eye = pts[36:42].mean(0), pts[42:48].mean(0)
    right = right_eye - left_eye
    d = float(np.hypot(*right)) or 1.0
    right /= d
    down = np.array([-right[1], right[0]])
    return right, down, d


def forehead_base(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(the brow points widened slightly: the forehead's top edge before it is lifted, the face's unit down
    vector, the unit of ``forehead_height`` in pixels: max(brow-to-chin distance, inter-ocular distance))."""
    pts = np.asarray(landmarks, dtype=np.float64)
    right, down, d = face_frame(pts)
    brow_to_chin = float(np.dot(pts[8] - pts[BROWS].mean(0), down))
    brows = pts[BROWS] - 0.06 * d * right  # widen slightly
    brows[0] -= 0.1 * d * right
    brows[-1] += 0.16 * d * right
    return brows, down, max(brow_to_chin, d)


def forehead_top(landmarks: np.ndarray, forehead_height: float = DEFAULT_FOREHEAD_HEIGHT) -> np.ndarray:
    """The forehead's top edge: the brow points lifted by forehead_height x brow-to-chin distance."""
    brows, down, unit = forehead_base(landmarks)
    return brows - forehead_height * unit * down


def region_polygons(landmarks: np.ndarray, forehead_height: float = DEFAULT_FOREHEAD_HEIGHT) -> dict[str, list[np.ndarray]]:
    """Each region's polygons (float32 (N, 2)) in the coordinates of ``landmarks``."""
    pts = np.asarray(landmarks, dtype=np.float64)
    right, down, d = face_frame(pts)
    out: dict[str, list[np.ndarray]] = {}
    for name in REGION_NAMES:
        if name == "forehead":
            top = forehead_top(pts, forehead_height)
            bottom = pts[BROWS][::-1] - 0.04 * d * down
            out[name] = [np.vstack([top, bottom]).astype(np.float32)]
            continue
        out[name] = [
            np.array([pts[i] + dx * d * right + dy * d * down for i, dx, dy in poly], dtype=np.float32)
            for poly in POLYGONS[name]
        ]
    return out


def region_masks(
    landmarks: np.ndarray,
    shape_hw: tuple[int, int],
    forehead_height: float = DEFAULT_FOREHEAD_HEIGHT,
    feather: float = 0.08,
) -> np.ndarray:
    """Soft masks float32 (5, H, W) in [0, 1], REGION_NAMES order.

    ``feather`` is the Gaussian blur sigma in units of the inter-ocular distance.
    """
    h, w = shape_hw
    _, _, d = face_frame(landmarks)
    sigma = max(feather * d, 0.0)
    masks = np.zeros((len(REGION_NAMES), h, w), dtype=np.float32)
    shift = 4  # sub-pixel polygon rasterisation
    for i, (name, polys) in enumerate(region_polygons(landmarks, forehead_height).items()):
        m = np.zeros((h, w), dtype=np.uint8)
        cv2.fillPoly(m, [np.round(p * (1 << shift)).astype(np.int32) for p in polys], 255, cv2.LINE_AA, shift)
        mf = m.astype(np.float32) / 255.0
        if sigma > 0.3:
            mf = cv2.GaussianBlur(mf, (0, 0), sigma)
            np.clip(mf, 0.0, 1.0, out=mf)  # the blur's float sums can pass 1 by an ulp
        masks[i] = mf
    return masks


def face_mask(
    landmarks: np.ndarray,
    shape_hw: tuple[int, int],
    forehead_height: float = DEFAULT_FOREHEAD_HEIGHT,
    feather: float = 0.08,
) -> np.ndarray:
    """Union of the five regions, float32 (H, W) in [0, 1]."""
    return region_masks(landmarks, shape_hw, forehead_height, feather).max(axis=0)
