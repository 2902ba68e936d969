"""Pictures of what a shipped model does, for docs/ and the model card.

- ``test_grid.jpg``: held-out test faces (the fixed test split), the input then every age group;
- ``album_<name>.jpg``: real photos with the largest face aged in place at full resolution
  (the original, then every group; each cell is a crop around the face of the full-resolution
  result), through core's pipeline exactly as the app does it;
- ``compare_<name>.jpg`` (``--compare``): two models side by side (the shipped one and a
  candidate, e.g. the learned network exported beside its teacher) on the same test faces and
  photos, at the old and young ends of the timeline.
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


def _test_picks(aging: AgingModel, cache: FaceCache, rows: int) -> list:
    """One test face per source group (a third of the way through each), up to ``rows``."""
    groups = [list(g) for g in aging.age_groups]
    test = cache.indices("test")
    src = np.array([group_index(int(a), groups) for a in cache.ages[test]])
    return [test[src == g][len(test[src == g]) // 3] for g in range(len(groups)) if (src == g).any()][:rows]


def test_grid(aging: AgingModel, cache: FaceCache, rows: int = 8) -> np.ndarray:
    k = aging.num_groups
    picks = _test_picks(aging, cache, rows)
    frame = Reframe(cache, aging)
    cells, labels = [], []
    for i in picks:
        x = np.asarray(cache.images[i])
        aged = frame.run(aging, x[None], np.asarray(cache.landmarks[i])[None], np.asarray(cache.masks[i])[None], k)
        cells += [x, *aged]
        labels += [f"input ({int(cache.ages[i])})", *aging.group_labels]
    return make_strip(cells, labels, columns=k + 1)


def _face_crop(frames: list, face, photo, max_side: int) -> list:
    """Crops around the face (with context) so the change is visible, at the photo's own resolution."""
    l, t, r, b = face.box
    w = r - l
    x0, y0 = int(max(0, l - 0.6 * w)), int(max(0, t - 0.8 * w))
    x1, y1 = int(min(photo.width, r + 0.6 * w)), int(min(photo.height, b + 0.6 * w))
    crops = [f[y0:y1, x0:x1] for f in frames]
    scale = min(1.0, max_side / max(crops[0].shape[:2]))
    return [cv2.resize(c, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for c in crops]


def _largest_face(path: Path):
    photo = load_photo(path)
    faces = FaceFinder("fast").detect(photo.rgb)
    if not faces:
        log.warning("%s: no face", path)
        return photo, None
    return photo, faces[0]


def album_strip(pipeline: AgingPipeline, path: Path, groups: list[int], max_side: int = 600, columns: int = 3) -> np.ndarray | None:
    photo, face = _largest_face(path)
    if face is None:
        return None
    prepared = pipeline.prepare(photo.rgb, face)
    results = pipeline.age_all_groups(prepared)
    frames = [photo.rgb] + [pipeline.render(photo.rgb, prepared, results.aged[g]) for g in groups]
    labels = ["original"] + [pipeline.labels[g] for g in groups]
    return make_strip(_face_crop(frames, face, photo, max_side), labels, columns=columns)


def compare_strip(pipelines: dict, path: Path, groups: list[int], max_side: int = 360) -> np.ndarray | None:
    """The photo's largest face, original, then for each of ``groups`` every pipeline's result
    ({name: AgingPipeline}) side by side, rendered into the photo as the app does."""
    photo, face = _largest_face(path)
    if face is None:
        return None
    frames, labels = [photo.rgb], ["original"]
    rendered = {}
    for name, pipe in pipelines.items():
        prepared = pipe.prepare(photo.rgb, face)
        rendered[name] = (pipe, prepared, pipe.age_all_groups(prepared))
    for g in groups:
        for name, (pipe, prepared, results) in rendered.items():
            frames.append(pipe.render(photo.rgb, prepared, results.aged[g]))
            labels.append(f"{pipe.labels[g]} {name}")
    return make_strip(_face_crop(frames, face, photo, max_side), labels, columns=len(frames))


def compare_grid(models: dict, cache: FaceCache, groups: list[int], rows: int = 8) -> np.ndarray:
    """Test faces (as ``test_grid`` picks them), input then each of ``groups`` by every model
    ({name: AgingModel}) side by side."""
    first = next(iter(models.values()))
    k = first.num_groups
    picks = _test_picks(first, cache, rows)
    frames = {name: Reframe(cache, m) for name, m in models.items()}
    cells, labels = [], []
    for i in picks:
        x = np.asarray(cache.images[i])
        aged = {name: frames[name].run(m, x[None], np.asarray(cache.landmarks[i])[None], np.asarray(cache.masks[i])[None], k)
                for name, m in models.items()}
        cells.append(x)
        labels.append(f"input ({int(cache.ages[i])})")
        for g in groups:
            for name, m in models.items():
                cells.append(aged[name][g])
                labels.append(f"{m.group_labels[g]} {name}")
    return make_strip(cells, labels, columns=1 + len(groups) * len(models))


def write_compare(models: dict, cache_dir: Path, photos: list[Path], out: Path, groups=None) -> list[Path]:
    """``compare_test.jpg`` and ``compare_<photo>.jpg``: the models ({name: folder}) side by side
    at ``groups`` (indices; default the youngest, 60-69 and the oldest)."""
    loaded = {name: AgingModel.load(Path(folder)) for name, folder in models.items()}
    k = next(iter(loaded.values())).num_groups
    groups = list(groups) if groups is not None else [0, k - 2, k - 1]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    p = out / "compare_test.jpg"
    cv2.imwrite(str(p), compare_grid(loaded, FaceCache(cache_dir), groups)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
    written.append(p)
    pipes = {name: AgingPipeline(m, None) for name, m in loaded.items()}
    for photo in photos:
        name, sep, path = str(photo).partition("=")
        photo = Path(path) if sep else Path(photo)
        strip = compare_strip(pipes, photo, groups)
        if strip is not None:
            p = out / f"compare_{name if sep else photo.stem}.jpg"
            cv2.imwrite(str(p), strip[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
            written.append(p)
    return written


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
