"""The README's picture: ``python tools/screenshot.py FILE [--album DIR] [--models DIR] [--size 1500x940]``.

A developer tool, not shipped with the app (it may use scikit-image, a development dependency). It
starts the main window, drives it through its public interface as a person would (opens the album,
selects photos until one has a face, moves the timeline's handle with the keyboard), renders the window
into a PNG and exits.

It never touches the person's own settings, catalog or thumbnail cache: all three go to a temporary
folder. Without a display (no $DISPLAY / $WAYLAND_DISPLAY) Qt's offscreen platform is used. The album is
``--album`` (default: ../shared/data/album/face_recognition when present, else scikit-image's astronaut
portrait written to a temporary folder); the first photo in which a face is found is shown, its groups
computed, and the timeline handle moved a few decades past the face's estimated age.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
SHARED_ALBUM = ROOT.parent / "shared" / "data" / "album" / "face_recognition"


def spin_until(condition: Callable[[], bool], timeout: float, step_ms: int = 20) -> bool:
    """Run the Qt event loop until ``condition()`` is true (True) or ``timeout`` seconds pass (False)."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        loop = QEventLoop()
        QTimer.singleShot(step_ms, loop.quit)
        loop.exec()
    return True


def _default_album(tmp: Path) -> Path:
    if SHARED_ALBUM.is_dir():
        return SHARED_ALBUM
    try:
        from PIL import Image
        from skimage import data
    except ImportError:
        raise SystemExit("no album: pass --album DIR (a folder with at least one portrait)") from None
    folder = tmp / "album"
    folder.mkdir()
    Image.fromarray(data.astronaut()).save(folder / "astronaut.jpg", quality=92)
    return folder


def take_screenshot(target: str | os.PathLike, *, album: str | os.PathLike | None = None,
                    models: str | os.PathLike | None = None, size: tuple[int, int] = (1500, 940),
                    timeout: float = 180.0) -> int:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="agelapse-shot-"))
    os.environ["AGELAPSE_DATA_DIR"] = str(tmp / "data")
    os.environ["AGELAPSE_CACHE_DIR"] = str(tmp / "cache")

    from PySide6.QtCore import QSettings

    from app.main import make_app, missing_qt_libraries, qt_libraries_message
    from app.main_window import MainWindow
    from app.settings import Settings

    missing = missing_qt_libraries()
    if missing:
        print(qt_libraries_message(missing), file=sys.stderr)
        return 1
    app = make_app()
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))
    settings = Settings("AgelapseScreenshot", "Agelapse")
    album = Path(album) if album else _default_album(tmp)
    window = MainWindow(settings, models_folder=models)
    window.resize(*size)
    window.show()
    ok = _stage(window, album, timeout)
    spin_until(lambda: False, 0.3)  # let the last paints land
    image = window.grab().toImage()
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    saved = image.save(str(target))
    window.close()
    app.processEvents()
    shutil.rmtree(tmp, ignore_errors=True)
    if not saved:
        print(f"cannot write {target}", file=sys.stderr)
        return 1
    print(target)
    return 0 if ok else 1


def _stage(window, album: Path, timeout: float) -> bool:
    """Open the album, find a photo with a face, compute its groups, move the handle."""
    deadline = time.monotonic() + timeout
    left = lambda: max(1.0, deadline - time.monotonic())  # noqa: E731
    from PySide6.QtCore import Qt

    ed, ag = window.editor, window.aging
    window.open_folder(album)
    if not spin_until(lambda: window.album.model.rowCount() > 0, left()):
        print(f"no photos in {album}", file=sys.stderr)
        return False
    spin_until(lambda: ag.models.aging is not None or ag.models.errors, left())
    for row in range(window.album.model.rowCount()):
        path = window.album.model.path(row)
        seen = {"faces": None}
        conn = ed.faces_changed.connect(lambda faces, s=seen: s.update(faces=faces))
        window.album.select_row(row)
        spin_until(lambda: seen["faces"] is not None and ed.path == path, left())
        ed.faces_changed.disconnect(conn)
        if seen["faces"]:
            break
    else:
        print(f"no face found in {album}", file=sys.stderr)
        return False
    if not ag.available:
        print("the aging model is not loaded: the timeline shows why", file=sys.stderr)
        return False
    got = spin_until(lambda: ag.result is not None and (ag.pipeline.age is None or window.timeline.marker is not None), left())
    tl = window.timeline
    start = round(tl.marker) if tl.marker is not None else 2
    tl.setFocus()
    _key(tl, Qt.Key.Key_Home)  # the keys a person would press: to the first group, then one group a press
    for _ in range(min(len(tl.labels) - 1, start + 3)):
        _key(tl, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    spin_until(lambda: not window.scan.running, min(left(), 60.0))  # the badges of the whole album
    return got


def _key(widget, key, modifiers=None) -> None:
    from PySide6.QtCore import QEvent, Qt
    from PySide6.QtGui import QKeyEvent
    from PySide6.QtWidgets import QApplication

    modifiers = Qt.KeyboardModifier.NoModifier if modifiers is None else modifiers
    for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
        QApplication.sendEvent(widget, QKeyEvent(kind, key, modifiers))


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, not {text!r}") from None
    if w < 400 or h < 300:
        raise argparse.ArgumentTypeError("the window must be at least 400x300")
    return w, h


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="screenshot", description="Render Agelapse's main window into a PNG.")
    p.add_argument("target", type=Path, metavar="FILE")
    p.add_argument("--album", type=Path, metavar="DIR", help="a folder with at least one portrait")
    p.add_argument("--models", type=Path, metavar="DIR", help="the models folder (default: the bundled models)")
    p.add_argument("--size", type=_size, default=(1500, 940), help="window size (default 1500x940)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the work (default 180)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return take_screenshot(args.target, album=args.album, models=args.models, size=args.size, timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
