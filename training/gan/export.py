"""The "aging2" checkpoint kind for training/export.py's registry: the learned network (its EMA or
last weights) with the teacher's fixed parts, exported on the teacher's crop as contract /2."""

from __future__ import annotations

from core.regions import REGION_NAMES
from ..export import register_kind
from .config import Aging2Config
from .pairs import build_teacher


def network_of(state: dict, weights: str = "ema"):
    """The AgingNet of a run's checkpoint (or a resume point), in eval mode."""
    from .loop import build_net

    cfg = Aging2Config(**{k: (tuple(v) if k == "betas" else v) for k, v in state["config"].items()})
    teacher, _ = build_teacher(state["teacher"], cfg.age_model)
    net = build_net(teacher, cfg)
    w = state["ema"] if weights == "ema" else state["gen"]
    net.load_learned({k: v.float() if v.is_floating_point() else v for k, v in w.items()})
    return net.eval().requires_grad_(False), teacher


@register_kind("aging2")
def build(state: dict, weights: str):
    net, teacher = network_of(state, weights)
    meta = {"format": "agelapse-aging/2", "image_size": net.size, "age_groups": state["config"]["age_groups"],
            "regions": list(REGION_NAMES), "template": teacher.template_json()}
    return net, meta
