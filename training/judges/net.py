"""The age judge's network: inverted residual blocks on the full 128 px crop, an ordinal head.

Chosen to share as little as possible with the age model it referees (AgeNet: plain residual
blocks, ReLU, a 96 px input, a softmax over years trained by DLDL):

- blocks: MobileNetV2's inverted residual (1x1 expansion, depthwise 3x3, squeeze-and-excitation,
  linear 1x1 projection), SiLU, a 1x1 head widening before the global average;
- output: rank-consistent ordinal regression (CORAL's shared score minus one threshold per
  year), with the thresholds increasing by construction (first + cumulative softplus gaps), so
  P(age > k) decreases with k and its differences are a proper distribution over 0..max_age;
  the estimate is its expected value, sum_k P(age > k);
- the estimate averages the face and its mirror image (``tta_flip``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.down = nn.Conv2d(channels, reduced, 1)
        self.up = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        s = F.silu(self.down(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.up(s))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU()]
        layers += [nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.SiLU(),
                   SqueezeExcite(mid, max(8, cin // 4)),
                   nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class FusedInvertedResidual(nn.Module):
    """EfficientNetV2's fused block for the high-resolution stages: a dense 3x3 expansion (where a
    depthwise convolution would cost more time than it saves MACs) and a linear 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.block = nn.Sequential(nn.Conv2d(cin, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU(),
                                   nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class OrdinalHead(nn.Module):
    """Logits of P(age > k) for k = 0..max_age-1: one shared score minus increasing thresholds."""

    def __init__(self, features: int, max_age: int, start: float = 30.0, scale: float = 8.0):
        super().__init__()
        self.score = nn.Linear(features, 1)
        # before training: a logistic over years centred on ``start`` with scale ``scale``
        self.first = nn.Parameter(torch.tensor((0.5 - start) / scale))
        gap = 1.0 / scale
        self.gaps = nn.Parameter(torch.full((max_age - 1,), math.log(math.expm1(gap))))

    def thresholds(self) -> torch.Tensor:
        return self.first + torch.cat([self.first.new_zeros(1), F.softplus(self.gaps).cumsum(0)])

    def forward(self, features):
        return self.score(features) - self.thresholds()[None]


def ordinal_probs(above: torch.Tensor) -> torch.Tensor:
    """P(age > k), k = 0..A-2 (non-increasing) -> P(age = k), k = 0..A-1."""
    one = above.new_ones(above.shape[0], 1)
    zero = above.new_zeros(above.shape[0], 1)
    return (torch.cat([one, above], 1) - torch.cat([above, zero], 1)).clamp_min(0)


# (channels as multiples of ``width``, blocks, stride of the first, fused); the stem halves 128 -> 64
STAGES = ((1, 1, 1, True), (1.5, 2, 2, True), (2.5, 2, 2, False), (5, 3, 2, False), (8, 2, 2, False))


def _ch(x: float) -> int:
    return max(8, int(round(x / 8)) * 8)


class JudgeNet(nn.Module):
    """forward(x) -> ordinal logits (N, max_age); predict(x) -> (age (N,), probs (N, max_age + 1))."""

    def __init__(self, width: int = 16, max_age: int = 100, expand: int = 4, head: int = 384, tta_flip: bool = True,
                 dropout: float = 0.2):
        super().__init__()
        self.tta_flip = tta_flip
        c = _ch(width)
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.SiLU())
        blocks = []
        for mult, n, stride, fused in STAGES:
            cout = _ch(width * mult)
            block = FusedInvertedResidual if fused else InvertedResidual
            for i in range(n):
                blocks.append(block(c, cout, stride if i == 0 else 1, 1 if mult == 1 else expand))
                c = cout
        self.body = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(c, head, 1, bias=False), nn.BatchNorm2d(head), nn.SiLU())
        self.drop = nn.Dropout(dropout)
        self.ordinal = OrdinalHead(head, max_age)
        self.register_buffer("years", torch.arange(max_age + 1, dtype=torch.float32), persistent=False)

    @classmethod
    def from_config(cls, cfg) -> "JudgeNet":
        """From a JudgeConfig or its dict (a checkpoint's ``config``)."""
        get = cfg.get if isinstance(cfg, dict) else lambda k: getattr(cfg, k)
        return cls(get("width"), get("max_age"), get("expand"), get("head"), get("tta_flip"))

    def forward(self, x):
        f = self.head(self.body(self.stem(x))).mean((2, 3))
        return self.ordinal(self.drop(f))

    def predict(self, x):
        above = torch.sigmoid(self.forward(x))
        if self.tta_flip:
            above = 0.5 * (above + torch.sigmoid(self.forward(x.flip(-1))))
        return above.sum(1), ordinal_probs(above)
