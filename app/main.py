"""The desktop application's entry point: ``agelapse`` / ``python -m app``.

    python -m app [FOLDER] [--models DIR] [-v]

Without a folder the last album is opened again. (The README's screenshot is made by
``tools/screenshot.py``, which is not shipped.)

On Linux, before the application is created, the system libraries of Qt's X11 (xcb) platform are looked
for (:func:`missing_qt_libraries`): when some are missing, Qt's own message names the wrong one, so we
print which are missing and the one ``apt-get install`` line that installs them, and exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("agelapse.app")


#: The shared libraries Qt's xcb platform plugin loads (soname -> the Debian/Ubuntu package holding it).
XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
}


def _loads(soname: str) -> bool:
    import ctypes

    try:
        ctypes.CDLL(soname)
        return True
    except OSError:
        return False


def missing_qt_libraries(environ=None, platform: str | None = None, loads=None) -> list[str]:
    """The sonames of XCB_LIBRARIES that cannot be loaded, when Qt would use its xcb platform here (Linux,
    QT_QPA_PLATFORM unset or xcb, not a Wayland session); else []."""
    environ = os.environ if environ is None else environ
    loads = loads or _loads
    if not (platform or sys.platform).startswith("linux"):
        return []
    qpa = environ.get("QT_QPA_PLATFORM", "")
    if qpa and not qpa.startswith("xcb"):
        return []  # offscreen, wayland, eglfs, ...: not xcb
    if not qpa and environ.get("WAYLAND_DISPLAY") and environ.get("XDG_SESSION_TYPE") == "wayland":
        return []
    return [name for name in XCB_LIBRARIES if not loads(name)]


def qt_libraries_message(missing: list[str]) -> str:
    packages = " ".join(dict.fromkeys(XCB_LIBRARIES[m] for m in missing))
    return (f"agelapse: the window cannot open: Qt needs system libraries that are missing here "
            f"({', '.join(missing)}). Install them with:\n\n    sudo apt-get install {packages}\n\n"
            "(other systems: install the packages that provide those files). agelapse-cli works without them.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agelapse", description="Agelapse: watch the faces in your photos age.")
    p.add_argument("folder", nargs="?", type=Path, help="a folder of photos to open")
    p.add_argument("--album", type=Path, metavar="DIR", help="the folder of photos to open (same as FOLDER)")
    p.add_argument("--models", type=Path, metavar="DIR",
                   help="folder with aging.onnx, age.onnx and manifest.json (default: the preferences, else the bundled models)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    return p


def make_app(argv: list[str] | None = None):
    """The QApplication (created once), named and themed."""
    from PySide6.QtWidgets import QApplication

    from app.settings import APPLICATION, ORGANISATION
    from app.theme import apply_theme

    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0]] + list(argv or []))
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("Agelapse")
    apply_theme(app)
    return app


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # face finding runs in helper processes (app.face_process); PyInstaller needs this
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    folder = args.album or args.folder
    missing = missing_qt_libraries()
    if missing:
        print(qt_libraries_message(missing), file=sys.stderr)
        return 1
    app = make_app()
    from app.main_window import MainWindow
    from app.settings import Settings

    settings = Settings()
    window = MainWindow(settings, models_folder=args.models)
    window.show()
    if folder is None and settings.recent_folders and os.path.isdir(settings.recent_folders[0]):
        folder = Path(settings.recent_folders[0])
    if folder is not None:
        window.open_folder(folder)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
