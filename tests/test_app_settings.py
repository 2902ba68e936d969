"""Preferences (QSettings in a temporary location), window geometry, and errors shown without blocking:
missing or damaged models, no GPU, the catalog; plus the PySide6 work-around the app depends on."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QWidget

from testkit.gui import open_album, wait_face, WAIT_MS, wait_writes

pytestmark = pytest.mark.usefixtures("app_env")  # every test here: its own settings, data and cache


def test_settings_round_trip_in_the_test_location(settings, app_env):
    from app.settings import Settings

    settings.models_folder = "/models/here"
    settings.providers = "cpu"
    settings.detection_mode = "accurate"
    settings.thumbnail_size = 5000  # clamped
    for i in range(12):
        settings.add_recent_folder(f"/photos/{i}")
    settings.add_recent_folder("/photos/3")  # again: moves to the front, no duplicate
    settings.sync()
    again = Settings("AgelapseTest", "AgelapseTest")
    assert again.models_folder == "/models/here" and again.providers == "cpu"
    assert again.detection_mode == "accurate" and again.thumbnail_size == 320
    assert again.recent_folders[:3] == ["/photos/3", "/photos/11", "/photos/10"] and len(again.recent_folders) == 8
    assert Path(again.q.fileName()).is_relative_to(app_env["settings"])
    with pytest.raises(ValueError):
        settings.providers = "tpu"


def test_window_geometry_is_remembered(qtbot, settings, catalog, contract_models_dir):
    from app.main_window import MainWindow

    win = MainWindow(settings, catalog=catalog, models_folder=contract_models_dir)
    qtbot.addWidget(win)
    win.show()
    win.resize(771, 555)  # within the offscreen screen (800 x 800)
    qtbot.waitUntil(lambda: win.size().width() == 771, timeout=WAIT_MS)
    win.close()
    win2 = MainWindow(settings, catalog=catalog, models_folder=contract_models_dir)
    qtbot.addWidget(win2)
    assert (win2.size().width(), win2.size().height()) == (771, 555)
    win2.close()


def test_missing_models_leave_browsing_and_editing_working(qtbot, settings, catalog, tmp_path, photo_album):
    from app.main_window import MainWindow

    empty = tmp_path / "no_models"
    empty.mkdir()
    win = MainWindow(settings, catalog=catalog, models_folder=empty)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: len(win.aging.models.errors) == 2, timeout=WAIT_MS)
    texts = " ".join(win.banner.texts())
    assert "aging.onnx" in texts and "age.onnx" in texts and "missing" in texts
    assert win.banner.isVisible()  # inline, not a dialog
    assert not win.act_export.isEnabled() and "Models: not loaded" in win.models_label.text()
    open_album(qtbot, win, photo_album)
    face = wait_face(qtbot, win)
    assert "aging.onnx" in win.timeline.placeholder and not win.timeline.has_groups
    win.layer.drag_point(30, tuple(face.face.landmarks[30] + 5))  # editing still works
    wait_writes(qtbot, win)
    assert win.catalog.face(face.id).edited
    win.close()


def test_a_damaged_model_is_named(qtbot, settings, catalog, tmp_path, contract_models_dir):
    from app.main_window import MainWindow

    models = tmp_path / "models"
    shutil.copytree(contract_models_dir, models)
    data = bytearray((models / "aging.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (models / "aging.onnx").write_bytes(bytes(data))
    win = MainWindow(settings, catalog=catalog, models_folder=models)
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: bool(win.aging.models.errors), timeout=WAIT_MS)
    assert any("aging.onnx" in t and "damaged" in t for t in win.banner.texts())
    assert win.aging.models.age is not None  # the other model still works
    win.close()


def test_gpu_asked_for_but_not_there_is_said_and_cpu_shown(qtbot, settings, catalog, contract_models_dir):
    import onnxruntime as ort

    from app.main_window import MainWindow

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a GPU provider")
    settings.providers = "gpu"
    win = MainWindow(settings, catalog=catalog, models_folder=contract_models_dir)
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.aging.available, timeout=WAIT_MS)
    assert win.models_label.text() == "Models on CPU"
    assert any("No GPU" in t for t in win.banner.texts())
    win.close()


def test_preferences_dialog_applies_and_the_window_follows(qtbot, window, monkeypatch):
    from app import main_window
    from app.settings import PreferencesDialog

    d = PreferencesDialog(window.settings, window.aging.models.providers_in_use)
    qtbot.addWidget(d)
    assert d.in_use_label.text() == "CPU"
    assert d.apply() == set()  # nothing changed

    def exec_(self):
        self.providers_combo.setCurrentIndex(self.providers_combo.findData("cpu"))
        self.detection_combo.setCurrentIndex(self.detection_combo.findData("accurate"))
        self.thumb_spin.setValue(200)
        return 1

    monkeypatch.setattr(main_window.PreferencesDialog, "exec", exec_)
    old_models = window.aging.models
    window.show_preferences()
    assert window.settings.providers == "cpu" and window.settings.detection_mode == "accurate"
    assert window.album.loader.size == 200 and window.album.delegate.size == 200
    qtbot.waitUntil(lambda: window.aging.models is not old_models, timeout=WAIT_MS)  # reloaded on the CPU
    assert window.aging.models.requested == "cpu"


def test_a_catalog_that_cannot_be_opened_is_a_message(qtbot, settings, app_env, contract_models_dir):
    from app.main_window import MainWindow

    app_env["data"].mkdir(parents=True)
    (app_env["data"] / "catalog.sqlite3").write_bytes(b"not a database at all" * 100)
    win = MainWindow(settings, models_folder=contract_models_dir)
    qtbot.addWidget(win)
    assert any("catalog could not be opened" in t for t in win.banner.texts())
    assert str(win.catalog.path) == ":memory:"
    win.close()


def test_qt_calls_do_not_exhaust_none_true_and_false(qapp):
    """PySide6 6.12 on Python 3.11 loses references to these (app/_compat.py): the app must survive
    many more calls than they had references."""
    import sys

    import app  # noqa: F401  (applies the work-around)

    class Emitter(QObject):
        flag = Signal(bool)

    w, e = QWidget(), Emitter()
    e.flag.connect(lambda on: None)
    for i in range(50_000):
        w.update()
        e.flag.emit(i % 2 == 0)
    assert sys.getrefcount(None) > 1000 and sys.getrefcount(True) > 1000 and sys.getrefcount(False) > 1000
    assert np.all(np.isfinite([sys.getrefcount(None)]))
