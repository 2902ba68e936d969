"""The evaluation protocol, on the held-out test split (training/data.py's hash split).

- age model: MAE in years, overall and per decade;
- aging model, each face aged to every group: for each target group, the mean estimated age of
  the aged faces next to that of real faces of the group (the gap) and the share of aged faces
  whose estimate falls in the target group, by two age models side by side: the **guide** (the
  age model the aging model carries; it may flatter it) and the independent **judge**
  (training/judges, never trained against: its figures decide); identity: dlib's face-descriptor
  distance between input and output (its PyTorch port, batched), verification rate = share
  under 0.6, also for targets within two groups of the source; skin-tone drift (CIEDE2000 of
  the cheek skin) and an artefact score; all of it per slice (race, source age, head yaw), with
  a gallery of the 16 worst faces of every slice (training/eval_slices.py).
Runs are exported to a temporary ONNX file first, so what is measured is what ships.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from core.contracts import AGE
from core.text import file_label
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
    """dlib's face descriptor (dlib_face_recognition_resnet_model_v1) for aligned faces with known
    landmarks, one face at a time through dlib (the reference the PyTorch port is checked against)."""

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

    def descriptors(self, images: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return np.stack([self.descriptor(im, lm) for im, lm in zip(images, landmarks)])


def identity_model(kind: str = "torch"):
    """The descriptor the identity figures use: "torch" (training/face_descriptor.py, batched,
    dlib's network and weights) or "dlib" (dlib itself, one face at a time)."""
    if kind == "dlib":
        return Identity()
    if kind == "torch":
        from .face_descriptor import TorchIdentity

        return TorchIdentity()
    raise ValueError(f"identity must be 'torch' or 'dlib', not {kind!r}")


def _in_group(est: np.ndarray, group) -> np.ndarray:
    lo, hi = group
    return (est >= lo) & ((est <= hi + 0.999) if hi is not None else True)


def _age_table(est: np.ndarray, real_est: np.ndarray, real_groups: np.ndarray, groups: list, labels: list) -> dict:
    per = {}
    for t, label in enumerate(labels):
        real = real_est[real_groups == t]
        mean = float(est[:, t].mean())
        per[label] = {"mean_estimated_age": round(mean, 2),
                      "real_mean_estimated_age": round(float(real.mean()), 2) if len(real) else None,
                      "gap": round(mean - float(real.mean()), 2) if len(real) else None,
                      "age_accuracy": round(float(_in_group(est[:, t], groups[t]).mean()), 4)}
    means = [per[label]["mean_estimated_age"] for label in labels]
    return {"per_group": per, "monotonic": bool(np.all(np.diff(means) > 0)),
            "age_accuracy": round(float(np.mean([per[label]["age_accuracy"] for label in labels])), 4)}


class Reframe:
    """The cache's faces (aligned to the cache's template at its size) into an aging model's own
    crop (its template at its size; e.g. the same square with a margin) and the model's outputs
    back. Where the cache's crop has no pixels the border is mirrored; the measures are taken on
    the outputs brought back to the cache's crop, where the judges were trained."""

    def __init__(self, cache: FaceCache, model: AgingModel):
        from core.align import ALIGN_POINTS, invert, similarity

        self.size_in, self.size_out = cache.size, model.image_size
        self.m = similarity(cache.template.at_size(self.size_in)[ALIGN_POINTS], model.template.at_size(self.size_out)[ALIGN_POINTS])
        self.back = invert(self.m)
        self.same = self.size_in == self.size_out and np.allclose(self.m, np.eye(2, 3), atol=1e-3)

    def _warp(self, images, m, size, border):
        return np.stack([cv2.warpAffine(np.ascontiguousarray(im), m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
                         for im in images])

    def images(self, images: np.ndarray) -> np.ndarray:
        return images if self.same else self._warp(images, self.m, self.size_out, cv2.BORDER_REFLECT_101)

    def masks(self, masks: np.ndarray) -> np.ndarray:
        """(N, 5, S, S) region masks -> the model's crop (outside the cache's crop: 0)."""
        if self.same:
            return masks
        moved = self._warp(np.asarray(masks).transpose(0, 2, 3, 1), self.m, self.size_out, cv2.BORDER_CONSTANT)
        return moved.transpose(0, 3, 1, 2)

    def points(self, landmarks: np.ndarray) -> np.ndarray:
        from core.align import transform_points

        return landmarks if self.same else np.stack([transform_points(p, self.m) for p in landmarks])

    def restore(self, outputs: np.ndarray) -> np.ndarray:
        return outputs if self.same else self._warp(outputs, self.back, self.size_in, cv2.BORDER_REPLICATE)

    def run(self, aging: AgingModel, images: np.ndarray, landmarks: np.ndarray, masks: np.ndarray, k: int,
            targets: np.ndarray | None = None) -> np.ndarray:
        """Every face aged to every one of the ``k`` groups, in the cache's crop: (N * k, S, S, 3);
        or, given ``targets`` (N, k), each face aged to its own row once: (N, S, S, 3)."""
        n = len(images)
        x = self.images(images)
        regions = self.masks(masks).astype(np.float32) / 255
        lms = self.points(np.asarray(landmarks, dtype=np.float32)).astype(np.float32)
        if targets is None:
            x, regions, lms = np.repeat(x, k, 0), np.repeat(regions, k, 0), np.repeat(lms, k, 0)
            targets = np.tile(np.eye(k, dtype=np.float32), (n, 1))
        aged, _ = aging.run(x, np.asarray(targets, dtype=np.float32), regions, lms, 1.0)
        return self.restore(aged)


def _box(landmarks: np.ndarray) -> np.ndarray:
    """A face box around 68 landmarks, as dlib's detector draws it (brows to chin, jaw to jaw)."""
    x0, y0 = landmarks.min(0)
    x1, y1 = landmarks.max(0)
    return np.array([x0, y0 - 0.05 * (y1 - y0), x1, y1], dtype=np.float32)


def evaluate_aging(aging: AgingModel, judges: dict, cache: FaceCache, idx: np.ndarray, real_est: dict,
                   split: str = "test", identity: str = "torch", gallery_dir: Path | None = None, faces_per_call: int = 8,
                   own_landmarks: bool = True) -> dict:
    """The aging model on the faces ``idx`` of ``split``, each aged to every group.

    ``judges``: {"guide": AgeModel, "judge": AgeModel (optional)}: the guide is the age model the
    aging model carries (it may flatter it), the judge an independent one; ``real_est``: each
    judge's estimates for every face of ``split`` (the reference). Identity by dlib's descriptor
    (``identity``: its PyTorch port or dlib), computed for input and output at the input's
    landmarks, each aligned by its own landmarks as a verification system would (``own_landmarks``:
    dlib's 68 points found on the aged face in the input's face box; False: the input's landmarks
    for both, which understates identity wherever the aging moved the features). Skin-tone drift,
    artefact score and slices: training/eval_slices.py. With ``gallery_dir``, the 16 worst faces
    of every slice are saved there as pictures."""
    from . import eval_slices as sl
    from .groups import group_index

    groups = [list(g) for g in aging.age_groups]
    k = len(groups)
    labels = aging.group_labels
    ident = identity_model(identity)
    finder = None
    if own_landmarks:
        from core.faces import FaceFinder

        finder = FaceFinder()
    frame = Reframe(cache, aging)
    n = len(idx)
    est = {name: np.zeros((n, k)) for name in judges}
    dist, drift, artefact = np.zeros((n, k)), np.full((n, k), np.nan), np.zeros((n, k))
    src = np.array([group_index(int(a), groups) for a in cache.ages[idx]])
    started = time.monotonic()
    for j in range(0, n, faces_per_call):
        part = idx[j : j + faces_per_call]
        x = np.asarray(cache.images[part])
        lms = np.asarray(cache.landmarks[part], dtype=np.float32)
        masks = np.asarray(cache.masks[part])
        m = len(part)
        aged = frame.run(aging, x, lms, masks, k)
        for name, model in judges.items():
            est[name][j : j + m] = estimate_ages(model, aged).reshape(m, k)
        refs = ident.descriptors(x, lms)
        out_lms = np.repeat(lms, k, 0)
        if finder is not None:  # each aged face aligned by its own landmarks, in the input's face box
            out_lms = np.stack([finder.landmarks(a, _box(lm)) for a, lm in zip(aged, out_lms)])
        outs = ident.descriptors(aged, out_lms).reshape(m, k, -1)
        dist[j : j + m] = np.linalg.norm(outs - refs[:, None], axis=-1)
        for f in range(m):
            outputs = aged[f * k : (f + 1) * k]
            drift[j + f] = sl.tone_drift(x[f], outputs, sl.cheek_mask(masks[f]))
            artefact[j + f] = sl.artefact_score(x[f], outputs)
        if (j // faces_per_call + 1) % 25 == 0:
            log.info("aged %d / %d %s faces (%.0f s)", j + m, n, split, time.monotonic() - started)
    all_split = cache.indices(split)
    real_groups = np.array([group_index(int(a), groups) for a in cache.ages[all_split]])
    near = np.abs(src[:, None] - np.arange(k)[None]) <= 2
    per = {}
    for t, label in enumerate(labels):
        per[label] = {
            "verification_rate": round(float((dist[:, t] < VERIFY_THRESHOLD).mean()), 4),
            "verification_rate_within_two_groups": round(float((dist[near[:, t], t] < VERIFY_THRESHOLD).mean()), 4) if near[:, t].any() else None,
            "mean_identity_distance": round(float(dist[:, t].mean()), 4),
            "skin_tone_drift": sl.median_or_none(drift[:, t]),
            "artefact": round(float(artefact[:, t].mean()), 2),
        }
    result = {"n": int(n), "split": split, "identity": identity, "own_landmarks": own_landmarks, "per_group": per,
              "verification_rate": round(float((dist < VERIFY_THRESHOLD).mean()), 4),
              "verification_rate_within_two_groups": round(float((dist[near] < VERIFY_THRESHOLD).mean()), 4),
              "ages": {name: _age_table(est[name], real_est[name], real_groups, groups, labels) for name in judges}}
    referee = "judge" if "judge" in judges else "guide"
    result["referee"] = referee
    races = np.array([-1 if cache.samples[i].get("race") is None else int(cache.samples[i]["race"]) for i in idx])
    yaws = sl.yaw_degrees(cache.landmarks[idx])
    members = sl.slice_members(races, cache.ages[idx], yaws)
    result["slices"] = sl.slice_table(members, labels, dist, drift, est[referee], artefact, VERIFY_THRESHOLD)
    if gallery_dir is not None:
        bad = sl.badness(dist, artefact)
        result["galleries"] = {}
        for kind, slices in members.items():
            for name, m in slices.items():
                worst = np.flatnonzero(m)[np.argsort(-bad[m])[:16]]
                path = Path(gallery_dir) / (file_label(f"worst {kind} {name.replace('<', 'under').replace('>', 'over')}") + ".jpg")
                rows, captions = [], []
                for f in worst:
                    i = idx[f]
                    x = np.asarray(cache.images[i])
                    aged = frame.run(aging, x[None], np.asarray(cache.landmarks[i])[None], np.asarray(cache.masks[i])[None], k)
                    rows.append(np.concatenate([x, *aged], 1))
                    captions.append(f"age {int(cache.ages[i])} id {dist[f].max():.2f} art {artefact[f].max():.1f}")
                sl.save_gallery(path, rows, labels, captions)
                result["galleries"][f"{kind}: {name}"] = path.name
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def format_table(result: dict) -> str:
    lines = []
    for key, title in (("age", "Age model"), ("judge_age", "Age judge")):
        if key in result:
            a = result[key]
            lines.append(f"{title}: MAE {a['mae']:.2f} years on {a['n']} {result.get('split', 'test')} faces")
            lines.append("  decade    MAE     n")
            for dec, v in a["per_decade"].items():
                lines.append(f"  {dec:<8}{v['mae']:>6.2f}{v['n']:>6}")
    if "aging" in result:
        g = result["aging"]
        lines.append(f"Aging model on {g['n']} {result.get('split', 'test')} faces ({g.get('seconds', 0):.0f} s; identity by "
                     f"dlib's descriptor via {g.get('identity', 'dlib')})")
        for name, table in g["ages"].items():
            role = "independent judge (decides)" if name == "judge" else "guide (carried by the aging model)"
            lines.append(f"  ages by the {role}:")
            lines.append("    target   est.age  real est.age    gap  age acc.")
            for label, v in table["per_group"].items():
                real = "-" if v["real_mean_estimated_age"] is None else f"{v['real_mean_estimated_age']:.1f}"
                gap = "-" if v["gap"] is None else f"{v['gap']:+.1f}"
                lines.append(f"    {label:<8}{v['mean_estimated_age']:>8.1f}{real:>14}{gap:>7}{100 * v['age_accuracy']:>9.1f}%")
            lines.append(f"    means increase monotonically: {'yes' if table['monotonic'] else 'no'}; "
                         f"mean age accuracy {100 * table['age_accuracy']:.1f}%")
        lines.append("  target   verif.  verif.(<=2 groups)  id dist  skin dE00  artefact")
        for label, v in g["per_group"].items():
            near = "-" if v["verification_rate_within_two_groups"] is None else f"{100 * v['verification_rate_within_two_groups']:.1f}%"
            drift = "-" if v["skin_tone_drift"] is None else f"{v['skin_tone_drift']:.2f}"
            lines.append(f"  {label:<8}{100 * v['verification_rate']:>7.1f}%{near:>20}{v['mean_identity_distance']:>9.3f}"
                         f"{drift:>11}{v['artefact']:>10.1f}")
        for kind, slices in g.get("slices", {}).items():
            lines.append(f"  slices by {kind} (verification % / skin dE00 / est. age by the {g.get('referee', 'guide')} / artefact):")
            labels = list(g["per_group"])
            lines.append("    " + " " * 18 + "".join(f"{label:>22}" for label in labels))
            for name, v in slices.items():
                cells = []
                for label in labels:
                    c = v["per_group"][label]
                    drift = "-" if c["skin_tone_drift"] is None else f"{c['skin_tone_drift']:.1f}"
                    cells.append(f"{100 * c['verification_rate']:.0f}/{drift}/{c['mean_estimated_age']:.0f}/{c['artefact']:.0f}")
                lines.append(f"    {name:<14}{v['n']:>4}" + "".join(f"{cell:>22}" for cell in cells))
    return "\n".join(lines)


def evaluate(target: Path, cache_dir: Path, age_model: str | None = None, limit: int = 0, json_out: str | None = None,
             split: str = "test", judge: str | None = None, identity: str = "torch", gallery: str | None = None) -> dict:
    """The protocol on ``split``: "test" for the figures that are reported, "val" for choosing
    settings (so that no choice is made on the test faces). ``judge``: the independent age judge
    (default: the committed training/judges/age_judge.onnx when it exists; "none" to skip it).
    ``gallery``: folder for the worst-16 pictures (default: beside ``json_out``)."""
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
        result: dict = {"model": Path(target).name, "split": split}
        if fmt == AGE.format:
            result["age"] = evaluate_age(AgeModel.load(path, verify=False), cache, test)
        else:
            if not age_model:
                raise ValueError("judging an aging model needs --age-model (an age.onnx or an age run)")
            age_path = _as_onnx(Path(age_model), Path(tmp) / "age")
            judges = {"guide": AgeModel.load(age_path, verify=False)}
            judge_file = _judge_file(judge)
            if judge_file is not None:
                judges["judge"] = AgeModel.load(judge_file, verify=False)
                result["judge_model"] = judge_file.name
            all_split = cache.indices(split)
            real_est = {name: estimate_ages(m, np.asarray(cache.images[all_split])) for name, m in judges.items()}
            result["age"] = evaluate_age(judges["guide"], cache, all_split, real_est["guide"])
            if "judge" in judges:
                result["judge_age"] = evaluate_age(judges["judge"], cache, all_split, real_est["judge"])
            where = Path(gallery) if gallery else (Path(json_out).with_suffix("") .parent / (Path(json_out).stem + "_galleries") if json_out else None)
            result["aging"] = evaluate_aging(AgingModel.load(path, verify=False), judges, cache, test, real_est, split,
                                             identity=identity, gallery_dir=where)
    print(format_table(result))
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=2))
    return result


def _judge_file(judge: str | None) -> Path | None:
    if judge == "none":
        return None
    if judge:
        return Path(judge)
    from .judges import judge_path

    path = judge_path()
    return path if path.is_file() else None
