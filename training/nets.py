"""The networks: the age model, the aging generator (global + five local heads) and its critic.

Aging generator (AcGAN + LGIN, shaped by what this CPU can train; see DESIGN.md):
- a *global* U-Net at ``global_size`` (64 px) on the downscaled face and the target's condition
  maps predicts a colour transform limited to what aging changes (brightness gain and offset,
  saturation for grey hair, a bounded low-resolution colour offset) and an attention logit,
  all upsampled onto the full-size face;
- a *local* full-resolution trunk over the face, the five region masks and the global features
  (the local/global interaction) with one head per region (forehead, eyes, nose, mouth,
  cheeks): a bounded luminance detail (wrinkles, folds) that each region's mask gates, plus an
  attention logit;
- the composite x + gate * (1 - A) * (C - x) = AcGAN's (1 - A) C + A x, where ``gate`` scales the
  change inside each region by the person's strength (the ``regions`` input is masks x strength)
  and leaves the change outside the five regions (hair) at full strength: gate = (1 - R) + sum(regions),
  with R the union of the regions on the template face (a constant of the model).
Colour and attention at low resolution, and luminance-only local detail, leave no room for the
coloured dot grids and blobs that a naive generator paints to fool an age classifier.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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


def group_probs(age_probs: torch.Tensor, groups: list) -> torch.Tensor:
    """Sum a distribution over years into one probability per age group."""
    cols = []
    n = age_probs.shape[1]
    for lo, hi in groups:
        hi = n - 1 if hi is None else min(hi, n - 1)
        cols.append(age_probs[:, lo : hi + 1].sum(1))
    return torch.stack(cols, 1)


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
    N_GLOBAL = 7  # gain, bias, saturation, colour (3), attention

    def __init__(self, groups: int, region_cover: torch.Tensor, global_size: int = 64, g_width: int = 24,
                 l_width: int = 16, color_limit: float = 0.15, detail_limit: float = 0.35):
        super().__init__()
        k, w, lw = groups, g_width, l_width
        self.groups, self.global_size = groups, global_size
        self.color_limit, self.detail_limit = color_limit, detail_limit
        self.register_buffer("cover", region_cover.reshape(1, 1, *region_cover.shape[-2:]).float())
        self.inp = nn.Sequential(_conv(3 + 5 + k, w), nn.LeakyReLU(0.2))
        self.d1, self.d2, self.d3 = Down(w, 2 * w), Down(2 * w, 4 * w), Down(4 * w, 4 * w)
        self.mid = nn.Sequential(_conv(4 * w + k, 4 * w), nn.LeakyReLU(0.2), _conv(4 * w, 4 * w), nn.LeakyReLU(0.2))
        self.u3, self.u2, self.u1 = Up(8 * w, 4 * w), Up(6 * w, 2 * w), Up(3 * w, w)
        self.g_head = _conv(w + k, self.N_GLOBAL)
        self.to_local = nn.Conv2d(w, 8, 1)  # global features handed to the local trunk
        self.local = nn.Sequential(_conv(3 + 5 + 8, lw), nn.LeakyReLU(0.2), _conv(lw, lw), nn.LeakyReLU(0.2))
        self.l_head = _conv(lw, 5 + 1)  # one luminance detail per region + attention
        for head in (self.g_head, self.l_head):
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)

    def forward(self, image, target, regions):
        size = image.shape[-1]
        gs = self.global_size
        xs = F.interpolate(image, size=(gs, gs), mode="bilinear", align_corners=False, antialias=True)
        rs = F.interpolate(regions, size=(gs, gs), mode="bilinear", align_corners=False, antialias=True)
        e0 = self.inp(torch.cat([xs, rs, _cond(target, xs)], 1))
        e1 = self.d1(e0)
        e2 = self.d2(e1)
        e3 = self.d3(e2)
        m = self.mid(torch.cat([e3, _cond(target, e3)], 1))
        f = self.u1(self.u2(self.u3(m, e2), e1), e0)
        g = self.g_head(torch.cat([f, _cond(target, f)], 1))
        g = F.interpolate(g, size=(size, size), mode="bilinear", align_corners=False)
        fu = F.interpolate(self.to_local(f), size=(size, size), mode="bilinear", align_corners=False)
        loc = self.l_head(self.local(torch.cat([image, regions, fu], 1)))
        detail = (regions.clamp(0, 1) * torch.tanh(loc[:, :5])).sum(1, keepdim=True) * self.detail_limit
        attention = torch.sigmoid(g[:, 6:7] + loc[:, 5:6])
        x01 = (image + 1) * 0.5
        lum = (x01 * image.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        sat = 1 + torch.tanh(g[:, 2:3])
        gain = torch.exp(0.5 * torch.tanh(g[:, 0:1]))
        bias = 0.3 * torch.tanh(g[:, 1:2])
        colour = self.color_limit * torch.tanh(g[:, 3:6])
        c01 = ((lum + sat * (x01 - lum)) * gain + bias + colour + detail).clamp(0, 1)
        colour_image = c01 * 2 - 1
        gate = (1 - self.cover + regions.sum(1, keepdim=True)).clamp(0.0, 1.5)
        change = gate * (1 - attention)
        aged = (image + change * (colour_image - image)).clamp(-1, 1)
        return aged, (1 - change).clamp(0, 1)


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
