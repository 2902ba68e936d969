"""The networks: the age model, the aging generator (global + five local heads) and its critic.

Aging generator (AcGAN + LGIN, shaped by what this CPU can train; see DESIGN.md):
- a *prior*: the difference of the mean training faces of the target and the source groups
  (the training-free baseline of baseline.py), sum_k (target_k - source_k) * mean_k. The
  generator starts as that baseline and learns to correct it (ghosting where features differ,
  person-specific texture), with a learned low-resolution gain on the prior in [0, 2];
- a *global* U-Net at ``global_size`` (64 px) on the downscaled face, the prior and the target's
  condition maps predicts a colour transform limited to what aging changes (brightness gain and
  offset, saturation for grey hair, a bounded low-resolution colour offset) and an attention
  logit, all upsampled onto the full-size face;
- a *local* full-resolution trunk over the face, the five region masks, the prior and the global
  features (the local/global interaction) with one head per region (forehead, eyes, nose, mouth,
  cheeks): a bounded luminance detail (wrinkles, folds) that each region's mask gates, plus an
  attention logit;
- the composite x + gate * ((1 - A) * (C - x) + gain * prior), AcGAN's (1 - A) C + A x plus the
  prior, where ``gate`` scales the change inside each region by the person's strength (the
  ``regions`` input is masks x strength) and keeps the change outside the five regions (hair) at
  full strength within the head: gate = (1 - R) * H + sum(regions), with R the union of the
  regions and H a dilated head area, both on the template face (constants of the model).
Colour and attention at low resolution, and luminance-only local detail, leave no room for the
coloured dot grids and blobs that a naive generator paints to fool an age classifier.
The exported model (AgingExport) carries the age model to estimate the source distribution.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .filters import LUMA
from .groups import group_probs  # noqa: F401 (defined in the groups module; imported from here by older code)


def _conv(cin, cout, k=3, s=1):
    return nn.Conv2d(cin, cout, k, s, k // 2)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class AgeNet(nn.Module):
    """Distribution over ages 0..max_age (DLDL); forward returns logits."""

    def __init__(self, width: int = 32, max_age: int = 100):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.body = nn.Sequential(ResBlock(w, w), ResBlock(w, 2 * w, 2), ResBlock(2 * w, 4 * w, 2), ResBlock(4 * w, 8 * w, 2))
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8 * w, max_age + 1)
        self.register_buffer("years", torch.arange(max_age + 1, dtype=torch.float32), persistent=False)

    def forward(self, x):
        f = self.body(self.stem(x)).mean((2, 3))
        return self.fc(self.drop(f))

    def predict(self, x):
        probs = torch.softmax(self.forward(x), dim=1)
        return (probs * self.years).sum(1), probs


class AgeExport(nn.Module):
    """The age model as exported: image -> (age, probs)."""

    def __init__(self, net: AgeNet):
        super().__init__()
        self.net = net

    def forward(self, image):
        return self.net.predict(image)




def strength_gate(cover: torch.Tensor, head: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """How much of the change applies at each pixel: the person's strength inside the five regions
    (``regions`` = masks x strengths), full strength in the head area outside them (hair), none
    elsewhere. ``cover``: the regions' union on the template face; ``head``: a dilated head area."""
    return ((1 - cover) * head + regions.sum(1, keepdim=True)).clamp(0.0, 1.5)


class Up(nn.Module):
    """Upsample then convolve (no checkerboard from transposed convolutions)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(_conv(cin, cout), nn.LeakyReLU(0.2))

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], 1))


class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(_conv(cin, cout, 3, 2), nn.LeakyReLU(0.2), _conv(cout, cout), nn.LeakyReLU(0.2))

    def forward(self, x):
        return self.conv(x)


def _cond(t, like):
    return t[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3])


class Generator(nn.Module):
    N_GLOBAL = 8  # gain, bias, saturation, colour (3), attention, prior gain

    def __init__(self, groups: int, region_cover: torch.Tensor, head: torch.Tensor, means: torch.Tensor,
                 global_size: int = 64, g_width: int = 24, l_width: int = 16, color_limit: float = 0.15,
                 detail_limit: float = 0.35):
        super().__init__()
        k, w, lw = groups, g_width, l_width
        self.groups, self.global_size = groups, global_size
        self.color_limit, self.detail_limit = color_limit, detail_limit
        size = region_cover.shape[-1]
        self.register_buffer("cover", region_cover.reshape(1, 1, size, size).float())
        self.register_buffer("head", head.reshape(1, 1, size, size).float())
        self.register_buffer("means", means.reshape(k, 3, size, size).float())
        self.inp = nn.Sequential(_conv(3 + 5 + 3 + k, w), nn.LeakyReLU(0.2))
        self.d1, self.d2, self.d3 = Down(w, 2 * w), Down(2 * w, 4 * w), Down(4 * w, 4 * w)
        self.mid = nn.Sequential(_conv(4 * w + k, 4 * w), nn.LeakyReLU(0.2), _conv(4 * w, 4 * w), nn.LeakyReLU(0.2))
        self.u3, self.u2, self.u1 = Up(8 * w, 4 * w), Up(6 * w, 2 * w), Up(3 * w, w)
        self.g_head = _conv(w + k, self.N_GLOBAL)
        self.to_local = nn.Conv2d(w, 8, 1)  # global features handed to the local trunk
        self.local = nn.Sequential(_conv(3 + 5 + 3 + 8, lw), nn.LeakyReLU(0.2), _conv(lw, lw), nn.LeakyReLU(0.2))
        self.l_head = _conv(lw, 5 + 1)  # one luminance detail per region + attention
        for head_conv in (self.g_head, self.l_head):
            nn.init.normal_(head_conv.weight, std=1e-3)
            nn.init.zeros_(head_conv.bias)

    def gate(self, regions):
        return strength_gate(self.cover, self.head, regions)

    def prior(self, target, source):
        return torch.einsum("nk,kchw->nchw", target - source, self.means)

    def forward(self, image, target, regions, source):
        """-> (aged, keep, attention): keep = 1 - tanh(mean |aged - image| / 0.1) (the contract's
        attention output: 1 where the input pixel is kept); attention = the AcGAN mask A."""
        size = image.shape[-1]
        gs = self.global_size
        prior = self.prior(target, source)
        small = F.interpolate(torch.cat([image, regions, prior], 1), size=(gs, gs), mode="bilinear", align_corners=False, antialias=True)
        e0 = self.inp(torch.cat([small, _cond(target, small)], 1))
        e1 = self.d1(e0)
        e2 = self.d2(e1)
        e3 = self.d3(e2)
        m = self.mid(torch.cat([e3, _cond(target, e3)], 1))
        f = self.u1(self.u2(self.u3(m, e2), e1), e0)
        g = self.g_head(torch.cat([f, _cond(target, f)], 1))
        g = F.interpolate(g, size=(size, size), mode="bilinear", align_corners=False)
        fu = F.interpolate(self.to_local(f), size=(size, size), mode="bilinear", align_corners=False)
        loc = self.l_head(self.local(torch.cat([image, regions, prior, fu], 1)))
        detail = (regions.clamp(0, 1) * torch.tanh(loc[:, :5])).sum(1, keepdim=True) * self.detail_limit
        attention = torch.sigmoid(g[:, 6:7] + loc[:, 5:6])
        x01 = (image + 1) * 0.5
        lum = (x01 * image.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
        sat = 1 + torch.tanh(g[:, 2:3])
        gain = torch.exp(0.5 * torch.tanh(g[:, 0:1]))
        bias = 0.3 * torch.tanh(g[:, 1:2])
        colour = self.color_limit * torch.tanh(g[:, 3:6])
        c01 = ((lum + sat * (x01 - lum)) * gain + bias + colour + detail).clamp(0, 1)
        colour_image = c01 * 2 - 1
        prior_gain = 1 + torch.tanh(g[:, 7:8])
        gate = self.gate(regions)
        aged = (image + gate * ((1 - attention) * (colour_image - image) + prior_gain * prior)).clamp(-1, 1)
        keep = 1 - torch.tanh((aged - image).abs().mean(1, keepdim=True) / 0.1)
        return aged, keep, attention


class AgingExport(nn.Module):
    """The aging model as exported: (image, target, regions) -> (aged, attention); the source age
    distribution over the groups comes from the age model it carries."""

    def __init__(self, gen: Generator, age_net: AgeNet, age_size: int, groups: list):
        super().__init__()
        self.gen, self.age_net, self.age_size = gen, age_net, age_size
        self.groups = [list(g) for g in groups]

    def source(self, image):
        small = F.interpolate(image, size=(self.age_size, self.age_size), mode="bilinear", align_corners=False, antialias=True)
        return group_probs(torch.softmax(self.age_net(small), 1), self.groups)

    def forward(self, image, target, regions):
        aged, keep, _ = self.gen(image, target, regions, self.source(image))
        return aged, keep


class Critic(nn.Module):
    """WGAN-GP critic with projection on the age group: judges "a real face of group t"."""

    def __init__(self, groups: int, width: int = 32):
        super().__init__()
        w = width
        chans = [3, w, 2 * w, 4 * w, 8 * w, 8 * w]
        layers = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(8 * w, 1)
        self.embed = nn.Linear(groups, 8 * w, bias=False)

    def forward(self, x, target):
        f = self.body(x).sum((2, 3))
        return self.out(f).squeeze(1) + (self.embed(target) * f).sum(1)
