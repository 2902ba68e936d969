"""Benchmark: one face, every age group, end to end into a 12-megapixel photo.

    python bench/timeline.py [--photo FILE] [--models DIR] [--size 128] [--repeat 5] [--threads N] [--providers cpu]

The photo (default: ../shared/data/album/face_recognition/obama.jpg when present, else
scikit-image's astronaut) is upscaled to about 4000x3000; dlib finds the face and its landmarks.
The model is DIR/aging.onnx (--models), else resources/models/aging.onnx when present, otherwise a contract model of realistic
cost built on the fly (testkit/contract_model.py, ``realistic=True``: S = --size, K = 8, about
1.5 GFLOP per image at 128 px). Which one ran is printed.

Batched path (what the app does): prepare (align, region masks) once, ONE inference call with
batch = K, K paste-backs of the face's rectangle over one shared base photo (``paste_back_region``;
a view or exporter draws each at its offset). The old way, each group composed into a copy of the
whole photo (``pipeline.render``), is timed beside it ("paste-back, whole photo"). Naive path: for each group, prepare + inference (batch 1) + paste-back.
Times are medians over --repeat runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# all eight groups into a 12 MP photo on a 2-core CPU (the 0.12 s of the 128 px statistics
# prototype was an engineering target; the model that sees the face's own landmarks at 224 px
# costs more, and the bar is this one)
BAR = 0.5
sys.path.insert(0, str(ROOT))  # the checkout: core, and testkit (shared with the tests)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.align import paste_back_region  # noqa: E402
from core.faces import FaceFinder  # noqa: E402
from core.models import AgingModel, models_dir  # noqa: E402
from core.pipeline import AgingPipeline  # noqa: E402

ALBUM_PORTRAIT = ROOT.parent / "shared" / "data" / "album" / "face_recognition" / "obama.jpg"


def twelve_megapixels(photo: str | None) -> tuple[np.ndarray, str]:
    if photo != "astronaut" and (photo or ALBUM_PORTRAIT.is_file()):
        path = Path(photo) if photo else ALBUM_PORTRAIT
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        name = str(path)
    else:
        from skimage import data

        rgb, name = data.astronaut(), "skimage astronaut"
    h, w = rgb.shape[:2]
    scale = min(4000 / w, 3000 / h)
    rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
    pad_x, pad_y = 4000 - rgb.shape[1], 3000 - rgb.shape[0]
    rgb = cv2.copyMakeBorder(rgb, pad_y // 2, pad_y - pad_y // 2, pad_x // 2, pad_x - pad_x // 2, cv2.BORDER_REFLECT)
    return np.ascontiguousarray(rgb), name


def load_model(size: int, providers: str, threads: int | None, folder: Path | None = None) -> tuple[AgingModel, str]:
    folder = folder or models_dir()
    bundled = folder / "aging.onnx"
    if bundled.is_file():
        model = AgingModel.load(folder, providers=providers, threads=threads)
        return model, (f"model {bundled} ({model.session.metadata.get('format', '?')}, S={model.image_size}, K={model.num_groups})")
    from testkit.contract_model import build_aging_model

    folder = Path(tempfile.mkdtemp(prefix="agelapse-bench-"))
    build_aging_model(folder / "aging.onnx", size=size, realistic=True)
    model = AgingModel.load(folder / "aging.onnx", providers=providers, verify=False, threads=threads)
    return model, f"contract model (realistic conv net, S={size}, K={model.num_groups}, random weights)"


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def batched(pipeline: AgingPipeline, photo, face) -> dict[str, float]:
    prepared, t_prep = timed(pipeline.prepare, photo, face)
    results, t_inf = timed(pipeline.age_all_groups, prepared)
    t = time.perf_counter()
    for out in results.aged:  # each group's face rectangle over the one shared photo
        paste_back_region(photo, prepared.matrix, prepared.aligned, out, prepared.mask)
    t_paste = time.perf_counter() - t
    t = time.perf_counter()
    for out in results.aged:  # the old way: each group composed into a copy of the whole photo
        pipeline.render(photo, prepared, out)
    t_whole = time.perf_counter() - t
    t = time.perf_counter()
    paste_back_region(photo, prepared.matrix, prepared.aligned, pipeline.blend(results, 3.5), prepared.mask)
    t_frame = time.perf_counter() - t
    return {"prepare": t_prep, "inference": t_inf, "paste-back": t_paste,
            "total": t_prep + t_inf + t_paste, "paste-back, whole photo": t_whole,
            "total, whole photo": t_prep + t_inf + t_whole, "timeline frame": t_frame}


def naive(pipeline: AgingPipeline, photo, face) -> dict[str, float]:
    k = pipeline.aging.num_groups
    t_prep = t_inf = t_paste = 0.0
    for g in range(k):
        prepared, dt = timed(pipeline.prepare, photo, face)
        t_prep += dt
        (aged, _), dt = timed(pipeline.infer, prepared, np.eye(k, dtype=np.float32)[[g]])
        t_inf += dt
        _, dt = timed(pipeline.render, photo, prepared, aged[0])
        t_paste += dt
    return {"prepare": t_prep, "inference": t_inf, "paste-back": t_paste, "total": t_prep + t_inf + t_paste}


def median_runs(fn, repeat: int, *args) -> tuple[dict[str, float], dict[str, float]]:
    """(medians, minima) of each stage over ``repeat`` runs after a warm-up (on a shared machine the
    minimum is the figure least disturbed by other work)."""
    fn(*args)  # warm-up
    runs = [fn(*args) for _ in range(repeat)]
    return ({key: statistics.median(r[key] for r in runs) for key in runs[0]},
            {key: min(r[key] for r in runs) for key in runs[0]})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photo", help='a portrait to upscale, or "astronaut" (default: the album portrait when present, else the astronaut)')
    ap.add_argument("--models", type=Path, default=None, help="folder with aging.onnx + manifest.json "
                    "(default: resources/models)")
    ap.add_argument("--size", type=int, default=128, help="S of the contract model (default 128)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: its own)")
    ap.add_argument("--providers", default="auto")
    args = ap.parse_args(argv)

    photo, name = twelve_megapixels(args.photo)
    (faces, t_detect) = timed(FaceFinder().detect, photo)
    if not faces:
        print(f"no face found in {name}", file=sys.stderr)
        return 4
    face = faces[0]
    model, which = load_model(args.size, args.providers, args.threads, args.models)
    pipeline = AgingPipeline(model)
    print(f"photo      {name}, upscaled to {photo.shape[1]}x{photo.shape[0]} "
          f"({photo.shape[0] * photo.shape[1] / 1e6:.1f} MP); face {face.width:.0f} px wide")
    print(f"model      {which}; providers {', '.join(model.session.providers)}; "
          f"threads {args.threads or 'default'}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}; "
          f"{os.cpu_count()} CPUs")
    print(f"detection  {t_detect * 1000:.0f} ms (dlib HOG + landmarks, once; not in the totals)")
    b, b_min = median_runs(batched, args.repeat, pipeline, photo, face)
    n, _ = median_runs(naive, args.repeat, pipeline, photo, face)
    k = model.num_groups
    print(f"\nall {k} groups, {args.repeat} runs (ms): batched median and minimum, naive median")
    print(f"{'stage':<26}{'batched':>10}{'min':>8}{'naive':>10}")
    for key in ("prepare", "inference", "paste-back", "total", "paste-back, whole photo", "total, whole photo"):
        naive_ms = f"{n[key] * 1000:>10.1f}" if key in n else ""
        print(f"{key:<26}{b[key] * 1000:>10.1f}{b_min[key] * 1000:>8.1f}{naive_ms}")
    print(f"\nbatched total {b['total']:.3f} s (min {b_min['total']:.3f} s; whole-photo paste-back "
          f"{b['total, whole photo']:.3f} s) vs naive {n['total']:.3f} s; "
          f"bar <= {BAR} s (the aging-model issue, on the median): {'met' if b['total'] <= BAR else 'NOT met'}")
    print(f"one timeline frame (blend + paste-back of the face's rectangle, no inference): "
          f"{b['timeline frame'] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
