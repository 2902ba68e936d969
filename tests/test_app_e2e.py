"""End to end, as a person would: open a folder of photos, let the scan find the faces, pick a face, move
a landmark and undo it, edit for real, set a region's strength, drag the timeline, export a portrait and
an animation; then assert on the files written and on the catalog, and reopen everything."""

from __future__ import annotations

import pytest

import shutil
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from PySide6.QtCore import QPoint, QPointF

from conftest import SHARED_DATA
from testkit.gui import drag, open_album, scene_to_viewport, wait_face, wait_groups, WAIT_MS, wait_writes, write_jpeg

pytestmark = pytest.mark.usefixtures("app_env")  # every test here: its own settings, data and cache


def test_open_edit_age_and_export(qtbot, tmp_path, astronaut, settings, catalog, contract_models_dir):
    from app.main_window import MainWindow
    from core.thumbnails import ThumbnailCache

    album = tmp_path / "My Photos"
    portrait = write_jpeg(astronaut, album / "2019" / "astronaut.jpg")
    write_jpeg(cv2.resize(astronaut, (900, 900), interpolation=cv2.INTER_CUBIC), album / "2020" / "astronaut big.jpg")
    shared = SHARED_DATA / "album"
    if shared.is_dir():
        shutil.copytree(shared, album / "shared", ignore=shutil.ignore_patterns("*.xml"))
    n_photos = len([p for p in album.rglob("*") if p.suffix.lower() in (".jpg", ".png")])

    win = MainWindow(settings, catalog=catalog, models_folder=contract_models_dir,
                     thumb_cache=ThumbnailCache(tmp_path / "thumbs"))
    qtbot.addWidget(win)
    win.resize(1300, 850)
    win.show()

    # 1. open the folder: listed, scanned in the background, badges
    with qtbot.waitSignal(win.scan.finished, timeout=4 * WAIT_MS) as scanned:
        open_album(qtbot, win, album)
    assert scanned.args[0].listed == n_photos and not scanned.args[0].errors
    assert len(catalog.photos("done")) == n_photos
    assert catalog.photo(portrait).face_count == 1
    if shared.is_dir():
        assert len(catalog.photos_with_faces()) >= 10  # the shared portraits have faces too
        assert win.album.model.faces[str(album / "shared" / "dlib_faces" / "dogs.jpg")] == 0
    assert win.album.select_path(portrait)

    # 2. the face: selected, aged in the background
    face = wait_face(qtbot, win, portrait)
    wait_groups(qtbot, win)
    qtbot.waitUntil(lambda: win.timeline.marker is not None, timeout=WAIT_MS)
    detected = face.face.landmarks.copy()

    # 3. move a landmark with the mouse, undo it
    view = win.view
    view.set_zoom(3.0)
    view.centerOn(QPointF(*detected[48]))
    start = scene_to_viewport(view, *detected[48])
    drag(qtbot, view.viewport(), start, start + QPoint(-24, 9))
    assert win.editor.undo_stack.count() == 1
    assert face.face.landmarks[48][0] < detected[48][0] - 6
    win.act_undo.trigger()
    assert np.allclose(face.face.landmarks, detected)
    wait_writes(qtbot, win)
    assert not catalog.face(face.id).edited

    # 4. an edit that stays, and a region strength
    start = scene_to_viewport(view, *detected[8])  # the chin
    view.centerOn(QPointF(*detected[8]))
    start = scene_to_viewport(view, *detected[8])
    drag(qtbot, view.viewport(), start, start + QPoint(0, 15))
    kept = face.face.landmarks.copy()
    assert kept[8][1] > detected[8][1] + 3
    win.face_panel.regions.set_value("eyes", 130)
    win.act_fit.trigger()
    qtbot.waitUntil(lambda: win.aging.result is not None and not win.timeline.busy, timeout=WAIT_MS)

    # 5. drag the timeline: the face ages in place
    tl = win.timeline
    drag(qtbot, tl, QPoint(round(tl.x_of(tl.marker)), 80), QPoint(round(tl.x_of(6.0)), 80), steps=15)
    assert tl.position == 6.0 and win.aged_active and view.overlay.image is not None

    # 6. export the portrait at that age and the timeline as a GIF
    out = tmp_path / "exports"
    d = win.export_dialog()
    qtbot.addWidget(d)
    d.folder.setText(str(out))
    assert d.age.currentData() == 6.0  # "the timeline position" is offered first
    with qtbot.waitSignal(d.finished_export, timeout=WAIT_MS) as done:
        assert d.start()
    assert done.args[0].written == [out / "astronaut_60-69.jpg"]
    d2 = win.export_dialog()
    qtbot.addWidget(d2)
    d2.folder.setText(str(out))
    d2.kind.setCurrentIndex(d2.kind.findData("gif"))
    d2.area.setCurrentIndex(d2.area.findData("face"))
    d2.steps.setValue(2)
    with qtbot.waitSignal(d2.finished_export, timeout=WAIT_MS) as done:
        assert d2.start()
    assert done.args[0].written == [out / "astronaut_timeline.gif"]
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_60-69.jpg", "astronaut_timeline.gif"]
    with Image.open(out / "astronaut_60-69.jpg") as im:
        assert im.size == (512, 512)
        assert "Agelapse" in im.getexif().get(0x0131, "")
        aged = np.asarray(im.convert("RGB"), dtype=float)
    assert np.abs(aged - astronaut).mean() > 1.0  # aged, not a copy
    with Image.open(out / "astronaut_timeline.gif") as im:
        assert im.n_frames == 15

    # 7. the catalog holds everything
    wait_writes(qtbot, win)
    stored = catalog.face(face.id)
    assert stored.edited and np.allclose(stored.face.landmarks, kept, atol=0.01)
    assert stored.strengths["eyes"] == 1.3 and stored.estimated_age is not None
    assert Path(settings.recent_folders[0]) == album
    win.close()

    # 8. reopen: the album, the face, its edit and strengths come back
    win2 = MainWindow(settings, catalog=catalog, models_folder=contract_models_dir,
                      thumb_cache=ThumbnailCache(tmp_path / "thumbs"))
    qtbot.addWidget(win2)
    win2.show()
    win2.open_folder(settings.recent_folders[0], portrait)
    again = wait_face(qtbot, win2, portrait)
    assert again.edited and np.allclose(again.face.landmarks, kept, atol=0.01)
    assert win2.face_panel.regions.sliders["eyes"].value() == 130
    win2.close()
