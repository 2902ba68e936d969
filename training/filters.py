"""Gaussian blur as a module that exports to ONNX (two separable convolutions, reflected borders),
the same blur on numpy images (OpenCV), the luma weights the training package reads
lightness with, the fit of changed colours back into the displayable range, and the shade of an
over-exposed highlight in the skin's colour."""

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


CLIPPED = (0.95, 0.01)  # a pixel whose brightest channel passes 0.95 (soft over 0.01) is clipped


def shade_clipped(x: torch.Tensor, y: torch.Tensor, skin: torch.Tensor) -> torch.Tensor:
    """``y`` (N, 3, H, W) in [0, 1], a change of ``x``, where it darkens a clipped pixel of ``x``
    (an over-exposed highlight, its brightest channel near 1), coloured as the face's own skin at
    the new lightness (as saturated as [0, 1] allows): the skin's colour is the mean of ``x`` over
    ``skin`` (N, 1, H, W) where it is not clipped (softly: on a face clipped all over, its own
    colour). A highlight has lost its hue to the clipping (a flushed or flash-lit skin's red and
    green both at 1 read as a pale yellow), and a fold's shading darkened it into a grey-green
    patch; a shadow on a skin takes the skin's colour."""
    luma = x.new_tensor(LUMA).view(1, 3, 1, 1)
    clipped = torch.sigmoid((x.amax(1, keepdim=True) - CLIPPED[0]) / CLIPPED[1])
    weight = skin * (1 - clipped)
    ref = (x * weight).sum((2, 3), keepdim=True) / (weight.sum((2, 3), keepdim=True) + 1e-3)
    ref_y = (ref * luma).sum(1, keepdim=True).clamp_min(0.05)
    yx, yy = (x * luma).sum(1, keepdim=True), (y * luma).sum(1, keepdim=True)
    darker = ((yx - yy) / 0.02).clamp(0.0, 1.0)  # in full from 0.02 darker
    colour = ref * (yy / ref_y) - yy  # the skin's colour at the new lightness, as far as [0, 1] holds it
    fit = ((1 - yy) / colour.amax(1, keepdim=True).clamp_min(1e-4)).clamp(0.0, 1.0)
    fit = torch.minimum(fit, (yy / (-colour).amax(1, keepdim=True).clamp_min(1e-4)).clamp(0.0, 1.0))
    shaded = yy + fit * colour
    return within_range(y, y + clipped * darker * (shaded - y))
