"""Helpers of the GUI tests (tests/test_app_*.py) and the GUI benchmark: waiting for the window's
background work (qtbot.waitUntil, never sleeps), real mouse drags, photos written as JPEG. The fixtures
themselves (app_env, settings, catalog, photo_album, window) are in tests/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

WAIT_MS = 60_000  # generous: the machine is shared with model training


def write_jpeg(rgb: np.ndarray, path: Path, quality: int = 92) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=quality)
    return path


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
