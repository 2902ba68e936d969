"""Gaussian blur as a module that exports to ONNX (two separable convolutions, reflected borders),
the same blur on numpy images (OpenCV), the luma weights the training package reads
lightness with, and the fit of changed colours back into the displayable range."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)  # Rec. 601 luma weights (R, G, B): what every module here calls lightness


def gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    """A numpy image blurred by a Gaussian of ``sigma`` px, borders reflected."""
    return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    r = int(np.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


class Blur(nn.Module):
    """Separable Gaussian blur of one-channel maps (N, 1, H, W) with reflected borders."""

    def __init__(self, sigma: float):
        super().__init__()
        k = gaussian_kernel(sigma)
        self.r = (len(k) - 1) // 2
        self.register_buffer("kx", k.view(1, 1, 1, -1))
        self.register_buffer("ky", k.view(1, 1, -1, 1))

    def forward(self, x):
        x = F.conv2d(F.pad(x, (self.r, self.r, 0, 0), mode="reflect"), self.kx)
        return F.conv2d(F.pad(x, (0, 0, self.r, self.r), mode="reflect"), self.ky)


def within_range(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The change from ``x`` (N, 3, H, W) colours in [0, 1] to ``y``, cut, pixel by pixel, to the
    largest fraction of it that keeps every channel in [0, 1]: the change keeps its direction, its
    hue. Clamping each channel alone turns a change that brightens a red, over-exposed skin whose
    red is already at 1 into a green-grey patch: the green and blue rise, the red cannot."""
    d = y - x
    tiny = 1e-6
    room = torch.where(d > tiny, (1 - x) / d.clamp_min(tiny), torch.where(d < -tiny, x / (-d).clamp_min(tiny), torch.ones_like(d)))
    share = room.amin(1, keepdim=True).clamp(0.0, 1.0)
    return (x + share * d).clamp(0.0, 1.0)
