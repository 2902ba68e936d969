"""The learned aging network (contract ``agelapse-aging/2``) and its critic.

The generator, shaped by what this CPU can train (bench/train_speed.py --aging2; DESIGN.md):
- **fixed parts taken from the teacher** (``TeacherParts``, no weights to learn): the age model it
  carries (the face's source distribution over the groups, on the face re-cut from the landmarks),
  the piecewise-affine map of template-space fields onto the face's landmarks, and the teacher's
  shape change (its per-group displacement fields, gated as the teacher gates them). Geometry is
  an explicit warp, not pixels to learn: the network learns the texture and colour before it.
- a **global generator**: a small U-Net on the whole face at ``global_size`` (64 px; capacity at
  32 and 16 px) for what is broad: skin tone, hair, shading. It returns a colour change, an
  attention map and features that it hands to the local generators.
- five **local generators**, one per region (forehead, eyes, nose, mouth, cheeks), each on its own
  crop cut at the person's landmarks (a similarity fitted to the template, so a turned or tilted
  face is cut at its own features) at full resolution: a thin full-resolution layer, the capacity
  at half resolution. They see the global features at their pixels (global -> local), and after
  their first block every local generator receives the pooled features of all five (LGIN's
  interaction between the local generators).
- the **composite** (AcGAN's (1 - A) C + A x written as a change added to the face, FRAN's form):
  x + g_face (1 - A_g) C_g + sum_r m_r s_r (1 - A_r) C_r, where m_r s_r is the ``regions`` input
  (mask x strength) and g_face = sum_r m_r s_r plus ``hair`` in the head outside the regions;
  then the teacher's warp. Every generator is conditioned on the target weights and the source
  distribution (FiLM), so a position between two groups blends continuously.
The last layers start at zero: an untrained network returns the teacher's warp of its input.

``residual``: the network starts at the teacher instead (DESIGN.md: a critic that judges "a real
face of group t" pulled a network learned from scratch back towards its input). It takes the
teacher's whole output (shape, colour, lines, hair) as its input and adds its change to it, with
no second warp: an untrained network is the teacher exactly, and training can only add to what
the teacher gives (or take back what the critic finds false in it). It has no attention factor:
its change is added as it is (zero where nothing is needed). With one, the attention's norm term
pushed A to 1 while the change was still zero and nothing pushed back; A saturated, and the change
(1 - A) C got no gradient from any loss (seen: the first residual run's generator had not moved
from the teacher after 1,750 steps).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.regions import REGION_NAMES, region_masks

PAD = 4  # px of context around a region's box on the template


def _act(x):
    return F.leaky_relu(x, 0.2)


class FiLMRes(nn.Module):
    """conv - FiLM(condition) - act - conv, added to the input."""

    def __init__(self, c: int, emb: int):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, 1, 1)
        self.c2 = nn.Conv2d(c, c, 3, 1, 1)
        self.film = nn.Linear(emb, 2 * c)

    def forward(self, x, e):
        g, b = self.film(e).unsqueeze(-1).unsqueeze(-1).chunk(2, 1)
        return x + 0.5 * self.c2(_act(self.c1(x) * (1 + g) + b))


class GlobalNet(nn.Module):
    """The whole face at low resolution -> (change 3, attention logit 1, features) at that size."""

    def __init__(self, width: int, emb: int, feat: int):
        super().__init__()
        w = width
        self.e0 = nn.Sequential(nn.Conv2d(5, w, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(w, w, 3, 1, 1), nn.LeakyReLU(0.2))
        self.d1 = nn.Conv2d(w, 2 * w, 3, 2, 1)
        self.r1 = FiLMRes(2 * w, emb)
        self.d2 = nn.Conv2d(2 * w, 4 * w, 3, 2, 1)
        self.r2a, self.r2b = FiLMRes(4 * w, emb), FiLMRes(4 * w, emb)
        self.u1 = nn.Conv2d(4 * w, 2 * w, 1)
        self.r3 = FiLMRes(2 * w, emb)
        self.u0 = nn.Conv2d(2 * w, w, 1)
        self.c0 = nn.Conv2d(w, w, 3, 1, 1)
        self.head = nn.Conv2d(w, 4 + feat, 3, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x, e):
        h0 = self.e0(x)
        h1 = self.r1(_act(self.d1(h0)), e)
        h2 = self.r2b(self.r2a(_act(self.d2(h1)), e), e)
        u1 = self.r3(_act(h1 + F.interpolate(self.u1(h2), size=h1.shape[-2:], mode="bilinear", align_corners=False)), e)
        u0 = _act(h0 + F.interpolate(self.u0(u1), size=h0.shape[-2:], mode="bilinear", align_corners=False))
        return self.head(_act(self.c0(u0)))


class LocalNet(nn.Module):
    """One region's crop at full resolution -> (change 3, attention logit 1) on the crop."""

    def __init__(self, full: int, width: int, emb: int, cin: int):
        super().__init__()
        self.f0 = nn.Conv2d(cin, full, 3, 1, 1)
        self.down = nn.Conv2d(full, width, 3, 2, 1)
        self.r1, self.r2 = FiLMRes(width, emb), FiLMRes(width, emb)
        self.up = nn.Conv2d(width, full, 1)
        self.c0 = nn.Conv2d(full, full, 3, 1, 1)
        self.head = nn.Conv2d(full, 4, 3, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def first(self, x, e):
        f0 = _act(self.f0(x))
        return f0, self.r1(_act(self.down(f0)), e)

    def second(self, f0, h, e):
        h = self.r2(h, e)
        u = _act(f0 + F.interpolate(self.up(h), size=f0.shape[-2:], mode="bilinear", align_corners=False))
        return self.head(_act(self.c0(u)))


def region_boxes(template: np.ndarray, size: int) -> list[tuple[float, float, int, int]]:
    """Per region, (centre x, centre y, width, height) on the template face (crop pixels): the box
    of the region's mask on the template, with PAD px around it, sides a multiple of 4."""
    masks = region_masks(np.asarray(template, dtype=np.float32), (size, size))
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m > 0.05)
        x0, x1 = max(0, xs.min() - PAD), min(size - 1, xs.max() + PAD)
        y0, y1 = max(0, ys.min() - PAD), min(size - 1, ys.max() + PAD)
        w, h = int(np.ceil((x1 - x0 + 1) / 4) * 4), int(np.ceil((y1 - y0 + 1) / 4) * 4)
        boxes.append((float(x0 + x1) / 2, float(y0 + y1) / 2, w, h))
    return boxes


class TeacherParts(nn.Module):
    """What the network takes from the teacher (training/prototype.py's PrototypeAger) as it is:
    the carried age model and its framing, the template map, the shape change and its gating.
    Nothing here is trained; a resume point leaves it out (it is rebuilt from the teacher)."""

    def __init__(self, teacher):
        super().__init__()
        self.age_net = teacher.age_net
        self.age_size, self.out_size, self.margin = teacher.age_size, teacher.out_size, teacher.margin
        self.groups = [list(g) for g in teacher.groups]
        for name in ("age_points", "age_centre", "age_grid", "flows", "cover", "head", "top", "base_grid"):
            self.register_buffer(name, getattr(teacher, name).detach().clone())
        self.map = teacher.map
        self.flow_soft = teacher.flow_soft
        self.shape_gain = float(teacher.gains[2])
        self.whole = None  # the whole teacher, for a residual network (AgingNet sets it)

    def source(self, image, landmarks):
        from ..prototype import PrototypeAger

        return PrototypeAger.source(self, image, landmarks)  # the teacher's own code, on these parts

    def fields(self, w, landmarks):
        """(flow (N,2,S,S) in template pixels, cover, head, top) on this face."""
        n = w.shape[0]
        f = torch.cat([torch.einsum("nk,kchw->nchw", w, self.flows), self.cover.expand(n, -1, -1, -1),
                       self.head.expand(n, -1, -1, -1), self.top.expand(n, -1, -1, -1)], 1)
        f = self.map.sample(f, self.map(landmarks))
        return f[:, :2], f[:, 2:3], f[:, 3:4], f[:, 4:5]

    def warp(self, textured, flow, cover, head, top, regions):
        """The teacher's shape change, gated as the teacher gates it (its own code)."""
        from ..prototype import PrototypeAger

        return PrototypeAger.shape_warp(self, textured, flow, regions, cover, head, top, self.shape_gain)


class AgingNet(nn.Module):
    """(image, target, regions, landmarks, hair) -> (aged, keep): contract ``agelapse-aging/2`` on
    the teacher's crop (its template square with a margin). See the module docstring."""

    def __init__(self, teacher, k: int, global_size: int = 64, g_width: int = 24, l_full: int = 12, l_width: int = 32,
                 g_feat: int = 8, change_limit: float = 0.6, emb: int = 64, residual: bool = False):
        super().__init__()
        self.fixed = TeacherParts(teacher)
        self.residual = bool(residual)
        if self.residual:
            self.fixed.whole = teacher
        s = self.fixed.out_size
        self.size, self.k, self.global_size, self.limit = s, k, int(global_size), float(change_limit)
        template = teacher.map.template_points[:68].numpy() + teacher.margin  # the template in crop pixels
        self.register_buffer("template", torch.from_numpy(template).float())
        self.boxes = region_boxes(template, s)
        self.cond = nn.Sequential(nn.Linear(2 * k, emb), nn.LeakyReLU(0.2), nn.Linear(emb, emb), nn.LeakyReLU(0.2))
        self.glob = GlobalNet(g_width, emb, g_feat)
        self.locals = nn.ModuleList(LocalNet(l_full, l_width, emb, 3 + 2 + g_feat) for _ in REGION_NAMES)
        self.mix = nn.Linear(len(REGION_NAMES) * l_width, len(REGION_NAMES) * l_width)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)
        g = global_size
        t = torch.linspace(0, s - 1, g)
        ys, xs = torch.meshgrid(t, t, indexing="ij")
        self.register_buffer("grid_low", torch.stack([xs, ys], -1).view(1, -1, 2))  # face pixels of the global grid
        t = torch.arange(s, dtype=torch.float32)
        ys, xs = torch.meshgrid(t, t, indexing="ij")
        self.register_buffer("grid_full", torch.stack([xs, ys], -1).view(1, -1, 2))
        for r, (cx, cy, w, h) in enumerate(self.boxes):
            oy, ox = torch.meshgrid(torch.arange(h, dtype=torch.float32) - (h - 1) / 2,
                                    torch.arange(w, dtype=torch.float32) - (w - 1) / 2, indexing="ij")
            self.register_buffer(f"crop{r}", torch.stack([ox + cx, oy + cy], -1).view(1, -1, 2))  # template pixels
            edge = torch.minimum(torch.minimum(ox + (w - 1) / 2, (w - 1) / 2 - ox), torch.minimum(oy + (h - 1) / 2, (h - 1) / 2 - oy))
            self.register_buffer(f"window{r}", (edge / PAD).clamp(0, 1).view(1, 1, h, w))  # fades over the context band

    # --- geometry: a similarity from the template to the face's landmarks
    def similarity(self, landmarks):
        mt = self.template.mean(0)
        d = (self.template - mt).unsqueeze(0)
        mu = landmarks.mean(1, keepdim=True)
        s = landmarks - mu
        norm = (d * d).sum((1, 2))
        a = (d * s).sum((1, 2)) / norm
        b = (d[..., 0] * s[..., 1] - d[..., 1] * s[..., 0]).sum(1) / norm
        return a.view(-1, 1), b.view(-1, 1), mu, mt

    def to_face(self, q, sim):
        """Template pixels (1 or N, P, 2) -> face pixels (N, P, 2)."""
        a, b, mu, mt = sim
        q = q - mt
        return torch.stack([a * q[..., 0] - b * q[..., 1], b * q[..., 0] + a * q[..., 1]], -1) + mu

    def to_template(self, p, sim):
        a, b, mu, mt = sim
        p = p - mu
        n = a * a + b * b
        return torch.stack([(a * p[..., 0] + b * p[..., 1]) / n, (-b * p[..., 0] + a * p[..., 1]) / n], -1) + mt

    def _norm(self, p, size_x, size_y=None):
        size_y = size_x if size_y is None else size_y
        return torch.stack([p[..., 0] * (2.0 / (size_x - 1)) - 1, p[..., 1] * (2.0 / (size_y - 1)) - 1], -1)

    def crops(self, image, sim, size_scale: float = 1.0):
        """The five region crops of ``image`` (N, C, S, S) cut at the face: a list of (N, C, h, w)."""
        out = []
        n = image.shape[0]
        for r, (cx, cy, w, h) in enumerate(self.boxes):
            q = getattr(self, f"crop{r}")
            if size_scale != 1.0:
                hs, ws = max(4, int(round(h * size_scale))), max(4, int(round(w * size_scale)))
                q = F.interpolate(q.view(1, h, w, 2).permute(0, 3, 1, 2), size=(hs, ws), mode="bilinear",
                                  align_corners=True).permute(0, 2, 3, 1).reshape(1, -1, 2)
                h, w = hs, ws
            grid = self._norm(self.to_face(q, sim), self.size).view(n, h, w, 2)
            out.append(F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True))
        return out

    def parts(self, image, target, regions, landmarks, hair, base=None):
        """Everything the losses need: aged, keep, the source distribution, the change before the
        warp, the attention maps (global, then the five local ones). ``base``: the teacher's
        output for these inputs when the caller has it already (a residual network's input)."""
        n, s = image.shape[0], self.size
        source = self.fixed.source(image, landmarks)
        original = image
        if self.residual:
            if base is None:
                base, _ = self.fixed.whole(image, target, regions, landmarks, hair)
            image = base.detach()
        w = target - source
        e = self.cond(torch.cat([target, source], 1))
        sim = self.similarity(landmarks)
        # global: the face at low resolution with the template coordinates of its pixels
        g = self.global_size
        low = F.interpolate(image, size=(g, g), mode="bilinear", align_corners=False, antialias=True)
        coords = self._norm(self.to_template(self.grid_low, sim), s).view(n, g, g, 2).permute(0, 3, 1, 2)
        gout = self.glob(torch.cat([low, coords], 1), e)
        g_change, g_att, g_feat = self.limit * torch.tanh(gout[:, :3]), self._attention(gout[:, 3:4]), gout[:, 4:]
        # local: each region's crop, the global features at its pixels, its template coordinates
        crops = self.crops(torch.cat([image, F.interpolate(g_feat, size=(s, s), mode="bilinear", align_corners=False)], 1), sim)
        firsts = []
        for r, net in enumerate(self.locals):
            h, w_ = self.boxes[r][3], self.boxes[r][2]
            q = self._norm(getattr(self, f"crop{r}"), s).view(1, h, w_, 2).permute(0, 3, 1, 2).expand(n, -1, -1, -1)
            firsts.append(net.first(torch.cat([crops[r], q], 1), e))
        pooled = torch.cat([h.mean((2, 3)) for _, h in firsts], 1)
        shared = self.mix(pooled).unsqueeze(-1).unsqueeze(-1).chunk(len(self.locals), 1)
        inv = self.to_template(self.grid_full, sim)  # template pixels of every face pixel
        local_change = 0
        l_atts = []
        for r, net in enumerate(self.locals):
            f0, h = firsts[r]
            out = net.second(f0, h + shared[r], e)
            att = self._attention(out[:, 3:4])
            l_atts.append(att)
            cx, cy, cw, ch = self.boxes[r]
            u = inv - torch.tensor([cx - (cw - 1) / 2, cy - (ch - 1) / 2], dtype=inv.dtype, device=inv.device)
            grid = self._norm(u, cw, ch).view(n, s, s, 2)
            win = getattr(self, f"window{r}").expand(n, -1, -1, -1)
            back = F.grid_sample((1 - att) * self.limit * torch.tanh(out[:, :3]) * win, grid,
                                 mode="bilinear", padding_mode="zeros", align_corners=True)
            local_change = local_change + regions[:, r : r + 1] * back
        flow, cover, head, top = self.fixed.fields(w, landmarks)
        gate = regions.sum(1, keepdim=True).clamp(0.0, 1.5) + (1 - cover) * head * hair.view(-1, 1, 1, 1).clamp(0.0, 1.5)
        global_change = F.interpolate((1 - g_att) * g_change, size=(s, s), mode="bilinear", align_corners=False)
        change = gate * global_change + local_change
        textured = (image + change).clamp(-1, 1)
        if self.residual:  # the teacher's output has its shape change already
            aged = textured
        else:
            aged = self.fixed.warp(textured, flow, cover, head, top, regions).clamp(-1, 1)
        keep = 1 - torch.tanh((aged - original).abs().mean(1, keepdim=True) / 0.1)
        # a residual network's attention is not learned: nothing for the attention losses
        attention = [] if self.residual else [g_att] + l_atts
        return {"aged": aged, "keep": keep, "source": source, "change": change, "attention": attention}

    def _attention(self, logit):
        """A (1 = keep the input) from its logit; a residual network has none (A = 0, the change
        added as it is: see the module docstring)."""
        return torch.zeros_like(logit) if self.residual else torch.sigmoid(logit)

    def train(self, mode: bool = True):
        super().train(mode)
        self.fixed.eval()  # the carried age model's BatchNorm keeps its statistics
        return self

    def forward(self, image, target, regions, landmarks, hair):
        p = self.parts(image, target, regions, landmarks, hair)
        return p["aged"], p["keep"]

    def learned_state(self) -> dict:
        """The trained weights only (the teacher's fixed parts left out): what a resume point keeps."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("fixed.")}

    def load_learned(self, state: dict):
        missing, unexpected = self.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith("fixed.")]
        if bad or unexpected:
            raise ValueError(f"weights do not fit this network: missing {bad[:4]}, unexpected {list(unexpected)[:4]}")


def _sn(m):
    return nn.utils.parametrizations.spectral_norm(m)


class Trunk(nn.Module):
    def __init__(self, widths):
        super().__init__()
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [_sn(nn.Conv2d(a, b, 4, 2, 1)), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).mean((2, 3))


class Critic(nn.Module):
    """A projection critic: "a real face of group t" for the whole face (at 80 px) and for each of
    the five region patches (their crops at half resolution, with a region embedding).
    forward(face (N,3,80,80), patches [5 x (N,3,h,w)], target (N,K)) -> (face score (N,), patch
    scores (N, 5))."""

    def __init__(self, k: int, width: int = 32):
        super().__init__()
        w = width
        self.face = Trunk([3, w, 2 * w, 4 * w, 4 * w])
        self.face_out = _sn(nn.Linear(4 * w, 1))
        self.face_embed = _sn(nn.Linear(k, 4 * w, bias=False))
        self.patch = Trunk([3, w, 2 * w, 4 * w])
        self.patch_out = _sn(nn.Linear(4 * w, 1))
        self.patch_embed = _sn(nn.Linear(k, 4 * w, bias=False))
        self.region = nn.Parameter(torch.zeros(len(REGION_NAMES), 4 * w))

    def forward(self, face, patches, target):
        f = self.face(face)
        face_score = self.face_out(f).squeeze(1) + (self.face_embed(target) * f).sum(1)
        scores = []
        for r, p in enumerate(patches):
            h = self.patch(p) + self.region[r]
            scores.append(self.patch_out(h).squeeze(1) + (self.patch_embed(target) * h).sum(1))
        return face_score, torch.stack(scores, 1)
