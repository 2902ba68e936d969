"""Preprocessing, once, cached on disk: landmarks, a template, aligned crops, region masks.

Pass 1 finds each face's 68 landmarks with core.faces (largest HOG face; for pre-cropped chips
where HOG finds nothing, a box covering the chip's usual face position, counted as a fallback;
faces whose landmarks fail are counted and listed in the report). The template is the
Procrustes mean of the training split's landmarks (core.align.make_template). Pass 2 aligns
every face with core.align at the training size and rasterises core.regions masks.

Cache layout (one folder per dataset and size):
  meta.json        size, template, counts, the report of failures/fallbacks
  samples.json     path, age, identity, gender, race, split per kept sample
  images.npy       uint8 (N, S, S, 3) aligned RGB
  landmarks.npy    float32 (N, 68, 2) in aligned pixels
  masks.npy        uint8 (N, 5, S, S) region masks (x255)
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from core import align, regions
from core.faces import FaceFinder
from .data import Sample, split_of

log = logging.getLogger(__name__)

CACHE_VERSION = 1
_finder: FaceFinder | None = None


def _read_rgb(path: Path) -> np.ndarray | None:
    buf = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _landmarks_one(path: str) -> tuple[str, np.ndarray | None, tuple[int, int] | None]:
    """(status, landmarks, (h, w)); status 'ok' | 'fallback' | 'unreadable' | 'noface'."""
    global _finder
    if _finder is None:
        _finder = FaceFinder(mode="fast", max_side=800, upsample=1, threshold=0.0)  # every chip holds a face
    rgb = _read_rgb(Path(path))
    if rgb is None:
        return "unreadable", None, None
    h, w = rgb.shape[:2]
    boxes = _finder.detect_boxes(rgb)
    status = "ok"
    if boxes:
        box = boxes[0][0]
    elif max(h, w) <= 400 and abs(h - w) <= 2:
        # A pre-cropped face chip (UTKFace style): the face fills the middle of the square.
        box = np.array([0.2 * w, 0.25 * h, 0.8 * w, 0.85 * h], dtype=np.float32)
        status = "fallback"
    else:
        return "noface", None, (h, w)
    return status, _finder.landmarks(rgb, box), (h, w)


def _align_one(args) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    path, lm, template_json, size = args
    rgb = _read_rgb(Path(path))
    if rgb is None:
        return None
    template = align.Template.from_json(template_json)
    m = align.estimate_alignment(lm, template, size)
    crop = align.warp_face(rgb, m, size)
    lm_al = align.transform_points(lm, m)
    masks = (regions.region_masks(lm_al, (size, size)) * 255 + 0.5).astype(np.uint8)
    return crop, lm_al, masks


def preprocess(samples: list[Sample], out: Path, size: int = 128, workers: int = 2, chip_frame: float | None = None) -> Path:
    """Build the cache in ``out`` (skipped when a complete cache for the same inputs exists)."""
    out = Path(out)
    meta_path = out / "meta.json"
    key = {"version": CACHE_VERSION, "size": size, "count": len(samples), "first": str(samples[0].path), "last": str(samples[-1].path)}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            log.info("cache %s is complete, reusing it", out)
            return out
        # rebuilding over another cache: its meta.json must go first, or a build killed halfway would
        # leave the old meta.json beside new arrays, a folder that reads as complete but is not
        meta_path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    paths = [str(s.path) for s in samples]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(tqdm(pool.map(_landmarks_one, paths, chunksize=64), total=len(paths), desc="landmarks", mininterval=5))
    report = {"ok": 0, "fallback": 0, "unreadable": [], "noface": []}
    kept: list[tuple[Sample, np.ndarray]] = []
    for s, (status, lm, _) in zip(samples, results):
        if status in ("unreadable", "noface"):
            report[status].append(s.path.name)
            continue
        report[status] += 1
        kept.append((s, lm))
    if not kept:
        raise ValueError(f"no face could be landmarked among {len(samples)} images")
    train_lm = np.stack([lm for s, lm in kept if split_of(s) == "train"] or [lm for _, lm in kept])
    template = align.make_template(train_lm, frame=chip_frame)
    n = len(kept)
    images = np.lib.format.open_memmap(out / "images.npy.tmp", mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    landmarks = np.zeros((n, 68, 2), dtype=np.float32)
    masks = np.lib.format.open_memmap(out / "masks.npy.tmp", mode="w+", dtype=np.uint8, shape=(n, 5, size, size))
    jobs = [(str(s.path), lm, template.to_json(), size) for s, lm in kept]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, r in enumerate(tqdm(pool.map(_align_one, jobs, chunksize=64), total=n, desc="align", mininterval=5)):
            images[i], landmarks[i], masks[i] = r
    images.flush(), masks.flush()
    del images, masks
    os.replace(out / "images.npy.tmp", out / "images.npy")
    os.replace(out / "masks.npy.tmp", out / "masks.npy")
    np.save(out / "landmarks.npy", landmarks)
    rows = [dict(asdict(s), path=str(s.path), split=split_of(s)) for s, _ in kept]
    (out / "samples.json").write_text(json.dumps(rows))
    report_counts = {k: (len(v) if isinstance(v, list) else v) for k, v in report.items()}
    meta = {"key": key, "size": size, "template": json.loads(template.to_json()), "report": report, "counts": report_counts}
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)
    log.info("preprocessed %d faces into %s: %s", n, out, report_counts)
    return out


class FaceCache:
    """Read access to a preprocessed cache (memory-mapped)."""

    def __init__(self, folder: Path):
        folder = Path(folder)
        if not (folder / "meta.json").is_file():
            raise FileNotFoundError(f"{folder}: no preprocessed cache (meta.json missing)")
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text())
        self.size = int(self.meta["size"])
        self.template = align.Template(np.array(self.meta["template"], dtype=np.float32))
        self.samples = json.loads((folder / "samples.json").read_text())
        self.images = np.load(folder / "images.npy", mmap_mode="r")
        self.masks = np.load(folder / "masks.npy", mmap_mode="r")
        self.landmarks = np.load(folder / "landmarks.npy")
        self.ages = np.array([s["age"] for s in self.samples], dtype=np.int64)
        self.splits = np.array([s["split"] for s in self.samples])

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)
