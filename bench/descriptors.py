"""dlib's face descriptor: dlib (one face at a time) vs the PyTorch port (batched), and their agreement.

Usage (from the repository root):
    OMP_WAIT_POLICY=PASSIVE python bench/descriptors.py [--faces 96] [--batch 32] [--threads 1]
        [--cache /work/cache/utk128]
    OMP_WAIT_POLICY=PASSIVE python bench/descriptors.py --agreement 400 [--cache ...] [--aging resources/models/aging.onnx]

Speed: descriptors per second for the faces of the evaluation (aligned UTKFace test faces from a
preprocessed cache, training.preprocess.FaceCache; skimage's astronaut repeated when there is no
cache), from the photo and its landmarks: dlib's ``compute_face_descriptor`` one face at a time
(as training.evaluate.Identity calls it) vs ``training.face_descriptor.TorchIdentity`` in batches
(its chip and network times also apart). Both on ``--threads`` CPU threads.

``--agreement N``: N test faces of the cache (spread evenly over the split), each aged to every
group of the aging model as training/evaluate.py's evaluate_aging does, and judged by both
implementations: the verification rate (distance to the input face < 0.6) per target group,
dlib vs torch, the largest difference in points, and how many of the N x K pairs got a different
decision. A busy machine lowers the speed figures: say so when reporting them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from training.evaluate import Identity  # noqa: E402
from training.face_descriptor import VERIFY_THRESHOLD, TorchIdentity, face_chips  # noqa: E402


DlibIdentity = Identity  # dlib's own per-face descriptor, the reference


def _cache(path: str):
    from training.preprocess import FaceCache

    try:
        return FaceCache(Path(path))
    except FileNotFoundError:
        return None


def _spread(idx: np.ndarray, n: int) -> np.ndarray:
    return idx[np.linspace(0, len(idx) - 1, min(n, len(idx))).astype(int)]


def _faces(cache, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    if cache is not None:
        idx = _spread(cache.indices("test"), n)
        return np.asarray(cache.images[idx]), cache.landmarks[idx].astype(np.float64), f"{cache.size} px aligned UTKFace test faces"
    import skimage.data

    from core.faces import FaceFinder

    img = np.ascontiguousarray(skimage.data.astronaut())
    face = FaceFinder().detect(img)[0]
    return np.repeat(img[None], n, 0), np.repeat(face.landmarks[None].astype(np.float64), n, 0), "the astronaut (512 px), repeated"


def speed(args) -> None:
    images, lms, what = _faces(_cache(args.cache), args.faces)
    n = len(images)
    print(f"{n} faces: {what}; {args.threads} thread(s); torch {torch.__version__}")
    dl = DlibIdentity()
    dl.descriptors(images[:2], lms[:2])  # warm-up
    t = time.perf_counter()
    ref = dl.descriptors(images, lms)
    t_dlib = time.perf_counter() - t
    ident = TorchIdentity(batch=args.batch)
    ident.descriptors(images[: args.batch], lms[: args.batch])  # warm-up
    t = time.perf_counter()
    mine = ident.descriptors(images, lms)
    t_torch = time.perf_counter() - t
    # the two halves of the torch path, on the same batches
    t_chip = t_net = 0.0
    with torch.no_grad():
        for s in range(0, n, args.batch):
            x = torch.from_numpy(np.ascontiguousarray(images[s : s + args.batch])).permute(0, 3, 1, 2).float()
            t = time.perf_counter()
            chips = face_chips(x, np.round(lms[s : s + args.batch]))
            t_chip += time.perf_counter() - t
            t = time.perf_counter()
            ident.net(chips)
            t_net += time.perf_counter() - t
    print(f"dlib  (one at a time):      {n / t_dlib:8.1f} descriptors/s  ({1000 * t_dlib / n:.1f} ms each)")
    print(f"torch (batches of {args.batch:>3}):     {n / t_torch:8.1f} descriptors/s  ({1000 * t_torch / n:.1f} ms each;"
          f" chip {1000 * t_chip / n:.1f} ms, network {1000 * t_net / n:.1f} ms)")
    print(f"speed-up {t_dlib / t_torch:.2f}x; max |descriptor difference| {np.abs(mine - ref).max():.2e}")


def agreement(args) -> None:
    from core.models import AgingModel

    cache = _cache(args.cache)
    if cache is None:
        sys.exit(f"--agreement needs a preprocessed cache; none at {args.cache}")
    aging = AgingModel.load(args.aging, verify=False, threads=args.threads)
    if aging.image_size != cache.size:
        sys.exit(f"the aging model works at {aging.image_size} px, the cache holds {cache.size} px faces")
    idx = _spread(cache.indices("test"), args.agreement)
    k = aging.num_groups
    eye = np.eye(k, dtype=np.float32)
    dl, ident = DlibIdentity(), TorchIdentity(batch=args.batch)
    dist = {"dlib": np.zeros((len(idx), k)), "torch": np.zeros((len(idx), k))}
    times = {"aging": 0.0, "dlib": 0.0, "torch": 0.0}
    for n, i in enumerate(idx):
        x = np.asarray(cache.images[i])
        regions = np.asarray(cache.masks[i], dtype=np.float32) / 255
        lm = cache.landmarks[i].astype(np.float64)
        t = time.perf_counter()
        extra = {"landmarks": np.repeat(lm[None], k, 0).astype(np.float32)} if aging.takes_landmarks else {}
        aged, _ = aging.run(np.repeat(x[None], k, 0), eye, np.repeat(regions[None], k, 0), **extra)
        times["aging"] += time.perf_counter() - t
        batch = np.concatenate([x[None], aged])
        lms = np.repeat(lm[None], k + 1, 0)
        for name, impl in (("dlib", dl), ("torch", ident)):
            t = time.perf_counter()
            d = impl.descriptors(batch, lms)
            times[name] += time.perf_counter() - t
            dist[name][n] = np.linalg.norm(d[1:] - d[0], axis=1)
        if (n + 1) % 50 == 0:
            print(f"  {n + 1} / {len(idx)} faces", file=sys.stderr, flush=True)
    ok = {name: d < VERIFY_THRESHOLD for name, d in dist.items()}
    print(f"{len(idx)} UTKFace test faces of {cache.folder}, aged by {args.aging} to {k} groups")
    print("  target    dlib verif.  torch verif.  diff (points)  max |dist diff|")
    worst = 0.0
    for t, label in enumerate(aging.group_labels):
        a, b = 100 * ok["dlib"][:, t].mean(), 100 * ok["torch"][:, t].mean()
        worst = max(worst, abs(a - b))
        print(f"  {label:<8}{a:>12.2f}%{b:>13.2f}%{b - a:>15.2f}{np.abs(dist['dlib'][:, t] - dist['torch'][:, t]).max():>17.2e}")
    a, b = 100 * ok["dlib"].mean(), 100 * ok["torch"].mean()
    print(f"  all     {a:>12.2f}%{b:>13.2f}%{b - a:>15.2f}{np.abs(dist['dlib'] - dist['torch']).max():>17.2e}")
    print(f"largest difference over the groups: {worst:.2f} points (target <= 0.5); "
          f"pairs with a different decision: {int((ok['dlib'] != ok['torch']).sum())} of {ok['dlib'].size}")
    n_desc = len(idx) * (k + 1)
    print(f"time: aging {times['aging']:.1f} s; {n_desc} descriptors: dlib {times['dlib']:.1f} s, torch {times['torch']:.1f} s "
          f"(batches of {k + 1}, one face's row)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", type=int, default=96, help="faces for the speed figures")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default="/work/cache/utk128")
    p.add_argument("--agreement", type=int, default=0, metavar="N", help="verification agreement on N aged test faces")
    p.add_argument("--aging", default=str(ROOT / "resources" / "models" / "aging.onnx"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    agreement(args) if args.agreement else speed(args)


if __name__ == "__main__":
    main()
