"""Face detection and 68-point landmarks with dlib.

Detection searches levels of an image pyramid and merges what each finds by non-maximum suppression:

- fast mode: dlib's HOG detector on a copy whose long side is at most ``max_side`` (1024), upsampled
  once when that copy is small (HOG's smallest face is 80 px, 40 upsampled), plus a coarse copy padded
  with grey on every side, so that a face filling the frame (whose HOG window would reach past the
  photo's edge) is found too.
- accurate mode: the main HOG level at up to 2048 px, upsampled until it is 1000 px long (at most
  twice: faces of 20 px), the padded level, HOG on copies turned by +-15 degrees (tilted heads), and dlib's CNN
  (MMOD) on a copy bounded to ``cnn_side`` (turned and partly hidden large faces), upsampled only when
  that copy is small. Its boxes are mapped to HOG's framing, which the landmark model was trained on.
  The CNN never sees the whole 12 MP photo: time and memory stay bounded (bench/detection.py).

Where two levels find the same face, the earlier level's box is kept (HOG before CNN). Landmarks always
come from the full-resolution photo, fitted on the box and on slightly moved and scaled copies of it
(``JITTERS``): the median of those fits is kept, and where they disagree the face gets a low ``fit`` and is
flagged (``Face.fit_ok``) so that callers do not age it blindly (eyes on a cheek). A box drawn by hand becomes a face through
``face_from_box``.
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
# Landmark check: the landmark model is run on the box and on JITTERS of it (scale, then shift, as fractions
# of the box's side; the fast mode uses the first three); the landmarks kept are the median of those fits, and their spread (mean distance of
# each fit from the median, as a fraction of the eye distance) says whether they are trustworthy: on the
# hard cases of bench/detection.py the spread follows the landmark error (correlation 0.69) where a box
# check does not. ``Face.fit`` = 1 - spread / SPREAD_SCALE (clipped); below FIT_FLAG a face is flagged.
JITTERS = ((1.0, 0.0, 0.0), (1.0, 0.06, 0.0), (1.0, 0.0, 0.06), (0.9, 0.0, 0.0), (1.1, 0.0, 0.0),
           (1.0, -0.06, 0.0), (1.0, 0.0, -0.06))
SPREAD_SCALE = 0.2
FIT_FLAG = 0.5  # a spread of 0.1 eye distances
# A CNN (MMOD) box in HOG's framing: (left, top, right, bottom) moved by these fractions of its width
# (median over the album's faces both detectors find).
CNN_TO_HOG = (0.0, 0.105, 0.026, 0.026)
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
    fit: float = 1.0  # agreement of the landmark fits, 0..1 (FaceFinder.fitted_landmarks; 1.0 for manual faces)

    def __post_init__(self):
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(68, 2)

    @property
    def fit_ok(self) -> bool:
        """False when the landmarks do not outline a face that fits the detector's box (flag it, do not
        age it blindly: the eyes may lie on a cheek)."""
        return self.fit >= FIT_FLAG

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
            "fit": round(float(self.fit), 3),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Face":
        return cls(
            box=np.array(d["box"], dtype=np.float32),
            landmarks=np.array(d["landmarks"], dtype=np.float32),
            score=float(d.get("score", 0.0)),
            source=str(d.get("source", "manual")),
            forehead_height=float(d.get("forehead_height", DEFAULT_FOREHEAD_HEIGHT)),
            fit=float(d.get("fit", 1.0)),
        )

    def copy(self) -> "Face":
        return Face(self.box.copy(), self.landmarks.copy(), self.score, self.source, self.forehead_height, self.fit)


def _rect(box):
    import dlib

    left, top, right, bottom = (int(round(float(v))) for v in box)
    return dlib.rectangle(left, top, right, bottom)


def box_iou(a, b) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def nms(found: list[tuple[np.ndarray, float, str]], overlap: float = 0.3) -> list[tuple[np.ndarray, float, str]]:
    """Non-maximum suppression in the given order of priority: a box overlapping (IoU >= ``overlap``) or
    lying mostly inside one already kept is dropped."""
    kept: list[tuple[np.ndarray, float, str]] = []
    for box, score, source in found:
        area = max(1e-6, float((box[2] - box[0]) * (box[3] - box[1])))
        duplicate = False
        for k, _, _ in kept:
            inter = max(0.0, min(box[2], k[2]) - max(box[0], k[0])) * max(0.0, min(box[3], k[3]) - max(box[1], k[1]))
            if box_iou(box, k) >= overlap or inter / area >= 0.7:
                duplicate = True
                break
        if not duplicate:
            kept.append((box, score, source))
    return kept


def _resized(rgb: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return rgb
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # a 20000 x 8 panorama keeps one row
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


@dataclass
class FaceFinder:
    """Finds faces and their landmarks (see the module doc). Safe to share between threads (calls into
    dlib are serialised).

    ``max_side``: the main HOG level runs on a copy whose long side is at most this (None: 1024 fast,
    2048 accurate). ``upsample``: that level's upsampling steps; None = fast: once when the copy's long
    side is at most ``upsample_below``, else none (HOG's smallest face is 80 px, so small photos need it
    and large ones do not); accurate: until the copy is ``upsample_below`` * 1.25 long, at most twice. ``threshold``: HOG score below which a
    detection is dropped (dlib's own cut-off is 0; 0.2 keeps every labelled face of dlib's album and
    drops weak false hits). ``pad_side``: long side of the padded coarse level (0: none). ``cnn_side``:
    long side of the accurate mode's CNN copy; ``rotations``: the accurate mode's turned HOG levels.
    """

    mode: str = "fast"
    max_side: int | None = None
    upsample: int | None = None
    upsample_below: int = 800
    threshold: float = 0.2
    min_size: int = 20  # faces smaller than this (photo pixels) are ignored
    pad_side: int = 240
    pad_threshold: float = 0.3
    cnn_side: int = 360
    rotations: tuple[float, ...] = (-15.0, 15.0)
    rotation_side: int = 1024
    _sp: object = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.max_side is None:
            self.max_side = 1024 if self.mode == "fast" else 2048

    def __getstate__(self):  # settings only: a helper process (core.scan's pool) loads its own models
        state = dict(self.__dict__)
        state["_sp"] = None
        return state

    def _predictor(self):
        if self._sp is None:
            self._sp = dlib_models.shape_predictor()
        return self._sp

    def _hog(self, image: np.ndarray, upsample: int, threshold: float) -> list[tuple[np.ndarray, float]]:
        """HOG boxes (image pixels) scoring at least ``threshold``."""
        with dlib_models.LOCKS["hog"]:
            dets, scores, _ = dlib_models.hog_detector().run(np.ascontiguousarray(image), upsample,
                                                             min(threshold, 0.0))
        return [(np.array([d.left(), d.top(), d.right(), d.bottom()], dtype=np.float64), float(s))
                for d, s in zip(dets, scores) if s >= threshold]

    def _main_level(self, rgb, found) -> None:
        long_side = max(rgb.shape[:2])
        scale = min(1.0, self.max_side / long_side)
        small = _resized(rgb, scale)
        upsample = self.upsample
        if upsample is None:
            side = max(small.shape[:2])
            if self.mode == "fast":
                upsample = 1 if side <= self.upsample_below else 0
            else:
                upsample = 0
                while upsample < 2 and side * 2 ** upsample < 1.25 * self.upsample_below:
                    upsample += 1
        found += [(b / scale, s, "hog") for b, s in self._hog(small, upsample, self.threshold)]

    def _padded_level(self, rgb, found) -> None:
        """A coarse copy with grey margins: a face filling the frame gets the context HOG's window needs."""
        if self.pad_side <= 0:
            return
        scale = min(1.0, self.pad_side / max(rgb.shape[:2]))
        small = _resized(rgb, scale)
        pad = round(0.3 * max(small.shape[:2]))
        padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        for b, s in self._hog(padded, 0, self.pad_threshold):
            found.append(((b - pad) / scale, s, "hog"))

    def _rotated_levels(self, rgb, found) -> None:
        """HOG on copies turned by each of ``rotations`` (degrees): boxes mapped back by their centres."""
        h, w = rgb.shape[:2]
        scale = min(1.0, self.rotation_side / max(h, w))
        small = _resized(rgb, scale)
        sh, sw = small.shape[:2]
        upsample = 1 if max(sh, sw) <= self.upsample_below else 0
        for angle in self.rotations:
            m = cv2.getRotationMatrix2D((sw / 2, sh / 2), angle, 1.0)
            turned = cv2.warpAffine(small, m, (sw, sh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                    borderValue=(128, 128, 128))
            back = cv2.invertAffineTransform(m)
            for b, s in self._hog(turned, upsample, self.threshold):
                c = back[:, :2] @ ((b[:2] + b[2:]) / 2) + back[:, 2]
                half = (b[2:] - b[:2]) / 2
                found.append((np.concatenate([c - half, c + half]) / scale, s, "hog"))

    def _cnn_level(self, rgb, found) -> None:
        """dlib's CNN on a copy bounded to ``cnn_side``, upsampled once only when that copy is small."""
        scale = min(1.0, self.cnn_side / max(rgb.shape[:2]))
        small = _resized(rgb, scale)
        upsample = 1 if max(small.shape[:2]) <= self.cnn_side // 2 else 0
        with dlib_models.LOCKS["cnn"]:
            dets = dlib_models.cnn_detector()(np.ascontiguousarray(small), upsample)
        for d in dets:
            r = d.rect
            b = np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float64)
            b += np.array(CNN_TO_HOG) * (b[2] - b[0])
            found.append((b / scale, float(d.confidence), "cnn"))

    def detect_boxes(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Face boxes (photo pixels) with scores, largest first."""
        return [(b, s) for b, s, _ in self._detect(rgb)]

    def _detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float, str]]:
        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        if min(h, w) < self.min_size or min(h, w) * scale < MIN_SEARCH_SIDE:
            return []  # no face fits (and dlib's CNN fails outright on a strip a few pixels high)
        found: list[tuple[np.ndarray, float, str]] = []
        self._main_level(rgb, found)
        self._padded_level(rgb, found)
        if self.mode == "accurate":
            self._rotated_levels(rgb, found)
            self._cnn_level(rgb, found)
        out = []
        for box, score, source in nms(found):
            box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)
            if min(box[2] - box[0], box[3] - box[1]) >= self.min_size:
                out.append((box, float(score), source))
        out.sort(key=lambda b: -(b[0][2] - b[0][0]) * (b[0][3] - b[0][1]))
        return out

    def landmarks(self, rgb: np.ndarray, box) -> np.ndarray:
        """68 landmarks (float32 (68, 2)) for the face in ``box`` (photo pixels)."""
        with dlib_models.LOCKS["landmarks"]:
            shape = self._predictor()(np.ascontiguousarray(rgb), _rect(box))
        if shape.num_parts != 68:
            raise FaceError(f"landmark model returned {shape.num_parts} points, expected 68")
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)

    def fitted_landmarks(self, rgb: np.ndarray, box) -> tuple[np.ndarray, float]:
        """(landmarks, fit) for a detected box: the median of the landmark model's fits on the box and on
        its JITTERS, and how well they agree (``fit`` in [0, 1]; see JITTERS)."""
        box = np.asarray(box, dtype=np.float64)
        centre, side = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
        fits = []
        for scale, dx, dy in JITTERS if self.mode == "accurate" else JITTERS[:3]:
            c = centre + np.array([dx, dy]) * side
            half = side * scale / 2
            fits.append(self.landmarks(rgb, np.concatenate([c - half, c + half])))
        fits = np.stack(fits)
        landmarks = np.median(fits, axis=0).astype(np.float32)
        eyes = float(np.linalg.norm(landmarks[36:42].mean(0) - landmarks[42:48].mean(0)))
        spread = float(np.linalg.norm(fits - landmarks, axis=2).mean()) / max(eyes, 1e-3)
        fit = float(np.clip(1.0 - spread / SPREAD_SCALE, 0.0, 1.0))
        if fit < FIT_FLAG:
            log.info("landmarks of the face at %s disagree between fits (spread %.2f eye distances): flagged",
                     np.round(box).astype(int).tolist(), spread)
        return landmarks, fit

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """All faces in the photo with their landmarks, largest first."""
        faces = []
        for box, score, source in self._detect(rgb):
            landmarks, fit = self.fitted_landmarks(rgb, box)
            faces.append(Face(box, landmarks, score, source, fit=fit))
        return faces

    def face_from_box(self, rgb: np.ndarray, box) -> Face:
        """A face from a box drawn by hand (left, top, right, bottom in photo pixels)."""
        box = np.asarray(box, dtype=np.float32).reshape(4)
        left, right = sorted((box[0], box[2]))
        top, bottom = sorted((box[1], box[3]))
        if right - left < 8 or bottom - top < 8:
            raise FaceError("face box is too small (at least 8x8 pixels)")
        box = np.array([left, top, right, bottom], dtype=np.float32)
        return Face(box, self.landmarks(rgb, box), 0.0, "manual")
