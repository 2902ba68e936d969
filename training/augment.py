"""Augmentation that keeps alignment: horizontal flip (region masks flip with the image; the
regions are left/right symmetric), small affine jitter applied identically to image and masks,
colour jitter, blur and noise (robustness of the age model against the generator's artefacts)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def flip(images: torch.Tensor, flags: np.ndarray, *others: torch.Tensor):
    idx = torch.from_numpy(np.flatnonzero(flags)).to(images.device)
    outs = []
    for t in (images, *others):
        t = t.clone()
        if len(idx):
            t[idx] = t[idx].flip(-1)
        outs.append(t)
    return outs if others else outs[0]


def affine(images: torch.Tensor, r: np.random.Generator, shift: float = 0.04, scale: float = 0.05, rot: float = 5.0, *others):
    n = images.shape[0]
    s = 1 + r.uniform(-scale, scale, n)
    a = np.deg2rad(r.uniform(-rot, rot, n))
    tx, ty = r.uniform(-shift, shift, (2, n)) * 2
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0] = s * np.cos(a)
    theta[:, 0, 1] = -s * np.sin(a)
    theta[:, 1, 0] = s * np.sin(a)
    theta[:, 1, 1] = s * np.cos(a)
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    grid = F.affine_grid(torch.from_numpy(theta).to(images.device), list(images.shape), align_corners=False)
    outs = [F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)]
    outs += [F.grid_sample(o, grid, mode="bilinear", padding_mode="zeros", align_corners=False) for o in others]
    return outs if others else outs[0]


def colour(images: torch.Tensor, r: np.random.Generator, amount: float = 0.2) -> torch.Tensor:
    n = images.shape[0]
    dev = images.device
    b = torch.from_numpy(r.uniform(-amount, amount, (n, 1, 1, 1)).astype(np.float32)).to(dev)
    c = torch.from_numpy(r.uniform(1 - amount, 1 + amount, (n, 1, 1, 1)).astype(np.float32)).to(dev)
    s = torch.from_numpy(r.uniform(1 - amount, 1 + amount, (n, 1, 1, 1)).astype(np.float32)).to(dev)
    mean = images.mean((1, 2, 3), keepdim=True)
    grey = images.mean(1, keepdim=True)
    x = grey + (images - grey) * s
    x = (x - mean) * c + mean + b
    return x.clamp(-1, 1)


def blur_noise(images: torch.Tensor, r: np.random.Generator, p: float = 0.3, noise: float = 0.03) -> torch.Tensor:
    n = images.shape[0]
    out = images.clone()
    for i in np.flatnonzero(r.random(n) < p):
        sigma = r.uniform(0.4, 1.2)
        k = 2 * math.ceil(2 * sigma) + 1
        xs = torch.arange(k, dtype=images.dtype, device=images.device) - k // 2
        g = torch.exp(-(xs**2) / (2 * sigma**2))
        g = g / g.sum()
        x = out[i : i + 1]
        x = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="replicate"), g.view(1, 1, 1, k).expand(3, 1, 1, k), groups=3)
        x = F.conv2d(F.pad(x, (0, 0, k // 2, k // 2), mode="replicate"), g.view(1, 1, k, 1).expand(3, 1, k, 1), groups=3)
        out[i : i + 1] = x
    sel = torch.from_numpy((r.random(n) < p).astype(np.float32)).to(images.device).view(n, 1, 1, 1)
    z = torch.from_numpy(r.standard_normal(images.shape).astype(np.float32)).to(images.device)
    return (out + sel * noise * z).clamp(-1, 1)
