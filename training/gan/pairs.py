"""Training pairs made on the fly: cache faces brought into the teacher's crop (its template square
with a margin; the cache's tight crop padded by mirroring, as evaluate.Reframe does), random
conditions (targets, blends, strengths, hair), and the teacher's output for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.regions import FLIP

from ..age_source import load_age_state
from ..groups import random_targets
from ..preprocess import FaceCache
from ..runtime import to_tensor

ROOT = Path(__file__).resolve().parents[2]


def load_faces(cache: FaceCache, idx: np.ndarray, margin: int):
    """Faces ``idx`` in the teacher's crop: image (N,3,S,S) in [-1,1], landmarks (N,68,2) in its
    pixels, region masks (N,5,S,S) in [0,1] (zero in the margin)."""
    x = to_tensor(cache.images[idx], "cpu")
    masks = torch.from_numpy(np.ascontiguousarray(cache.masks[idx])).float() / 255
    lm = torch.from_numpy(cache.landmarks[idx].astype(np.float32)) + margin
    if margin:
        x = F.pad(x, (margin,) * 4, mode="reflect")
        masks = F.pad(masks, (margin,) * 4)
    return x, lm, masks


def mirror(x: torch.Tensor, lm: torch.Tensor, masks: torch.Tensor, flags: np.ndarray):
    """The faces where ``flags`` is set, mirrored left to right: image and region masks flipped
    (every region is symmetric, so its channel stays), landmarks moved and renumbered (the image's
    left eye becomes its right eye: core.regions.FLIP)."""
    idx = torch.from_numpy(np.flatnonzero(flags))
    if not len(idx):
        return x, lm, masks
    x, lm, masks = x.clone(), lm.clone(), masks.clone()
    x[idx], masks[idx] = x[idx].flip(-1), masks[idx].flip(-1)
    moved = lm[idx][:, torch.from_numpy(FLIP)]
    moved[..., 0] = (x.shape[-1] - 1) - moved[..., 0]
    lm[idx] = moved
    return x, lm, masks


def conditions(r: np.random.Generator, n: int, k: int, blend: float = 0.25, strength_jitter: float = 0.3,
               hair_jitter: float = 0.3):
    """(target (N,K), strengths (N,5), hair (N,)): one-hot targets, a share ``blend`` of them two
    neighbouring groups mixed; a share of faces with random region strengths (some 0), and of
    random hair strengths in [0, 1.5]; the rest at 1."""
    t = random_targets(r, n, k, blend)
    s = np.ones((n, 5), dtype=np.float32)
    pick = r.random(n) < strength_jitter
    s[pick] = r.uniform(0, 1.5, (pick.sum(), 5)) * (r.random((pick.sum(), 5)) > 0.25)
    hair = np.ones(n, dtype=np.float32)
    pick = r.random(n) < hair_jitter
    hair[pick] = r.uniform(0, 1.5, pick.sum())
    return torch.from_numpy(t), torch.from_numpy(s), torch.from_numpy(hair)


def resolve_path(path: str) -> Path:
    """A path from a config: absolute, relative to the working folder, else to the repository."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else ROOT / p


def teacher_state(run: Path) -> dict:
    """The prototype run's checkpoint (what PrototypeAger.from_state reads)."""
    state = torch.load(Path(run) / "checkpoint.pt", map_location="cpu", weights_only=True)
    if state.get("kind") != "prototype":
        raise ValueError(f"{run} is not a prototype run (the teacher)")
    return state


def compact_teacher(state: dict) -> dict:
    """The teacher's state without its age network (rebuilt from the config's age model) and with
    its prototypes in fp16: what a resume point carries (about 2 MB)."""
    keep = {k: v for k, v in state.items() if k not in ("age",)}
    keep["protos"] = {k: v.half() if v.is_floating_point() else v for k, v in state["protos"].items()}
    keep["cover"], keep["head"] = state["cover"].half(), state["head"].half()
    return keep


# how far (template px) a prototype run's mean shape may lie from the run teacher's for its
# wrinkle map, drawn on that mean shape, to be taken over
SHAPE_TOLERANCE = 0.5


def reteach(teacher: dict, prototype: dict) -> dict:
    """A running network's teacher with a newer prototype run's settings and wrinkle map. What the
    network was built on stays the run's own: its prototypes (their mean shape fixes the network's
    region crops), its margin and template (the network's frame), its age model. A newer run's
    learned controller of the gains (training/strengths.py), if it has one, comes with it. A
    prototype run whose mean shape lies elsewhere has its map drawn for another face: refused (a
    new run)."""
    if prototype.get("kind") != "prototype":
        raise ValueError("the new teacher must be a prototype run")
    if [list(g) for g in prototype["config"]["age_groups"]] != [list(g) for g in teacher["config"]["age_groups"]]:
        raise ValueError("the new teacher has other age groups than the run's: start a new run")
    shift = float((prototype["protos"]["mean_shape"].float() - teacher["protos"]["mean_shape"].float()).abs().max())
    if shift > SHAPE_TOLERANCE:
        raise ValueError(f"the new teacher's mean shape lies up to {shift:.2f} px from the run's: start a new run")
    out = dict(teacher)
    out["config"] = {**teacher["config"], **{k: v for k, v in prototype["config"].items() if k not in ("age_groups", "margin")}}
    protos = dict(teacher["protos"])
    if "wrinkles" in prototype["protos"]:
        protos["wrinkles"] = prototype["protos"]["wrinkles"].to(teacher["protos"]["textures"].dtype)
    out["protos"] = protos
    if "strengths" in prototype:
        out["strengths"] = prototype["strengths"]
    return out


def build_teacher(state: dict, age_model: str | None = None):
    """The teacher (PrototypeAger) of ``state``; its age network from ``age_model`` when the state
    has none (a resume point's)."""
    from ..prototype import PrototypeAger

    state = dict(state)
    if "age" not in state:
        age = load_age_state(resolve_path(age_model))
        state["age"], state["age_config"] = age["ema"], age["config"]
    state["protos"] = {k: v.float() if v.is_floating_point() else v for k, v in state["protos"].items()}
    state["cover"], state["head"] = state["cover"].float(), state["head"].float()
    teacher = PrototypeAger.from_state(state).eval().requires_grad_(False)
    return teacher, state
