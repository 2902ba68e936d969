"""Qt-free parts of the GUI: the age <-> timeline mapping, strengths as stored, the forehead handle, the
preview renderer (must match the engine's full render), numpy <-> QImage, the photo pyramid."""

from __future__ import annotations

import numpy as np
import pytest

from app.state import (
    age_to_position, describe_strengths, effective_strengths, file_label, forehead_handle_point, forehead_height_at,
    position_label, position_to_age, settings_from_stored, stored_from_settings,
)
from test_app_support import app_env  # noqa: F401

DECADES = [(0, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, None)]
LABELS = ["0\u20139", "10\u201319", "20\u201329", "30\u201339", "40\u201349", "50\u201359", "60\u201369", "70+"]


def test_age_and_timeline_position_map_both_ways():
    assert age_to_position(5, DECADES) == 0.0  # a group's centre is its position
    assert age_to_position(45, DECADES) == 4.0
    assert age_to_position(50, DECADES) == pytest.approx(4.5)
    assert age_to_position(2, DECADES) == 0.0 and age_to_position(99, DECADES) == 7.0  # clamped
    for age in (7.5, 23.0, 38.2, 61.0, 74.0):
        assert position_to_age(age_to_position(age, DECADES), DECADES) == pytest.approx(age)
    assert position_label(6.0, LABELS, DECADES) == "60\u201369"
    assert position_label(4.5, LABELS, DECADES) == "about 50"
    assert file_label("60\u201369") == "60-69" and file_label("about 50") == "about-50"


def test_strengths_round_trip_through_the_catalog_format():
    ui = settings_from_stored({"eyes": 1.3, "mouth": 0.0, "off:mouth": 0.7})
    assert ui["eyes"].value == 1.3 and ui["eyes"].enabled
    assert ui["mouth"].value == 0.7 and not ui["mouth"].enabled  # off, remembering its slider
    assert ui["nose"].value == 1.0 and ui["nose"].enabled  # default
    stored = stored_from_settings(ui)
    assert stored["mouth"] == 0.0 and stored["off:mouth"] == 0.7 and stored["eyes"] == 1.3
    engine = effective_strengths(stored)
    assert set(engine) == {"forehead", "eyes", "nose", "mouth", "cheeks", "hair"}  # no "off:" keys reach the engine
    assert engine["mouth"] == 0.0 and engine["eyes"] == 1.3 and engine["hair"] == 1.0


def test_the_hair_strength_is_stored_switched_off_and_reaches_the_engine():
    ui = settings_from_stored({"hair": 0.0, "off:hair": 0.4})
    assert ui["hair"].value == 0.4 and not ui["hair"].enabled
    stored = stored_from_settings(ui)
    assert stored["hair"] == 0.0 and stored["off:hair"] == 0.4
    assert effective_strengths(stored)["hair"] == 0.0
    assert effective_strengths({"hair": 1.2})["hair"] == 1.2 and effective_strengths({"hair": 9})["hair"] == 1.5
    assert describe_strengths({}, stored) == "Hair off"
    assert describe_strengths(stored, {"eyes": 1.3}) == "Change 2 strengths"  # eyes up, hair back on
    assert describe_strengths({}, {"eyes": 1.3}) == "Eyes strength 130 %"


def test_forehead_handle_sits_on_the_top_edge_and_inverts(astronaut):
    from core.faces import FaceFinder
    from core.regions import forehead_top

    face = FaceFinder().detect(astronaut)[0]
    for h in (0.2, 0.38, 0.7):
        p = forehead_handle_point(face.landmarks, h)
        np.testing.assert_allclose(p, forehead_top(face.landmarks, h).mean(0), atol=1e-3)
        assert forehead_height_at(face.landmarks, p) == pytest.approx(h, abs=1e-6)
    assert forehead_height_at(face.landmarks, (0, -1e6)) == 1.2  # clamped


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
    from app.preview import PreviewRenderer

    pipe, prep, results = prepared
    r = PreviewRenderer(astronaut, prep, results)
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

    from app.preview import PreviewRenderer

    pipe, prep, results = prepared
    r = PreviewRenderer(astronaut, prep, results)
    x0, y0, x1, y1 = r.rect
    frame, _ = r.render(6.0, 0.25)
    assert abs(frame.shape[1] - (x1 - x0) * 0.25) <= 1 and abs(frame.shape[0] - (y1 - y0) * 0.25) <= 1
    full = pipe.render_position(astronaut, prep, results, 6.0)[y0:y1, x0:x1]
    small = cv2.resize(full, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - frame.astype(int)).mean() < 3.0
    assert not np.array_equal(frame, r.original(0.25))  # the face did change


def test_qimage_conversion_owns_its_pixels_and_round_trips(astronaut):
    from app.imaging import build_pyramid, from_qimage, to_qimage

    arr = astronaut[10:200, 20:333].copy()  # odd width: row padding must be handled
    img = to_qimage(arr)
    arr[:] = 0  # the QImage does not share the buffer
    np.testing.assert_array_equal(from_qimage(img), astronaut[10:200, 20:333])
    big = np.ascontiguousarray(np.tile(astronaut, (5, 5, 1)))  # 2560 px
    pyr = build_pyramid(big)
    assert [lv.width() for lv in pyr.levels] == [2560, 1280, 640]
    np.testing.assert_array_equal(from_qimage(pyr.levels[0]), big)  # draws from its own buffer, kept alive
    img, s = pyr.level_for(0.3)
    assert img.width() == 1280 and s == 0.5  # smallest level with >= 1 pixel per screen pixel
    assert pyr.level_for(1.5)[0].width() == 2560
