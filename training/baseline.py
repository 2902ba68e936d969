"""The training-free aging baseline: add the difference between the mean faces of the target
and the source age groups, inside the face and the hair around it.

The source group is not an input of the aging contract, so the baseline carries the age model
and uses its distribution over groups: change = sum_k (target_k - p_k) * mean_k. It honours the
same contract and gate as the generator (nets.Generator), so it exports, evaluates and ships the
same way: it is the fallback and the bar any GAN must beat.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.regions import face_mask
from .age_source import load_age_state, rebuild_age_net
from .nets import AgeNet, group_probs, strength_gate
from .preprocess import FaceCache
from .runtime import save_checkpoint

log = logging.getLogger(__name__)


class MeanFaceAger(nn.Module):
    def __init__(self, means: torch.Tensor, age_net: AgeNet, age_size: int, groups: list, cover: torch.Tensor, head: torch.Tensor):
        super().__init__()
        self.register_buffer("means", means.float())
        self.register_buffer("cover", cover.reshape(1, 1, *cover.shape[-2:]).float())
        self.register_buffer("head", head.reshape(1, 1, *head.shape[-2:]).float())
        self.age_net = age_net
        self.age_size = age_size
        self.groups = [list(g) for g in groups]

    def forward(self, image, target, regions):
        small = F.interpolate(image, size=(self.age_size, self.age_size), mode="bilinear", align_corners=False, antialias=True)
        p = group_probs(torch.softmax(self.age_net(small), 1), self.groups)
        delta = torch.einsum("nk,kchw->nchw", target - p, self.means)
        gate = strength_gate(self.cover, self.head, regions)
        aged = (image + gate * delta).clamp(-1, 1)
        return aged, (1 - gate).clamp(0, 1).expand(-1, 1, -1, -1)

    @classmethod
    def from_state(cls, state: dict) -> "MeanFaceAger":
        ac = state["age_config"]
        return cls(state["means"], rebuild_age_net(state["age"], ac), int(ac["input_size"]), state["config"]["age_groups"], state["cover"], state["head"])


def group_means(cache: FaceCache, groups: list) -> torch.Tensor:
    """(K, 3, S, S) mean aligned training face of each age group, in [-1, 1]."""
    from .groups import group_index

    size = cache.size
    train = cache.indices("train")
    gi = np.array([group_index(a, groups) for a in cache.ages[train]])
    means = np.zeros((len(groups), 3, size, size), dtype=np.float64)
    for k in range(len(groups)):
        members = train[gi == k]
        acc = np.zeros((size, size, 3))
        for i in range(0, len(members), 512):
            acc += cache.images[np.sort(members[i : i + 512])].astype(np.float64).sum(0)
        means[k] = (acc / max(1, len(members))).transpose(2, 0, 1) / 127.5 - 1
    return torch.from_numpy(means).float()


def cover_and_head(cache: FaceCache) -> tuple[torch.Tensor, torch.Tensor]:
    """The union of the five regions on the template face, and a head area around it (hair)."""
    size = cache.size
    cover = face_mask(cache.template.at_size(size), (size, size))
    head = cv2.GaussianBlur(cv2.dilate(cover, np.ones((size // 5, size // 5), np.uint8)), (0, 0), size / 24)
    return torch.from_numpy(cover), torch.from_numpy(np.clip(head, 0, 1))


def means_picture(means: torch.Tensor) -> np.ndarray:
    return np.concatenate([((m.numpy().transpose(1, 2, 0) + 1) * 127.5).clip(0, 255).astype(np.uint8) for m in means], 1)


def build(cache_dir: Path, age_run: Path, out: Path, groups: list) -> Path:
    cache = FaceCache(cache_dir)
    age = load_age_state(age_run)
    means = group_means(cache, groups)
    cover, head = cover_and_head(cache)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {"kind": "baseline", "means": means, "age": age["ema"], "age_config": age["config"],
             "cover": cover, "head": head, "config": {"age_groups": groups},
             "template": cache.meta["template"], "image_size": cache.size, "step": 0}
    save_checkpoint(out, state)
    cv2.imwrite(str(out / "group_means.png"), means_picture(means)[..., ::-1])
    log.info("baseline written to %s", out)
    return out
