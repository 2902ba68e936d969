"""Pictures of what a shipped model does, for docs/ and the model card.

- ``test_grid.jpg``: held-out test faces (the fixed test split), the input then every age group;
- ``album_<name>.jpg``: real photos with the largest face aged in place at full resolution
  (the original, then every group; each cell is a crop around the face of the full-resolution
  result), through core's pipeline exactly as the app does it.
Everything runs on the exported ONNX files through core, not on PyTorch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from core.export import make_strip
from core.faces import FaceFinder
from core.models import AgeModel, AgingModel
from core.photos import load_photo
from core.pipeline import AgingPipeline
from .evaluate import Reframe
from .preprocess import FaceCache
from .groups import group_index

log = logging.getLogger(__name__)


def test_grid(aging: AgingModel, cache: FaceCache, rows: int = 8) -> np.ndarray:
    groups = [list(g) for g in aging.age_groups]
    k = len(groups)
    test = cache.indices("test")
    src = np.array([group_index(int(a), groups) for a in cache.ages[test]])
    picks = [test[src == g][len(test[src == g]) // 3] for g in range(k) if (src == g).any()][:rows]
    frame = Reframe(cache, aging)
    cells, labels = [], []
    for i in picks:
        x = np.asarray(cache.images[i])
        aged = frame.run(aging, x[None], np.asarray(cache.landmarks[i])[None], np.asarray(cache.masks[i])[None], k)
        cells += [x, *aged]
        labels += [f"input ({int(cache.ages[i])})", *aging.group_labels]
    return make_strip(cells, labels, columns=k + 1)


def album_strip(pipeline: AgingPipeline, path: Path, groups: list[int], max_side: int = 600, columns: int = 3) -> np.ndarray | None:
    photo = load_photo(path)
    faces = FaceFinder("fast").detect(photo.rgb)
    if not faces:
        log.warning("%s: no face", path)
        return None
    face = faces[0]
    prepared = pipeline.prepare(photo.rgb, face)
    results = pipeline.age_all_groups(prepared)
    frames = [photo.rgb] + [pipeline.render(photo.rgb, prepared, results.aged[g]) for g in groups]
    # crop around the face (with context) so the change is visible, at the photo's own resolution
    l, t, r, b = face.box
    w = r - l
    x0, y0 = int(max(0, l - 0.6 * w)), int(max(0, t - 0.8 * w))
    x1, y1 = int(min(photo.width, r + 0.6 * w)), int(min(photo.height, b + 0.6 * w))
    crops = [f[y0:y1, x0:x1] for f in frames]
    scale = min(1.0, max_side / max(crops[0].shape[:2]))
    crops = [cv2.resize(c, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for c in crops]
    labels = ["original"] + [pipeline.labels[g] for g in groups]
    return make_strip(crops, labels, columns=columns)


def write_showcase(models: Path, cache_dir: Path, photos: list[Path], out: Path) -> list[Path]:
    aging = AgingModel.load(models)
    age = AgeModel.load(models)
    cache = FaceCache(cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    grid = test_grid(aging, cache)
    p = out / "test_grid.jpg"
    cv2.imwrite(str(p), grid[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
    written.append(p)
    pipe = AgingPipeline(aging, age)
    k = aging.num_groups
    for photo in photos:
        name, sep, path = str(photo).partition("=")  # NAME=PATH names the picture album_NAME.jpg
        photo = Path(path) if sep else Path(photo)
        strip = album_strip(pipe, photo, list(range(k)))
        if strip is not None:
            p = out / f"album_{name if sep else photo.stem}.jpg"
            cv2.imwrite(str(p), strip[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
            written.append(p)
    return written
