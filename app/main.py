"""The desktop application's entry point: ``agelapse`` / ``python -m app``.

    python -m app [FOLDER] [--models DIR] [-v]
    python -m app --screenshot FILE [--album DIR] [--models DIR] [--size 1500x940]

Without a folder the last album is opened again. ``--screenshot`` renders the main window with a face
selected and the timeline filled into FILE (PNG) and exits (see ``app.screenshot``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("agelapse.app")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, not {text!r}") from None
    if w < 400 or h < 300:
        raise argparse.ArgumentTypeError("the window must be at least 400x300")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agelapse", description="Agelapse: watch the faces in your photos age.")
    p.add_argument("folder", nargs="?", type=Path, help="a folder of photos to open")
    p.add_argument("--album", type=Path, metavar="DIR", help="the folder of photos to open (same as FOLDER)")
    p.add_argument("--models", type=Path, metavar="DIR",
                   help="folder with aging.onnx, age.onnx and manifest.json (default: the preferences, else the bundled models)")
    p.add_argument("--screenshot", type=Path, metavar="FILE", help="render the main window into FILE and exit")
    p.add_argument("--size", type=_size, default=(1500, 940), help="window size for --screenshot (default 1500x940)")
    p.add_argument("--timeout", type=float, default=180.0, help="--screenshot: seconds to wait for the work (default 180)")
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
    if args.screenshot is not None:
        from app.screenshot import take_screenshot

        return take_screenshot(args.screenshot, album=folder, models=args.models, size=args.size, timeout=args.timeout)

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
