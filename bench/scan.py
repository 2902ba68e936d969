"""Benchmark of an album scan: photos per second of decode + face detection + landmarks, and peak memory,
on one core and on every core (the engine's pool of helper processes, ``core.scan``).

Usage (from the repository root):
    OMP_NUM_THREADS=1 python bench/scan.py [--min-photos 100] [--mode fast] [--workers N] [--tracemalloc]

The photos are ../shared/data/album/**/*.jpg and *.png, repeated until there are at least --min-photos.
Each photo goes through `load_photo` and `FaceFinder(mode).detect` (the work `core.scan` does per photo);
the catalog writes (one transaction per photo) are timed separately into a temporary database. The
detector's models are loaded before timing (their load time is printed apart). Peak memory is the process's
peak resident set size (ru_maxrss); with --tracemalloc also the peak of Python/numpy allocations (slower).

Then the same photos go through ``core.scan.scan_paths(..., workers=N)`` (N: --workers, default every core),
without a catalog: photos/s over the whole scan (helpers' start and model loading included) and over the
steady part (first to last photo delivered). The line "scaling" says what N cores would give if each core
kept the one-core time per photo; on a machine shared with other work the pool gets what is left.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import scan as core_scan  # noqa: E402
from core.catalog import Catalog  # noqa: E402
from core.faces import FaceFinder  # noqa: E402
from core.photos import load_photo  # noqa: E402

ALBUM = ROOT.parent / "shared" / "data" / "album"


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-photos", type=int, default=100)
    ap.add_argument("--mode", default="fast", choices=("fast", "accurate"))
    ap.add_argument("--album", type=Path, default=ALBUM)
    ap.add_argument("--workers", type=int, default=None, help="helper processes (default: every core)")
    ap.add_argument("--repeat", type=int, default=1, help="pool runs; the fastest is reported")
    ap.add_argument("--tracemalloc", action="store_true", help="also measure the Python/numpy allocation peak")
    args = ap.parse_args(argv)

    if not args.album.is_dir():
        print(f"bench/scan.py: {args.album} is absent (developer data, not shipped); nothing to measure.",
              file=sys.stderr)
        return 2
    files = sorted(p for p in args.album.rglob("*") if p.suffix.lower() in (".jpg", ".png") and p.is_file())
    if not files:
        print(f"bench/scan.py: no .jpg/.png photos under {args.album}", file=sys.stderr)
        return 2
    paths = list(itertools.islice(itertools.cycle(files), max(args.min_photos, len(files))))

    finder = FaceFinder(mode=args.mode)
    t = time.perf_counter()
    finder.detect(load_photo(files[0]).rgb)  # loads the detector and landmark models
    model_load = time.perf_counter() - t

    if args.tracemalloc:
        tracemalloc.start()
    t_load = t_detect = 0.0
    faces = megapixels = 0
    results = []
    start = time.perf_counter()
    cpu_start = time.process_time()
    for p in paths:
        t0 = time.perf_counter()
        photo = load_photo(p)
        t1 = time.perf_counter()
        found = finder.detect(photo.rgb)
        t2 = time.perf_counter()
        t_load += t1 - t0
        t_detect += t2 - t1
        faces += len(found)
        megapixels += photo.width * photo.height / 1e6
        results.append((p, found, photo.width, photo.height))
        del photo
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if args.tracemalloc else None
    if args.tracemalloc:
        tracemalloc.stop()

    with tempfile.TemporaryDirectory() as tmp, Catalog(Path(tmp) / "bench.db") as cat:
        t = time.perf_counter()
        for i, (p, found, w, h) in enumerate(results):  # distinct names: every write is a real insert
            cat.mark_scanned(f"{p}#{i}", found, size=i, mtime_ns=i, width=w, height=h, detector=args.mode)
        t_catalog = time.perf_counter() - t

    n = len(paths)
    print(f"album: {args.album} ({len(files)} distinct photos, {n} scanned, {megapixels / n:.2f} MP average)")
    print(f"mode: {args.mode}; model load (excluded): {model_load:.2f} s")
    print(f"scan: {n / total:.2f} photos/s  ({total:.1f} s for {n}; {faces} faces)")
    print(f"  CPU time:           {1000 * cpu / n:7.1f} ms/photo (what an idle core would take; the wall times "
          f"include waiting for a core on a shared machine)")
    print(f"  decode:             {1000 * t_load / n:7.1f} ms/photo")
    print(f"  detect + landmarks: {1000 * t_detect / n:7.1f} ms/photo")
    print(f"  catalog write:      {1000 * t_catalog / n:7.1f} ms/photo (synchronous=FULL, one transaction each)")
    print(f"peak RSS: {_peak_rss_mb():.0f} MiB" + (f"; traced peak: {traced_peak:.0f} MiB" if traced_peak else ""))

    workers = args.workers or core_scan.cpu_count()
    best = None
    for _ in range(max(1, args.repeat)):
        stamps: list[float] = []
        t = time.perf_counter()
        report = core_scan.scan_paths(paths, FaceFinder(mode=args.mode), workers=workers,
                                      progress=lambda d, n: stamps.append(time.perf_counter()))
        wall = time.perf_counter() - t
        steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
        if best is None or wall < best[0]:
            best = (wall, steady, report.face_total)
    wall, steady, pool_faces = best
    distinct_faces = sum({p: len(found) for p, found, _, _ in results}.values())  # the report counts each path once
    per_photo = total / n
    print(f"1 core:    {n / total:.2f} photos/s ({1000 * per_photo:.0f} ms per photo; {n / cpu:.2f} photos/s "
          f"on the CPU time)")
    print(f"{workers} workers: {n / wall:.2f} photos/s over the whole scan ({wall:.1f} s, helpers' start included), "
          f"{steady:.2f} photos/s steady; {pool_faces} faces in the {len(files)} distinct photos"
          + (" (as on one core)" if pool_faces == distinct_faces else f" (one core: {distinct_faces})"))
    print("scaling:   " + ", ".join(f"{c} cores ~{c * n / cpu:.0f} photos/s" for c in (2, 4, 8, 16))
          + " (the one-core CPU time per photo on each core: decode and search are per photo, nothing is shared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
