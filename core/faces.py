"""Face detection and 68-point landmarks with dlib.

Fast mode: dlib's HOG detector on a copy downscaled so its long side is at most ``max_side``,
boxes mapped back to the photo, a score threshold against false positives. Accurate mode: dlib's
CNN (MMOD) detector. A box drawn by hand becomes a face through ``face_from_box``. Landmarks
always come from the full-resolution photo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import dlib_models
from .errors import FaceError

log = logging.getLogger(__name__)

# Top edge of the forehead region: this fraction of the brow-to-chin distance above the brows.
DEFAULT_FOREHEAD_HEIGHT = 0.38

MODES = ("fast", "accurate")
# Neither detector finds a face in fewer pixels than this (HOG's window is 80 px, 40 upsampled; the CNN's
# 40 px, 20 upsampled): a photo whose searched copy is narrower has no face to find.
MIN_SEARCH_SIDE = 20


@dataclass
class Face:
    box: np.ndarray  # float32 (4,): left, top, right, bottom in photo pixels
    landmarks: np.ndarray  # float32 (68, 2): iBUG-68 points in photo pixels
    score: float = 0.0
    source: str = "hog"  # "hog" | "cnn" | "manual"
    forehead_height: float = DEFAULT_FOREHEAD_HEIGHT

    def __post_init__(self):
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(68, 2)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "score": float(self.score),
            "source": self.source,
            "forehead_height": float(self.forehead_height),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Face":
        return cls(
            box=np.array(d["box"], dtype=np.float32),
            landmarks=np.array(d["landmarks"], dtype=np.float32),
            score=float(d.get("score", 0.0)),
            source=str(d.get("source", "manual")),
            forehead_height=float(d.get("forehead_height", DEFAULT_FOREHEAD_HEIGHT)),
        )

    def copy(self) -> "Face":
        return Face(self.box.copy(), self.landmarks.copy(), self.score, self.source, self.forehead_height)


def _rect(box):
    import dlib

    left, top, right, bottom = (int(round(float(v))) for v in box)
    return dlib.rectangle(left, top, right, bottom)


@dataclass
class FaceFinder:
    """Finds faces and their landmarks. Safe to share between threads (calls into dlib are serialised).

    mode: "fast" (HOG) or "accurate" (CNN). ``max_side``: the fast detector runs on a copy whose
    long side is at most this. ``upsample``: detector upsampling steps (finds smaller faces,
    slower); None = once when the (downscaled) photo's long side is at most ``upsample_below``,
    else none: HOG's smallest face is 80 px, so small photos need it and large ones do not.
    ``threshold``: HOG score below which a detection is dropped (dlib's own cut-off is 0; 0.2
    keeps every labelled face of dlib's album (bench/detection.py) and drops weak false hits).
    """

    mode: str = "fast"
    max_side: int = 1024
    upsample: int | None = None
    upsample_below: int = 800
    threshold: float = 0.2
    min_size: int = 20  # faces smaller than this (photo pixels) are ignored
    _sp: object = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")

    def _predictor(self):
        if self._sp is None:
            self._sp = dlib_models.shape_predictor()
        return self._sp

    def detect_boxes(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Face boxes (photo pixels) with scores, largest first."""
        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        max_side = self.max_side if self.mode == "fast" else max(self.max_side, 1600)
        scale = min(1.0, max_side / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))  # a 20000 x 8 panorama keeps one row
        if min(h, w) < self.min_size or min(size) < MIN_SEARCH_SIDE:
            return []  # no face fits (and dlib's CNN fails outright on a strip a few pixels high)
        small = rgb if scale == 1.0 else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        found: list[tuple[np.ndarray, float]] = []
        upsample = self.upsample
        if upsample is None:
            upsample = 1 if max(small.shape[:2]) <= self.upsample_below else 0
        if self.mode == "fast":
            with dlib_models.LOCKS["hog"]:
                dets, scores, _ = dlib_models.hog_detector().run(small, upsample, min(self.threshold, 0.0))
            pairs = [(d, s) for d, s in zip(dets, scores) if s >= self.threshold]
        else:
            with dlib_models.LOCKS["cnn"]:
                pairs = [(d.rect, d.confidence) for d in dlib_models.cnn_detector()(small, upsample)]
        for rect, score in pairs:
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float32) / scale
            box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)
            if min(box[2] - box[0], box[3] - box[1]) >= self.min_size:
                found.append((box, float(score)))
        found.sort(key=lambda bs: -(bs[0][2] - bs[0][0]) * (bs[0][3] - bs[0][1]))
        return found

    def landmarks(self, rgb: np.ndarray, box) -> np.ndarray:
        """68 landmarks (float32 (68, 2)) for the face in ``box`` (photo pixels)."""
        with dlib_models.LOCKS["landmarks"]:
            shape = self._predictor()(np.ascontiguousarray(rgb), _rect(box))
        if shape.num_parts != 68:
            raise FaceError(f"landmark model returned {shape.num_parts} points, expected 68")
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """All faces in the photo with their landmarks, largest first."""
        source = "hog" if self.mode == "fast" else "cnn"
        return [Face(box, self.landmarks(rgb, box), score, source) for box, score in self.detect_boxes(rgb)]

    def face_from_box(self, rgb: np.ndarray, box) -> Face:
        """A face from a box drawn by hand (left, top, right, bottom in photo pixels)."""
        box = np.asarray(box, dtype=np.float32).reshape(4)
        left, right = sorted((box[0], box[2]))
        top, bottom = sorted((box[1], box[3]))
        if right - left < 8 or bottom - top < 8:
            raise FaceError("face box is too small (at least 8x8 pixels)")
        box = np.array([left, top, right, bottom], dtype=np.float32)
        return Face(box, self.landmarks(rgb, box), 0.0, "manual")
