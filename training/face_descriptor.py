"""dlib's face-recognition network (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

The identity the evaluation measures is dlib's 128-d face descriptor. This module computes the
same numbers batched, on any torch device, and with gradients, from the ``.dat`` file that the
``face-recognition-models`` package installs (read by :mod:`training.dlib_dat`; nothing is
downloaded and no weights are committed).

API
---
``FaceDescriptor.from_dat(path=None)``
    The network, weights loaded, in eval mode with frozen parameters. ``forward(chips)``: chips
    float (N, 3, 150, 150), RGB in 0..255 (what dlib feeds it: ``dlib.get_face_chip`` output)
    -> (N, 128) descriptors, not normalised (dlib's ``loss_metric`` returns the raw fc output).
``face_chips(images, landmarks, size=150, padding=0.25, quantize=True)``
    What dlib's ``compute_face_descriptor`` crops from a photo: images float (N, 3, H, W), RGB
    in 0..255; landmarks (N, 68, 2) (x, y) in those pixels -> (N, 3, size, size) in 0..255,
    differentiable with respect to ``images``. The crop is dlib's ``get_face_chip_details``
    (similarity transform of 33 landmarks - nose, eyes, outer and inner upper lip - onto dlib's
    mean face, ``padding`` of the face's size on each side) and ``extract_image_chips``
    (bilinear sampling, pixels outside the photo black, a 5x5 Gaussian pyramid first when the
    face is over about twice the chip's size). ``quantize`` truncates to whole values as dlib's
    8-bit chips do, with a straight-through gradient. dlib takes integer landmarks: round them
    first for dlib's numbers.
``TorchIdentity(path=None, batch=32, device="cpu")``
    The evaluation's drop-in for dlib's per-face ``compute_face_descriptor``:
    ``descriptors(images, landmarks)``: images uint8 (N, H, W, 3) RGB, landmarks (N, 68, 2)
    (rounded to whole pixels, as ``training.evaluate.Identity`` builds dlib's shape) ->
    float64 ``np.ndarray`` (N, 128); ``distance(a, b)``: Euclidean distance along the last axis
    (dlib's verification: same person when < 0.6, ``VERIFY_THRESHOLD``).

Measured against dlib 20.0.1 (tests/test_face_descriptor.py, bench/descriptors.py): the same
chip gives descriptors within 1e-6 (max abs; float32 sums in another order), and ``face_chips``
gives dlib's chip on real faces (pyramid path included) but for about one value in a million,
one grey level off (the last bit of a coordinate flipping the truncation to 8 bits).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import dlib_dat

log = logging.getLogger(__name__)

VERIFY_THRESHOLD = 0.6
CHIP_SIZE = 150
# (channels, downsampling) of the 14 residual blocks, input side first (alevel4 ... alevel0)
BLOCKS = [(32, False)] * 3 + [(64, True)] + [(64, False)] * 3 + [(128, True)] + [(128, False)] * 2 \
    + [(256, True)] + [(256, False)] * 2 + [(256, True)]


def model_path() -> Path:
    from core import dlib_models

    return dlib_models.model_file(dlib_models.FACE_DESCRIPTOR)


class Affine(nn.Module):
    """dlib's ``affine`` layer: a frozen batch norm, per-channel scale and shift."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("shift", torch.zeros(channels))

    def forward(self, x):
        return x * self.scale[:, None, None] + self.shift[:, None, None]


def _add_padded(a, b):
    """dlib's ``add_prev``: tensors of different sizes are added as if zero-padded to the larger."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))
    pad = lambda t: F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))  # noqa: E731
    return pad(a) + pad(b)


class Residual(nn.Module):
    """``ares`` / ``ares_down``: relu(block(x) + x), or + avg_pool(x) when strided. dlib pads
    strided 3x3 convolutions and 2x2 pools by 0, so a block's output can be a row and column
    smaller than the pooled shortcut; ``add_prev`` pads it (and the shortcut's channels) with 0."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, 2 if down else 1, 0 if down else 1)
        self.aff1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.aff2 = Affine(cout)

    def forward(self, x):
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        return F.relu(_add_padded(y, F.avg_pool2d(x, 2, 2) if self.down else x))


class FaceDescriptor(nn.Module):
    """The ResNet of dlib's face_recognition_model_v1 (29 convolutions, 150x150 chip, 128-d)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([122.782, 117.001, 104.298]))
        self.conv = nn.Conv2d(3, 32, 7, 2, 0)
        self.aff = Affine(32)
        blocks, cin = [], 32
        for cout, down in BLOCKS:
            blocks.append(Residual(cin, cout, down))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, chips):
        if chips.ndim != 4 or tuple(chips.shape[1:]) != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"chips must be (N, 3, {CHIP_SIZE}, {CHIP_SIZE}), not {tuple(chips.shape)}")
        x = (chips.float() - self.mean[:, None, None]) / 256
        x = F.max_pool2d(F.relu(self.aff(self.conv(x))), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    @classmethod
    def from_dat(cls, path: str | Path | None = None) -> "FaceDescriptor":
        """Read the weights from dlib's file (default: face-recognition-models' copy)."""
        path = model_path() if path is None else Path(path)
        layers, _ = dlib_dat.read_network(path)
        net = cls()
        net.load_dlib_layers(layers)
        log.debug("face descriptor network read from %s", path)
        return net.eval().requires_grad_(False)

    def load_dlib_layers(self, layers: list) -> None:
        """Copy the weights of :func:`dlib_dat.read_network`'s layers (innermost first)."""
        for layer in layers:
            if layer.args.get("fused_relu") or layer.args.get("disabled") or (layer.kind == "affine" and not layer.params):
                raise dlib_dat.DatFormatError(f"a {layer.kind} layer with fused/disabled parts is not supported")
        convs = [l.params for l in layers if l.kind == "con"]
        affines = [l.params for l in layers if l.kind == "affine"]
        fcs = [l.params for l in layers if l.kind == "fc"]
        mine_c = [self.conv] + [c for b in self.blocks for c in (b.conv1, b.conv2)]
        mine_a = [self.aff] + [a for b in self.blocks for a in (b.aff1, b.aff2)]
        if (len(convs), len(affines), len(fcs)) != (len(mine_c), len(mine_a), 1):
            raise dlib_dat.DatFormatError(f"{len(convs)} con, {len(affines)} affine, {len(fcs)} fc layers: not this network")
        with torch.no_grad():
            for m, p in zip(mine_c, convs):
                _copy(m.weight, p["weight"])
                _copy(m.bias, p["bias"])
            for m, p in zip(mine_a, affines):
                _copy(m.scale, p["scale"])
                _copy(m.shift, p["shift"])
            _copy(self.fc.weight, fcs[0]["weight"])
            _copy(self.mean, layers[0].params["mean"])


def _copy(dst: torch.Tensor, src: np.ndarray):
    if tuple(dst.shape) != src.shape:
        raise dlib_dat.DatFormatError(f"weights of shape {src.shape} where the network has {tuple(dst.shape)}")
    dst.copy_(torch.from_numpy(np.ascontiguousarray(src)))


# ---------------------------------------------------------------------------------------------
# The chip: dlib's get_face_chip_details (68-point shapes) and extract_image_chips

# dlib's mean face shape for landmarks 17..67 (get_face_chip_details, image_transforms/interpolation.h)
_MEAN_X = [0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124, 0.904991, 0.98004,
           0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036, 0.490127, 0.554217, 0.613373, 0.121737,
           0.187122, 0.265825, 0.334606, 0.260918, 0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751,
           0.719335, 0.254149, 0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
           0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874, 0.553364, 0.490127,
           0.42689]
_MEAN_Y = [0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915,
           0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345, 0.587326,
           0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423,
           0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
           0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746, 0.784792, 0.824182,
           0.831803, 0.824182]
# eyebrows (17-26) and the lower lip (55-59, 65-67) are left out of the fit
CHIP_POINTS = [i for i in range(27, 68) if not (55 <= i <= 59 or 65 <= i <= 67)]


def chip_details(landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = 0.25):
    """dlib's ``get_face_chip_details`` for (N, 68, 2) landmarks: the chip's rectangle in the
    photo as (center (N, 2), half extent (N,), angle (N,)), in float64. The similarity transform
    is Umeyama's least squares (dlib's find_similarity_transform), in its 2-D closed form."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (N, 68, 2), not {lm.shape}")
    idx = np.array(CHIP_POINTS)
    ref = np.stack([np.array(_MEAN_X)[idx - 17], np.array(_MEAN_Y)[idx - 17]], -1)
    src = (padding + ref) / (2 * padding + 1) * size  # chip points
    dst = lm[:, idx]  # photo points
    ms, md = src.mean(0), dst.mean(1)
    s, d = src - ms, dst - md[:, None]
    var = (s ** 2).sum(-1).mean()
    cov = np.einsum("npi,pj->nij", d, s) / len(idx)  # (to - mean_to) (from - mean_from)^T
    a, b = cov[:, 0, 0] + cov[:, 1, 1], cov[:, 1, 0] - cov[:, 0, 1]
    angle = np.arctan2(b, a)
    scale = np.hypot(a, b) / var
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    t = md - np.stack([cos * ms[0] - sin * ms[1], sin * ms[0] + cos * ms[1]], -1)
    c = np.full(2, size / 2.0)
    center = np.stack([cos * c[0] - sin * c[1], sin * c[0] + cos * c[1]], -1) + t
    return center, (size * scale - 1) / 2, angle  # dlib's centered_drect(p, w, h) spans w - 1


def _corners(center, half, angle):
    """The chip's rectangle's tl, tr, bl corners rotated about its center (extract_image_chips)."""
    cos, sin = np.cos(angle), np.sin(angle)
    out = []
    for dx, dy in ((-1, -1), (1, -1), (-1, 1)):
        x, y = dx * half, dy * half
        out.append(np.stack([cos * x - sin * y, sin * x + cos * y], -1) + center)
    return out


def _rect_down(center, half):
    # pyramid_down<2>::rect_down: p / 2 - (1.25, 0.75) on the corners
    return center / 2 - np.array([1.25, 0.75]), half / 2


def _pyramid_down(img, quantize: bool):
    """dlib's pyramid_down<2> on (1, C, H, W): 5x5 [1 4 6 4 1]^2/256 filter, every other pixel."""
    k = torch.tensor([1.0, 4, 6, 4, 1], dtype=img.dtype, device=img.device)
    k2 = (k[:, None] * k[None, :]).expand(img.shape[1], 1, 5, 5)
    out = F.conv2d(img, k2, stride=2, groups=img.shape[1]) / 256
    return _floor(out) if quantize else out


def _floor(x):
    return x + (torch.floor(x) - x).detach()  # dlib stores 8-bit pixels; gradient passes straight


def _sample(images, px, py, quantize: bool):
    """dlib's interpolate_bilinear at float64 points (N, P): black where any of the four pixels
    lies outside the image (dlib tests left >= 0, top >= 0, right < W, bottom < H)."""
    n, c, h, w = images.shape
    left, top = torch.floor(px), torch.floor(py)
    valid = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    lr, tb = px - left, py - top
    li = left.clamp(0, max(w - 2, 0)).long()
    ti = top.clamp(0, max(h - 2, 0)).long()
    flat = images.reshape(n, c, h * w)
    at = lambda idx: torch.gather(flat, 2, idx[:, None].expand(n, c, idx.shape[1])).double()  # noqa: E731
    i = ti * w + li
    tl, tr, bl, br = at(i), at(i + 1), at(i + w), at(i + w + 1)
    lr, tb = lr[:, None], tb[:, None]
    out = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    out = out * valid[:, None]
    return _floor(out) if quantize else out


def face_chips(images: torch.Tensor, landmarks, size: int = CHIP_SIZE, padding: float = 0.25,
               quantize: bool = True) -> torch.Tensor:
    """dlib's face chip (``get_face_chip(img, shape, size, padding)``), batched and
    differentiable w.r.t. ``images`` (float (N, 3, H, W), RGB 0..255). ``landmarks`` (N, 68, 2)
    in pixels (array or tensor; no gradient flows to them). Returns (N, 3, size, size) in
    ``images``' dtype. ``quantize``: truncate to whole values like dlib's 8-bit chip."""
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), not {tuple(images.shape)}")
    lm = landmarks.detach().cpu().numpy() if torch.is_tensor(landmarks) else np.asarray(landmarks)
    n, _, h, w = images.shape
    if len(lm) != n:
        raise ValueError(f"{n} images but {len(lm)} landmark sets")
    center, half, angle = chip_details(lm, size, padding)
    dev = images.device
    grid = torch.arange(size, dtype=torch.float64, device=dev)
    gy, gx = torch.meshgrid(grid, grid, indexing="ij")
    gx, gy = gx.reshape(1, -1) / (size - 1), gy.reshape(1, -1) / (size - 1)

    def points(center, half, angle):
        tl, tr, bl = (torch.from_numpy(p).to(dev) for p in _corners(center, half, angle))
        p = tl[:, None] + gx[..., None] * (tr - tl)[:, None] + gy[..., None] * (bl - tl)[:, None]
        return p[..., 0], p[..., 1]

    # pyramid depth (extract_image_chips): halve while the halved rectangle still has more
    # pixels than the chip; dlib's drectangle area counts r - l + 1
    area = lambda hf: (2 * hf + 1) ** 2  # noqa: E731
    depth = np.zeros(n, dtype=int)
    hf = half.copy()
    while True:
        hf = hf / 2
        more = area(hf) > size * size
        if not more.any():
            break
        depth += more
    out = torch.zeros(n, images.shape[1], size * size, dtype=torch.float64, device=dev)
    flat = np.flatnonzero(depth == 0)
    if len(flat):
        px, py = points(center[flat], half[flat], angle[flat])
        out[flat] = _sample(images[flat], px, py, quantize)
    for i in np.flatnonzero(depth > 0):
        # dlib builds the pyramid on the crop around the rotated rectangle, grown by a margin
        corners = _corners(center[i], half[i], angle[i])
        corners.append(2 * center[i] - corners[0])  # br, opposite tl
        lo, hi = np.min(corners, 0), np.max(corners, 0)
        grow = 2.0
        for _ in range(depth[i]):
            grow = grow * 2 + 2
        x0, y0 = (np.floor(np.maximum(lo - grow, 0) + 0.5)).astype(int)
        x1, y1 = (np.floor(np.minimum(hi + grow, [w - 1, h - 1]) + 0.5)).astype(int)
        level = images[i : i + 1, :, y0 : y1 + 1, x0 : x1 + 1].double()
        c, hf = center[i] - np.array([x0, y0]), half[i]
        empty = False
        for _ in range(depth[i]):
            empty = empty or min(level.shape[2:]) <= 8  # dlib's pyramid_down gives an empty image
            if empty:
                break
            level = _pyramid_down(level, quantize)
            c, hf = _rect_down(c, hf)
        if empty:
            continue  # nothing to sample: a black chip
        px, py = points(c[None], np.array([hf]), angle[i : i + 1])
        out[i : i + 1] = _sample(level, px, py, quantize)
    return out.reshape(n, -1, size, size).to(images.dtype)


# ---------------------------------------------------------------------------------------------


class TorchIdentity:
    """Batched, no-grad descriptors for evaluation; see the module docstring."""

    threshold = VERIFY_THRESHOLD

    def __init__(self, path: str | Path | None = None, batch: int = 32, device: str = "cpu"):
        self.device = torch.device(device)
        self.net = FaceDescriptor.from_dat(path).to(self.device)
        self.batch = batch

    @torch.no_grad()
    def descriptors(self, images: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        lm = np.round(np.asarray(landmarks, dtype=np.float64))  # dlib's full_object_detection holds integers
        if images.ndim != 4 or images.shape[-1] != 3 or lm.shape != (len(images), 68, 2):
            raise ValueError(f"images (N, H, W, 3) and landmarks (N, 68, 2) expected, not {images.shape} and {lm.shape}")
        out = []
        for s in range(0, len(images), self.batch):
            x = torch.from_numpy(np.ascontiguousarray(images[s : s + self.batch])).to(self.device)
            x = x.permute(0, 3, 1, 2).float()
            out.append(self.net(face_chips(x, lm[s : s + self.batch])).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 128))

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), axis=-1)
