"""The album's background scan for faces: ``core.scan.scan_paths`` on the "scan" pool, with progress,
per-photo results (for the badges) and cancel.

The scan reports each photo as it is finished: ``photo_scanned(path, faces)`` with the face count, or -1
for a photo that could not be read (its message goes to ``photo_failed``). Unchanged photos already in the
catalog are skipped by the engine (``Catalog.needs_scan``) unless ``rescan`` is set.

Every core: the engine searches the photos in its pool of helper processes (``core.scan``, ``workers``:
one per core), in order, each helper decoding its own photos; a scan of only a few photos to search uses
the app's warm "scan" helper instead (``app.face_process``), and so does the app when helpers run on
threads (``AGELAPSE_DLIB_IN_PROCESS=1``). Either way dlib never runs on the GUI's process.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.finders import face_finder
from app.tasks import TaskRunner
from core.text import display

log = logging.getLogger(__name__)


class ScanController(QObject):
    started = Signal(int)  # photos to scan
    progress = Signal(int, int)  # done, total
    # paths as Python str (object): a QString would silently drop the bytes of a name that is not UTF-8
    photo_scanned = Signal(object, int)  # path, faces (-1 unreadable)
    photo_failed = Signal(object, str)  # path, message
    finished = Signal(object)  # core.scan.ScanReport (cancelled set when cancelled, or stopped)
    stopped = Signal(str)  # why the scan stopped before its end (an error outside any one photo)

    def __init__(self, runner: TaskRunner, catalog, mode_getter=lambda: "fast", parent: QObject | None = None):
        super().__init__(parent)
        self.runner = runner
        self.catalog = catalog
        self.mode_getter = mode_getter
        self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self, paths: list[Path], rescan: bool = False) -> None:
        """Scan ``paths`` (a running scan is cancelled first)."""
        self.cancel()
        paths = list(paths)
        self.started.emit(len(paths))
        task = self.runner.submit(
            _scan, paths, self.catalog, self.mode_getter(), rescan, key="scan", pool="scan",
            on_progress=self._on_progress, on_result=self._on_finished,
            on_error=lambda exc: self._on_finished(None, exc),
        )
        self._task = task

    def cancel(self) -> None:
        """Stop the scan between two photos; what is done stays in the catalog."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            from core.scan import ScanReport

            self.finished.emit(ScanReport(cancelled=True))

    def _on_progress(self, done: int, total: int | None, payload) -> None:
        for path, count, message in payload or ():
            self.photo_scanned.emit(path, count)
            if message:
                self.photo_failed.emit(path, message)
        self.progress.emit(done, total or 0)

    def _on_finished(self, report, exc: Exception | None = None) -> None:
        self._task = None
        if exc is not None:
            from core.errors import describe
            from core.scan import ScanReport

            log.warning("the scan stopped", exc_info=(type(exc), exc, exc.__traceback__))
            self.stopped.emit(display(describe(exc)))
            report = ScanReport(cancelled=True)
        self.finished.emit(report)


def _scan(paths: list[Path], catalog, mode: str, rescan: bool, ctx):
    """Worker: scan, reporting each finished photo (read from the report as it grows)."""
    from core.scan import ScanReport, scan_paths

    report = ScanReport()
    seen = {"faces": 0, "errors": 0, "skipped": 0}

    def progress(done: int, total: int) -> None:
        new = []
        faces = list(report.faces.items())
        for path, count in faces[seen["faces"]:]:
            new.append((str(path), count, None))
        for path, message in report.errors[seen["errors"]:]:
            new.append((str(path), -1, message))
        for path in report.skipped[seen["skipped"]:]:
            rec = catalog.photo(path) if catalog is not None else None
            if rec is not None:
                new.append((str(path), -1 if rec.scan_state == "error" else rec.face_count, None))
        seen.update(faces=len(faces), errors=len(report.errors), skipped=len(report.skipped))
        ctx.progress(done, total, new)

    import os

    from core.faces import FaceFinder

    pool_finder = None if os.environ.get("AGELAPSE_DLIB_IN_PROCESS") == "1" else FaceFinder(mode)
    scan_paths(paths, face_finder(mode, "scan"), catalog=catalog, progress=progress, cancel=ctx.cancelled,
               rescan=rescan, detector=mode, report=report, workers=None, pool_finder=pool_finder)
    return report
