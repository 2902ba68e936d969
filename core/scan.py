"""Scan an album: list its photos, decode each, find its faces and landmarks, store them in the catalog.

One bad photo never stops a scan: a file that cannot be read (PhotoError) or on which the face finder fails
is recorded in the report (and as 'error' in the catalog) and the scan goes on. `cancel()` is checked
between photos, so a cancelled scan stops cleanly: every photo finished so far is committed, the one under
way is not half-stored (the catalog writes a photo and its faces in one transaction).

With a catalog, photos whose size and mtime are unchanged since their last scan are skipped unless
`rescan` is True (see `Catalog.needs_scan`; unchanged photos that failed are not retried either).

The finder is used from the calling thread only (`FaceFinder` is not thread-safe): run the whole scan on
one worker thread.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from core.album import list_images
from core.catalog import Catalog
from core.errors import PhotoError, describe
from core.faces import Face
from core.photos import DEFAULT_MAX_PIXELS, load_photo

log = logging.getLogger(__name__)


class Finder(Protocol):
    """What the scanner needs of a face finder (`core.faces.FaceFinder` is one)."""

    def detect(self, rgb: np.ndarray) -> list[Face]: ...


@dataclass
class ScanReport:
    """What a scan did. `faces` maps each photo scanned now to its face count; `errors` lists
    (path, message) for the photos that failed; `skipped` the unchanged photos not scanned again."""

    listed: int = 0
    faces: dict[Path, int] = field(default_factory=dict)
    errors: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def scanned(self) -> int:
        """Photos decoded and searched for faces in this scan (successfully)."""
        return len(self.faces)

    @property
    def face_total(self) -> int:
        return sum(self.faces.values())

    def summary(self) -> str:
        text = (
            f"{self.listed} photos: {self.scanned} scanned ({self.face_total} faces), "
            f"{len(self.skipped)} unchanged, {len(self.errors)} errors in {self.seconds:.1f} s"
        )
        return text + (" (cancelled)" if self.cancelled else "")


def scan_paths(
    paths: Iterable[str | os.PathLike],
    finder: Finder,
    *,
    catalog: Catalog | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    rescan: bool = False,
    detector: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    report: ScanReport | None = None,
) -> ScanReport:
    """Scan the given photo files (see the module doc). `progress(done, total)` after each photo;
    `detector` is recorded in the catalog (default: the finder's `mode` attribute, if it has one)."""
    start = time.perf_counter()
    paths = [Path(p) for p in paths]
    report = report if report is not None else ScanReport()
    report.listed = len(paths)
    detector = detector if detector is not None else getattr(finder, "mode", None)
    for i, path in enumerate(paths):
        if cancel is not None and cancel():
            report.cancelled = True
            log.info("scan cancelled after %d of %d photos", i, len(paths))
            break
        _scan_one(path, finder, catalog, rescan, detector, max_pixels, report)
        if progress is not None:
            progress(i + 1, len(paths))
    report.seconds += time.perf_counter() - start
    return report


def _scan_one(path, finder, catalog, rescan, detector, max_pixels, report) -> None:
    """Scan one photo. Problems with the photo are reported; catalog (database) errors propagate."""
    st = None
    try:
        st = path.stat()
        if catalog is not None and not rescan and not catalog.needs_scan(path, st.st_size, st.st_mtime_ns):
            report.skipped.append(path)
            return
        photo = load_photo(path, max_pixels=max_pixels)
    except PhotoError as exc:
        message = exc.reason
    except OSError as exc:  # vanished or unreadable between listing and scanning
        message = f"cannot read file ({exc.strerror or describe(exc)})"
    except MemoryError:  # e.g. rotating a huge photo: this photo fails, the scan goes on
        message = "not enough memory to decode this photo"
    else:
        try:
            faces = finder.detect(photo.rgb)
        except Exception as exc:  # dlib RuntimeError, FaceError, ...: this photo fails, the scan goes on
            log.debug("face finding failed on %s", path, exc_info=True)  # the traceback, for -vv / --debug
            message = f"face finding failed ({describe(exc)})"
        else:
            if catalog is not None:
                catalog.mark_scanned(
                    path, faces, size=st.st_size, mtime_ns=st.st_mtime_ns, width=photo.width,
                    height=photo.height, detector=detector,
                )
            report.faces[path] = len(faces)
            log.debug("%s: %d faces", path, len(faces))
            return
    log.warning("skipped %s: %s", path, message)
    report.errors.append((path, message))
    if catalog is not None:
        catalog.mark_error(path, message, size=st.st_size if st else None, mtime_ns=st.st_mtime_ns if st else None)


def scan_folder(
    root: str | os.PathLike,
    finder: Finder,
    *,
    catalog: Catalog | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    rescan: bool = False,
    detector: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> ScanReport:
    """List the photos under `root` (`core.album.list_images`) and scan them (`scan_paths`); folders that
    cannot be read are reported in `errors` too."""
    start = time.perf_counter()
    report = ScanReport()
    def folder_error(folder: Path, exc: OSError) -> None:
        report.errors.append((folder, f"cannot read folder ({exc.strerror or exc})"))

    paths = list_images(root, cancel=cancel, on_error=folder_error)
    if cancel is not None and cancel():
        report.listed, report.cancelled = len(paths), True
        report.seconds = time.perf_counter() - start
        return report
    report.seconds = time.perf_counter() - start
    scan_paths(paths, finder, catalog=catalog, progress=progress, cancel=cancel, rescan=rescan, detector=detector,
               max_pixels=max_pixels, report=report)
    log.info("scan of %s: %s", root, report.summary())
    return report
