"""Exports as jobs: what an export writes (:func:`plan`) and writing it (:func:`run_export`).

The one export path of Agelapse: the command line (``core.cli``) and the app (``app.export_dialog``) only
build :class:`ExportOptions` and :class:`ExportSource` and show the progress.

Kinds of export, for each photo (a given face; without one, the photo's first face from the catalog, found
now if the photo was never scanned):

- ``single``  the whole photo (or the face's area) with the face at one timeline position;
- ``groups``  one file per age group (``ExportOptions.groups``: only those, in that order);
- ``strip``   every age group in one image, one row or a grid (``core.export.make_strip``), labelled;
- ``gif`` / ``mp4``  the timeline as an animation, ``steps`` frames from one group to the next.

Each photo costs one batched inference (``AgingPipeline.age_all_groups``); stills are pasted back at full
resolution (``AgingPipeline.render``) then scaled; animation frames are rendered at their output size
(``core.render.FrameRenderer`` over the chosen area), which is what makes a GIF of a 12 MP photo quick.

Files are never overwritten by accident: the caller computes the targets with :func:`plan` (or names its
own), asks the person about those that exist, then passes ``overwrite=True`` or targets made free with
``core.export.unique_path`` (:func:`make_unique`). ``core.export`` still refuses (ExportError) a file that
appears meanwhile; that file is reported in the errors and the rest is written.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.align import paste_back_region, source_rect
from core.errors import AgelapseError, ExportError, FaceError
from core.export import make_strip, save_gif, save_image, save_mp4, unique_path
from core.photos import load_photo
from core.pipeline import effective_strengths
from core.render import FrameRenderer
from core.text import file_label
from core.timeline import position_label

log = logging.getLogger(__name__)

KINDS = ("single", "groups", "strip", "gif", "mp4")
STILL_FORMATS = ("jpg", "png", "webp")
ANIMATION_SIDE = 640  # the long side of animation frames when ``max_side`` is 0


@dataclass
class ExportOptions:
    folder: Path
    kind: str = "single"
    position: float = 0.0  # single: the timeline position
    area: str = "photo"  # "photo" | "face"
    fmt: str = "jpg"  # stills
    quality: int = 92
    max_side: int = 0  # long side in px; 0 = the original size (stills), ANIMATION_SIDE for animations
    columns: int = 0  # strip: 0 = one row
    fps: float = 8.0
    steps: int = 6
    labels: bool = True  # animations: the group under each frame
    groups: Sequence[int] | None = None  # groups: the group indices to write (None: all)

    def __post_init__(self):
        self.folder = Path(self.folder)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        if self.fmt not in STILL_FORMATS:
            raise ValueError(f"format must be one of {STILL_FORMATS}")
        if self.area not in ("photo", "face"):
            raise ValueError("area must be 'photo' or 'face'")


@dataclass
class ExportSource:
    path: Path
    face: object | None = None  # core.faces.Face; None: the photo's first face
    strengths: dict = field(default_factory=dict)  # as stored in the catalog (core.pipeline.effective_strengths)
    face_index: int = 0  # which face of the photo (file names say so when > 0)
    photo: object | None = None  # core.photos.Photo when the caller has decoded it already


@dataclass
class ExportReport:
    written: list[Path] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (photo or file, message)
    cancelled: bool = False
    failures: list[AgelapseError | ValueError] = field(default_factory=list)  # why whole photos failed


def _stem(src: ExportSource) -> str:
    return Path(src.path).stem + (f"_face{src.face_index + 1}" if src.face_index else "")


def plan(sources: list[ExportSource], options: ExportOptions, labels: list[str],
         groups: list | None = None) -> list[list[Path]]:
    """The files each source will write, in order (names unique within the plan). ``labels``: the model's
    group labels; ``groups``: its (lo, hi) age groups, for naming a position between two groups."""
    out: list[list[Path]] = []
    taken: set[str] = set()
    ext = options.fmt
    for src in sources:
        stem = _stem(src)
        if options.kind == "single":
            names = [f"{stem}_{file_label(position_label(options.position, labels, groups))}.{ext}"]
        elif options.kind == "groups":
            chosen = range(len(labels)) if options.groups is None else options.groups
            names = [f"{stem}_{file_label(labels[g])}.{ext}" for g in chosen]
        elif options.kind == "strip":
            names = [f"{stem}_ages.{ext}"]
        else:
            names = [f"{stem}_timeline.{options.kind}"]
        paths = []
        for name in names:
            p = options.folder / name
            n = 2
            while os.path.normcase(str(p)) in taken:
                p = options.folder / f"{Path(name).stem} ({n}){Path(name).suffix}"
                n += 1
            taken.add(os.path.normcase(str(p)))
            paths.append(p)
        out.append(paths)
    return out


def existing(targets: list[list[Path]]) -> list[Path]:
    return [p for paths in targets for p in paths if os.path.lexists(p)]


def make_unique(targets: list[list[Path]]) -> list[list[Path]]:
    """Targets with every existing (or repeated) name replaced by a free "name (2).ext"
    (``core.export.unique_path``; names this plan already uses count as taken too)."""
    taken: set[str] = set()
    out = []
    for paths in targets:
        row = []
        for p in paths:
            q = unique_path(p)
            if os.path.normcase(str(q)) in taken:
                stem = re.sub(r" \(\d+\)$", "", p.stem)
                n = 2
                while os.path.normcase(str(q)) in taken or os.path.lexists(q):
                    q = p.with_name(f"{stem} ({n}){p.suffix}")
                    n += 1
            taken.add(os.path.normcase(str(q)))
            row.append(q)
        out.append(row)
    return out


def fit(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """``rgb`` scaled down (area interpolation) so that its long side is at most ``max_side`` (0: as it is)."""
    h, w = rgb.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


def labelled(frames: list[np.ndarray], labels: list[str]) -> list[np.ndarray]:
    """Each frame with its label in a band underneath, all frames the same size (white padding)."""
    out = [make_strip([f], [label], gap=0) for f, label in zip(frames, labels)]
    h, w = max(f.shape[0] for f in out), max(f.shape[1] for f in out)
    return [np.pad(f, ((0, h - f.shape[0]), (0, w - f.shape[1]), (0, 0)), constant_values=255)
            if f.shape[:2] != (h, w) else f for f in out]


def run_export(sources: list[ExportSource], options: ExportOptions, pipeline, targets: list[list[Path]], *,
               overwrite: bool = False, catalog=None, finder=None,
               progress: Callable[[int, int], None] | None = None,
               cancel: Callable[[], bool] | None = None) -> ExportReport:
    """Write every source's files (see the module doc). One bad photo does not stop the others: its
    message is in ``errors`` and its exception in ``failures``; a file that cannot be written is in
    ``errors`` alone."""
    report = ExportReport()
    labels = pipeline.labels
    total = sum(len(t) for t in targets) + len(sources)
    done = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    def cancelled() -> bool:
        if cancel is not None and cancel():
            report.cancelled = True
        return report.cancelled

    for src, paths in zip(sources, targets):
        if cancelled():
            break
        try:
            photo = src.photo if src.photo is not None else load_photo(src.path)
            face, strengths = src.face, src.strengths
            if face is None:
                face, strengths = _first_face(src.path, photo, catalog, finder)
            prepared = pipeline.prepare(photo.rgb, face, effective_strengths(strengths))
            results = pipeline.age_all_groups(prepared)
            tick()
            h, w = photo.rgb.shape[:2]
            rect = (0, 0, w, h) if options.area == "photo" else source_rect(prepared.matrix, prepared.size, (h, w))
            x0, y0, x1, y1 = rect

            def still(aligned: np.ndarray) -> np.ndarray:
                region, _ = paste_back_region(photo.rgb, prepared.matrix, prepared.aligned, aligned, prepared.mask,
                                              rect)  # the rectangle only: no copy of the whole photo per still
                return fit(region, options.max_side)

            def save(rgb: np.ndarray, target: Path) -> None:
                _write(report, target, save_image, rgb, quality=options.quality, exif=photo.exif, overwrite=overwrite)
                tick()

            if options.kind == "single":
                save(still(pipeline.blend(results, options.position)), paths[0])
            elif options.kind == "groups":
                chosen = range(len(results)) if options.groups is None else options.groups
                for g, target in zip(chosen, paths):
                    if cancelled():
                        break
                    save(still(results.aged[g]), target)
            elif options.kind == "strip":
                cells = [still(aged) for aged in results.aged]
                save(make_strip(cells, labels, columns=options.columns or None), paths[0])
            else:
                frames = _animation_frames(photo.rgb, prepared, results, rect, options, cancelled)
                if frames is None:
                    break
                writer = save_gif if options.kind == "gif" else save_mp4
                _write(report, paths[0], writer, frames, fps=options.fps, overwrite=overwrite)
                tick()
        except (AgelapseError, ValueError) as exc:  # ValueError: e.g. a strength out of range
            log.warning("export of %s failed: %s", src.path, exc)
            report.errors.append((str(src.path), str(exc)))
            report.failures.append(exc)
            tick(len(paths) + 1)
    return report


def _write(report: ExportReport, target: Path, writer, data, **kw) -> None:
    try:
        report.written.append(writer(data, target, **kw))
    except ExportError as exc:
        report.errors.append((str(target), str(exc)))


def _animation_frames(rgb, prepared, results, rect, options: ExportOptions, cancelled) -> list[np.ndarray] | None:
    """The timeline's frames over ``rect``, rendered at their output size (None when cancelled)."""
    k = len(results)
    renderer = FrameRenderer(rgb, prepared, results, rect=rect)
    x0, y0, x1, y1 = rect
    scale = min(1.0, (options.max_side or ANIMATION_SIDE) / max(1, x1 - x0, y1 - y0))
    positions = np.linspace(0, k - 1, (k - 1) * max(1, options.steps) + 1)
    frames = []
    for p in positions:
        if cancelled():
            return None
        frames.append(renderer.render(float(p), scale, quantise=False)[0])
    if options.labels:
        frames = labelled(frames, [results.labels[int(round(p))] for p in positions])
    return frames


def _first_face(path: Path, photo, catalog, finder):
    """The photo's first face and its strengths: from the catalog, else found now."""
    if catalog is not None:
        stored = catalog.faces(path)
        if stored:
            return stored[0].face, stored[0].strengths
    if finder is None:
        raise FaceError(f"{path}: no face known (scan the album first)")
    faces = finder.detect(photo.rgb)
    if not faces:
        raise FaceError(f"{Path(path).name}: no face found")
    if catalog is not None:
        st = Path(path).stat()
        catalog.mark_scanned(path, faces, size=st.st_size, mtime_ns=st.st_mtime_ns, width=photo.width,
                             height=photo.height, detector=getattr(finder, "mode", None))
    return faces[0], {}
