"""The training losses of the learned aging network, one function each (tests/test_gan.py checks
each one's behaviour). Images are in [-1, 1]; every loss is a scalar to minimise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..filters import LUMA, Blur, gaussian_kernel


def teacher_l1(out: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L1 to the teacher's output: the bulk of the signal at first."""
    return (out - teacher).abs().mean()


def teacher_multiscale_l1(out: torch.Tensor, teacher: torch.Tensor, scales=(2, 4)) -> torch.Tensor:
    """L1 to the teacher at coarser scales (area averages): the broad colour and tone, which the
    full-resolution L1 weighs no more than a fine line."""
    return sum((F.avg_pool2d(out, s) - F.avg_pool2d(teacher, s)).abs().mean() for s in scales) / len(scales)


def chroma_l1(out: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L1 to the teacher's colour alone (each image minus its luminance): the network may go past
    the teacher's averaged lines and folds, not paint colours the teacher does not (coloured
    streaks were the guide's shortcut)."""
    luma = out.new_tensor(LUMA).view(1, 3, 1, 1)
    chroma = lambda x: x - (x * luma).sum(1, keepdim=True)
    return (chroma(out) - chroma(teacher)).abs().mean()


def local_l1(out: torch.Tensor, ref: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """LGIN's local L1: the mean |out - ref| inside each region (masks (N, 5, S, S) in [0, 1]),
    averaged over the regions, so a small region (the nose) counts as much as a large one."""
    diff = (out - ref).abs().mean(1, keepdim=True)
    area = masks.sum((2, 3)).clamp_min(1.0)
    return ((diff * masks).sum((2, 3)) / area).mean()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels (LGIN's TV on the change; AcGAN's on A)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def attention_loss(attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AcGAN's attention loss on a map A (1 = keep the input): (total variation of A, its norm
    term mean(1 - A)), weighted apart: A smooth, and the input kept where no change is needed."""
    return total_variation(attention), (1 - attention).mean()


def critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the critic: real scores above +1, generated below -1."""
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def mismatch_loss(d_wrong: torch.Tensor) -> torch.Tensor:
    """The critic's side, for real faces judged as another group's (at least two groups away):
    scores below -1, as for generated faces. Without it "a real face of group t" can be learned as
    "a real face" (realism alone, which the network meets best by changing less: seen, a critic
    alone took the network's 70+ from 46 to 41 years in 500 steps); with it the critic must tell
    the groups apart (the matching-aware discriminator of Reed et al. 2016)."""
    return F.relu(1 + d_wrong).mean()


def adversarial_loss(d_fake: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The generator's side: raise the critic's score of its faces (for their target group);
    ``d_fake`` (N, views), ``weights`` (N,): how much each face counts (default: all alike)."""
    if weights is None:
        return -d_fake.mean()
    return -(d_fake.mean(1) * weights).sum() / weights.sum().clamp_min(1e-6)


def guide_view(x: torch.Tensor, gen: torch.Generator, max_sigma: float = 1.2, noise: float = 0.03, levels: int = 32,
               max_shift: int = 2, grey: bool = False) -> torch.Tensor:
    """What the frozen age guide sees: each face blurred (random sigma up to ``max_sigma``),
    noised, quantised to ``levels`` grey levels per channel and shifted by up to ``max_shift`` px,
    so a pattern tuned to the guide's exact pixels does not pay (DESIGN.md, failure 2).
    Differentiable in ``x`` (quantisation by a straight-through estimate). ``grey``: the guide
    sees the luminance only, so no colour pattern pays (seen at step 3,000 of the long run: pink
    and green streaks that raised the guide's accuracy from 45 to 58 % in 500 steps); the skin's
    colour is the teacher's to give."""
    n = x.shape[0]
    if grey:
        x = (x * x.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True).expand(-1, 3, -1, -1)
    sig = torch.rand(n, generator=gen) * max_sigma
    out = []
    for i in range(n):
        xi = x[i : i + 1]
        if float(sig[i]) > 0.3:
            k = gaussian_kernel(float(sig[i])).to(x)
            r = k.numel() // 2
            xi = F.pad(xi, (r, r, r, r), mode="reflect")
            xi = F.conv2d(xi, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
            xi = F.conv2d(xi, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
        out.append(xi)
    y = torch.cat(out, 0)
    shape = (y.shape[0], 1 if grey else 3, *y.shape[2:])  # grey noise on a grey face
    y = y + noise * torch.randn(shape, generator=gen).to(y)
    q = torch.round((y + 1) * (levels - 1) / 2) * 2 / (levels - 1) - 1
    y = y + (q - y).detach()
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
    return torch.roll(y, shifts=(dy, dx), dims=(2, 3)).clamp(-1, 1)


def translated(x: torch.Tensor, shift: float, gen: torch.Generator) -> torch.Tensor:
    """Each image of (N, C, H, W) moved by its own random offset of up to ``shift`` of its size in
    x and y, the border reflected (DiffAugment's translation, Zhao et al. 2020: the critic sees real
    and generated views moved the same way, so no pattern at a fixed row or column of the frame
    tells them apart; seen without it: horizontal bands across the top of faces made 70+).
    Differentiable in ``x``; the offsets are whole pixels, so nothing is blurred."""
    if shift <= 0:
        return x
    n, _, h, w = x.shape
    off = torch.rand(n, 2, generator=gen) * 2 - 1
    px = torch.round(off * x.new_tensor([w, h]) * shift)  # whole pixels
    theta = x.new_zeros(n, 2, 3)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = px[:, 0].to(x) * 2 / w
    theta[:, 1, 2] = px[:, 1].to(x) * 2 / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def age_loss(group_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the guide's group distribution for the output against the target weights
    (one-hot, or two neighbouring groups blended)."""
    return -(target * group_probs.clamp_min(1e-6).log()).sum(1).mean()


def identity_loss(desc_out: torch.Tensor, desc_in: torch.Tensor, margin: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Mean Euclidean distance between the face descriptors (dlib's metric; < 0.6 = same person)
    of the output and of the input (the input's held fixed), counted above ``margin`` only: at 0
    every face is pulled back towards its input, which undoes aging (seen: a network made 70+
    judged 46 -> 38 years in 1,000 steps); with a margin only a face near losing its person is.
    ``margin``: a number, or one per face (N,) (e.g. the teacher's own distance for that face)."""
    return torch.relu((desc_out - desc_in.detach()).norm(dim=1) - margin).mean()


DETAIL_BAND = (0.6, 2.5)  # px of the view: lines and creases (training/wrinkles.py's band at 128 px)
DETAIL_FLOOR = 0.08  # the darkest local brightness divided by (deep shadow is not texture)
DETAIL_GAIN = 4.0  # relative detail of +-0.25 (a deep line) to about +-1, the critic's input range


def detail_view(img: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 3, H, W): the luminance's detail between DETAIL_BAND over its
    local brightness (the same on a dark and a light skin; a flat colour, make-up or a tone shift,
    has none), times DETAIL_GAIN, in all three channels (the critic's trunk is unchanged)."""
    y = (((img + 1) * 0.5) * img.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    fine, broad = (blur.to(y)(y) for blur in _DETAIL_BLURS)
    rel = (fine - broad) / broad.clamp_min(DETAIL_FLOOR)
    return (DETAIL_GAIN * rel).clamp(-1.0, 1.0).expand(-1, 3, -1, -1)


_DETAIL_BLURS = tuple(Blur(s) for s in DETAIL_BAND)
