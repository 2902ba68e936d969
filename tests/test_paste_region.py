"""Paste-back on the face's rectangle (issue 13, item 5): the region is byte-identical to what pasting
into a copy of the whole photo gave before, whatever rectangle an exporter or view asks for."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core import align


def reference_paste_back(photo, m, aligned_input, aligned_result, mask):
    """The paste-back as it was before regions (issue 13): a copy of the whole photo, the change added in place."""
    size = aligned_input.shape[0]
    out = photo.copy()
    x0, y0, x1, y1 = align.source_rect(m, size, photo.shape[:2])
    if x1 <= x0 or y1 <= y0:
        return out
    delta = cv2.subtract(aligned_result, aligned_input, dtype=cv2.CV_32F)
    delta *= np.asarray(mask, dtype=np.float32)[..., None]
    back = align.invert(m)
    back[:, 2] -= (x0, y0)
    change = cv2.warpAffine(delta, back, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    region = out[y0:y1, x0:x1]
    total = cv2.add(region, change, dtype=cv2.CV_32F)
    region[...] = cv2.convertScaleAbs(cv2.max(total, 0.0))
    return out


@pytest.fixture(scope="module")
def setup(astronaut):
    rng = np.random.default_rng(13)
    big = cv2.resize(astronaut, (1536, 1280), interpolation=cv2.INTER_CUBIC)
    angle, scale = 0.3, 128 / 420
    m = np.array([[scale * np.cos(angle), -scale * np.sin(angle), 0.0],
                  [scale * np.sin(angle), scale * np.cos(angle), 0.0]])
    m[:, 2] = 64 - m[:, :2] @ np.array([700.0, 400.0])
    crop = align.warp_face(big, m, 128)
    # large changes of both signs: saturation at 0 and 255, and many values near the .5 rounding edge
    result = np.clip(crop.astype(int) + rng.integers(-90, 90, crop.shape), 0, 255).astype(np.uint8)
    mask = rng.random((128, 128)).astype(np.float32)
    return big, m, crop, result, mask


def test_region_is_byte_identical_to_the_whole_photo_paste(setup):
    big, m, crop, result, mask = setup
    before = big.copy()
    reference = reference_paste_back(big, m, crop, result, mask)
    region, (x0, y0, x1, y1) = align.paste_back_region(big, m, crop, result, mask)
    assert (x0, y0, x1, y1) == align.source_rect(m, 128, big.shape[:2])
    assert region.shape == (y1 - y0, x1 - x0, 3) and region.dtype == np.uint8
    assert np.array_equal(region, reference[y0:y1, x0:x1])
    assert (region != big[y0:y1, x0:x1]).any(2).mean() > 0.3  # the change is really there
    assert np.array_equal(align.paste_back(big, m, crop, result, mask), reference)
    assert np.array_equal(big, before)  # the shared base is only read


@pytest.mark.parametrize("rect", [(0, 0, 1536, 1280), (600, 300, 900, 2000), (-50, -50, 620, 350),
                                  (1400, 1200, 1536, 1280)])
def test_any_rectangle_matches_the_crop_of_the_whole_photo(setup, rect):
    big, m, crop, result, mask = setup
    reference = reference_paste_back(big, m, crop, result, mask)
    region, (x0, y0, x1, y1) = align.paste_back_region(big, m, crop, result, mask, rect=rect)
    assert (x0, y0) == (max(rect[0], 0), max(rect[1], 0)) and (x1, y1) == (min(rect[2], 1536), min(rect[3], 1280))
    assert np.array_equal(region, reference[y0:y1, x0:x1])


def test_a_face_outside_the_photo_changes_nothing(setup):
    big, m, crop, result, mask = setup
    far = m.copy()
    far[:, 2] += 5000  # the aligned square maps to photo pixels far left of / above the photo
    region, (x0, y0, x1, y1) = align.paste_back_region(big, far, crop, result, mask, rect=(0, 0, 100, 100))
    assert np.array_equal(region, big[:100, :100])


def test_a_small_face_takes_the_change_without_aliasing():
    """A group photo's face, four times smaller than the crop: the model's fine lines (1-px stripes
    here, +-40) averaged into the photo's pixels, not sampled as streaks or a shift of the whole
    face; a broad change (+30) kept, and nothing outside the mask's footprint."""
    photo = np.full((512, 512, 3), 128, np.uint8)
    size, scale = 224, 4.0
    for phase in (0.0, 0.25, 0.5):
        m = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
        m[:, 2] = size / 2 - scale * np.array([256.0, 256.0 + phase])  # the crop's centre near photo pixel (256, 256)
        crop = align.warp_face(photo, m, size)
        mask = np.zeros((size, size), np.float32)
        mask[40:184, 40:184] = 1
        stripes = np.where(np.arange(size) % 2 == 0, 40, -40)[:, None, None]
        for change, expect in ((stripes, 0.0), (30, 30.0)):
            result = (crop.astype(int) + change).astype(np.uint8)
            region, (x0, y0, x1, y1) = align.paste_back_region(photo, m, crop, result, mask)
            moved = region.astype(np.float32) - photo[y0:y1, x0:x1]
            inner = moved[256 - 14 - y0:256 + 14 - y0, 256 - 14 - x0:256 + 14 - x0]  # well inside the mask (+-18 px)
            assert abs(float(inner.mean()) - expect) < 1.5 and float(np.abs(inner - expect).max()) <= 3
            assert np.abs(moved[:256 - 21 - y0]).max() == 0 and np.abs(moved[256 + 21 - y0:]).max() == 0
