"""The export dialog: progress, several photos, cancelling, the folder, asking before overwriting. (The
export itself, core.export_jobs, is tested in test_export_jobs.py.)"""

from __future__ import annotations

import pytest

from pathlib import Path

from PIL import Image

from testkit.gui import open_album, wait_face, wait_groups, WAIT_MS

pytestmark = pytest.mark.usefixtures("app_env")  # every test here: its own settings, data and cache


def _dialog(window):
    d = window.export_dialog()
    d.folder.setText(str(window.editor.path.parent / "exports"))
    return d


def test_dialog_exports_with_progress_and_asks_before_overwriting(qtbot, window, photo_album):
    open_album(qtbot, window, photo_album)
    wait_face(qtbot, window)
    wait_groups(qtbot, window)
    d = _dialog(window)
    qtbot.addWidget(d)
    d.kind.setCurrentIndex(d.kind.findData("groups"))
    d.area.setCurrentIndex(d.area.findData("face"))
    d.max_side.setValue(128)
    assert d.columns.isHidden() and not d.fmt.isHidden()
    with qtbot.waitSignal(d.finished_export, timeout=WAIT_MS) as done:
        assert d.start()
        assert not d.progress.isHidden()
    report = done.args[0]
    folder = photo_album / "exports"
    assert len(report.written) == 8 and sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in report.written)
    first = folder / "a_astronaut_0-9.jpg"
    before = first.read_bytes()

    d2 = _dialog(window)
    qtbot.addWidget(d2)
    asked = []
    d2.ask_overwrite = lambda paths: asked.append(paths) or "cancel"
    d2.kind.setCurrentIndex(d2.kind.findData("groups"))
    assert d2.start() is False and len(asked[0]) == 8  # asked about the 8 files, then nothing written
    assert len(list(folder.iterdir())) == 8 and first.read_bytes() == before

    d2.ask_overwrite = lambda paths: "rename"
    with qtbot.waitSignal(d2.finished_export, timeout=WAIT_MS) as done:
        assert d2.start()
    assert (folder / "a_astronaut_0-9 (2).jpg").is_file() and first.read_bytes() == before
    assert len(list(folder.iterdir())) == 16

    d3 = _dialog(window)
    qtbot.addWidget(d3)
    d3.ask_overwrite = lambda paths: "overwrite"
    d3.kind.setCurrentIndex(d3.kind.findData("single"))
    d3.age.setCurrentIndex(d3.age.findData(0.0))
    d3.area.setCurrentIndex(d3.area.findData("photo"))
    d3.max_side.setValue(0)
    first.write_bytes(b"old")
    with qtbot.waitSignal(d3.finished_export, timeout=WAIT_MS):
        assert d3.start()
    assert first.read_bytes() != b"old" and Image.open(first).size == (512, 512)


def test_dialog_exports_several_selected_photos(qtbot, window, photo_album):
    open_album(qtbot, window, photo_album)
    qtbot.waitUntil(lambda: not window.scan.running, timeout=WAIT_MS)
    wait_face(qtbot, window)
    wait_groups(qtbot, window)
    grid = window.album.grid
    grid.selectAll()
    assert len(window.album.selected_paths()) == 4
    d = _dialog(window)
    qtbot.addWidget(d)
    assert d.all_selected.isEnabled()
    d.all_selected.setChecked(True)
    d.kind.setCurrentIndex(d.kind.findData("strip"))
    d.area.setCurrentIndex(d.area.findData("face"))
    d.max_side.setValue(64)
    with qtbot.waitSignal(d.finished_export, timeout=WAIT_MS) as done:
        d.start()
    report = done.args[0]
    names = sorted(p.name for p in report.written)
    assert names == ["a_astronaut_ages.jpg", "b_astronaut_big_ages.jpg"]
    failed = sorted(Path(p).name for p, _ in report.errors)
    assert failed == ["c_sky.jpg", "d_broken.jpg"]  # no face / unreadable: reported, the rest written
    assert "Not written" in d.status.text()


def test_the_dialog_opens_without_blocking_and_an_export_can_be_cancelled(qtbot, window, photo_album):
    from app.export_dialog import ExportDialog

    open_album(qtbot, window, photo_album)
    wait_face(qtbot, window)
    wait_groups(qtbot, window)
    window.show_export()  # returns at once: window-modal, the event loop goes on
    shown = window.findChild(ExportDialog)
    assert shown is not None and shown.isVisible()
    shown.reject()

    d = _dialog(window)
    qtbot.addWidget(d)
    d.kind.setCurrentIndex(d.kind.findData("gif"))
    d.area.setCurrentIndex(d.area.findData("photo"))
    d.max_side.setValue(512)
    d.steps.setValue(30)  # 211 frames of the whole photo: long enough to cancel
    with qtbot.waitSignal(d.finished_export, timeout=WAIT_MS) as done:
        assert d.start()
        d.cancel_button.click()
    assert done.args[0] is None and "cancelled" in d.status.text()
    assert not (photo_album / "exports").exists() or not list((photo_album / "exports").iterdir())
    qtbot.waitUntil(lambda: window.runner.pending() == 0, timeout=WAIT_MS)  # the worker stopped early
    assert not list((photo_album / "exports").glob("*.gif"))


def test_exports_go_to_the_last_export_folder_first_the_pictures_folder(qtbot, window, photo_album, tmp_path):
    from app.export_dialog import default_folder
    from PySide6.QtCore import QStandardPaths

    open_album(qtbot, window, photo_album)
    wait_face(qtbot, window)
    wait_groups(qtbot, window)
    d = window.export_dialog()
    qtbot.addWidget(d)
    pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
    assert d.folder.text() == str(default_folder()) == pictures  # not the photo's own folder
    assert Path(d.folder.text()) != photo_album
    out = tmp_path / "exports here"
    d.folder.setText(str(out))
    d.kind.setCurrentIndex(d.kind.findData("single"))
    d.max_side.setValue(64)
    with qtbot.waitSignal(d.finished_export, timeout=WAIT_MS):
        assert d.start()
    d2 = window.export_dialog()
    qtbot.addWidget(d2)
    assert d2.folder.text() == str(out)


def test_a_folder_that_cannot_be_written_is_said_in_words(qtbot, window, photo_album, tmp_path, monkeypatch):
    import errno
    import os

    import core.export as export

    open_album(qtbot, window, photo_album)
    wait_face(qtbot, window)
    wait_groups(qtbot, window)
    card = tmp_path / "card"
    card.mkdir()
    real_open = os.open

    def read_only(path, flags, *a, **k):
        if os.fspath(path).startswith(str(card)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(export.os, "open", read_only)
    d = window.export_dialog()
    qtbot.addWidget(d)
    d.folder.setText(str(card))
    assert d.start() is False
    assert d.status.text() == f"Cannot write to {card}: the folder is on a read-only disk. Choose another folder."
    assert d.task is None and list(card.iterdir()) == []


def test_animations_frame_the_face_by_default_stills_the_whole_photo(qtbot, window, photo_album, tmp_path):
    open_album(qtbot, window, photo_album)
    wait_face(qtbot, window)
    wait_groups(qtbot, window)
    d = window.export_dialog()
    qtbot.addWidget(d)
    d.kind.setCurrentIndex(d.kind.findData("single"))
    assert d.area.currentData() == "photo"
    for kind in ("gif", "mp4"):
        d.kind.setCurrentIndex(d.kind.findData(kind))
        assert d.area.currentData() == "face" and d.options().area == "face"
    d.area.setCurrentIndex(d.area.findData("photo"))  # the person's choice for animations...
    d.kind.setCurrentIndex(d.kind.findData("strip"))
    assert d.area.currentData() == "photo"
    d.area.setCurrentIndex(d.area.findData("face"))  # ...and for stills, each kept apart
    d.kind.setCurrentIndex(d.kind.findData("gif"))
    assert d.area.currentData() == "photo"
    d.kind.setCurrentIndex(d.kind.findData("groups"))
    assert d.area.currentData() == "face"

    d = window.export_dialog()  # a new dialog, nothing exported yet: the defaults again
    qtbot.addWidget(d)
    d.folder.setText(str(tmp_path / "out"))
    d.kind.setCurrentIndex(d.kind.findData("gif"))
    d.steps.setValue(1)
    with qtbot.waitSignal(d.finished_export, timeout=WAIT_MS) as done:
        assert d.start()
    gif = done.args[0].written[0]
    with Image.open(gif) as im:
        w, h = im.size
    assert w < 400 and h < 400  # the face fills the frame, not a 512 px photo shrunk around it
    d2 = window.export_dialog()
    qtbot.addWidget(d2)
    d2.kind.setCurrentIndex(d2.kind.findData("mp4"))
    assert d2.area.currentData() == "face"
