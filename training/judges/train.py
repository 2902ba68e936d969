"""Training the age judge: the project's age-model loop (train_age.train) with the judge's kind.

What differs from the age model it referees: the network and input (judges/net.py, 128 px),
the loss (rank-consistent ordinal regression: one binary cross-entropy per year k on
"age > k", CORAL's), the augmentation (below: stronger geometry, white balance, gamma,
greyscale, occlusion) and the seed (JudgeConfig). Checkpoints are selected on the validation
split only; the test split is for the reported figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import augment
from ..config import JudgeConfig
from ..train_age import ModelKind
from ..train_age import train as _train_loop
from .net import JudgeNet


def ordinal_loss(net: JudgeNet, logits: torch.Tensor, ages: torch.Tensor, cfg: JudgeConfig) -> tuple[torch.Tensor, dict]:
    """Sum over years k of the binary cross-entropy of P(age > k), averaged over the batch."""
    ranks = torch.arange(logits.shape[1], device=logits.device)
    above = (ages.clamp(0, cfg.max_age)[:, None] > ranks[None]).float()
    loss = F.binary_cross_entropy_with_logits(logits, above, reduction="none").sum(1).mean()
    with torch.no_grad():
        mae = (torch.sigmoid(logits).sum(1) - ages.float()).abs().mean()
    return loss, {"train_mae": mae.item()}


def _uniform(r: np.random.Generator, lo, hi, shape, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(r.uniform(lo, hi, shape).astype(np.float32)).to(like.device)


def photometric(images: torch.Tensor, r: np.random.Generator) -> torch.Tensor:
    """White balance (per-channel gain), gamma, contrast, brightness; a tenth of faces in grey."""
    n = images.shape[0]
    x = (images + 1) * 0.5
    x = x * _uniform(r, 0.92, 1.08, (n, 3, 1, 1), x)
    x = x.clamp(1e-4, 1) ** _uniform(r, 0.8, 1.25, (n, 1, 1, 1), x)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * _uniform(r, 0.75, 1.25, (n, 1, 1, 1), x) + mean + _uniform(r, -0.08, 0.08, (n, 1, 1, 1), x)
    grey = torch.from_numpy(r.random(n) < 0.1).to(x.device).view(n, 1, 1, 1)
    x = torch.where(grey, x.mean(1, keepdim=True).expand_as(x), x)
    return (x.clamp(0, 1) * 2 - 1).contiguous()


def erase(images: torch.Tensor, r: np.random.Generator, p: float = 0.25) -> torch.Tensor:
    """Occlude a random rectangle (10-25 % of the face) with its mean colour in a share ``p`` of faces."""
    n, _, h, w = images.shape
    out = images.clone()
    for i in np.flatnonzero(r.random(n) < p):
        area = r.uniform(0.10, 0.25) * h * w
        aspect = np.exp(r.uniform(np.log(0.5), np.log(2.0)))
        eh, ew = min(h, int(round(np.sqrt(area * aspect)))), min(w, int(round(np.sqrt(area / aspect))))
        y, x = int(r.integers(0, h - eh + 1)), int(r.integers(0, w - ew + 1))
        out[i, :, y : y + eh, x : x + ew] = images[i].mean((1, 2), keepdim=True)
    return out


def judge_augment(images: torch.Tensor, r: np.random.Generator) -> torch.Tensor:
    images = augment.flip(images, r.random(len(images)) < 0.5)
    images = augment.affine(images, r, shift=0.06, scale=0.10, rot=10.0)
    images = photometric(images, r)
    images = augment.blur_noise(images, r, p=0.2, noise=0.02)
    return erase(images, r)


JUDGE = ModelKind("judge", JudgeNet.from_config, ordinal_loss, judge_augment)


def train(cfg: JudgeConfig, cache_dir: Path, out: Path, resume: bool = False, stop_after: int | None = None) -> Path:
    """Train (or resume) the judge in ``out`` on the cache's training split."""
    return _train_loop(cfg, cache_dir, out, resume=resume, stop_after=stop_after, kind=JUDGE)
