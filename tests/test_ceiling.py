"""training/ceiling.py: real faces' interiors swapped between heads, judged."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from core.regions import face_mask  # noqa: E402
from training import ceiling  # noqa: E402
from training.preprocess import FaceCache  # noqa: E402


def _two_faces(tiny_cache):
    cache = FaceCache(tiny_cache)
    a, b = cache.indices("train")[:2]
    return cache, np.asarray(cache.images[a]), cache.landmarks[a], np.asarray(cache.images[b]), cache.landmarks[b]


def test_a_face_pasted_onto_itself_is_unchanged(tiny_cache):
    _, x, xp, _, _ = _two_faces(tiny_cache)
    out = ceiling.transplant(x, xp, x, xp)
    assert np.abs(out.astype(int) - x.astype(int)).max() <= 1


def test_only_the_interior_moves_and_takes_the_sources_colour(tiny_cache):
    _, x, xp, _, _ = _two_faces(tiny_cache)
    size = x.shape[0]
    # a donor unlike the source: its mirror image, darker and bluer, with its landmarks mirrored
    from training.prototype import FLIP

    donor = np.clip(x[:, ::-1].astype(np.float32) * [0.6, 0.7, 1.0], 0, 255).astype(np.uint8)
    dp = xp[FLIP].copy()
    dp[:, 0] = size - 1 - dp[:, 0]
    out = ceiling.transplant(x, xp, np.ascontiguousarray(donor), dp).astype(np.float32)
    inside = face_mask(xp, (size, size)) > 0.99
    outside = face_mask(xp, (size, size)) == 0
    far = outside.copy()
    far[size // 8 : -size // 8, size // 8 : -size // 8] = False  # the crop's border, away from the feather
    assert np.abs(out[far] - x[far]).max() <= 1  # the head, hair and background stay the source's
    assert np.abs(out[inside] - x[inside]).mean() > 2  # the interior is the donor's
    # matched to the source's colour: the donor's blue cast is gone
    ratio = out[inside].mean(0) / x[inside].astype(np.float32).mean(0)
    assert np.allclose(ratio, 1, atol=0.05)
    raw = ceiling.transplant(x, xp, np.ascontiguousarray(donor), dp, match_colour=False).astype(np.float32)
    assert raw[inside][:, 0].mean() < 0.8 * x[inside][:, 0].mean()  # (without matching it would be there)


def test_the_run_judges_every_set_and_says_which_donors_are_missing(tiny_cache):
    from core.models import AgeModel, AgingModel
    from training.judges import judge_path

    cache = FaceCache(tiny_cache)
    judge = AgeModel.load(judge_path(), verify=False)
    aging = AgingModel.load()  # the bundled model, on the same source at 70+
    # the tiny test split: faces of 47, 58, 67 and 80: one source, one 70+ donor, no child
    result = ceiling.run(cache, judge, split="test", faces=5, aging=aging)
    assert result["sources"] == 1 and result["0-9"] is None
    row = result["70+"]
    assert set(row) == {"donors", "donor_interior_on_source", "donor_interior_and_model_hair", "source_interior_on_donor", "model"}
    assert all(0 <= v <= 100 for v in row.values())
    # the hair column's premise: with its regions off the model leaves the forehead, eyes, nose and
    # cheeks (the interior above the jaw, where no beard is) nearly as they are
    test = cache.indices("test")
    src = test[(cache.ages[test] >= 20) & (cache.ages[test] <= 49)]
    x = np.asarray(cache.images[src]).astype(np.float32)
    upper = (np.asarray(cache.masks[src])[:, [0, 1, 2, 4]].max(1) > 128)[..., None].repeat(3, -1)
    full = np.stack(ceiling._aged(aging, cache, src, 70)).astype(np.float32)
    hair = np.stack(ceiling._aged(aging, cache, src, 70, regions=False)).astype(np.float32)
    assert np.abs(hair - x)[upper].mean() < 0.3 * np.abs(full - x)[upper].mean()
    table = ceiling.format_table(result)
    assert "(none in the split)" in table and f"| 70+ | {row['donors']} |" in table
    cache.ages = np.where(cache.splits == "test", 80, cache.ages)  # no face of 20-49 left
    with pytest.raises(ValueError, match="no face aged"):
        ceiling.run(cache, judge, split="test")


def test_a_detail_band_moves_the_donors_lines_and_keeps_the_sources_light(tiny_cache):
    """The donor's fine lines come over, the source's broad shading and colour stay; the shape
    part moves the features, not the skin."""
    _, x, xp, _, _ = _two_faces(tiny_cache)
    size = x.shape[0]
    same = ceiling.band_transplant(x, xp, x, xp, ceiling.BANDS["fine (< 2 px)"])
    assert np.abs(same.astype(int) - x.astype(int)).max() <= 1  # its own band: unchanged
    lined = x.astype(np.float32).copy()
    row = int(xp[27:31, 1].mean())  # across the nose and cheeks
    lined[row : row + 2, :] *= 0.6
    lined = lined.clip(0, 255).astype(np.uint8)
    fine = ceiling.band_transplant(x, xp, lined, xp, ceiling.BANDS["fine (< 2 px)"]).astype(np.float32)
    broad = ceiling.band_transplant(x, xp, lined, xp, ceiling.BANDS["broad (> 6 px)"]).astype(np.float32)
    mid = slice(size // 3, 2 * size // 3)
    src = x.astype(np.float32)
    assert (fine[row : row + 2, mid] - src[row : row + 2, mid]).mean() < -10  # the line is there
    assert abs((fine[row + 8 : row + 12, mid] - src[row + 8 : row + 12, mid]).mean()) < 2  # and only there
    at_line = lambda img: float((img[row : row + 2, mid] - src[row : row + 2, mid]).mean())
    assert abs(at_line(broad)) < 0.5 * abs(at_line(fine))  # the broad band takes only the line's blur
    moved = ceiling.shape_transplant(x, xp, xp * 1.0)
    assert np.abs(moved.astype(int) - x.astype(int)).mean() < 2  # its own proportions: unchanged
    wider = xp.copy()
    wider[:17, 0] = xp[:17, 0].mean() + 1.15 * (xp[:17, 0] - xp[:17, 0].mean())  # a wider jaw
    assert np.abs(ceiling.shape_transplant(x, xp, wider).astype(int) - x.astype(int)).mean() > 1


def test_the_parts_are_judged_and_verified(tiny_cache):
    from core.models import AgeModel
    from training.evaluate import identity_model
    from training.judges import judge_path

    cache = FaceCache(tiny_cache)
    judge = AgeModel.load(judge_path(), verify=False)
    result = ceiling.parts(cache, judge, identity_model(), split="test", faces=5)
    assert result["sources"] == 1
    names = {*ceiling.BANDS, "shape", "whole interior"}
    assert names <= set(result)
    for name in names:
        assert 0 <= result[name]["judged"] <= 100 and 0 <= result[name]["verified"] <= 1
    assert "| whole interior |" in ceiling.format_parts(result)
