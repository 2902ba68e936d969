"""Detection recall / precision and landmark error on what users meet, per case kind, for both modes.

Cases (all built here, deterministically, from ../shared/data; nothing is written to disk):
  album     dlib's hand-labelled album as it is (what the detector was tuned on)
  large     the album photos upscaled to a 12 MP-like 4000 px width: faces small relative to the photo
  tight     close-ups: each photo's two largest labelled faces cropped tight (the face fills the frame)
  small     the album photos scaled to 0.6 (faces 23-70 px)
  mirrored  the album photos flipped left-right (landmarks renumbered to the mirrored face)
  rotated   the album photos turned by -12 and +12 degrees (on a grey canvas)
  pasted    UTKFace test-split chips pasted at 48-320 px into the album's photos and dogs.jpg, with
            their true boxes (the chip's face box) and landmarks (dlib's on the full-size chip)

Boxes marked ignore in dlib's XML, and labelled faces that a crop cuts, neither count as found nor as
false hits. A face is found when a detection overlaps its box with IoU >= 0.3. Landmark error is the mean
point distance as a fraction of the inter-ocular distance (eye centres), over the found faces.

Usage: python bench/detection.py [--modes fast accurate] [--kinds album tight ...] [--limit N] [--missed]
       python bench/detection.py --cost      # time and memory per 12 MP photo, each mode in its own process
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
ALBUM = DATA / "album" / "dlib_faces"
UTKFACE = DATA / "utkface"
XMLS = ("testing_with_face_landmarks.xml", "training_with_face_landmarks.xml")
KINDS = ("album", "large", "tight", "small", "mirrored", "rotated", "pasted")

# iBUG-68 point i of a face is point MIRROR[i] of its mirror image
MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])
# dlib's HOG box of a UTKFace chip (its median over chips), as fractions of the chip's side
CHIP_BOX = np.array([0.07, 0.07, 0.9, 0.9])


def read_boxes(xml: Path, ignored: bool = False) -> dict[str, list[tuple[np.ndarray, np.ndarray | None]]]:
    """image file -> [(box (left, top, right, bottom), landmarks (68, 2) or None)]: the labelled faces,
    or with ``ignored`` the boxes marked ignore."""
    out: dict[str, list] = {}
    for image in ET.parse(xml).getroot().iter("image"):
        boxes = []
        for b in image.iter("box"):
            if (b.get("ignore") == "1") != ignored:
                continue
            l, t, w, h = (float(b.get(k)) for k in ("left", "top", "width", "height"))
            parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in b.iter("part")}
            box = np.array([l, t, l + w, t + h])
            lm = np.array([parts[i] for i in range(68)]) if len(parts) == 68 else None
            boxes.append((box, lm))
        out[image.get("file")] = boxes
    return out


@dataclass
class Case:
    kind: str
    name: str
    rgb: np.ndarray
    truth: list[tuple[np.ndarray, np.ndarray | None]]
    ignore: list[np.ndarray] = field(default_factory=list)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _affine(points: np.ndarray | None, m: np.ndarray) -> np.ndarray | None:
    return None if points is None else np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]


def _box_affine(box: np.ndarray, m: np.ndarray) -> np.ndarray:
    """A box under a similarity: its centre moved, its size scaled (a turned box keeps its size)."""
    c = _affine(((box[:2] + box[2:]) / 2)[None], m)[0]
    s = math.sqrt(abs(np.linalg.det(m[:, :2])))
    half = (box[2:] - box[:2]) * s / 2
    return np.concatenate([c - half, c + half])


def _warp_case(kind, name, rgb, truth, ignore, m, size, border=(128, 128, 128)) -> Case:
    import cv2

    out = cv2.warpAffine(rgb, m, size, flags=cv2.INTER_AREA if abs(np.linalg.det(m[:, :2])) < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=border)
    return Case(kind, name, np.ascontiguousarray(out), [(_box_affine(b, m), _affine(lm, m)) for b, lm in truth],
                [_box_affine(b, m) for b in ignore])


def _inside(box, w, h) -> float:
    """Fraction of the box's area inside a w x h image."""
    clipped = np.clip(box, 0, [w, h, w, h])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return max(0.0, clipped[2] - clipped[0]) * max(0.0, clipped[3] - clipped[1]) / area if area > 0 else 0.0


def _split_cut(case: Case) -> Case:
    """Labelled faces mostly outside the image become ignore boxes."""
    h, w = case.rgb.shape[:2]
    keep = [(b, lm) for b, lm in case.truth if _inside(b, w, h) >= 0.8]
    cut = [b for b, lm in case.truth if _inside(b, w, h) < 0.8]
    return Case(case.kind, case.name, case.rgb, keep, case.ignore + cut)


def album_cases(folder: Path = ALBUM) -> list[Case]:
    from core.photos import load_photo

    labelled, ignored = {}, {}
    for x in XMLS:
        labelled.update(read_boxes(folder / x))
        ignored.update(read_boxes(folder / x, ignored=True))
    return [Case("album", name, load_photo(folder / name).rgb, truth, [b for b, _ in ignored.get(name, [])])
            for name, truth in sorted(labelled.items())]


def _chips(count: int) -> list[Path]:
    """``count`` UTKFace chips of the test split, spread over the sorted list (deterministic)."""
    from training.data import load_utkface, split_of

    samples, _ = load_utkface(UTKFACE)
    test = sorted((s for s in samples if split_of(s) == "test"), key=lambda s: s.path.name)
    step = max(1, len(test) // count)
    return [s.path for s in test[::step][:count]]


def _paste(canvas: np.ndarray, chip: np.ndarray, x: int, y: int, side: int) -> None:
    """Paste the chip at (x, y) scaled to side x side, its outer 8 % feathered into the background."""
    import cv2

    small = cv2.resize(chip, (side, side), interpolation=cv2.INTER_AREA if side < chip.shape[0] else cv2.INTER_LINEAR)
    u = (np.arange(side) + 0.5) / side
    ramp = np.clip(np.minimum(u, 1 - u) / 0.08, 0, 1)
    alpha = (np.minimum(ramp[:, None], ramp[None, :]))[..., None]
    region = canvas[y:y + side, x:x + side]
    region[...] = np.rint(small * alpha + region * (1 - alpha)).astype(np.uint8)


def hard_cases(album: list[Case], kinds=KINDS, chips: int = 40) -> list[Case]:
    """The hard cases built from the album's cases (see the module doc)."""
    import cv2

    from core.faces import FaceFinder
    from core.photos import load_photo

    out: list[Case] = []
    for c in album:
        h, w = c.rgb.shape[:2]
        if "large" in kinds:
            s = 4000 / w
            out.append(_warp_case("large", c.name, c.rgb, c.truth, c.ignore, np.array([[s, 0, 0], [0, s, 0]]),
                                  (4000, round(h * s))))
        if "tight" in kinds:
            biggest = sorted((t for t in c.truth if t[1] is not None and t[0][2] - t[0][0] >= 50),
                             key=lambda t: -(t[0][2] - t[0][0]))[:2]
            for i, (box, _) in enumerate(biggest):
                bw, bh = box[2] - box[0], box[3] - box[1]
                x0, y0 = max(0.0, box[0] - 0.02 * bw), max(0.0, box[1] - 0.02 * bh)
                x1, y1 = min(float(w), box[2] + 0.02 * bw), min(float(h), box[3] + 0.02 * bh)
                s = 480 / max(x1 - x0, y1 - y0)
                m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]])
                out.append(_split_cut(_warp_case("tight", f"{c.name}#{i}", c.rgb, c.truth, c.ignore, m,
                                                 (round((x1 - x0) * s), round((y1 - y0) * s)))))
        if "small" in kinds:
            m = np.array([[0.6, 0, 0], [0, 0.6, 0]])
            out.append(_warp_case("small", c.name, c.rgb, c.truth, c.ignore, m, (round(w * 0.6), round(h * 0.6))))
        if "mirrored" in kinds:
            m = np.array([[-1.0, 0, w - 1], [0, 1.0, 0]])
            flipped = np.ascontiguousarray(c.rgb[:, ::-1])
            truth = [(np.array([w - 1 - b[2], b[1], w - 1 - b[0], b[3]]), None if lm is None else _affine(lm, m)[MIRROR])
                     for b, lm in c.truth]
            ignore = [np.array([w - 1 - b[2], b[1], w - 1 - b[0], b[3]]) for b in c.ignore]
            out.append(Case("mirrored", c.name, flipped, truth, ignore))
        if "rotated" in kinds:
            for angle in (-12, 12):
                side = math.ceil(math.hypot(w, h))
                m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
                m[:, 2] += ((side - w) / 2, (side - h) / 2)
                out.append(_warp_case("rotated", f"{c.name}@{angle}", c.rgb, c.truth, c.ignore, m, (side, side)))
    if "pasted" in kinds and UTKFACE.is_dir():
        finder = FaceFinder("fast")
        paths = _chips(chips)
        rng = np.random.default_rng(13)
        backgrounds = [(c.name, c.rgb, c.truth, c.ignore) for c in album]
        dogs = ALBUM / "dogs.jpg"
        if dogs.is_file():
            backgrounds.insert(0, ("dogs.jpg", load_photo(dogs).rgb, [], []))
        sizes = (48, 80, 140, 320)
        for bi, (name, rgb, truth, ignore) in enumerate(backgrounds):
            if not paths:
                break
            s = 1200 / max(rgb.shape[:2])
            m = np.array([[s, 0, 0], [0, s, 0]])
            base = _warp_case("pasted", name, rgb, truth, ignore, m,
                              (round(rgb.shape[1] * s), round(rgb.shape[0] * s)))
            canvas, taken = base.rgb.copy(), [b for b, _ in base.truth] + list(base.ignore)
            new_truth = list(base.truth)
            for side in sizes:
                if not paths or side >= min(canvas.shape[:2]) - 4:
                    continue
                for _ in range(200):  # a free spot, overlapping neither a face nor another chip
                    x = int(rng.integers(0, canvas.shape[1] - side))
                    y = int(rng.integers(0, canvas.shape[0] - side))
                    spot = np.array([x, y, x + side, y + side], dtype=float)
                    grown = spot + np.array([-0.3, -0.3, 0.3, 0.3]) * side
                    if all(iou(grown, b) == 0 for b in taken):
                        break
                else:
                    continue
                chip = load_photo(paths.pop(0)).rgb
                box_chip = CHIP_BOX * chip.shape[0]
                lm_chip = finder.landmarks(chip, box_chip)
                k = side / chip.shape[0]
                _paste(canvas, chip, x, y, side)
                new_truth.append((box_chip * k + [x, y, x, y], lm_chip * k + [x, y]))
                taken.append(spot)
            out.append(Case("pasted", f"{name}+chips", canvas, new_truth, base.ignore))
    return [c for c in out if c.kind in kinds]


def measure_cases(finder, cases: list[Case], min_iou: float = 0.3) -> dict[str, dict]:
    """Per kind (and "all"): recall, precision, landmark error, faces, photos, seconds per photo."""
    stats: dict[str, dict] = {}
    for case in cases:
        t0 = time.perf_counter()
        faces = finder.detect(case.rgb)
        dt = time.perf_counter() - t0
        s = stats.setdefault(case.kind, {"tp": 0, "fp": 0, "fn": 0, "errors": [], "seconds": 0.0, "photos": 0,
                                         "missed": []})
        s["seconds"] += dt
        s["photos"] += 1
        used = set()
        for box, lm in case.truth:
            best, best_j = 0.0, -1
            for j, f in enumerate(faces):
                if j not in used and iou(box, f.box) > best:
                    best, best_j = iou(box, f.box), j
            if best >= min_iou:
                s["tp"] += 1
                used.add(best_j)
                if lm is not None:
                    iod = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
                    s["errors"].append(float(np.linalg.norm(faces[best_j].landmarks - lm, axis=1).mean() / iod))
            else:
                s["fn"] += 1
                s["missed"].append(f"{case.name} {np.round(box).astype(int).tolist()}")
        for j, f in enumerate(faces):
            if j not in used and not any(iou(b, f.box) >= min_iou for b in case.ignore):
                s["fp"] += 1
    out = {}
    for kind, s in stats.items():
        out[kind] = {
            "recall": s["tp"] / max(1, s["tp"] + s["fn"]),
            "precision": s["tp"] / max(1, s["tp"] + s["fp"]),
            "landmark_error": float(np.mean(s["errors"])) if s["errors"] else float("nan"),
            "faces": s["tp"] + s["fn"],
            "false": s["fp"],
            "photos": s["photos"],
            "seconds_per_photo": s["seconds"] / max(1, s["photos"]),
            "missed": s["missed"],
        }
    return out


def measure(finder, labelled: dict, folder: Path, min_iou: float = 0.3) -> dict:
    """Recall, precision, landmark error and seconds per photo on labelled photos of ``folder``."""
    from core.photos import load_photo

    cases = [Case("album", name, load_photo(folder / name).rgb, truth) for name, truth in labelled.items()]
    return measure_cases(finder, cases, min_iou)["album"]


def cost_12mp(mode: str, repeat: int = 3) -> dict:
    """Wall and CPU seconds (best of ``repeat``) and the peak resident memory of one process finding the faces
    of the 12 MP photo of bench/timeline.py; run in a fresh process (``--cost-child``) so the peak is its own."""
    import resource

    from bench.timeline import twelve_megapixels
    from core.faces import FaceFinder

    rgb, _ = twelve_megapixels(None)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finder = FaceFinder(mode)
    walls, cpus, faces = [], [], 0
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        faces = len(finder.detect(rgb))
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
    return {"wall": min(walls), "cpu": min(cpus), "peak_mib": peak, "photo_mib": before, "faces": faces}


def main() -> int:
    from core.faces import FaceFinder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="*", default=["fast", "accurate"], choices=("fast", "accurate"))
    ap.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    ap.add_argument("--limit", type=int, default=None, help="at most this many photos per kind")
    ap.add_argument("--missed", action="store_true", help="list the faces each mode missed")
    ap.add_argument("--cost", action="store_true", help="only time and memory per 12 MP photo, each mode in a fresh process")
    ap.add_argument("--cost-child", choices=("fast", "accurate"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cost_child:
        import json

        print(json.dumps(cost_12mp(args.cost_child)))
        return 0
    if args.cost:
        import json
        import subprocess

        print("12 MP photo (bench/timeline.py's), best of 3; CPU = what an idle core takes; peak = the process's "
              "resident peak (Python, models, the decoded photo included)")
        for mode in args.modes:
            out = subprocess.run([sys.executable, __file__, "--cost-child", mode], capture_output=True, text=True,
                                 check=True).stdout
            c = json.loads(out.strip().splitlines()[-1])
            print(f"{mode:<10} wall {c['wall']:.2f} s, CPU {c['cpu']:.2f} s, peak {c['peak_mib']:.0f} MiB "
                  f"(with the photo decoded: {c['photo_mib']:.0f} MiB); {c['faces']} face(s)")
        return 0
    if not ALBUM.is_dir():
        print(f"{ALBUM} is absent: nothing to measure", file=sys.stderr)
        return 1
    album = album_cases()
    cases = [c for c in album if "album" in args.kinds] + hard_cases(album, args.kinds)
    if args.limit:
        kept: dict[str, int] = {}
        cases = [c for c in cases if kept.setdefault(c.kind, 0) < args.limit and not kept.update({c.kind: kept[c.kind] + 1})]
    counts = {k: (sum(c.kind == k for c in cases), sum(len(c.truth) for c in cases if c.kind == k)) for k in args.kinds}
    print("cases: " + ", ".join(f"{k} {p} photos / {f} faces" for k, (p, f) in counts.items()))
    print(f"{'mode':<10}{'kind':<10}{'recall':>8}{'precision':>11}{'lm err':>8}{'faces':>7}{'false':>7}{'s/photo':>9}")
    for mode in args.modes:
        finder = FaceFinder(mode)
        finder.detect(album[0].rgb)  # loads the models
        result = measure_cases(finder, cases)
        for kind in args.kinds:
            if kind not in result:
                continue
            m = result[kind]
            print(f"{mode:<10}{kind:<10}{m['recall']:>8.3f}{m['precision']:>11.3f}{m['landmark_error']:>8.3f}"
                  f"{m['faces']:>7}{m['false']:>7}{m['seconds_per_photo']:>9.3f}")
            if args.missed and m["missed"]:
                print("    missed: " + "; ".join(m["missed"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
