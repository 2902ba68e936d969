"""The prototype model's wrinkle map: real old faces' lines, chosen, masked and applied as a
relative contrast by how far the target lies above the face's own age."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from testkit.contract_model import AGING_TEMPLATE  # noqa: E402
from training.config import DECADES  # noqa: E402
from training.nets import AgeNet  # noqa: E402
from training.wrinkles import PER_TONE, exemplars, feature_mask, forehead_lines, relative_detail, wrinkle_map  # noqa: E402

S = 128


def _shape(size: int = S) -> np.ndarray:
    return np.array(AGING_TEMPLATE, np.float64) * size


def _lines(amplitude: float, seed: int = 0, size: int = S, features: bool = True) -> np.ndarray:
    """A flat skin-coloured face (with a dark mouth at the template's points) and thin dark
    horizontal lines of this depth every 5 px (from row 2 + seed % 3), in 0-255."""
    y = np.full((size, size), 0.6)
    pts = _shape(size)
    if features:
        centre = pts[60:68].mean(0)
        cv2.circle(y, (int(round(centre[0])), int(round(centre[1]))), size // 16, 0.3, -1)
    y[2 + seed % 3 :: 5] *= 1 - amplitude
    return (np.clip(np.stack([y * 1.1, y, y * 0.8], -1), 0, 1) * 255).astype(np.uint8)


def test_relative_detail_is_the_same_on_a_darker_skin():
    face = _lines(0.3, 0, features=False).astype(np.float32) / 255
    light, dark = relative_detail(face), relative_detail(face * 0.4)
    assert np.abs(light).max() > 0.05
    np.testing.assert_allclose(dark, light, atol=2e-3)


def test_the_map_leaves_out_eyes_brows_mouth_and_the_face_outline():
    pts = _shape()
    m = feature_mask(pts, S)
    at = lambda p: float(m[int(round(p[1])), int(round(p[0]))])
    for eye in (pts[36:42].mean(0), pts[42:48].mean(0)):
        assert at(eye) < 0.05
    assert at(pts[62]) < 0.05 and at(pts[51]) < 0.05  # inside the mouth, on the upper lip
    assert at(pts[0]) < 0.05 and at(pts[8]) < 0.05  # the jaw line
    assert at((pts[2] + pts[30]) / 2) > 0.5 and at((pts[14] + pts[30]) / 2) > 0.5  # the cheeks
    assert at(pts[29]) > 0.5  # the nose's ridge
    assert m[0].max() < 0.05  # faded out at the template's top edge (hairlines, hats)


def _candidates(faces, labels):
    """``exemplars``' arguments for faces already on the mean shape (frontal, at the template)."""
    landmarks = np.repeat(_shape()[None], len(faces), 0)
    return np.array(faces), landmarks, labels, _shape()


def test_exemplars_are_the_most_lined_women_of_each_skin_tone():
    amps = [0.10, 0.40, 0.30, 0.35, 0.05, 0.25, 0.20, 0.45, 0.15, 0.38, 0.12, 0.22, 0.28, 0.33, 0.18]
    genders = [1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]  # the most lined face is a man's: left out (beard stubble)
    races = [0, 0, 0, 1, 1, 1, 2, 0, 0, 0, 0, 0, 1, 1, 1]
    labels = [{"gender": g, "race": r} for g, r in zip(genders, races)]
    # per tone, its PER_TONE most lined women
    women = [i for i in range(len(amps)) if genders[i] == 1]
    expected = sorted(i for t in set(races) for i in sorted((i for i in women if races[i] == t), key=lambda i: -amps[i])[:PER_TONE])
    faces = [_lines(a, i) for i, a in enumerate(amps)]
    assert sorted(exemplars(*_candidates(faces, labels))) == expected
    assert len(expected) < len(women)  # some lined women were passed over
    # a face the landmarks missed (its mouth and lines elsewhere once "aligned"): left out, though
    # it is the most lined woman of its tone
    crossed = np.ascontiguousarray(_lines(0.5, 0).transpose(1, 0, 2))
    assert sorted(exemplars(*_candidates(faces + [crossed], labels + [{"gender": 1, "race": 2}]))) == expected
    grey = np.repeat(_lines(0.4, 9).mean(-1, keepdims=True), 3, -1).astype(np.uint8)
    args = _candidates([grey], [{"gender": 1, "race": 0}])  # a black-and-white photo: not used
    assert exemplars(*args) == []
    assert not wrinkle_map(*args).any()


def test_the_lines_follow_the_target_above_the_faces_own_age_and_keep_skin_tone():
    from training.prototype import PrototypeAger

    s, k = 32, 8
    lines = torch.zeros(s, s)
    lines[12:14, 8:24] = -0.2  # a line across the cheeks, 20 % darker at the oldest target
    protos = {"textures": torch.zeros(k, 3, s, s), "log_energy": torch.zeros(k, 3, s, s), "flows": torch.zeros(k, 2, s, s),
              "mean_shape": torch.from_numpy(_shape(s)).float(), "wrinkles": lines[None, None]}
    ones = torch.ones(s, s)

    def ager(source: int):
        m = PrototypeAger(protos, AgeNet(8), 32, DECADES, ones, ones, gains=(0, 0, 0), colour_sigma=0.0, detail_limit=1.0,
                          group_scale=(1.0,) * k, tone_gain=0.0, shape_scale=(1.0,) * k, hair_levels=(0.0,) * k,
                          brow_levels=(0.0,) * k, margin=0, wrinkle_levels=(0, 0, 0, 0.1, 0.3, 0.55, 0.8, 1.0))
        m.source = lambda image, landmarks: torch.eye(k)[[source] * len(image)]
        return m.eval()

    regions = torch.zeros(1, 5, s, s)
    regions[:, 1] = 1.0
    lm = torch.from_numpy(_shape(s)).float()[None]

    def ratio(source: int, target: int, face: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out, _ = ager(source)(face, torch.eye(k)[[target]], regions, lm, torch.ones(1))
        return ((out + 1) / (face + 1))[0, :, 12:14, 10:22]

    dark, light = torch.full((1, 3, s, s), -0.6), torch.full((1, 3, s, s), 0.4)
    assert torch.allclose(ratio(0, 7, dark), torch.tensor(0.8), atol=1e-4)
    assert torch.allclose(ratio(0, 7, light), torch.tensor(0.8), atol=1e-4)  # the same fraction on both
    assert torch.allclose(ratio(0, 5, light), torch.tensor(1 - 0.2 * 0.55), atol=1e-4)
    assert torch.allclose(ratio(5, 7, light), torch.tensor(1 - 0.2 * 0.45), atol=1e-4)  # only what lies above
    assert torch.allclose(ratio(7, 0, light), torch.tensor(1.0), atol=1e-5)  # made young: no lines added
    assert torch.allclose(ratio(7, 7, light), torch.tensor(1.0), atol=1e-5)


def test_with_its_mirror_each_exemplars_lines_reach_both_sides_of_the_face():
    pts = _shape()
    face = _lines(0.0, 0)
    lined = face.astype(np.float32)
    cheek = (pts[2] + pts[30]) / 2  # the image's left cheek only
    x0, y0 = int(cheek[0]) - 6, int(cheek[1]) - 6
    lined[y0 : y0 + 12 : 3, x0 : x0 + 12] *= 0.7  # short dark lines on that one cheek
    lined = lined.astype(np.uint8)
    args = _candidates([lined], [{"gender": 1, "race": 0}])
    one_sided = wrinkle_map(*args)
    both = wrinkle_map(*args, mirror=lambda f: np.ascontiguousarray(f[:, ::-1]))  # the template is symmetric
    other = (S - 1) - cheek[0]  # the same place on the other cheek
    at = lambda m, x: float(np.abs(m[int(cheek[1]) - 6 : int(cheek[1]) + 6, int(x) - 6 : int(x) + 6]).mean())
    assert at(one_sided, cheek[0]) > 0.02 and at(one_sided, other) < 0.1 * at(one_sided, cheek[0])
    assert at(both, cheek[0]) > 0.01 and at(both, other) > 0.5 * at(both, cheek[0])  # mirrored: on both cheeks


def test_a_face_on_the_mean_shape_mirrors_back_onto_it():
    from training.prototype import Mesh

    shape = _shape() + np.array([3.0, 0.0])  # a mean shape off the crop's centre line
    mesh = Mesh(shape, S)
    img = np.zeros((S, S, 3), np.uint8)
    left = shape[36:42].mean(0)
    cv2.circle(img, (int(round(left[0])), int(round(left[1]))), 2, (255, 255, 255), -1)  # a mark on the image's left eye
    out = mesh.mirrored(img)[..., 0].astype(np.float32)
    ys, xs = np.nonzero(out > 100)
    right = shape[42:48].mean(0)
    assert len(xs) and np.hypot(xs.mean() - right[0], ys.mean() - right[1]) < 1.5  # now on the right eye


def _forehead_point(pts: np.ndarray) -> tuple[int, int]:
    """Mid-forehead on the centre line, half an eye distance above the brows (x, y)."""
    d = float(np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0)))
    return int(round(pts[27, 0])), int(round(pts[17:27, 1].mean() - 0.5 * d))


def test_what_only_a_few_exemplars_have_is_not_in_the_map():
    # two of eight old faces wear a bindi: a plain mean painted it on every aged forehead
    pts = _shape()
    x, y = _forehead_point(pts)
    plain = [_lines(0.2 + 0.02 * i, i) for i in range(8)]
    for f in plain:
        f[y - 10 : y + 11] = f[y - 10 : y + 11].max(0)  # lines on the cheeks, a smooth forehead
    faces = [f.copy() for f in plain]
    for f in faces[:2]:
        cv2.circle(f, (x, y), 3, (90, 40, 40), -1)
    labels = [{"gender": 1}] * 8  # no skin-tone labels: the most lined of all are taken
    args = _candidates(faces, labels)
    assert len(exemplars(*args)) == 8
    dot = lambda a, b: float(np.abs(a - b)[y - 4 : y + 5, x - 4 : x + 5].max())  # what the dot adds
    alone = dot(wrinkle_map(*_candidates(faces[:1], labels[:1])), wrinkle_map(*_candidates(plain[:1], labels[:1])))
    assert alone > 0.1  # one bindi face alone: the dot is in its map
    assert dot(wrinkle_map(*args), wrinkle_map(*_candidates(plain, labels))) < 0.2 * alone


def test_forehead_lines_at_different_heights_are_lines_across_not_specks():
    # short dashes on the forehead at a different height on each face average into specks; the
    # map smooths the forehead along the horizontal and keeps its amplitude
    pts = _shape()
    x, y = _forehead_point(pts)
    rng = np.random.default_rng(0)
    specks = np.zeros((S, S), np.float32)
    for _ in range(12):
        cx, cy = x + rng.integers(-14, 15), y + rng.integers(-4, 5)
        specks[cy, cx - 2 : cx + 3] = -0.2
    lined = forehead_lines(specks, pts)
    row = lined[y - 5 : y + 6, x - 14 : x + 15]
    # across the forehead the map varies little along a row, and more from row to row
    along = np.abs(np.diff(row, axis=1)).mean()
    across = np.abs(np.diff(row, axis=0)).mean()
    assert along < 0.5 * across
    assert np.abs(row).mean() > 0.5 * np.abs(specks[y - 5 : y + 6, x - 14 : x + 15]).mean()  # amplitude kept
    below = int(pts[30, 1])  # the nose and cheeks are left as they are
    np.testing.assert_array_equal(lined[below:], specks[below:])
