"""The photo and face editor: zoom and pan, clicking a face, drawing a face box by hand, dragging
landmarks and the forehead edge (one undo step each, saved at once, restored on reopening), reset,
show/hide, re-detect."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QToolBar

from testkit.gui import drag, open_album, scene_to_viewport, wait_face, WAIT_MS, wait_writes, write_jpeg

pytestmark = pytest.mark.usefixtures("app_env")  # every test here: its own settings, data and cache


@pytest.fixture
def two_faces(tmp_path, astronaut):
    root = tmp_path / "pair"
    write_jpeg(np.ascontiguousarray(np.hstack([astronaut, astronaut[:, ::-1]])), root / "pair.jpg")
    return root


def _click(qtbot, view, x, y):
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=scene_to_viewport(view, x, y))


def test_click_selects_a_face_and_a_drawn_box_becomes_a_manual_face(qtbot, window, two_faces):
    open_album(qtbot, window, two_faces)
    wait_face(qtbot, window)
    ed, view = window.editor, window.view
    assert len(ed.faces) == 2 and ed.selected == 0 and len(view.boxes) == 2
    other = ed.faces[1].face.box
    window.act_landmarks.setChecked(False)  # the first face's points must not catch the click
    _click(qtbot, view, (other[0] + other[2]) / 2, other[1] + 5)
    assert ed.selected == 1
    assert view.boxes[1].pen().color().name() == "#ffa64d"  # the selected box is highlighted

    x0, y0 = 30, 300  # a "missed" face: any box gets landmarks fitted inside it
    window.act_draw.trigger()
    assert view.draw_mode
    drag(qtbot, view.viewport(), scene_to_viewport(view, x0, y0), scene_to_viewport(view, x0 + 160, y0 + 180))
    assert not view.draw_mode and not window.act_draw.isChecked()
    qtbot.waitUntil(lambda: len(ed.faces) == 3, timeout=WAIT_MS)
    new = ed.current_face()
    assert new.face.source == "manual" and ed.selected == 2
    assert new.face.box[0] == pytest.approx(x0, abs=4) and new.face.box[3] == pytest.approx(y0 + 180, abs=4)
    stored = window.catalog.faces(two_faces / "pair.jpg")
    assert [f.face.source for f in stored].count("manual") == 1 and len(view.boxes) == 3

    ed.select_face(1)
    chosen = ed.current_face().face.box.copy()
    with qtbot.waitSignal(ed.faces_changed, timeout=WAIT_MS):
        window.act_redetect.trigger()
    qtbot.waitUntil(lambda: ed.current_face() is not None, timeout=WAIT_MS)
    assert len(ed.faces) == 3  # the manual face is kept
    np.testing.assert_allclose(ed.current_face().face.box, chosen, atol=0.5)  # found again, still selected


def test_zoom_pan_and_fit(qtbot, window, photo_album):
    open_album(qtbot, window, photo_album)
    wait_face(qtbot, window)
    view = window.view
    fit = view.current_scale()
    assert 0 < fit < 2
    view.set_zoom(1.0)
    assert view.current_scale() == pytest.approx(1.0)
    view.zoom_by(2.0)
    assert view.current_scale() == pytest.approx(2.0)
    before = view.mapToScene(view.viewport().rect().center())
    drag(qtbot, view.viewport(), QPoint(200, 200), QPoint(100, 150))  # pan on the background
    after = view.mapToScene(view.viewport().rect().center())
    assert after.x() > before.x() and after.y() > before.y()
    window.act_fit.trigger()
    assert view.current_scale() == pytest.approx(fit)


def _handle_pos(window, index):
    h = window.layer.forehead_handle if index < 0 else window.layer.handles[index]
    return scene_to_viewport(window.view, h.pos().x(), h.pos().y())


def test_a_landmark_drag_is_one_undo_step_saved_at_once_and_restored(qtbot, window, photo_album):
    open_album(qtbot, window, photo_album)
    face = wait_face(qtbot, window)
    window.view.set_zoom(3.0)
    window.view.centerOn(QPointF(*face.face.landmarks[30]))
    detected = face.face.landmarks.copy()
    start = _handle_pos(window, 30)  # the nose tip
    drag(qtbot, window.view.viewport(), start, start + QPoint(36, 24), steps=8)
    stack = window.editor.undo_stack
    assert stack.count() == 1 and "landmark 30" in stack.undoText()  # one drag, one step
    moved = face.face.landmarks[30]
    assert moved[0] - detected[30][0] == pytest.approx(12, abs=1.5)  # 36 px on screen at 300 % = 12 photo px
    assert np.array_equal(np.delete(face.face.landmarks, 30, 0), np.delete(detected, 30, 0))
    wait_writes(qtbot, window)
    stored = window.catalog.face(face.id)
    assert stored.edited and np.allclose(stored.face.landmarks[30], moved, atol=0.01)

    window.act_undo.trigger()
    wait_writes(qtbot, window)
    assert np.allclose(face.face.landmarks, detected)
    assert not window.catalog.face(face.id).edited  # back to "detected" in the catalog too
    assert np.allclose(window.layer.handles[30].pos().x(), detected[30][0])
    window.act_redo.trigger()
    wait_writes(qtbot, window)
    assert window.catalog.face(face.id).edited

    # another photo, then back: the edit is read from the catalog, the history is kept
    window.album.select_path(photo_album / "sub" / "b_astronaut_big.jpg")
    wait_face(qtbot, window, photo_album / "sub" / "b_astronaut_big.jpg")
    assert window.editor.undo_stack.count() == 0
    window.album.select_path(photo_album / "a_astronaut.jpg")
    again = wait_face(qtbot, window, photo_album / "a_astronaut.jpg")
    assert again.edited and np.allclose(again.face.landmarks[30], moved, atol=0.01)
    assert np.allclose(window.layer.landmarks[30], moved, atol=0.01)
    assert window.editor.undo_stack.count() == 1


def test_forehead_edge_drag_reset_and_show_hide(qtbot, window, photo_album, settings):
    open_album(qtbot, window, photo_album)
    face = wait_face(qtbot, window)
    old_h = face.face.forehead_height
    detected = face.face.landmarks.copy()
    start = _handle_pos(window, -1)
    drag(qtbot, window.view.viewport(), start, start + QPoint(0, -25))
    assert face.face.forehead_height > old_h + 0.05
    assert window.editor.undo_stack.undoText() == "Move forehead edge"
    wait_writes(qtbot, window)
    assert window.catalog.face(face.id).face.forehead_height == pytest.approx(face.face.forehead_height, abs=1e-6)
    from core.regions import forehead_top

    assert window.layer.top_edge.path().elementAt(0).y == pytest.approx(
        forehead_top(face.face.landmarks, face.face.forehead_height)[0][1], abs=0.01)  # the outline followed

    window.act_reset.trigger()
    qtbot.waitUntil(lambda: window.editor.undo_stack.count() == 2, timeout=WAIT_MS)
    wait_writes(qtbot, window)
    assert face.face.forehead_height == pytest.approx(old_h) and np.allclose(face.face.landmarks, detected)
    assert not window.catalog.face(face.id).edited
    window.act_undo.trigger()
    assert face.face.forehead_height > old_h + 0.05

    assert window.layer.isVisible()
    window.act_landmarks.trigger()
    assert not window.layer.isVisible() and settings.show_landmarks is False
    window.act_landmarks.trigger()
    assert window.layer.isVisible() and settings.show_landmarks is True


def test_redetect_keeps_the_edits_of_faces_found_again(qtbot, window, photo_album):
    open_album(qtbot, window, photo_album)
    face = wait_face(qtbot, window)
    window.layer.drag_point(48, tuple(face.face.landmarks[48] + (-6, 0)))
    wait_writes(qtbot, window)
    edited = face.face.landmarks.copy()
    with qtbot.waitSignal(window.editor.faces_changed, timeout=WAIT_MS):
        window.act_redetect.trigger()
    again = wait_face(qtbot, window)
    assert again is not face and again.edited  # a new row, the edit handed over
    assert np.allclose(again.face.landmarks, edited, atol=0.01)


def test_the_undo_button_keeps_its_text_and_tells_what_it_undoes(qtbot, window, photo_album):
    open_album(qtbot, window, photo_album)
    face = wait_face(qtbot, window)
    button = window.findChild(QToolBar, "mainToolbar").widgetForAction(window.act_undo)
    width = button.sizeHint().width()
    assert window.act_undo.text() == "Undo" and not window.act_undo.isEnabled()
    window.layer.drag_point(8, tuple(face.face.landmarks[8] + 5))
    assert window.act_undo.isEnabled() and window.act_undo.text() == "Undo"
    assert window.act_undo.toolTip().startswith("Undo: Move landmark 8 (cheeks)")
    assert button.sizeHint().width() == width  # the toolbar does not jump
    window.act_undo.trigger()
    assert window.act_redo.toolTip().startswith("Redo: Move landmark 8") and window.act_redo.text() == "Redo"


def test_the_face_label_is_drawn_above_the_region_outlines(qtbot, window, photo_album):
    open_album(qtbot, window, photo_album)
    wait_face(qtbot, window)
    qtbot.waitUntil(lambda: window.layer.isVisible(), timeout=WAIT_MS)
    label = window.view.boxes[0].label
    assert label.scene() is window.view.scene()
    order = window.view.scene().items()  # topmost first
    outlines = list(window.layer.outlines.values()) + [window.layer.top_edge]
    assert all(order.index(label) < order.index(o) for o in outlines)
    window.editor.load_faces(redetect=True)  # boxes made again: the old labels go with them
    qtbot.waitUntil(lambda: window.view.boxes and window.view.boxes[0].label is not label, timeout=WAIT_MS)
    assert label.scene() is None
