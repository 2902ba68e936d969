"""The evaluation protocol of DESIGN.md, on the held-out test split (training/data.py's hash split).

- age model: MAE in years, overall and per decade;
- aging model: for each target group, the mean estimated age of the aged test faces (by the
  project's age model) next to that of real test faces of the group, the share of aged faces
  whose estimate falls in the target group, and identity: dlib's face-descriptor distance between
  input and output, verification rate = share under 0.6 (also for targets within two groups of
  the source).
Runs are exported to a temporary ONNX file first, so what is measured is what ships.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import cv2
import numpy as np

from core.models import AgeModel, AgingModel
from .preprocess import FaceCache

log = logging.getLogger(__name__)

DECADE_EDGES = list(range(0, 90, 10))  # 0-9 ... 70-79, 80+
VERIFY_THRESHOLD = 0.6


def _as_onnx(target: Path, tmp: Path) -> Path:
    target = Path(target)
    if target.suffix == ".onnx":
        return target
    from .export import export_run

    return export_run(target, tmp)


def _decade(age: float) -> str:
    d = min(int(age) // 10, 8)
    return f"{d * 10}+" if d == 8 else f"{d * 10}-{d * 10 + 9}"


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size:
        return np.ascontiguousarray(images)
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])


def estimate_ages(model: AgeModel, images: np.ndarray, batch: int = 128) -> np.ndarray:
    out = [model.estimate(_resize(images[i : i + batch], model.image_size))[0] for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros(0)


def evaluate_age(model: AgeModel, cache: FaceCache, idx: np.ndarray, pred: np.ndarray | None = None) -> dict:
    """MAE overall and per decade; ``pred``: the model's estimates for ``idx`` if already made."""
    pred = estimate_ages(model, np.asarray(cache.images[idx])) if pred is None else pred
    true = cache.ages[idx]
    err = np.abs(pred - true)
    per = {}
    for lo in DECADE_EDGES:
        sel = (true >= lo) & ((true < lo + 10) if lo < 80 else True)
        if sel.any():
            per[_decade(lo)] = {"mae": round(float(err[sel].mean()), 2), "n": int(sel.sum())}
    return {"mae": round(float(err.mean()), 3), "n": int(len(idx)), "per_decade": per}


class Identity:
    """dlib's face descriptor (dlib_face_recognition_resnet_model_v1) for aligned faces with known landmarks."""

    def __init__(self):
        import dlib

        from core import dlib_models

        self.dlib = dlib
        self.model = dlib_models.face_descriptor_model()

    def descriptor(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        d = self.dlib
        x0, y0 = landmarks.min(0)
        x1, y1 = landmarks.max(0)
        shape = d.full_object_detection(d.rectangle(int(x0), int(y0), int(x1), int(y1)), [d.point(int(round(x)), int(round(y))) for x, y in landmarks])
        return np.array(self.model.compute_face_descriptor(np.ascontiguousarray(rgb), shape))


def evaluate_aging(aging: AgingModel, age: AgeModel, cache: FaceCache, idx: np.ndarray, real_est: np.ndarray,
                   split: str = "test") -> dict:
    """``real_est``: the age model's estimates for every face of ``split`` (the reference)."""
    from .train_aging import group_index

    groups = [list(g) for g in aging.age_groups]
    k = len(groups)
    labels = aging.group_labels
    ident = Identity()
    size = aging.image_size
    if size != cache.size:
        raise ValueError(f"the aging model works at {size} px but the cache holds {cache.size} px faces")
    est = np.zeros((len(idx), k))
    dist = np.zeros((len(idx), k))
    src = np.array([group_index(int(a), groups) for a in cache.ages[idx]])
    eye = np.eye(k, dtype=np.float32)
    for n, i in enumerate(idx):
        x = np.asarray(cache.images[i])
        regions = np.asarray(cache.masks[i], dtype=np.float32) / 255
        aged, _ = aging.run(np.repeat(x[None], k, 0), eye, np.repeat(regions[None], k, 0))
        est[n] = estimate_ages(age, aged)
        lm = cache.landmarks[i]
        ref = ident.descriptor(x, lm)
        dist[n] = [np.linalg.norm(ident.descriptor(a, lm) - ref) for a in aged]
        if (n + 1) % 50 == 0:
            log.info("aged %d / %d %s faces", n + 1, len(idx), split)
    real_groups = np.array([group_index(int(a), groups) for a in cache.ages[cache.indices(split)]])
    per = {}
    for t in range(k):
        lo, hi = groups[t]
        inside = (est[:, t] >= lo) & ((est[:, t] <= hi + 0.999) if hi is not None else True)
        near = np.abs(src - t) <= 2
        real = real_est[real_groups == t]
        per[labels[t]] = {
            "mean_estimated_age": round(float(est[:, t].mean()), 2),
            "real_mean_estimated_age": round(float(real.mean()), 2) if len(real) else None,
            "age_accuracy": round(float(inside.mean()), 4),
            "verification_rate": round(float((dist[:, t] < VERIFY_THRESHOLD).mean()), 4),
            "verification_rate_within_two_groups": round(float((dist[near, t] < VERIFY_THRESHOLD).mean()), 4) if near.any() else None,
            "mean_identity_distance": round(float(dist[:, t].mean()), 4),
        }
    means = [per[l]["mean_estimated_age"] for l in labels]
    return {"n": int(len(idx)), "split": split, "per_group": per, "monotonic": bool(np.all(np.diff(means) > 0)),
            "verification_rate": round(float((dist < VERIFY_THRESHOLD).mean()), 4),
            "age_accuracy": round(float(np.mean([per[l]["age_accuracy"] for l in labels])), 4)}


def format_table(result: dict) -> str:
    lines = []
    if "age" in result:
        a = result["age"]
        lines.append(f"Age model: MAE {a['mae']:.2f} years on {a['n']} {result.get('split', 'test')} faces")
        lines.append("  decade    MAE     n")
        for dec, v in a["per_decade"].items():
            lines.append(f"  {dec:<8}{v['mae']:>6.2f}{v['n']:>6}")
    if "aging" in result:
        g = result["aging"]
        lines.append(f"Aging model on {g['n']} {result.get('split', 'test')} faces (age estimates by the project's age model)")
        lines.append("  target   est.age  real est.age  age acc.  verif.  verif.(<=2 groups)  id dist")
        for label, v in g["per_group"].items():
            real = "-" if v["real_mean_estimated_age"] is None else f"{v['real_mean_estimated_age']:.1f}"
            near = "-" if v["verification_rate_within_two_groups"] is None else f"{100 * v['verification_rate_within_two_groups']:.1f}%"
            lines.append(f"  {label:<8}{v['mean_estimated_age']:>8.1f}{real:>14}{100 * v['age_accuracy']:>9.1f}%"
                         f"{100 * v['verification_rate']:>7.1f}%{near:>20}{v['mean_identity_distance']:>9.3f}")
        lines.append(f"  means increase monotonically: {'yes' if g['monotonic'] else 'no'}")
    return "\n".join(lines)


def evaluate(target: Path, cache_dir: Path, age_model: str | None = None, limit: int = 0, json_out: str | None = None,
             split: str = "test") -> dict:
    """The protocol on ``split``: "test" for the figures that are reported, "val" for choosing
    settings (so that no choice is made on the test faces)."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', not {split!r}")
    cache = FaceCache(cache_dir)
    test = cache.indices(split)
    if limit:
        test = test[np.linspace(0, len(test) - 1, min(limit, len(test))).astype(int)]
    with tempfile.TemporaryDirectory() as tmp:
        path = _as_onnx(Path(target), Path(tmp))
        from core.onnx_session import OnnxSession

        fmt = OnnxSession(path).metadata.get("format", "")
        result: dict = {"model": str(target), "split": split, "cache": str(cache_dir)}
        if fmt == "agelapse-age/1":
            result["age"] = evaluate_age(AgeModel.load(path, verify=False), cache, test)
        else:
            if not age_model:
                raise ValueError("judging an aging model needs --age-model (an age.onnx or an age run)")
            age_path = _as_onnx(Path(age_model), Path(tmp) / "age")
            age = AgeModel.load(age_path, verify=False)
            all_test = cache.indices(split)
            real_est = estimate_ages(age, np.asarray(cache.images[all_test]))  # once, for both tables
            result["age"] = evaluate_age(age, cache, all_test, real_est)
            result["aging"] = evaluate_aging(AgingModel.load(path, verify=False), age, cache, test, real_est, split)
    print(format_table(result))
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=2))
    return result
