"""Typed training configuration: dataclasses with defaults, a JSON file and --set overrides.

`python -m training aging --show-config` prints the resolved configuration.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

DECADES = [[0, 9], [10, 19], [20, 29], [30, 39], [40, 49], [50, 59], [60, 69], [70, None]]


@dataclass
class CommonConfig:
    data: str = ""  # dataset folder or CSV
    format: str = ""  # utkface | fgnet | cacd | morph | csv; empty: detect
    cache: str = ""  # preprocessed cache folder; empty: <out>/../cache/<dataset>_<size>
    size: int = 128  # aligned crop size the cache is built at
    seed: int = 0
    batch: int = 32
    workers: int = 2  # data loader processes (0 on a busy 2-core machine is fine)
    threads: int = 0  # torch intra-op threads; 0 = torch default
    steps: int = 20000
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision on CUDA only (bf16 is 15-50x slower on this CPU)


@dataclass
class AgeConfig(CommonConfig):
    input_size: int = 96  # the age model's input (downscaled from the cache size)
    width: int = 32  # channels of the first stage
    max_age: int = 100  # probs cover 0..max_age
    sigma: float = 2.5  # label distribution width (years)
    l1_weight: float = 0.1  # expected-age L1 beside the KL (DLDL-v2)
    lr: float = 2e-3
    weight_decay: float = 5e-4
    steps: int = 12000
    batch: int = 64
    ema: float = 0.999


@dataclass
class JudgeConfig(CommonConfig):
    """The independent age judge (training/judges): evaluation only, never guides training."""

    input_size: int = 128  # the full aligned crop (the age model sees it downscaled to 96)
    width: int = 16  # channels of the first stage (training/judges/net.py's STAGES scale from it)
    expand: int = 4  # inverted residual expansion
    head: int = 384  # channels of the 1x1 head before the global average
    max_age: int = 100  # probs cover 0..max_age
    tta_flip: bool = True  # the estimate averages the face and its mirror image
    lr: float = 3e-3
    weight_decay: float = 0.01
    steps: int = 3000  # about 75 minutes on one thread of a shared 2-core CPU (45 images/s)
    batch: int = 64
    ema: float = 0.998
    seed: int = 20260
    checkpoint_every: int = 500  # each validation pass (EMA and last weights, with the mirror) takes ~75 s here


@dataclass
class AgingConfig(CommonConfig):
    age_groups: list = field(default_factory=lambda: [list(g) for g in DECADES])
    age_model: str = ""  # run folder or age.onnx-free checkpoint of a trained age model (frozen age guidance)
    global_size: int = 64  # the global generator works at this resolution
    g_width: int = 24
    l_width: int = 16
    d_width: int = 32
    lr_g: float = 1e-4
    lr_d: float = 2e-4
    betas: tuple = (0.5, 0.99)
    batch: int = 16
    n_critic: int = 2
    gp_weight: float = 10.0
    gp_every: int = 1  # lazy gradient penalty: every n-th critic step (the penalty is most of a step's cost here)
    w_adv: float = 1.0
    w_age: float = 2.0  # frozen age model's cross-entropy on the target group
    w_att_tv: float = 1e-4 * 128 * 128 / 100
    w_att_norm: float = 0.05
    w_local: float = 1.0  # local L1 of the change inside each region
    w_tv: float = 0.5  # total variation of the change
    w_id: float = 5.0  # multi-scale L1 between input and output at low resolution
    color_limit: float = 0.15  # the global colour offset is bounded (no painted blobs)
    detail_limit: float = 0.35  # the local luminance detail is bounded
    strength_jitter: float = 0.3  # share of samples trained with random region strengths
    ema: float = 0.999
    large: bool = False  # a larger generator/critic for a GPU


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _coerce(current, text: str):
    if isinstance(current, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, (list, tuple)):
        return type(current)(json.loads(text))
    return text


def resolve(cls, file: str | Path | None = None, overrides: list[str] | None = None, **kwargs):
    """Defaults, then the JSON file, then keyword arguments, then KEY=VALUE overrides."""
    cfg = cls()
    names = {f.name for f in dataclasses.fields(cls)}
    values = {}
    if file:
        values.update(json.loads(Path(file).read_text()))
    values.update({k: v for k, v in kwargs.items() if v is not None})
    for k, v in values.items():
        if k not in names:
            raise ValueError(f"unknown config key {k!r} for {cls.__name__}")
        setattr(cfg, k, type(getattr(cfg, k))(v) if isinstance(getattr(cfg, k), tuple) else v)
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if k not in names:
            raise ValueError(f"unknown config key {k!r} for {cls.__name__}")
        setattr(cfg, k, _coerce(getattr(cfg, k), v))
    return cfg
