"""A wrinkle map for the prototype model: the fine lines and folds of real old faces, in the
template's coordinates, as a relative contrast (detail / local brightness).

The prototypes' texture energy can only deepen the wrinkles a face already has; a smooth young
face has none, and an average of many faces cancels every wrinkle that is not in the same place
on all of them. Tiddeman, Stirrat & Perrett (2005) made their old prototypes look old again by
synthesising their texture from real faces. The same idea, kept small: a few old faces of the
training split (frontal, in colour, without glasses, women where the data says so, so no beard
stubble, and looking like the other candidates once warped, so no face the landmarks missed; the
most wrinkled of each skin-tone group, so no one population's face is painted on everyone),
warped to the mean shape, each also mirrored (so a line one face has on one cheek is not painted on
one side of every face: lines read as dirt there), their detail averaged and each pixel's
amplitude put back to theirs (an average of a few faces keeps its lines but weakens them). Only
the narrow band of lines and creases (FINE to BROAD): a broader band carried the exemplars' own
shading (a lit nose ridge, a shadowed cheek), which on another face reads as brown patches; and
four exemplars per skin tone, so what is common to old faces (crow's feet, the nasolabial folds,
forehead lines) outweighs what one face has. Relative contrast, so a
dark and a light skin get the same lines (applied as x * (1 + a * map)). Eyes, brows, the mouth
and nostrils are left out: those are features, not wrinkles.

What only a few exemplars have is not painted on everyone: each pixel's detail is the mean of the
middle half of the exemplars' (a trimmed mean; their amplitude the median). A plain mean drew two
exemplars' bindis as a dark spot in the middle of every aged forehead, and the edges of headscarves
and fringes as a dotted band across it. On the forehead the lines of different faces lie at
different heights and average into dots; there the map is smoothed along the template's
horizontal (FOREHEAD_RUN), with its local amplitude kept: lines across the forehead, not a band
of specks.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.regions import REGION_NAMES, face_mask, region_masks
from .eval_slices import yaw_degrees
from .face_masks import top_fade
from .filters import LUMA, gauss

FINE, BROAD = 0.6, 2.5  # the detail band (px at 128): lines and creases, not noise or shading
# (4.0 before: 96 validation faces made 70+, judged 45.8 -> 46.8 years with 2.5, symmetric and four
# per tone, identity distance 0.488 -> 0.462, and no brown patches across one cheek)
ENERGY = 3.0  # local amplitude: G(3) * |detail|
PER_TONE = 4  # exemplars per skin-tone label (UTKFace race 0-3); 16 when unlabelled
FLOOR = 0.08  # darkest local brightness divided by (deep shadow is not a line)
MAX_YAW = 9.0  # degrees (training/eval_slices.yaw_degrees): a frontal face
MIN_LIKENESS = 0.2  # correlation with the candidates' mean face below which a face is misaligned
LIMIT = 0.25  # the largest relative contrast of the map
TRIM = 0.25  # the share of the exemplars (with their mirrors) left out at each end, per pixel
FOREHEAD_RUN = 4.0  # px at 128: the forehead's lines smoothed along the horizontal over this sigma


def relative_detail(image01: np.ndarray) -> np.ndarray:
    """(S, S) detail of the luminance between FINE and BROAD, divided by the local brightness."""
    y = image01.astype(np.float32) @ np.array(LUMA, np.float32)
    base = gauss(y, BROAD * y.shape[0] / 128)
    return (gauss(y, FINE * y.shape[0] / 128) - base) / np.maximum(base, FLOOR)


def _disc(size: int, centre: np.ndarray, radius: float) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    cv2.circle(m, (int(round(centre[0])), int(round(centre[1]))), max(1, int(round(radius))), 1.0, -1)
    return m


def feature_mask(points: np.ndarray, size: int) -> np.ndarray:
    """(S, S) in [0, 1]: where wrinkles may go on a face with these landmarks: its forehead,
    nose and cheeks regions (which hold crow's feet, bags and folds) less the eyes, brows, lips
    and nostrils, soft-edged."""
    masks = region_masks(points, (size, size))
    skin = np.maximum.reduce([masks[REGION_NAMES.index(n)] for n in ("forehead", "nose", "cheeks", "eyes")])
    d = float(np.linalg.norm(points[42:48].mean(0) - points[36:42].mean(0)))
    r = max(1, int(round(0.15 * d)))  # away from the face's outline (a background or hair edge in an exemplar)
    inner = cv2.erode(face_mask(points, (size, size)).astype(np.float32), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    skin = np.minimum(skin, inner)
    skin = skin * top_fade(points, size, 0.5)  # fading out towards the template's top edge: hair, hats
    out = np.zeros((size, size), np.float32)
    for idx in (range(17, 22), range(22, 27)):
        cv2.polylines(out, [np.round(points[list(idx)] * 16).astype(np.int32)], False, 1.0, max(1, int(round(0.12 * d))), cv2.LINE_AA, shift=4)
    for idx in (range(36, 42), range(42, 48), range(48, 60)):
        cv2.fillPoly(out, [np.round(points[list(idx)] * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    for i in (31, 35):  # the nostrils' wings
        out = np.maximum(out, _disc(size, points[i], 0.07 * d))
    r = max(1, int(round(0.05 * d)))
    out = cv2.dilate(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    keep = np.clip(skin - out, 0, 1)
    return np.clip(gauss(keep, 0.05 * d), 0, 1)


def exemplars(faces: np.ndarray, landmarks: np.ndarray, samples: list[dict], mean_shape: np.ndarray) -> list[int]:
    """Positions (into ``faces``) of the old faces the map is made of. ``faces``: (N, S, S, 3)
    uint8 candidates (the oldest group of the training split) already warped to ``mean_shape``;
    ``landmarks``: their own 68 points in the aligned crop; ``samples``: their labels."""
    size = faces.shape[1]
    d = float(np.linalg.norm(mean_shape[42:48].mean(0) - mean_shape[36:42].mean(0)))
    bridge = _disc(size, mean_shape[27], 0.1 * d)
    cheeks = np.maximum(_disc(size, (mean_shape[2] + mean_shape[30]) / 2, 0.18 * d),
                        _disc(size, (mean_shape[14] + mean_shape[30]) / 2, 0.18 * d))
    brow_y = mean_shape[17:27, 1].mean()
    forehead = np.zeros((size, size), np.float32)
    cv2.rectangle(forehead, (int(mean_shape[19, 0]), int(brow_y - 0.45 * d)), (int(mean_shape[24, 0]), int(brow_y - 0.15 * d)), 1.0, -1)
    mean_in = lambda e, m: float((e * m).sum() / max(m.sum(), 1e-6))
    face = face_mask(mean_shape, (size, size)) > 0.5
    found, looks = [], []
    yaws = yaw_degrees(landmarks)
    for i, s in enumerate(samples):
        img = faces[i].astype(np.float32) / 255.0
        y = img @ np.array(LUMA, np.float32)
        colour = float(np.abs(img - y[..., None]).mean())
        e = gauss(np.abs(relative_detail(img)), ENERGY)
        if abs(yaws[i]) > MAX_YAW or colour < 0.02 or mean_in(e, bridge) > 1.3 * mean_in(e, cheeks):
            continue  # turned, black-and-white, or glasses (a bridge across the nose)
        if s.get("gender") is not None and int(s["gender"]) != 1:
            continue
        z = y[face]
        looks.append((z - z.mean()) / (z.std() + 1e-6))
        found.append((np.log(mean_in(e, forehead) + 1e-4) + np.log(mean_in(e, cheeks) + 1e-4), s.get("race"), i))
    if found:
        # a face whose landmarks were not found on it (a close-up, a chip the detector missed) does
        # not look like the others once warped to the mean shape: its light and dark fall elsewhere
        z = np.array(looks)
        others = (z.sum(0, keepdims=True) - z) / max(len(z) - 1, 1)  # each face's likeness to the rest
        others = (others - others.mean(1, keepdims=True)) / (others.std(1, keepdims=True) + 1e-6)
        like = (z * others).mean(1) if len(z) > 1 else np.ones(1)
        found = [f for f, c in zip(found, like) if c >= MIN_LIKENESS]
    found.sort(key=lambda f: -f[0])
    tones = sorted({f[1] for f in found if f[1] is not None and int(f[1]) < 4})
    if not tones:
        return [f[2] for f in found[: 4 * PER_TONE]]
    picked = []
    for t in tones:
        picked += [f[2] for f in found if f[1] == t][:PER_TONE]
    return picked


def wrinkle_map(faces: np.ndarray, landmarks: np.ndarray, samples: list[dict], mean_shape: np.ndarray,
                mirror=None) -> np.ndarray:
    """(S, S) float32: the exemplars' relative detail (of ``exemplars``' arguments), averaged with
    each pixel's amplitude put back to theirs, on the skin of the mean shape (see the module
    docstring); zeros if the data has no usable old face. ``mirror``: a face on the mean shape ->
    that face mirrored left to right, back on the mean shape (prototype.Mesh.mirrored); each
    exemplar then counts with its mirror image."""
    size = faces.shape[1]
    picked = exemplars(faces, landmarks, samples, mean_shape)
    if not picked:
        return np.zeros((size, size), np.float32)
    chosen = [faces[i] for i in picked]
    if mirror is not None:
        chosen += [mirror(f) for f in chosen]
    rel = np.array([relative_detail(f / 255.0) for f in chosen])
    cut = int(len(rel) * TRIM)
    avg = np.sort(rel, 0)[cut : len(rel) - cut].mean(0)
    amplitude = np.median([gauss(np.abs(r), ENERGY) for r in rel], 0)
    out = avg * amplitude / (gauss(np.abs(avg), ENERGY) + 1e-3)
    out = np.clip(out, -LIMIT, LIMIT) * feature_mask(mean_shape, size)
    return np.clip(forehead_lines(out, mean_shape), -LIMIT, LIMIT).astype(np.float32)


def forehead_lines(lines: np.ndarray, mean_shape: np.ndarray) -> np.ndarray:
    """The map above the brows smoothed along the horizontal (sigma FOREHEAD_RUN), each pixel's
    local amplitude (G(ENERGY) * |map|) put back to what it was (at most three times): faces' forehead
    lines at different heights become lines, not specks. Below the brows the map is unchanged."""
    size = lines.shape[0]
    sigma = FOREHEAD_RUN * size / 128
    kernel = cv2.getGaussianKernel(int(6 * sigma) | 1, sigma)
    along = cv2.sepFilter2D(lines.astype(np.float32), -1, kernel, np.ones((1, 1)), borderType=cv2.BORDER_REFLECT)
    along = along * np.clip(gauss(np.abs(lines), ENERGY) / (gauss(np.abs(along), ENERGY) + 1e-3), 0.0, 3.0)
    rows = np.arange(size, dtype=np.float32)[:, None]
    above = 1 / (1 + np.exp((rows - (float(mean_shape[17:27, 1].mean()) - 3 * size / 128)) / (1.5 * size / 128)))
    return lines * (1 - above) + along * above
