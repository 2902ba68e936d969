"""The frame renderer of the timeline (app preview, animation exports): at full scale exactly the
engine's full-resolution render inside the face's rectangle, at display scale small and close to it."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def prepared(astronaut, contract_models_dir):
    from core.faces import FaceFinder
    from core.models import AgingModel
    from core.pipeline import AgingPipeline

    pipe = AgingPipeline(AgingModel.load(contract_models_dir, providers="cpu"))
    face = FaceFinder().detect(astronaut)[0]
    prep = pipe.prepare(astronaut, face)
    return pipe, prep, pipe.age_all_groups(prep)


def test_preview_at_full_scale_equals_the_engine_render(astronaut, prepared):
    from core.render import FrameRenderer

    pipe, prep, results = prepared
    r = FrameRenderer(astronaut, prep, results)
    x0, y0, x1, y1 = r.rect
    for pos in (0.0, 3.5, 7.0):
        frame, rect = r.render(pos, 1.0)
        full = pipe.render_position(astronaut, prep, results, pos)
        np.testing.assert_array_equal(frame, full[y0:y1, x0:x1])
        outside = full.copy()
        outside[y0:y1, x0:x1] = astronaut[y0:y1, x0:x1]
        np.testing.assert_array_equal(outside, astronaut)  # nothing outside the rectangle changes


def test_preview_at_display_scale_is_small_and_close_to_the_downscaled_render(astronaut, prepared):
    import cv2

    from core.render import FrameRenderer

    pipe, prep, results = prepared
    r = FrameRenderer(astronaut, prep, results)
    x0, y0, x1, y1 = r.rect
    frame, _ = r.render(6.0, 0.25)
    assert abs(frame.shape[1] - (x1 - x0) * 0.25) <= 1 and abs(frame.shape[0] - (y1 - y0) * 0.25) <= 1
    full = pipe.render_position(astronaut, prep, results, 6.0)[y0:y1, x0:x1]
    small = cv2.resize(full, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - frame.astype(int)).mean() < 3.0
    assert not np.array_equal(frame, r.original(0.25))  # the face did change
