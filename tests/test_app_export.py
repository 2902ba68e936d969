"""Export: the planned file names, every kind of export (portrait at one age, every group, strip/grid, GIF,
MP4, several photos), format/quality/size options, progress, and never overwriting without asking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.export_jobs import ExportOptions, ExportSource, existing, make_unique, plan, run_export
from test_app_support import (  # noqa: F401
    WAIT_MS, app_env, catalog, open_album, photo_album, settings, wait_face, wait_groups, window, write_jpeg,
)

LABELS = ["0\u20139", "10\u201319", "20\u201329", "30\u201339", "40\u201349", "50\u201359", "60\u201369", "70+"]
DECADES = [(0, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, None)]


def test_plan_names_files_per_kind_and_keeps_them_unique(tmp_path):
    srcs = [ExportSource(Path("/a/x.jpg")), ExportSource(Path("/b/x.jpg")), ExportSource(Path("/a/y.png"), face_index=1)]
    one = plan(srcs[:1], ExportOptions(tmp_path, "single", position=6.0), LABELS, DECADES)
    assert one == [[tmp_path / "x_60-69.jpg"]]
    between = plan(srcs[:1], ExportOptions(tmp_path, "single", position=4.5, fmt="png"), LABELS, DECADES)
    assert between == [[tmp_path / "x_about-50.png"]]
    groups = plan(srcs[:1], ExportOptions(tmp_path, "groups", fmt="webp"), LABELS)
    assert [p.name for p in groups[0]] == [f"x_{lb.replace(chr(0x2013), '-')}.webp" for lb in LABELS]
    strips = plan(srcs, ExportOptions(tmp_path, "strip"), LABELS)
    assert [p[0].name for p in strips] == ["x_ages.jpg", "x_ages (2).jpg", "y_face2_ages.jpg"]  # same stem twice
    assert plan(srcs[:1], ExportOptions(tmp_path, "gif"), LABELS) == [[tmp_path / "x_timeline.gif"]]
    (tmp_path / "x_ages.jpg").write_bytes(b"taken")
    assert existing(strips) == [tmp_path / "x_ages.jpg"]
    unique = make_unique(strips)
    assert unique[0][0].name == "x_ages (2).jpg" and unique[1][0].name == "x_ages (3).jpg"


@pytest.fixture(scope="module")
def pipeline(contract_models_dir):
    from core.models import AgingModel
    from core.pipeline import AgingPipeline

    return AgingPipeline(AgingModel.load(contract_models_dir, providers="cpu"))


@pytest.fixture
def source(tmp_path, astronaut):
    from core.faces import FaceFinder

    path = write_jpeg(astronaut, tmp_path / "in" / "portrait.jpg")
    face = FaceFinder().detect(astronaut)[0]
    return ExportSource(path, face, {"eyes": 1.5})


def test_every_kind_writes_what_it_should(tmp_path, pipeline, source, astronaut):
    out = tmp_path / "out"
    out.mkdir()
    progress = []

    def run(**kw):
        folder = out / f"run{len(list(out.iterdir()))}"  # a folder per export: names may repeat
        folder.mkdir()
        o = ExportOptions(folder, **kw)
        targets = plan([source], o, pipeline.labels, list(pipeline.aging.age_groups))
        rep = run_export([source], o, pipeline, targets, progress=lambda d, t: progress.append((d, t)))
        assert not rep.errors, rep.errors
        return rep.written

    single = run(kind="single", position=7.0, fmt="png")
    assert [p.name for p in single] == ["portrait_70+.png"]
    from core.photos import load_photo

    original = load_photo(source.path).rgb.astype(int)
    with Image.open(single[0]) as im:
        assert im.size == (512, 512)
        assert "Agelapse" in im.info.get("Software", "")  # an altered image says so
        aged = np.asarray(im.convert("RGB")).astype(int)
    changed = np.abs(aged - original).max(axis=2) > 0
    assert changed.sum() > 2000  # the face changed...
    ys, xs = np.nonzero(changed)
    box = source.face.box
    assert xs.min() > box[0] - 0.6 * (box[2] - box[0]) and ys.max() < box[3] + 0.6 * (box[3] - box[1])  # ...only there
    assert progress[-1][0] == progress[-1][1]
    small, large = run(kind="single", position=3.0, quality=30), run(kind="single", position=4.0, quality=95)
    assert small[0].name == "portrait_30-39.jpg" and large[0].name == "portrait_40-49.jpg"
    assert small[0].stat().st_size < 0.7 * large[0].stat().st_size  # the quality option is honoured

    groups = run(kind="groups", fmt="png", max_side=200, area="face")
    assert len(groups) == 8 and all(p.suffix == ".png" for p in groups)
    sizes = {Image.open(p).size for p in groups}
    assert len(sizes) == 1 and max(next(iter(sizes))) == 200
    means = [np.asarray(Image.open(p).convert("RGB")).mean() for p in groups]
    assert means[-1] > means[0]  # older is brighter with the contract model

    strip = run(kind="strip", area="face", max_side=120, columns=4)
    with Image.open(strip[0]) as im:
        w, h = im.size
    assert w > 4 * 120 and h > 2 * 120 and w < 5 * 130  # a 4 x 2 grid with labels

    gif = run(kind="gif", area="face", max_side=96, steps=2, fps=10)
    with Image.open(gif[0]) as im:
        assert im.n_frames == 15 and max(im.size) <= 96 + 40  # 7 steps x 2 + 1, label band below
    mp4 = run(kind="mp4", area="face", max_side=96, steps=1)
    assert mp4[0].stat().st_size > 1000 and mp4[0].read_bytes()[4:8] == b"ftyp"


def test_existing_files_are_reported_not_overwritten(tmp_path, pipeline, source):
    out = tmp_path / "out"
    out.mkdir()
    (out / "portrait_70+.jpg").write_bytes(b"the person's own file")
    o = ExportOptions(out, "single", position=7.0)
    targets = plan([source], o, pipeline.labels, list(pipeline.aging.age_groups))
    rep = run_export([source], o, pipeline, targets)  # a file that appeared after planning
    assert rep.written == [] and "already exists" in rep.errors[0][1]
    assert (out / "portrait_70+.jpg").read_bytes() == b"the person's own file"


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


def test_a_photo_whose_name_is_not_utf8_exports_under_the_same_bytes(tmp_path, pipeline, source):
    import os
    import shutil

    odd = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path / "in"), b"latin1_\xe9t\xe9.jpg")))
    shutil.copy(source.path, odd)
    src = ExportSource(odd, source.face, {"hair": 0.0})
    o = ExportOptions(tmp_path / "out", "single", position=7.0)
    o.folder.mkdir()
    report = run_export([src], o, pipeline, plan([src], o, pipeline.labels, list(pipeline.aging.age_groups)))
    assert not report.errors and [os.fsencode(p.name) for p in report.written] == [b"latin1_\xe9t\xe9_70+.jpg"]
    assert os.listdir(os.fsencode(o.folder)) == [b"latin1_\xe9t\xe9_70+.jpg"]
