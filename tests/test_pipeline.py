"""The aging pipeline on a real portrait with the contract models."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.align import estimate_alignment, invert, transform_points, warp_face
from core.faces import FaceFinder
from core.models import AgeModel, AgingModel
from core.pipeline import STRENGTH_NAMES, AgingPipeline, crop_mask, estimate_age, target_weights
from core.regions import REGION_NAMES, region_masks


@pytest.fixture(scope="module")
def face(astronaut):
    faces = FaceFinder().detect(astronaut)
    assert faces, "dlib found no face in the astronaut portrait"
    return faces[0]


@pytest.fixture(scope="module")
def pipeline(contract_models_dir):
    return AgingPipeline(AgingModel.load(contract_models_dir, providers="cpu"),
                         AgeModel.load(contract_models_dir, providers="cpu"))


def _photo_mask(prepared, shape_hw):
    """The paste mask warped back onto the photo."""
    h, w = shape_hw
    return cv2.warpAffine(prepared.mask, invert(prepared.matrix), (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def test_one_batched_call_returns_every_group(pipeline, astronaut, face, monkeypatch):
    calls = []
    session = pipeline.aging.session
    real_run = session.run
    monkeypatch.setattr(session, "run", lambda feeds: calls.append(feeds["image"].shape) or real_run(feeds))
    prepared = pipeline.prepare(astronaut, face)
    results = pipeline.age_all_groups(prepared)
    assert calls == [(8, 3, 64, 64)]  # one inference, batch = K
    assert len(results) == 8 and results.labels == pipeline.aging.group_labels
    assert results.aged.shape == (8, 64, 64, 3) and results.aged.dtype == np.uint8
    assert results.attention.shape == (8, 64, 64)
    # each group's output is that group's: the same as asking the model for it alone
    alone, _ = pipeline.infer(prepared, np.eye(8, dtype=np.float32)[[6]])
    np.testing.assert_array_equal(results.aged[6], alone[0])
    face_means = results.aged[:, 24:44, 20:44].astype(float).mean(axis=(1, 2, 3))
    assert face_means[-1] - face_means[0] > 60  # visibly different groups


def test_prepare_aligns_to_the_template(pipeline, astronaut, face):
    prepared = pipeline.prepare(astronaut, face)
    s = pipeline.aging.image_size
    assert prepared.aligned.shape == (s, s, 3) and prepared.regions.shape == (5, s, s)
    from core.align import transform_points
    err = np.abs(transform_points(face.landmarks, prepared.matrix) - pipeline.aging.template.at_size(s))
    assert np.median(err) < 0.05 * s
    # region masks are in aligned coordinates: the eyes mask covers the template's eyes
    eyes = REGION_NAMES.index("eyes")
    for x, y in pipeline.aging.template.at_size(s)[36:48].astype(int):
        assert prepared.regions[eyes, y, x] > 0.5


def test_strengths_scale_regions_and_validate(pipeline, astronaut, face):
    full = pipeline.prepare(astronaut, face)
    half = pipeline.prepare(astronaut, face, {"eyes": 0.5, "mouth": 1.5})
    e, m, n = (REGION_NAMES.index(r) for r in ("eyes", "mouth", "nose"))
    np.testing.assert_allclose(half.regions[e], full.regions[e] * 0.5, atol=1e-6)
    np.testing.assert_allclose(half.regions[m], full.regions[m] * 1.5, atol=1e-6)
    np.testing.assert_array_equal(half.regions[n], full.regions[n])
    assert half.strengths["eyes"] == 0.5 and half.strengths["forehead"] == 1.0
    np.testing.assert_array_equal(half.mask, full.mask)  # moderate strengths act through the model only
    faint = pipeline.prepare(astronaut, face, {"eyes": 0.1})
    inside = full.regions[e] > 0.99
    assert (faint.mask[inside] < 0.5 * full.mask[inside] + 1e-6).all()  # near 0 the paste fades out too
    assert np.array_equal(faint.mask[full.regions[e] == 0], full.mask[full.regions[e] == 0])
    with pytest.raises(ValueError, match="unknown strength"):
        pipeline.prepare(astronaut, face, {"ears": 1.0})
    with pytest.raises(ValueError, match="within"):
        pipeline.prepare(astronaut, face, {"eyes": 1.6})


def test_zero_strengths_leave_the_photo_byte_identical(pipeline, astronaut, face):
    prepared = pipeline.prepare(astronaut, face, {name: 0.0 for name in STRENGTH_NAMES})
    results = pipeline.age_all_groups(prepared)
    for g in (0, 7):
        assert np.array_equal(pipeline.render(astronaut, prepared, results.aged[g]), astronaut)
    assert np.array_equal(pipeline.render_position(astronaut, prepared, results, 3.5), astronaut)


def test_zero_strength_region_is_untouched_while_the_rest_ages(pipeline, astronaut, face):
    eyes = REGION_NAMES.index("eyes")
    core_of_eyes = region_masks(face.landmarks, astronaut.shape[:2], face.forehead_height)[eyes] > 0.98
    core_of_eyes = cv2.erode(core_of_eyes.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert core_of_eyes.sum() > 100
    aged_all = pipeline.age_face(astronaut, face, None, groups=[7])["70+"]
    aged_no_eyes = pipeline.age_face(astronaut, face, {"eyes": 0.0}, groups=[7])["70+"]
    assert (aged_all[core_of_eyes] != astronaut[core_of_eyes]).mean() > 0.5  # with strength 1 the eyes change
    np.testing.assert_array_equal(aged_no_eyes[core_of_eyes], astronaut[core_of_eyes])
    assert (aged_no_eyes != astronaut).any(axis=2).sum() > 1000  # the other regions still age


def test_hair_strength_and_landmarks_reach_the_model(pipeline, astronaut, face):
    prepared = pipeline.prepare(astronaut, face, {"hair": 0.0})
    s = prepared.size
    expected = transform_points(face.landmarks, prepared.matrix)
    np.testing.assert_allclose(prepared.landmarks, expected, atol=1e-4)
    assert prepared.hair == 0.0 and pipeline.prepare(astronaut, face).hair == 1.0
    no_hair = pipeline.age_all_groups(prepared).aged[0].astype(int)
    hair = pipeline.age_all_groups(pipeline.prepare(astronaut, face, {"hair": 1.5})).aged[0].astype(int)
    brow_y = prepared.landmarks[17:27, 1].mean()
    high = int(brow_y - 0.3 * s)  # well above the brows: the contract model's hair band
    assert high > 2 and (hair[:high] > no_hair[:high]).mean() > 0.9
    low = int(brow_y + 0.3 * s)
    np.testing.assert_array_equal(hair[low:], no_hair[low:])  # below the brows the hair has no say


def test_pixels_outside_the_paste_mask_are_identical(pipeline, astronaut, face):
    prepared = pipeline.prepare(astronaut, face)
    out = pipeline.render(astronaut, prepared, pipeline.age_all_groups(prepared).aged[7])
    photo_mask = _photo_mask(prepared, astronaut.shape[:2])
    outside = cv2.dilate((photo_mask > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    assert outside.mean() > 0.5
    np.testing.assert_array_equal(out[outside], astronaut[outside])
    changed = (out != astronaut).any(axis=2)
    assert changed.sum() > 2000 and not changed[outside].any()
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, astronaut)


def test_crop_mask_is_zero_on_the_border():
    m = crop_mask(64)
    assert m[32, 32] == 1.0 and m[0].max() == 0 and m[:, -1].max() == 0 and m[-1].max() == 0
    assert 0 < m[32, 2] < m[32, 6] <= 1.0  # feathered, not a hard edge
    assert not m.flags.writeable


@pytest.mark.parametrize("position, expected", [
    (0, {0: 1.0}), (7, {7: 1.0}), (3.5, {3: 0.5, 4: 0.5}), (2.25, {2: 0.75, 3: 0.25}),
    (6.9, {6: 0.1, 7: 0.9}), (-1.0, {0: 1.0}), (12.0, {7: 1.0}),
])
def test_target_weights(position, expected):
    w = target_weights(position, 8)
    assert w.shape == (8,) and w.dtype == np.float32
    assert w.sum() == pytest.approx(1.0)
    want = np.zeros(8)
    for k, v in expected.items():
        want[k] = v
    np.testing.assert_allclose(w, want, atol=1e-6)


def test_render_position(pipeline, astronaut, face):
    prepared = pipeline.prepare(astronaut, face)
    results = pipeline.age_all_groups(prepared)
    for g in (0, 4, 7):
        assert np.array_equal(pipeline.render_position(astronaut, prepared, results, float(g)),
                              pipeline.render(astronaut, prepared, results.aged[g]))
    mid = pipeline.blend(results, 5.5)
    lo, hi = results.aged[5].astype(int), results.aged[6].astype(int)
    assert (np.abs(mid.astype(int) * 2 - lo - hi) <= 1).all()
    assert not np.array_equal(mid, results.aged[5]) and not np.array_equal(mid, results.aged[6])
    quarter = pipeline.blend(results, 5.25).astype(int)
    assert (np.abs(quarter * 4 - 3 * lo - hi) <= 2).all()


def test_age_face_subset_matches_the_full_batch(pipeline, astronaut, face):
    images = pipeline.age_face(astronaut, face, {"mouth": 0.5}, groups=["60-69", 0])
    assert list(images) == ["60\u201369", "0\u20139"]
    prepared = pipeline.prepare(astronaut, face, {"mouth": 0.5})
    results = pipeline.age_all_groups(prepared)
    assert np.array_equal(images["60\u201369"], pipeline.render(astronaut, prepared, results.aged[6]))
    assert np.array_equal(images["0\u20139"], pipeline.render(astronaut, prepared, results.aged[0]))
    everything = pipeline.age_face(astronaut, face)
    assert list(everything) == pipeline.labels and all(im.shape == astronaut.shape for im in everything.values())


def test_estimate_age_uses_the_age_models_own_alignment(pipeline, astronaut, face):
    age_model = pipeline.age
    got = pipeline.estimate_age(astronaut, face)
    s = age_model.image_size
    own = warp_face(astronaut, estimate_alignment(face.landmarks, age_model.template, s), s)
    assert got == pytest.approx(float(age_model.estimate(own[None])[0][0]), abs=1e-4)
    # aligned with the aging model's template (resized to the age model's size) it would read differently
    wrong = warp_face(astronaut, estimate_alignment(face.landmarks, pipeline.aging.template, s), s)
    assert abs(float(age_model.estimate(wrong[None])[0][0]) - got) > 0.5
    assert 0 < got < 100
    assert estimate_age(age_model, astronaut, face) == got
    assert AgingPipeline(pipeline.aging).estimate_age(astronaut, face) is None
