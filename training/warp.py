"""Piecewise-affine warps computed inside the model graph (so they export to ONNX).

The aging models learn in the template's coordinates (the mean face of the training split): their
prototypes, flows and masks sit where the template's features are. A person's face, aligned to
the template by a similarity transform only, has its features elsewhere: a turned face's nose,
far cheek and eyes are shifted. :class:`TemplateMap` gives, for every pixel of the person's
aligned crop, the template coordinates of the same point of the face: a piecewise-affine map over
a fixed triangulation of the 68 landmarks plus fixed frame points (the classic active-appearance
warp). Sampling a template-space field at that map puts it on the person's own features.

The map is computed on a coarser grid (``grid`` px, default S/2) and upsampled bilinearly: it is
affine inside each triangle, so only the pixels along triangle edges differ, by a fraction of a
pixel, and the cost and memory fall fourfold (batch 8 at 128 px: ~25 MB instead of ~100 MB).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class TemplateMap(nn.Module):
    """landmarks (N, 68, 2) in the aligned crop's pixels -> (N, S, S, 2) template pixel
    coordinates of every crop pixel (x, y; pixel centres at integers, as grid_sample with
    ``align_corners=True`` reads them).

    ``template_points``: (68 + B, 2) the template's landmarks then B frame points; ``tris``:
    (T, 3) vertex indices. The frame points are fixed: the person's mesh uses the same ones, so
    the map is the identity at the crop's border."""

    def __init__(self, template_points: np.ndarray, tris: np.ndarray, size: int, grid: int | None = None):
        super().__init__()
        pts = torch.as_tensor(np.asarray(template_points), dtype=torch.float32)
        self.register_buffer("template_points", pts)
        self.register_buffer("frame", pts[68:].clone())
        self.register_buffer("tris", torch.as_tensor(np.asarray(tris), dtype=torch.long))
        self.size = int(size)
        self.grid = int(grid or max(8, size // 2))
        t = torch.linspace(0, size - 1, self.grid)
        ys, xs = torch.meshgrid(t, t, indexing="ij")
        self.register_buffer("points", torch.stack([xs.reshape(-1), ys.reshape(-1)], -1))  # (P, 2)

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        n = landmarks.shape[0]
        verts = torch.cat([landmarks, self.frame.unsqueeze(0).expand(n, -1, -1)], 1)  # (N, V, 2)
        tri = verts[:, self.tris]  # (N, T, 3, 2)
        a, b, c = tri[:, :, 0], tri[:, :, 1], tri[:, :, 2]
        v0, v1 = b - a, c - a  # (N, T, 2)
        den = v0[..., 0] * v1[..., 1] - v1[..., 0] * v0[..., 1]
        den = torch.where(den.abs() < 1e-6, torch.full_like(den, 1e-6), den)  # a collapsed triangle
        d = self.points.view(1, 1, -1, 2) - a.unsqueeze(2)  # (N, T, P, 2)
        l1 = (d[..., 0] * v1[..., 1:2] - v1[..., 0:1] * d[..., 1]) / den.unsqueeze(-1)
        l2 = (v0[..., 0:1] * d[..., 1] - d[..., 0] * v0[..., 1:2]) / den.unsqueeze(-1)
        l0 = 1 - l1 - l2
        inside = torch.minimum(torch.minimum(l0, l1), l2)  # >= 0 inside the triangle
        best = inside.argmax(1)  # (N, P): the triangle each grid point is most inside of
        bary = torch.stack([l0, l1, l2], -1)  # (N, T, P, 3)
        bary = torch.gather(bary, 1, best.view(n, 1, -1, 1).expand(-1, 1, -1, 3)).squeeze(1)  # (N, P, 3)
        dst = self.template_points[self.tris]  # (T, 3, 2)
        dst = dst[best]  # (N, P, 3, 2)
        mapped = (bary.unsqueeze(-1) * dst).sum(2)  # (N, P, 2)
        mapped = mapped.view(n, self.grid, self.grid, 2).permute(0, 3, 1, 2)
        if self.grid != self.size:
            mapped = F.interpolate(mapped, size=(self.size, self.size), mode="bilinear", align_corners=True)
        return mapped.permute(0, 2, 3, 1)

    def sample(self, fields: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
        """Template-space fields (N or 1, C, S, S) read at ``mapped`` (N, S, S, 2): the fields on
        the person's face. Outside the template's square the border value is kept."""
        grid = mapped * (2.0 / (self.size - 1)) - 1
        if fields.shape[0] != grid.shape[0]:
            fields = fields.expand(grid.shape[0], -1, -1, -1)
        return F.grid_sample(fields, grid, mode="bilinear", padding_mode="border", align_corners=True)
