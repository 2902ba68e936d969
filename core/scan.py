"""Scan an album: list its photos, decode each, find its faces and landmarks, store them in the catalog.

One bad photo never stops a scan: a file that cannot be read (PhotoError) or on which the face finder fails
is recorded in the report (and as 'error' in the catalog) and the scan goes on. `cancel()` is checked
between photos, so a cancelled scan stops cleanly: every photo finished so far is committed, the one under
way is not half-stored (the catalog writes a photo and its faces in one transaction).

With a catalog, photos whose size and mtime are unchanged since their last scan are skipped unless
`rescan` is True (see `Catalog.needs_scan`; unchanged photos that failed are not retried either).

Every core: dlib holds the GIL, so threads would not help; with ``workers`` > 1 (None: every core) and a
`core.faces.FaceFinder`, photos are decoded and searched in a pool of helper processes (started with
"spawn": never a fork of a process that runs Qt threads), each with its own finder built from the given
finder's settings. The calling thread keeps the catalog: results are taken in the order of ``paths`` and
written one photo per transaction exactly as without a pool, so progress, the report and the catalog read
the same; a few photos are in flight at a time (``2 * workers``), so a cancelled scan stops within the
photos under way, none of which is stored. A helper that dies (a crash in a decoder or dlib) fails the
photo it was on, and the scan goes on with a new pool. Scans of fewer than ``POOL_MIN_PHOTOS`` photos to
search run in the calling thread (starting the helpers and loading their models costs about a second),
and then the finder is used from the calling thread only (`FaceFinder` is not thread-safe): run the whole
scan on one worker thread.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque
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

POOL_MIN_PHOTOS = 8


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


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
    workers: int | None = 1,
    pool_finder=None,
) -> ScanReport:
    """Scan the given photo files (see the module doc). `progress(done, total)` after each photo, in order;
    `detector` is recorded in the catalog (default: the finder's `mode` attribute, if it has one);
    `workers`: helper processes searching photos at once (1: this thread only; None: every core);
    `pool_finder`: the `FaceFinder` whose settings the helpers use (default: `finder`, when it is one), so a
    caller whose own finder cannot travel to a process (the app's) still gets the pool."""
    start = time.perf_counter()
    paths = [Path(p) for p in paths]
    report = report if report is not None else ScanReport()
    report.listed = len(paths)
    detector = detector if detector is not None else getattr(finder, "mode", None)
    workers = cpu_count() if workers is None else max(1, int(workers))
    pool_finder = pool_finder if pool_finder is not None else finder
    plan = None
    if workers > 1 and _poolable(pool_finder):
        plan = [_plan_one(p, catalog, rescan) for p in paths]  # stat + catalog check, cheap
        if sum(1 for item in plan if item[1] is not None) < POOL_MIN_PHOTOS:
            plan = None
    if plan is None:
        for i, path in enumerate(paths):
            if cancel is not None and cancel():
                report.cancelled = True
                log.info("scan cancelled after %d of %d photos", i, len(paths))
                break
            _scan_one(path, finder, catalog, rescan, detector, max_pixels, report)
            if progress is not None:
                progress(i + 1, len(paths))
    else:
        _scan_pooled(plan, finder, pool_finder, catalog, progress, cancel, detector, max_pixels, report, workers)
    report.seconds += time.perf_counter() - start
    return report


def _poolable(finder) -> bool:
    from core.faces import FaceFinder

    return isinstance(finder, FaceFinder)


def _plan_one(path: Path, catalog, rescan) -> tuple[Path, os.stat_result | None, str | None]:
    """(path, stat to search it with or None, message when the file cannot be read); (path, None, None):
    unchanged since its last scan."""
    try:
        st = path.stat()
    except OSError as exc:
        return path, None, f"cannot read file ({exc.strerror or describe(exc)})"
    if catalog is not None and not rescan and not catalog.needs_scan(path, st.st_size, st.st_mtime_ns):
        return path, None, None
    return path, st, None


# -- helper processes of a pooled scan

_worker_finder = None


def _init_worker(finder) -> None:
    global _worker_finder
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the calling process's to handle
    _worker_finder = finder


def _search(path: Path, max_pixels: int | None) -> tuple:
    """In a helper: ("ok", faces, width, height) or ("error", message) for one photo."""
    try:
        photo = load_photo(path, max_pixels=max_pixels)
    except PhotoError as exc:
        return "error", exc.reason
    except OSError as exc:
        return "error", f"cannot read file ({exc.strerror or describe(exc)})"
    except MemoryError:
        return "error", "not enough memory to decode this photo"
    try:
        faces = _worker_finder.detect(photo.rgb)
    except Exception as exc:  # noqa: BLE001 - this photo fails, the scan goes on
        log.debug("face finding failed on %s", path, exc_info=True)
        return "error", f"face finding failed ({describe(exc)})"
    return "ok", faces, photo.width, photo.height


def _start_pool(finder, workers: int):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(finder,))


def _scan_pooled(plan, finder, pool_finder, catalog, progress, cancel, detector, max_pixels, report, workers) -> None:
    from concurrent.futures import Future
    from concurrent.futures import TimeoutError as FutureTimeout
    from concurrent.futures.process import BrokenProcessPool

    total = len(plan)
    pool = _start_pool(pool_finder, workers)
    broken = 0  # pools broken so far; two before any result: no helpers here, the rest runs in this thread
    delivered = False
    isolate_until = -1  # after a helper died, the photos then in flight are searched one at a time
    window: deque = deque()  # (index, path, stat, future or None), in the order of ``paths``
    following = 0

    def submit(path):
        # a helper that died between two submissions breaks the pool before any result says so:
        # the photo gets the pool's failure, handled below like a failure seen in a result
        try:
            return pool.submit(_search, path, max_pixels)
        except BrokenProcessPool as exc:
            failed: Future = Future()
            failed.set_exception(exc)
            return failed

    def fill() -> None:
        nonlocal following
        while following < total and len(window) < (1 if following <= isolate_until else 2 * workers):
            path, st, message = plan[following]
            window.append((following, path, st, submit(path) if st is not None else None))
            following += 1

    try:
        while following < total or window:
            if cancel is not None and cancel():
                report.cancelled = True
                log.info("scan cancelled after %d of %d photos", window[0][0] if window else following, total)
                break
            if pool is None:  # no helper processes here: this thread, in order, as without a pool
                index, (path, st, message) = following, plan[following]
                following += 1
                if st is None:
                    if message is None:
                        report.skipped.append(path)
                    else:
                        _record_error(path, message, None, catalog, report)
                else:
                    _scan_one(path, finder, catalog, True, detector, max_pixels, report)
                if progress is not None:
                    progress(index + 1, total)
                continue
            fill()
            index, path, st, future = window[0]
            if future is not None:
                try:
                    result = future.result(timeout=0.1)
                except FutureTimeout:
                    continue  # look at cancel() again
                except BrokenProcessPool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    broken += 1
                    if not delivered and broken >= 2:
                        log.warning("face finder processes cannot run here; scanning in this thread")
                        pool, following = None, index
                        window.clear()
                        continue
                    pool = _start_pool(pool_finder, workers)
                    if len(window) > 1:  # which photo killed it? search those in flight one at a time
                        isolate_until = window[-1][0]
                        following = index
                        window.clear()
                        continue
                    log.warning("a face finder process stopped while scanning %s; starting new ones", path)
                    result = ("error", "face finding failed (its process stopped)")
                else:
                    delivered = True
            window.popleft()
            if future is None:
                message = plan[index][2]
                if message is None:
                    report.skipped.append(path)
                else:
                    _record_error(path, message, None, catalog, report)
            elif result[0] == "ok":
                _, faces, width, height = result
                if catalog is not None:
                    catalog.mark_scanned(path, faces, size=st.st_size, mtime_ns=st.st_mtime_ns, width=width,
                                         height=height, detector=detector)
                report.faces[path] = len(faces)
                log.debug("%s: %d faces", path, len(faces))
            else:
                _record_error(path, result[1], st, catalog, report)
            if progress is not None:
                progress(index + 1, total)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


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
    _record_error(path, message, st, catalog, report)


def _record_error(path, message, st, catalog, report) -> None:
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
    workers: int | None = 1,
    pool_finder=None,
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
               max_pixels=max_pixels, report=report, workers=workers, pool_finder=pool_finder)
    log.info("scan of %s: %s", root, report.summary())
    return report
