"""Qt-free parts of the GUI: strengths as stored, the forehead handle, numpy <-> QImage, the photo
pyramid. (The timeline mapping is tested in test_timeline.py, the frame renderer in test_render.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from app.state import (
    describe_strengths, forehead_handle_point, forehead_height_at, settings_from_stored, stored_from_settings,
)
from core.pipeline import effective_strengths

pytestmark = pytest.mark.usefixtures("app_env")  # every test here: its own settings, data and cache

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
