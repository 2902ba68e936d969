"""Detection, landmarks, regions and alignment on a real portrait (scikit-image's astronaut)."""

from __future__ import annotations

import numpy as np
import pytest

from core import align, regions
from core.errors import FaceError
from core.faces import Face, FaceFinder


@pytest.fixture(scope="module")
def face(astronaut) -> Face:
    faces = FaceFinder("fast").detect(astronaut)
    assert len(faces) == 1, [f.box for f in faces]  # the spacesuit patch (score ~0.12) is below the threshold
    return faces[0]


def test_detects_the_astronaut_with_plausible_landmarks(face):
    l, t, r, b = face.box
    assert 150 < l < 200 and 60 < t < 100 and 240 < r < 290 and 140 < b < 190
    lm = face.landmarks
    assert lm.shape == (68, 2)
    # anatomy: eyes above the nose tip, above the mouth, above the chin; left eye left of right eye
    assert lm[36:42, 1].mean() < lm[30, 1] < lm[48:60, 1].mean() < lm[8, 1]
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()


def test_detection_is_found_on_a_large_photo_and_mapped_back(astronaut):
    import cv2

    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    faces = FaceFinder("fast", max_side=1024).detect(big)
    assert faces and abs(faces[0].box[0] / 4 - 175) < 20  # boxes are in the big photo's pixels


def test_manual_box_gives_landmarks_and_rejects_tiny_boxes(astronaut, face):
    finder = FaceFinder()
    manual = finder.face_from_box(astronaut, face.box[[2, 3, 0, 1]])  # corners given in any order
    assert manual.source == "manual"
    assert np.abs(manual.landmarks - face.landmarks).mean() < 3
    with pytest.raises(FaceError):
        finder.face_from_box(astronaut, [10, 10, 12, 12])


def test_face_round_trips_through_a_dict(face):
    again = Face.from_dict(face.to_dict())
    assert np.allclose(again.landmarks, face.landmarks, atol=0.01)
    assert again.forehead_height == face.forehead_height and again.source == face.source


def test_region_masks_cover_their_features(face, astronaut):
    m = regions.region_masks(face.landmarks, astronaut.shape[:2])
    assert m.shape == (5, 512, 512) and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
    names = regions.REGION_NAMES
    lm = face.landmarks

    def at(name, point):
        x, y = np.round(point).astype(int)
        return m[names.index(name), y, x]

    assert at("eyes", lm[36:42].mean(0)) > 0.5
    assert at("nose", lm[30]) > 0.5
    assert at("mouth", lm[62]) > 0.5
    assert at("cheeks", (lm[3] + lm[31]) / 2) > 0.5
    assert at("forehead", lm[19] - (0, 0.2 * (lm[8, 1] - lm[19, 1]))) > 0.5
    assert at("nose", lm[8]) < 0.05 and at("mouth", lm[19]) < 0.05


def test_forehead_edge_moves_with_forehead_height(face):
    low = regions.forehead_top(face.landmarks, 0.2)[:, 1].mean()
    high = regions.forehead_top(face.landmarks, 0.6)[:, 1].mean()
    assert high < low - 20  # a larger height lifts the top edge (smaller y)


def test_flip_permutation_mirrors_landmarks(face):
    w = 512
    mirrored = face.landmarks.copy()
    mirrored[:, 0] = w - 1 - mirrored[:, 0]
    flipped = mirrored[regions.FLIP]
    assert sorted(regions.FLIP.tolist()) == list(range(68))
    assert (regions.FLIP[regions.FLIP] == np.arange(68)).all()
    # after mirroring and permuting, the image-left eye is again left of the image-right eye
    assert flipped[36:42, 0].mean() < flipped[42:48, 0].mean()
    assert flipped[48, 0] < flipped[54, 0]


def test_align_then_invert_round_trips_within_a_pixel(face, astronaut):
    tpl = align.make_template([face.landmarks])
    m = align.estimate_alignment(face.landmarks, tpl, 128)
    back = align.transform_points(align.transform_points(face.landmarks, m), align.invert(m))
    assert np.abs(back - face.landmarks).max() < 1.0
    aligned_lm = align.transform_points(face.landmarks, m)
    assert np.abs(aligned_lm[align.ALIGN_POINTS] - tpl.at_size(128)[align.ALIGN_POINTS]).mean() < 2.0
    crop = align.warp_face(astronaut, m, 128)
    assert crop.shape == (128, 128, 3) and crop.std() > 20


def test_template_json_round_trip_and_validation(face):
    tpl = align.make_template([face.landmarks])
    assert np.allclose(align.Template.from_json(tpl.to_json()).points, tpl.points, atol=1e-4)
    assert (tpl.points >= 0).all() and (tpl.points <= 1).all()
    with pytest.raises(ValueError):
        align.Template.from_json("[[0, 1]]")


def test_paste_back_changes_only_under_the_mask(face, astronaut):
    tpl = align.make_template([face.landmarks])
    m = align.estimate_alignment(face.landmarks, tpl, 128)
    crop = align.warp_face(astronaut, m, 128)
    result = np.clip(crop.astype(int) + 60, 0, 255).astype(np.uint8)
    mask = np.zeros((128, 128), np.float32)
    mask[40:90, 40:90] = 1
    out = align.paste_back(astronaut, m, crop, result, mask)
    changed = (out != astronaut).any(2)
    assert changed.sum() > 500
    # the changed pixels lie inside the mask's footprint in the photo
    ys, xs = np.nonzero(changed)
    footprint = align.transform_points(np.array([[40, 40], [90, 90]], np.float32), align.invert(m))
    assert xs.min() >= footprint[:, 0].min() - 3 and xs.max() <= footprint[:, 0].max() + 3
    # an all-zero mask, or no change, leaves the photo byte-identical
    assert (align.paste_back(astronaut, m, crop, result, np.zeros_like(mask)) == astronaut).all()
    assert (align.paste_back(astronaut, m, crop, crop, np.ones_like(mask)) == astronaut).all()


def test_warp_of_a_large_face_is_antialiased(face, astronaut):
    import cv2

    big = cv2.resize(astronaut, (4096, 4096), interpolation=cv2.INTER_NEAREST)
    lm = face.landmarks * 8
    tpl = align.make_template([face.landmarks])
    small = align.warp_face(astronaut, align.estimate_alignment(face.landmarks, tpl, 128), 128)
    large = align.warp_face(big, align.estimate_alignment(lm, tpl, 128), 128)
    assert np.abs(small.astype(int) - large.astype(int)).mean() < 6
