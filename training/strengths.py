"""How strongly the prototype model ages each face: a small learned controller.

The prototype model (training/prototype.py) applies the same gains to every face, and those
gains are a compromise: stronger aging costs the person (dlib's descriptor drifts past 0.6) on
some faces long before others, so the shipped gains stop where the most fragile faces stop, and
the old targets stay judged 12-20 years too young. ``StrengthNet`` reads the face (the age
model's crop of it, which the model cuts anyway), the target and the face's source distribution,
and returns four multipliers of the model's own gains: the colour pattern, the texture (detail),
the real old faces' lines and the shape change. It cannot draw anything: its output space is
"the prototype's own change, stronger or weaker", four numbers per face, so the classifier
shortcut (patterns that fool an age model, docs/DESIGN.md) has no way in; the skin's tone and
the hair are not in its hands.

It is trained (``python -m training strengths``) with the prototype model frozen around it, on
two signals: the age guide (the age model the aging model carries, never the judge) should find
the aged face as old as the guide finds real faces of the target group, and the face descriptor
(training/face_descriptor.py, dlib's network) should not drift past a margin below the
verification threshold. A penalty on the multipliers' logarithm keeps them at 1 where neither
signal asks for anything. Its last layer starts at zero: an untrained controller is the
prototype model as it was.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .eval_slices import yaw_sine
from .groups import child_groups

log = logging.getLogger(__name__)

COMPONENTS = ("colour", "detail", "lines", "shape")
# each multiplier's range (low, high): the lines may grow most (the best trade of age for identity
# any fixed setting offered, MODEL_CARD.md), the colour pattern least (skin-tone drift). Chosen on
# 400 validation faces against narrower ones (texture to 1.6, lines to 2.5: 70+ a year younger).
# The lines stop at 2.0: the controller drove them to the end of a range to 3.2 for most faces made
# 60+, and on real photos (sharper than UTKFace's chips, turned, darker) the map's lines at three
# times their depth read as grey smudges on the cheeks and under the eyes; at 2.0, 70+ is judged
# about 4 years younger on 400 validation faces (the controller's own choices scaled: 54.0 -> 49.6
# years, verified 94.2 -> 96.0 %). The texture stops at 1.0 (the model's own gain): with the lines
# held, a controller trained anew raised it (1.29 on average over its last training batch; on the
# album's adults made 70+ 0.74-1.08 against 0.69-0.76 before), and a sharp photo's pores and
# stubble, deepened, came back as the dirt the cap took away (70+ 49.2 years against 47.7 with the
# old controller scaled, verified 93.0 % against 95.5 %)
RANGES = ((0.6, 1.3), (0.6, 1.0), (0.5, 2.0), (0.5, 1.5))
# |sin(yaw)| from which a turned face loses what the controller adds to the model's gains, and
# where it has none of it left (20 and 40 degrees): turned faces lose their person sooner, and the controller, trained on
# mostly frontal faces, gave them as much as the frontal ones (test split, symmetric lines: faces
# turned past 30 degrees made 70+ verified 89.6 % against 93.3 % for frontal ones); told the
# yaw as an input, it learned to push them harder instead (the guide finds turned faces younger).
# What it takes away stays: without it, turned faces made 0-9 lost 7 points of verification
TURNED = (0.342, 0.643)


class StrengthNet(nn.Module):
    """(face (N,3,a,a) in [-1,1], target (N,K), source (N,K)) -> multipliers (N, 4) in RANGES.

    ``young``: the groups whose faces are children (1) or not (0). A child's face is aged by the
    model unaided (every multiplier is drawn to 1 by the face's child share): asked to make a
    child made 70+ look 74, the controller drew the lines to the range's end (grey streaks across
    babies' cheeks at 60+, in the worst-16 gallery of children); holding the lines and texture
    alone, it took the shape change away instead and raised the colour (children made 70+ judged
    36 years instead of 41, a skin-tone drift of 3.5): a child's face needs what the controller
    cannot give (an adult's skull), so it is left to the model."""

    def __init__(self, k: int, width: int = 16, ranges=RANGES, young=None):
        super().__init__()
        w = width
        layers, c = [], 3
        for cout in (w, 2 * w, 4 * w, 4 * w):
            layers += [nn.Conv2d(c, cout, 3, 2, 1), nn.LeakyReLU(0.2)]
            c = cout
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(c + 2 * k, 64), nn.LeakyReLU(0.2), nn.Linear(64, len(COMPONENTS)))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        lo, hi = torch.tensor([r[0] for r in ranges]), torch.tensor([r[1] for r in ranges])
        self.register_buffer("log_lo", -torch.log(lo))  # > 0
        self.register_buffer("log_hi", torch.log(hi))
        self.register_buffer("young", torch.tensor([float(v) for v in (young or [0.0] * k)]))
        self.width, self.k = int(width), int(k)

    def forward(self, face, target, source, turn=None):
        """``turn``: (N,) |sin(yaw)| of each face (``turn(landmarks)``); a face turned past
        TURNED[1] gets none of what the controller adds to the model's gains (what it takes away,
        it keeps), one frontal up to TURNED[0] all of it."""
        z = self.head(torch.cat([self.trunk(face).mean((2, 3)), target, source], 1))
        t = torch.tanh(z)
        m = torch.exp(torch.where(t > 0, t * self.log_hi, t * self.log_lo))  # 1 at z = 0
        child = (source @ self.young).view(-1, 1)
        m = 1 + (m - 1) * (1 - child)
        if turn is not None:
            a = ((turn.view(-1, 1) - TURNED[0]) / (TURNED[1] - TURNED[0])).clamp(0.0, 1.0)
            m = torch.minimum(m, 1 + (m - 1) * (1 - a * a * (3 - 2 * a)))  # smoothstep; only what it adds
        return m

    def config(self) -> dict:
        ranges = torch.stack([torch.exp(-self.log_lo), torch.exp(self.log_hi)], 1).tolist()
        return {"k": self.k, "width": self.width, "ranges": [[round(a, 6), round(b, 6)] for a, b in ranges],
                "young": self.young.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> "StrengthNet":
        cfg = state["config"]
        net = cls(int(cfg["k"]), int(cfg["width"]), [tuple(r) for r in cfg["ranges"]], cfg.get("young"))
        own = net.state_dict()
        net.load_state_dict({**own, **{k: v.float() for k, v in state["weights"].items() if k in own}})
        return net.eval()


def turn(landmarks: torch.Tensor) -> torch.Tensor:
    """(N, 68, 2) -> (N,) how far the head is turned, |sin(yaw)| in [0, 1] (in the graph)."""
    return yaw_sine(landmarks).abs()


# --- the losses, one function each (tests/test_strengths.py)

def age_gap_loss(estimate: torch.Tensor, target: torch.Tensor, reference: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """How far the guide's estimate of the aged face lies from the guide's mean estimate of real
    faces of the target group (``reference`` (K,) years, blended by the target weights): the gap
    the evaluation measures, face by face, in units of ``scale`` years (smooth L1)."""
    ref = target @ reference
    return F.smooth_l1_loss(estimate / scale, ref / scale)


def multiplier_penalty(m: torch.Tensor) -> torch.Tensor:
    """Mean squared logarithm of the multipliers: 1 costs nothing, x2 and x0.5 the same."""
    return torch.log(m).pow(2).mean()


# --- training

@dataclass
class StrengthConfig:
    steps: int = 700
    batch: int = 16
    lr: float = 3e-3
    width: int = 16
    id_margin: float = 0.5  # 0.55 on 400 validation faces: 70+ verified 85.5 % and a skin-tone drift of 3.2
    w_id: float = 20.0
    w_age: float = 1.0
    w_penalty: float = 0.05
    seed: int = 0
    threads: int = 1
    ranges: tuple = RANGES  # (low, high) of each multiplier, COMPONENTS' order
    reference_faces: int = 2000  # training faces whose guide estimates give each group's reference
    log_every: int = 20


def guide_age(ager, image, landmarks):
    """The mean age estimate (years) of the age model the aging model carries, on the face cut as
    it cuts it."""
    return ager.age_net.predict(ager.age_crop(image, landmarks))[0]


@torch.no_grad()
def group_references(ager, cache, idx: np.ndarray, groups: list, margin: int) -> torch.Tensor:
    """(K,) the guide's mean estimate of real training faces in each group: what an aged face
    of that group should be found (the evaluation's "real" row, on the training split)."""
    from .gan.pairs import load_faces
    from .groups import group_indices

    est = []
    for i in range(0, len(idx), 64):
        x, lm, _ = load_faces(cache, idx[i : i + 64], margin)
        est.append(guide_age(ager, x, lm))
    est = torch.cat(est)
    gi = torch.from_numpy(group_indices(cache.ages[idx], groups))
    return torch.stack([est[gi == g].mean() if (gi == g).any() else torch.tensor(float("nan")) for g in range(len(groups))])


def train(prototype_run: Path, cache_dir: Path, out: Path, cfg: StrengthConfig) -> Path:
    """Train a controller for the prototype run's model; write ``out``/checkpoint.pt: the prototype
    state with the controller in it (kind "prototype": evaluate and export take it as it is)."""
    from .face_descriptor import FaceDescriptor, face_chips
    from .gan.losses import guide_view, identity_loss
    from .gan.pairs import conditions, load_faces, mirror
    from .preprocess import FaceCache
    from .prototype import PrototypeAger
    from .runtime import save_checkpoint

    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    state = torch.load(Path(prototype_run) / "checkpoint.pt", map_location="cpu", weights_only=True)
    if state.get("kind") != "prototype":
        raise ValueError(f"{prototype_run} is not a prototype run")
    state.pop("strengths", None)
    ager = PrototypeAger.from_state(state).eval().requires_grad_(False)
    k = len(ager.groups)
    net = StrengthNet(k, cfg.width, [tuple(r) for r in cfg.ranges], child_groups(ager.groups))
    ager.strengths = net
    cache = FaceCache(cache_dir)
    r = np.random.default_rng(cfg.seed)
    train_idx = cache.indices("train")
    ref_idx = np.sort(r.choice(train_idx, min(cfg.reference_faces, len(train_idx)), replace=False))
    reference = group_references(ager, cache, ref_idx, ager.groups, ager.margin)
    reference = torch.nan_to_num(reference, nan=float(np.nanmean(reference.numpy())))
    log.info("the guide's mean estimate of real training faces per group: %s", " ".join(f"{v:.1f}" for v in reference))
    desc = FaceDescriptor.from_dat()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "stats.jsonl", "a") as stats:
        to255 = lambda im: (im + 1) * 127.5
        t0 = time.perf_counter()
        for step in range(cfg.steps):
            idx = np.sort(r.choice(train_idx, cfg.batch, replace=False))
            x, lm, masks = load_faces(cache, idx, ager.margin)
            t, _, _ = conditions(r, cfg.batch, k, 0.25, 0.0, 0.0)
            x, lm, masks = mirror(x, lm, masks, r.random(cfg.batch) < 0.5)
            hair = torch.ones(cfg.batch)
            net.train()
            aged, _ = ager(x, t, masks, lm, hair)
            m = ager.seen["multipliers"]
            est = guide_age(ager, guide_view(aged, gen), lm)
            lmr = lm.round()
            with torch.no_grad():
                d_in = desc(face_chips(to255(x), lmr, quantize=False))
            d_out = desc(face_chips(to255(aged), lmr, quantize=False))
            losses = {"age": age_gap_loss(est, t, reference), "id": identity_loss(d_out, d_in, cfg.id_margin),
                      "penalty": multiplier_penalty(m)}
            total = cfg.w_age * losses["age"] + cfg.w_id * losses["id"] + cfg.w_penalty * losses["penalty"]
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                dist = (d_out - d_in).norm(dim=1).detach()
                row = {"step": step, **{n: float(v.detach()) for n, v in losses.items()},
                       "gap": float((est - t @ reference).mean().detach()),
                       "gap_old": float((est - t @ reference)[t.argmax(1) >= k - 2].mean().detach()),
                       "gap_young": float((est - t @ reference)[t.argmax(1) <= 1].mean().detach()), "dist_max": float(dist.max()),
                       "over_06": float((dist > 0.6).float().mean()),
                       **{c: float(m[:, i].mean().detach()) for i, c in enumerate(COMPONENTS)},
                       "s_per_step": (time.perf_counter() - t0) / (step + 1)}
                stats.write(json.dumps(row) + "\n")
                stats.flush()
                log.info("step %d age %.3f id %.4f gap %+.1f (60+ %+.1f, <20 %+.1f) multipliers %s (%.2f s/step)", step, row["age"], row["id"],
                         row["gap"], row["gap_old"], row["gap_young"], " ".join(f"{c} {row[c]:.2f}" for c in COMPONENTS), row["s_per_step"])
    state["strengths"] = {"config": {**net.config(), "train": cfg.__dict__, "reference": reference.tolist()},
                          "weights": {k_: v.detach().clone() for k_, v in net.state_dict().items()}}
    save_checkpoint(out, state)
    return out
