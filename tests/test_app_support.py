"""Fixtures and helpers of the GUI tests (test_app_*.py); this module holds no tests itself.

Every GUI test runs with its own QSettings location and organisation, and with AGELAPSE_DATA_DIR /
AGELAPSE_CACHE_DIR in its tmp folder, so the person's settings, catalog and thumbnails are never touched.
Background work is awaited with qtbot.waitUntil / waitSignal, never with sleeps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

WAIT_MS = 60_000  # generous: the machine is shared with model training


@pytest.fixture(autouse=True)
def app_env(tmp_path, monkeypatch, qapp):
    """Temporary data, cache and settings folders for this test."""
    from PySide6.QtCore import QSettings

    data, cache, conf = tmp_path / "data", tmp_path / "cache", tmp_path / "settings"
    monkeypatch.setenv("AGELAPSE_DATA_DIR", str(data))
    monkeypatch.setenv("AGELAPSE_CACHE_DIR", str(cache))
    monkeypatch.delenv("AGELAPSE_MODELS_DIR", raising=False)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(conf))
    return {"data": data, "cache": cache, "settings": conf}


@pytest.fixture
def settings(app_env):
    from app.settings import Settings

    s = Settings("AgelapseTest", "AgelapseTest")
    s.q.clear()
    assert str(app_env["settings"]) in s.q.fileName()  # never the person's own file
    return s


@pytest.fixture
def catalog(tmp_path):
    from core.catalog import Catalog

    cat = Catalog(tmp_path / "catalog.sqlite3")
    yield cat
    cat.close()


def write_jpeg(rgb: np.ndarray, path: Path, quality: int = 92) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=quality)
    return path


@pytest.fixture
def photo_album(tmp_path, astronaut) -> Path:
    """A small album: the astronaut portrait (and a copy in a subfolder), a photo without a face, and a
    file that is not a photo at all."""
    import cv2

    root = tmp_path / "album"
    write_jpeg(astronaut, root / "a_astronaut.jpg")
    write_jpeg(cv2.resize(astronaut, (768, 768), interpolation=cv2.INTER_CUBIC), root / "sub" / "b_astronaut_big.jpg")
    sky = np.zeros((300, 400, 3), np.uint8)
    sky[:] = np.linspace(90, 200, 400, dtype=np.uint8)[None, :, None]
    write_jpeg(sky, root / "c_sky.jpg")
    (root / "d_broken.jpg").write_text("this is not a photo")
    return root


@pytest.fixture
def window(qtbot, settings, catalog, contract_models_dir, tmp_path):
    """The main window with the contract models and a throw-away catalog and thumbnail cache."""
    from app.main import make_app
    from app.main_window import MainWindow
    from core.thumbnails import ThumbnailCache

    make_app()
    win = MainWindow(settings, catalog=catalog, models_folder=contract_models_dir,
                     thumb_cache=ThumbnailCache(tmp_path / "thumbs"))
    qtbot.addWidget(win)
    win.resize(1300, 850)
    win.show()
    qtbot.waitUntil(lambda: win.aging.available, timeout=WAIT_MS)
    yield win
    win.close()


def open_album(qtbot, win, folder: Path, select: Path | None = None) -> None:
    win.open_folder(folder, select)
    qtbot.waitUntil(lambda: win.album.model.rowCount() > 0, timeout=WAIT_MS)


def wait_face(qtbot, win, path: Path | None = None):
    """Wait until the shown photo (``path`` if given) has its faces and one is selected."""
    def ready():
        ed = win.editor
        return (path is None or ed.path == Path(os.path.abspath(path))) and ed.current_face() is not None
    qtbot.waitUntil(ready, timeout=WAIT_MS)
    return win.editor.current_face()


def wait_groups(qtbot, win):
    qtbot.waitUntil(lambda: win.aging.result is not None and win.timeline.has_groups and not win.timeline.busy,
                    timeout=WAIT_MS)
    return win.aging.result


def wait_writes(qtbot, win):
    """Wait until the catalog writes queued so far are done."""
    qtbot.waitUntil(lambda: win.runner.pending("io") == 0, timeout=WAIT_MS)


def scene_to_viewport(view, x: float, y: float):
    from PySide6.QtCore import QPointF

    return view.mapFromScene(QPointF(x, y))


def drag(qtbot, widget, start, end, steps: int = 5) -> None:
    """A real mouse drag (press, moves, release) on ``widget`` from ``start`` to ``end`` (QPoint)."""
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    def send(kind, pos, buttons):
        p = QPointF(pos)
        ev = QMouseEvent(kind, p, widget.mapToGlobal(p), Qt.MouseButton.LeftButton, buttons,
                         Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(widget, ev)

    from PySide6.QtCore import QEvent

    send(QEvent.Type.MouseButtonPress, start, Qt.MouseButton.LeftButton)
    for i in range(1, steps + 1):
        t = i / steps
        send(QEvent.Type.MouseMove, QPoint(round(start.x() + (end.x() - start.x()) * t),
                                           round(start.y() + (end.y() - start.y()) * t)), Qt.MouseButton.LeftButton)
    send(QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)
