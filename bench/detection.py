"""Detection recall / precision and landmark error against dlib's hand-labelled album.

Reads ../shared/data/album/dlib_faces/{testing,training}.xml (boxes) and
*_with_face_landmarks.xml (68 points); prints one row per detector setting with the time per
photo. Usage: python bench/detection.py [--xml testing.xml] [--modes fast accurate]
"""

from __future__ import annotations

import argparse
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALBUM = ROOT.parent / "shared" / "data" / "album" / "dlib_faces"


def read_boxes(xml: Path) -> dict[str, list[np.ndarray]]:
    """image file -> boxes (left, top, right, bottom), skipping boxes marked ignore."""
    out: dict[str, list[np.ndarray]] = {}
    for image in ET.parse(xml).getroot().iter("image"):
        boxes = []
        for b in image.iter("box"):
            if b.get("ignore") == "1":
                continue
            l, t, w, h = (float(b.get(k)) for k in ("left", "top", "width", "height"))
            parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in b.iter("part")}
            box = np.array([l, t, l + w, t + h])
            lm = np.array([parts[i] for i in range(68)]) if len(parts) == 68 else None
            boxes.append((box, lm))
        out[image.get("file")] = boxes
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def measure(finder, labelled: dict, folder: Path, min_iou: float = 0.3) -> dict:
    """Recall, precision, mean landmark error (fraction of inter-ocular distance) and seconds per photo."""
    from core.photos import load_photo

    tp = fp = fn = 0
    errors = []
    seconds = 0.0
    for name, truth in labelled.items():
        rgb = load_photo(folder / name).rgb
        t0 = time.perf_counter()
        faces = finder.detect(rgb)
        seconds += time.perf_counter() - t0
        used = set()
        for box, lm in truth:
            best, best_j = 0.0, -1
            for j, f in enumerate(faces):
                if j not in used and iou(box, f.box) > best:
                    best, best_j = iou(box, f.box), j
            if best >= min_iou:
                tp += 1
                used.add(best_j)
                if lm is not None:
                    iod = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
                    errors.append(np.linalg.norm(faces[best_j].landmarks - lm, axis=1).mean() / iod)
            else:
                fn += 1
        fp += len(faces) - len(used)
    return {
        "recall": tp / max(1, tp + fn),
        "precision": tp / max(1, tp + fp),
        "landmark_error": float(np.mean(errors)) if errors else float("nan"),
        "faces": tp + fn,
        "seconds_per_photo": seconds / max(1, len(labelled)),
    }


def main() -> int:
    from core.faces import FaceFinder

    ap = argparse.ArgumentParser()
    ap.add_argument("--xml", nargs="*", default=["testing_with_face_landmarks.xml", "training_with_face_landmarks.xml"])
    ap.add_argument("--accurate", action="store_true", help="also measure the CNN detector (slow)")
    args = ap.parse_args()
    if not ALBUM.is_dir():
        print(f"{ALBUM} is absent: nothing to measure", file=sys.stderr)
        return 1
    labelled = {}
    for x in args.xml:
        labelled.update(read_boxes(ALBUM / x))
    settings = [("fast (default)", FaceFinder("fast"))]
    for th in (0.0, 0.2, 0.4):
        settings.append((f"fast, upsample 1, threshold {th}", FaceFinder("fast", upsample=1, threshold=th)))
    settings.append(("fast, upsample 0", FaceFinder("fast", upsample=0)))
    if args.accurate:
        settings.append(("accurate (CNN)", FaceFinder("accurate")))
    print(f"{len(labelled)} photos, {sum(len(v) for v in labelled.values())} labelled faces")
    print(f"{'setting':<36}{'recall':>8}{'precision':>11}{'lm err':>8}{'s/photo':>9}")
    for name, finder in settings:
        m = measure(finder, labelled, ALBUM)
        print(f"{name:<36}{m['recall']:>8.3f}{m['precision']:>11.3f}{m['landmark_error']:>8.3f}{m['seconds_per_photo']:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
