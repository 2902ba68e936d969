"""The age timeline: the strip widget, one batched inference per face on a worker, the estimated-age
marker, dragging (continuous, in place, >= 30 frames per second on a 12 MP photo), before/after, region
strengths, stale results dropped."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QApplication

from app.timeline import TimelineWidget
from testkit.gui import drag, open_album, wait_face, wait_groups, WAIT_MS, wait_writes, write_jpeg

pytestmark = pytest.mark.usefixtures("app_env")  # every test here: its own settings, data and cache

LABELS = ["0\u20139", "10\u201319", "20\u201329", "30\u201339", "40\u201349", "50\u201359", "60\u201369", "70+"]


def _x(tl: TimelineWidget, position: float) -> int:
    return round(tl.x_of(position))


def test_the_strip_drags_continuously_snaps_and_takes_keys(qtbot):
    tl = TimelineWidget()
    qtbot.addWidget(tl)
    tl.resize(820, 160)
    tl.show()
    moves, ends = [], []
    tl.position_changed.connect(moves.append)
    tl.drag_finished.connect(ends.append)
    qtbot.mouseClick(tl, Qt.MouseButton.LeftButton, pos=QPoint(_x(tl, 3), 80))
    assert moves == []  # no groups yet: nothing to drag
    img = QImage(40, 40, QImage.Format.Format_RGB32)
    img.fill(0x808080)
    tl.set_groups(LABELS, [img] * 8)
    drag(qtbot, tl, QPoint(_x(tl, 1.0), 80), QPoint(_x(tl, 5.03), 80), steps=10)
    assert len(moves) >= 10 and moves[:-1] == sorted(moves[:-1])  # continuous, in between groups
    assert any(abs(m - round(m)) > 0.2 for m in moves)
    assert ends == [5.0] and tl.position == 5.0  # released near a group: snapped to it
    drag(qtbot, tl, QPoint(_x(tl, 5.0), 80), QPoint(_x(tl, 2.5), 80))
    assert ends[-1] == pytest.approx(2.5, abs=0.02)
    qtbot.keyClick(tl, Qt.Key.Key_Right)
    assert tl.position == pytest.approx(2.6, abs=0.02)
    qtbot.keyClick(tl, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    assert tl.position == pytest.approx(3.6, abs=0.02)
    qtbot.keyClick(tl, Qt.Key.Key_End)
    assert tl.position == 7.0
    drag(qtbot, tl, QPoint(_x(tl, 7.0), 80), QPoint(5000, 80))
    assert tl.position == 7.0  # clamped


def test_groups_come_from_one_batched_inference_on_a_worker(qtbot, window, photo_album):
    calls = []
    session = window.aging.pipeline.aging.session
    real = session.run

    def counting(feeds):
        calls.append((feeds["image"].shape[0], threading.current_thread() is threading.main_thread()))
        return real(feeds)

    session.run = counting
    open_album(qtbot, window, photo_album)
    face = wait_face(qtbot, window)
    result = wait_groups(qtbot, window)
    assert calls == [(8, False)]  # ONE call, batch = the 8 groups, not on the GUI thread
    assert result.face_id == face.id and len(result.thumbnails) == 8
    assert window.timeline.labels == LABELS
    means = [float(np.mean(_rgb(t))) for t in result.thumbnails]
    assert means[-1] > means[0] + 5  # the contract model brightens older groups: thumbnails differ

    qtbot.waitUntil(lambda: window.timeline.marker is not None, timeout=WAIT_MS)
    wait_writes(qtbot, window)
    age = window.catalog.face(face.id).estimated_age
    assert age is not None and 0 < age < 101
    from core.timeline import age_to_position

    assert window.timeline.marker == pytest.approx(age_to_position(age, window.aging.groups))
    assert f"{age:.0f}" in window.face_panel.age.text()
    assert not window.aged_active and window.view.overlay.image is None  # original until the person drags


def _rgb(img: QImage) -> np.ndarray:
    from app.imaging import from_qimage

    return from_qimage(img)


def test_dragging_shows_the_aged_face_in_place_and_before_after(qtbot, window, photo_album):
    open_album(qtbot, window, photo_album)
    wait_face(qtbot, window)
    result = wait_groups(qtbot, window)
    tl, view = window.timeline, window.view
    drag(qtbot, tl, QPoint(_x(tl, 0), 80), QPoint(_x(tl, 6.5), 80), steps=12)
    assert window.aged_active and tl.position == pytest.approx(6.5, abs=0.02)
    x0, y0, x1, y1 = result.renderer.rect
    assert view.overlay.rect.getRect() == (x0, y0, x1 - x0, y1 - y0)  # only the face's rectangle is replaced
    assert view.overlay.isVisible()
    old = _rgb(view.overlay.image)
    drag(qtbot, tl, QPoint(_x(tl, 6.5), 80), QPoint(_x(tl, 1.0), 80))
    young = _rgb(view.overlay.image)
    assert young.mean() < old.mean() - 3  # the contract model: older = brighter
    assert "about" in tl.position_text or tl.position == 1.0

    shown = window.view.grab().toImage()  # the view really draws the aged face over the photo
    window.set_before(True)
    original = window.view.grab().toImage()
    window.set_before(False)
    assert _rgb(shown).astype(int).sum() != _rgb(original).astype(int).sum()

    window.activateWindow()
    target = window.timeline
    QApplication.sendEvent(target, QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Backslash, Qt.KeyboardModifier.NoModifier, "\\"))
    assert not view.overlay.isVisible()  # held: the original
    QApplication.sendEvent(target, QKeyEvent(QEvent.Type.KeyRelease, Qt.Key.Key_Backslash, Qt.KeyboardModifier.NoModifier, "\\"))
    assert view.overlay.isVisible()
    window.act_before.trigger()
    assert not view.overlay.isVisible()
    window.act_before.trigger()
    assert view.overlay.isVisible()


def test_region_strengths_change_the_aging_and_are_saved(qtbot, window, photo_album):
    open_album(qtbot, window, photo_album)
    face = wait_face(qtbot, window)
    first = wait_groups(qtbot, window)
    panel = window.face_panel.regions
    for name in ("forehead", "eyes", "nose", "mouth", "hair"):
        panel.toggles[name].setChecked(False)
    panel.set_value("cheeks", 0)
    qtbot.waitUntil(lambda: window.aging.result is not None and window.aging.result is not first, timeout=WAIT_MS)
    wait_groups(qtbot, window)
    renderer = window.aging.result.renderer
    np.testing.assert_array_equal(renderer.render(7.0, 1.0)[0], renderer.original(1.0))  # every strength 0: unchanged
    wait_writes(qtbot, window)
    stored = window.catalog.face(face.id).strengths
    assert stored["eyes"] == 0.0 and stored["off:eyes"] == 1.0 and stored["cheeks"] == 0.0

    panel.toggles["eyes"].setChecked(True)
    panel.set_value("eyes", 150)
    wait_writes(qtbot, window)
    assert window.catalog.face(face.id).strengths["eyes"] == 1.5
    qtbot.waitUntil(lambda: not np.array_equal(window.aging.result.renderer.render(7.0, 1.0)[0],
                                               window.aging.result.renderer.original(1.0)), timeout=WAIT_MS)

    window.album.select_path(photo_album / "sub" / "b_astronaut_big.jpg")
    other = wait_face(qtbot, window, photo_album / "sub" / "b_astronaut_big.jpg")
    assert panel.sliders["eyes"].value() == 100 and panel.toggles["mouth"].isChecked()  # its own strengths
    assert other.id != face.id
    window.album.select_path(photo_album / "a_astronaut.jpg")
    wait_face(qtbot, window, photo_album / "a_astronaut.jpg")
    assert panel.sliders["eyes"].value() == 150 and not panel.toggles["mouth"].isChecked()
    assert panel.values["mouth"].text() == "off"


def test_results_for_a_face_no_longer_shown_are_dropped(qtbot, window, photo_album):
    open_album(qtbot, window, photo_album)
    wait_face(qtbot, window)
    qtbot.waitUntil(lambda: window.timeline.busy or window.aging.result is not None, timeout=WAIT_MS)
    window.album.select_path(photo_album / "sub" / "b_astronaut_big.jpg")  # while the first may still compute
    face = wait_face(qtbot, window, photo_album / "sub" / "b_astronaut_big.jpg")
    result = wait_groups(qtbot, window)
    assert result.face_id == face.id
    assert window.aging.result.face_id == face.id


def test_dragging_across_every_group_on_a_12_megapixel_photo(qtbot, window, tmp_path, astronaut):
    big = cv2.resize(astronaut, (3000, 3000), interpolation=cv2.INTER_CUBIC)
    big = np.ascontiguousarray(cv2.copyMakeBorder(big, 0, 0, 500, 500, cv2.BORDER_REFLECT))  # 4000 x 3000
    write_jpeg(big, tmp_path / "big" / "twelve_mp.jpg", quality=90)
    open_album(qtbot, window, tmp_path / "big")
    wait_face(qtbot, window)
    wait_groups(qtbot, window)
    tl, view = window.timeline, window.view
    y = 80  # (its speed is measured by bench/gui_drag.py: a timed test fails on a busy machine)

    def send(kind, x, buttons):
        ev = QMouseEvent(kind, QPointF(x, y), tl.mapToGlobal(QPointF(x, y)), Qt.MouseButton.LeftButton, buttons,
                         Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(tl, ev)

    send(QEvent.Type.MouseButtonPress, _x(tl, 0), Qt.MouseButton.LeftButton)
    frames = {}
    for p in np.linspace(0, 7, 71):
        send(QEvent.Type.MouseMove, _x(tl, p), Qt.MouseButton.LeftButton)
        view.viewport().repaint()  # the frame really drawn, synchronously
        tl.repaint()
        if round(p, 3) in (0.0, 7.0):
            frames[round(p)] = view.overlay.image.copy()
    send(QEvent.Type.MouseButtonRelease, _x(tl, 7), Qt.MouseButton.NoButton)
    assert window.editor.photo.width == 4000 and view.overlay.image is not None
    assert tl.position == pytest.approx(7.0, abs=0.05)
    assert frames[0] != frames[7]  # the youngest and the oldest group are drawn differently


def _drag_slider(slider, *values) -> None:
    """A person's drag of a slider: pressed, moved through ``values`` (percent), released."""
    slider.setSliderDown(True)
    for v in values:
        slider.setValue(v)
    slider.setSliderDown(False)


def test_the_hair_strength_reaches_the_model_is_saved_and_every_strength_change_is_undoable(qtbot, window,
                                                                                           photo_album):
    open_album(qtbot, window, photo_album)
    face = wait_face(qtbot, window)
    wait_groups(qtbot, window)
    panel, stack = window.face_panel.regions, window.editor.undo_stack
    assert panel.toggles["hair"].text() == "Hair" and panel.sliders["hair"].value() == 100
    steps = stack.count()

    _drag_slider(panel.sliders["hair"], 90, 60, 40)  # one drag: one undo step, one recompute
    assert stack.count() == steps + 1 and stack.undoText() == "Hair strength 40 %"
    qtbot.waitUntil(lambda: window.aging.result is not None
                    and window.aging.result.renderer.prepared.strengths["hair"] == 0.4, timeout=WAIT_MS)
    wait_writes(qtbot, window)
    assert window.catalog.face(face.id).strengths["hair"] == 0.4

    for _ in range(3):  # keyboard steps of one slider: one undo step, however many pauses
        with qtbot.waitSignal(panel.changed, timeout=WAIT_MS):
            qtbot.keyClick(panel.sliders["eyes"], Qt.Key.Key_Right)
    assert stack.count() == steps + 2 and stack.undoText() == "Eyes strength 115 %"
    panel.toggles["mouth"].setChecked(False)
    assert stack.count() == steps + 3 and stack.undoText() == "Mouth off"
    assert "Mouth off" in window.act_undo.toolTip() and window.act_undo.text() == "Undo"

    window.act_undo.trigger()  # mouth on again: the panel follows
    assert panel.toggles["mouth"].isChecked() and "mouth" not in [k for k in face.strengths if k.startswith("off:")]
    window.act_undo.trigger()  # eyes back to 100 %, all three steps at once
    assert panel.sliders["eyes"].value() == 100 and panel.sliders["hair"].value() == 40
    window.act_undo.trigger()  # the hair's drag
    assert panel.sliders["hair"].value() == 100 and face.strengths.get("hair", 1.0) == 1.0
    qtbot.waitUntil(lambda: window.aging.result.renderer.prepared.strengths["hair"] == 1.0, timeout=WAIT_MS)
    wait_writes(qtbot, window)
    assert window.catalog.face(face.id).strengths.get("hair", 1.0) == 1.0
    window.act_redo.trigger()
    assert panel.sliders["hair"].value() == 40
    wait_writes(qtbot, window)
    assert window.catalog.face(face.id).strengths["hair"] == 0.4

    _drag_slider(panel.sliders["hair"], 20)  # a second drag of the same slider is a step of its own
    assert stack.undoText() == "Hair strength 20 %"
    window.act_undo.trigger()
    assert panel.sliders["hair"].value() == 40
