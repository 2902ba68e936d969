"""Greying hair and eyebrows, inside the model graph, from the face's landmarks and its colours.

The hair is not covered by the 68 landmarks, and UTKFace's prototypes average it away, so it is
found per face (all in the aligned crop, in units of the distance between the eye centres, d):
- where hair can be: inside a head-sized ellipse around the face (wider than the jaw, reaching
  about 2.4 d above the eyes and down to the chin): the scalp above the forehead, and beside the
  face, beyond the jaw's width, down to about the mouth (long hair; below it a collar is likelier),
  outside the face skin (the template's face area warped onto the person's landmarks, widened);
- what is hair there: pixels unlike the face's own skin (its colour sampled at the cheeks and the
  forehead) and more like the hair just above the forehead than like the background behind it
  (the colour past the hair in the pixel's own direction from the head: rings around the head
  ellipse, so a dark wall on one side and white shirts below are not averaged into one grey).
  A bald head is skin-coloured and stays as it is.
- brows: within a fraction of d of the brow landmarks (17-26) and darker than the skin.
- beard and moustache: below the nose, inside the jaw's outline (the chin included), off the
  lips: what is clearly darker than the face's skin there and has strands all around it
  (STUBBLE_PATCH). A shadow under the lip, at the mouth's corners or along a turned jaw is smooth:
  it stays (seen: without the strands, such shadows on women's chins greyed into light
  crescents); a fold's shadow is textured along its edges only: it stays too; and what has no
  twin on the other side of the face (mirrored across the nose's ridge, each side scaled to the
  other's width) is not a beard: a fold turned away from the light beside a speaking mouth lies
  on one side (seen: light crescents beside the mouth of a turned face, docs/album_speaking.jpg).
  Below the chin, only what continues a beard on the chin (BEARD_BELOW).

- and has strands: fine luminance texture that a wall or the sky lacks; and is darker than the
  skin (lit skin at the temples is not hair; fair hair, near the skin's brightness, greys less).

What is too thin to be a head of hair (the rim between a bald head or the hair and the
background) is dropped by a small morphological opening; and what lies within a few pixels of
what looks like the background is not hair (EDGE_CUT): the rim where dark hair meets a wall mixes
the two colours, is textured and unlike either, and greyed it drew a light halo around the head.

Greying leaves the skin: the masks are smooth, and where they spill onto a pixel of the skin's
own colour and lightness (beside a beard, between the dots of stubble, the ear, the temples) that
pixel is not greyed (``skin_like``). Greying keeps the strands: the luminance is split into a
smooth base (Gaussian, sigma 2 px) and detail; the base moves up towards a light grey (lighter
for whiter targets; never darker, so a light background taken for hair stays as it is), the
detail is kept and a little deepened, the
colour is taken out in proportion. How far (prototype.py): the share of still
coloured hair that greys between the face's age and the target's, from per-group grey levels
(none below 30, 0.3 at 40-49, 0.6 at 50-59, all at 70+; brows from 50): a dark-haired
55-year-old made 70+ greys fully, a face at its own age not at all. Greying only lightens, so
hair that is grey already changes little, and a younger target leaves the hair alone.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .filters import LUMA, Blur

CHEEK_PAIRS = ((2, 30), (3, 30), (14, 30), (13, 30), (1, 29), (15, 29))  # midpoints: cheek skin
SKIN_CHROMA = 0.025  # chromaticity distance (r, g, b over their sum) within which a pixel has the skin's colour
SKIN_SHADE = (0.55, 0.8)  # luminance over the skin's: below the first a pixel is not skin, above the second fully
SKIN_TOL = 0.12  # RGB distance (0-1 units) under which a pixel counts as the face's skin
HEAD_REACH = 1.25  # how far hair is looked for, in units of the head ellipse (voluminous hair reaches past it)
SIDE_DEPTH = 0.6  # how far below the eyes hair beside the face is looked for, in eye-to-chin lengths
HAIR_TOL = 0.14  # how far (RGB distance) a hair pixel's colour may be from the hair's mean colour
RING = (1.6, 1.8, 2.0)  # where the background is sampled, in units of the head ellipse (past the hair)
RING_ANGLES = 16  # how many directions around the head it is sampled in
RING_KAPPA = 6.0  # how narrowly a pixel takes the background of its own direction (von Mises)
# how far (half-resolution pixels, 4 px of the 224 crop) what looks like the background cuts into
# the hair: the rim where hair meets the background is a mix of both, textured and unlike either,
# and greyed it drew a light halo around dark hair on a dark curtain and around curls on a grey wall
EDGE_CUT = 2
BEARD_DARKER = 0.10  # how much darker than the cheeks' skin (luminance, 0-1) stubble is at least
STUBBLE_PATCH = 2  # half-resolution pixels around a beard pixel that all must have strands
BEARD_MIRROR = 4  # half-resolution pixels: how far from its mirror image a beard pixel's twin may lie
BEARD_BELOW = 4  # half-resolution pixels (0.15 of the eye distance at 224): how far below the jaw's outline a beard may hang


def face_frame(landmarks: torch.Tensor):
    """Centre between the eyes (N, 2), unit right and down vectors (N, 2), eye distance (N, 1)."""
    left = landmarks[:, 36:42].mean(1)
    right_eye = landmarks[:, 42:48].mean(1)
    centre = (left + right_eye) / 2
    r = right_eye - left
    d = torch.sqrt((r * r).sum(1, keepdim=True)).clamp_min(1e-3)
    right = r / d
    down = torch.stack([-right[:, 1], right[:, 0]], 1)
    return centre, right, down, d


class HairGreying(nn.Module):
    """(image in [-1, 1], landmarks, face area, hair amount (N,), brow amount (N,)) -> image with
    grey hair and brows. ``face`` (N, 1, S, S): the face skin area on the person (1 inside)."""

    def __init__(self, size: int):
        super().__init__()
        # the masks are smooth: found on a half-resolution grid (its pixel centres in the crop's
        # pixels), then upsampled; greying itself is done at full resolution
        self.full, self.size = size, size // 2
        t = torch.arange(self.size, dtype=torch.float32) * 2 + 0.5
        ys, xs = torch.meshgrid(t, t, indexing="ij")
        self.register_buffer("pixels", torch.stack([xs, ys], 0).view(1, 2, self.size, self.size))
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1))
        self.register_buffer("pairs", torch.tensor(CHEEK_PAIRS, dtype=torch.long))
        self.base_blur = Blur(2.0)
        self.small_blur = Blur(1.0)
        self.wide = Blur(max(1.0, size / 80))

    def _coords(self, landmarks):
        centre, right, down, d = face_frame(landmarks)
        rel = self.pixels - centre.view(-1, 2, 1, 1)
        u = (rel * right.view(-1, 2, 1, 1)).sum(1, keepdim=True) / d.view(-1, 1, 1, 1)
        v = (rel * down.view(-1, 2, 1, 1)).sum(1, keepdim=True) / d.view(-1, 1, 1, 1)
        return centre, right, down, d, u, v

    def _sample(self, image01, points):
        """image01 (N, 3, S, S) at points (N, P, 2) in pixels -> (N, 3, P)."""
        grid = (points * (2.0 / (self.full - 1)) - 1).unsqueeze(1)
        return F.grid_sample(image01, grid, mode="bilinear", padding_mode="border", align_corners=True).squeeze(2)

    def _background(self, image01, u, v, mid, ax, ay, up, chin, centre, right, down, d):
        """The background around the head: its colour (N, 3, RING_ANGLES) sampled on rings around
        the head ellipse (RING, past where hair is looked for; a point beyond the crop takes its
        edge) in RING_ANGLES directions, the rings' median per direction (a thin object crossing
        one ring does not count); and how much each direction is behind each pixel (N,
        RING_ANGLES, s, s): a von Mises weight of the angle between them, summing to 1."""
        n = image01.shape[0]
        theta = torch.arange(RING_ANGLES, dtype=image01.dtype, device=image01.device) * (6.283185307 / RING_ANGLES)
        cos, sin = torch.cos(theta).view(1, -1), torch.sin(theta).view(1, -1)
        samples = []
        for r in RING:
            eu = mid.view(n, 1) + ax.view(n, 1) * r * cos  # in units of d, the face's frame
            ev = torch.where(sin < 0, up.view(n, 1), chin.view(n, 1)) * r * sin
            pts = centre.unsqueeze(1) + d.view(n, 1, 1) * (eu.unsqueeze(2) * right.unsqueeze(1) + ev.unsqueeze(2) * down.unsqueeze(1))
            grid = (pts * (2.0 / (self.full - 1)) - 1).unsqueeze(1)
            samples.append(F.grid_sample(image01, grid, mode="bilinear", padding_mode="border", align_corners=True).squeeze(2))
        stack = torch.stack(samples, 3)
        ring = stack.sum(3) - stack.amax(3) - stack.amin(3)  # the median of three, (N, 3, RING_ANGLES)
        # each pixel's direction around the head, in the ellipse's own units
        eu, ev = (u - mid) / ax, v / ay
        norm = torch.sqrt(eu * eu + ev * ev + 1e-6)
        logits = RING_KAPPA * ((eu / norm) * cos.view(1, -1, 1, 1) + (ev / norm) * sin.view(1, -1, 1, 1))
        return ring, torch.softmax(logits, 1)

    def masks(self, image01, landmarks, face):
        """Hair (N, 1, S, S) and brows (N, 1, S, S) in [0, 1]."""
        full = image01
        image01 = F.avg_pool2d(image01, 2)
        face = F.avg_pool2d(face, 2)
        centre, right, down, d, u, v = self._coords(landmarks)
        proj = lambda p: (((p - centre) * right).sum(1), ((p - centre) * down).sum(1))
        jaw_l, _ = proj(landmarks[:, 0])
        jaw_r, _ = proj(landmarks[:, 16])
        _, chin_v = proj(landmarks[:, 8])
        dd = d.view(-1)
        mid = ((jaw_l + jaw_r) / 2 / dd).view(-1, 1, 1, 1)
        half = ((jaw_r - jaw_l).abs() / 2 / dd).clamp_min(0.5).view(-1, 1, 1, 1)
        chin = (chin_v / dd).clamp_min(0.8).view(-1, 1, 1, 1)
        ax = 1.3 * half
        up = 1.15 * chin  # the skull and its hair reach about as far above the eyes as the chin below
        ay = torch.where(v < 0, up, chin)
        q = torch.sqrt(((u - mid) / ax) ** 2 + (v / ay) ** 2 + 1e-8)
        head = torch.sigmoid((HEAD_REACH - q) / 0.1)
        # not the lower face (a beard is not the hair); the forehead is left to the colours (bangs grey)
        lower = torch.sigmoid((v + 0.5) / 0.1) * torch.sigmoid((0.95 - ((u - mid) / half).abs()) / 0.05)
        # the scalp: above the forehead's upper part
        brow_v = ((((landmarks[:, 17:27] - centre.unsqueeze(1)) * down.unsqueeze(1)).sum(2)).mean(1) / dd).view(-1, 1, 1, 1)
        cap = torch.sigmoid((brow_v - 0.4 * chin - v) / 0.08)
        # and beside the face, beyond the jaw's width: the temples and hair worn long, down to
        # about the mouth (below it a collar or a scarf is likelier than hair)
        temples = torch.sigmoid((SIDE_DEPTH * chin - v) / 0.1) * torch.sigmoid((((u - mid) / half).abs() - 1.05) / 0.05)
        zone = head * torch.maximum(cap, temples) * (1 - torch.maximum(lower, self.wide(face) * (v > -0.5).float()))
        # colours: the face's skin, the hair just above the forehead, the background far outside
        skin = self._cheeks(full, landmarks)
        dist = lambda a, b: torch.sqrt(((a - b) ** 2).sum(1, keepdim=True) + 1e-8)
        unlike_skin = torch.sigmoid((dist(image01, skin) - SKIN_TOL) / 0.03)
        # the hair's colour: what is not skin in the zone above the eyes (the forehead's top and
        # temples; tight crops show little more)
        above = zone * unlike_skin * torch.sigmoid((-0.5 - v) / 0.1)
        hair_ref = (image01 * above).sum((2, 3), keepdim=True) / (above.sum((2, 3), keepdim=True) + 1e-3)
        seen = torch.sigmoid((above.sum((2, 3), keepdim=True) / (0.004 * self.size * self.size) - 1) / 0.2)
        # the background behind each pixel: the colour found past the hair in the pixel's own
        # direction from the head (a mean over the whole far area mixed a dark wall, white shirts and
        # other faces into a grey that matched nothing, and a dark background was taken for hair)
        ring, weights = self._background(image01, u, v, mid, ax, ay, up, chin, centre, right, down, d)
        # what looks like the background is not hair, unless the background has the hair's colour:
        # then only the pixels near the head are taken (both judged per direction and then
        # blended: a blend of the colours across a wall's edge would match neither side)
        # (squared distances to every direction's colour as |a|^2 + |b|^2 - 2 a.b: one product)
        sq = ((image01 * image01).sum(1, keepdim=True) + (ring * ring).sum(1).unsqueeze(2).unsqueeze(3)
              - 2 * torch.einsum("ncij,nck->nkij", image01, ring)).clamp_min(0.0)
        bg_like = (weights * torch.exp(-sq / (2 * 0.06**2))).sum(1, keepdim=True)
        close = torch.sigmoid((HAIR_TOL - dist(hair_ref.squeeze(3), ring)) / 0.03)  # (N, 1, RING_ANGLES)
        bg_close = (weights * close.view(close.shape[0], -1, 1, 1)).sum(1, keepdim=True)
        near_head = torch.sigmoid((0.95 - q) / 0.05)
        # hair has strands: fine luminance texture that a wall or the sky has not
        y = (image01 * self.luma).sum(1, keepdim=True)
        texture = torch.sqrt(self.small_blur((y - self.small_blur(y)) ** 2) + 1e-8)
        # (untextured pixels count a little, as a dark photo's hair may show no strands; not where
        # the background behind has the hair's colour, where the strands are all that tells them apart)
        strands = 0.15 * (1 - bg_close) + (1 - 0.15 * (1 - bg_close)) * torch.sigmoid((texture - 0.025) / 0.008)
        # and darker than the skin: lit skin at the temples is not taken for hair (fair hair, which
        # is near the skin's brightness, greys less; it is light already)
        skin_y = (skin * self.luma).sum(1, keepdim=True)
        darker = torch.sigmoid((skin_y - y - 0.12) / 0.04)
        # (and what lies within EDGE_CUT of it: the rim between the hair and the background)
        background = F.max_pool2d(bg_like * (1 - bg_close), 2 * EDGE_CUT + 1, 1, EDGE_CUT)
        hair = zone * unlike_skin * darker * seen * strands * (1 - background) * (1 - bg_close * (1 - near_head))
        # an opening drops what is too thin to be a head of hair: the rim between the hair and
        # the background, a shadow line beside the ear (seen: a light halo)
        hair = self._opened(hair)
        # brows: near the brow landmarks and darker than the skin
        brow_pts = landmarks[:, 17:27]
        mids = (landmarks[:, [17, 18, 19, 20, 22, 23, 24, 25]] + landmarks[:, [18, 19, 20, 21, 23, 24, 25, 26]]) / 2
        brow_pts = torch.cat([brow_pts, mids], 1)  # along the brow lines
        # a Gaussian of the distance is the product of two one-dimensional ones
        inv = 1.0 / (2 * (0.09 * d.view(-1, 1, 1)) ** 2)
        gx = torch.exp(-((self.pixels[:, 0, :1, :] - brow_pts[..., 0:1]) ** 2) * inv)  # (N, 18, S)
        gy = torch.exp(-((self.pixels[:, 1, :, :1].transpose(1, 2) - brow_pts[..., 1:2]) ** 2) * inv)
        near = (gy.unsqueeze(3) * gx.unsqueeze(2)).amax(1, keepdim=True)
        skin_y = (skin * self.luma).sum(1, keepdim=True)
        brows = near * torch.sigmoid((skin_y - y - 0.12) / 0.03)
        up = lambda m: F.interpolate(m.clamp(0.0, 1.0), size=(self.full, self.full), mode="bilinear", align_corners=False)
        return up(hair), up(brows)

    def _opened(self, mask):
        """A morphological opening (erosion, then dilation) of a half-resolution mask, no higher
        than the mask: what is thinner than about a fortieth of the crop is dropped."""
        k = max(3, (self.size // 40) | 1)
        return torch.minimum(mask, F.max_pool2d(-F.max_pool2d(-mask, k, 1, k // 2), k, 1, k // 2))

    def _cheeks(self, image01, landmarks):
        """The face's skin colour (N, 3, 1, 1), sampled at the cheeks (CHEEK_PAIRS' midpoints)."""
        pts = (landmarks[:, self.pairs[:, 0]] + landmarks[:, self.pairs[:, 1]]) / 2
        return self._sample(image01, pts).mean(2).view(-1, 3, 1, 1)

    def skin_like(self, image01, skin):
        """(N, 1, S, S) in [0, 1], pixel by pixel: how much a pixel is the face's skin (``skin``, the
        cheeks' colour (N, 3, 1, 1)): its chromaticity near the skin's and its luminance no less
        than SKIN_SHADE of it. The masks are found at half resolution and blurred, so they spill
        onto the skin beside a beard, the ear and the temples; greyed, that skin took a light grey
        veil (a curly-haired, bearded face made 70+, docs/album_curly.jpg). Strands are darker
        than the skin and stay hair; the skin between them in stubble keeps its colour."""
        chroma = lambda v: v / (v.sum(1, keepdim=True) + 0.05)
        near = torch.exp(-((chroma(image01) - chroma(skin)) ** 2).sum(1, keepdim=True) / (2 * SKIN_CHROMA**2))
        y = (image01 * self.luma).sum(1, keepdim=True)
        skin_y = (skin * self.luma).sum(1, keepdim=True).clamp_min(0.02)
        lit = ((y / skin_y - SKIN_SHADE[0]) / (SKIN_SHADE[1] - SKIN_SHADE[0])).clamp(0.0, 1.0)
        return near * lit

    def _inside_jaw(self, landmarks):
        """(N, 1, s, s) on the half-resolution grid: 1 inside the polygon of the jaw's outline
        (landmarks 0-16, closed across the top from 16 to 0), by counting the outline's crossings
        of a ray from each pixel to the right (odd: inside)."""
        a = landmarks[:, :17].unsqueeze(2)  # (N, 17, 1, 2)
        b = torch.roll(landmarks[:, :17], -1, 1).unsqueeze(2)
        px = self.pixels[:, 0].reshape(1, 1, -1)
        py = self.pixels[:, 1].reshape(1, 1, -1)
        ax, ay, bx, by = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
        spans = ((ay > py).float() - (by > py).float()).abs()  # the edge spans the pixel's row
        dy = by - ay
        dy = torch.where(dy.abs() < 1e-6, torch.full_like(dy, 1e-6), dy)
        x_cross = ax + (py - ay) * (bx - ax) / dy
        count = (spans * (px < x_cross).float()).sum(1)  # (N, P)
        odd = count - 2 * torch.floor(count / 2)
        return odd.view(-1, 1, self.size, self.size)

    def beard(self, image01, landmarks):
        """Beard and moustache (N, 1, S, S) in [0, 1]: below the nose, inside the jaw's outline (and
        below the chin where a beard on it continues), off the lips, clearly darker than the
        cheeks' skin, with strands all over a patch, and on both sides of the face."""
        full = image01
        image01 = F.avg_pool2d(image01, 2)
        centre, right, down, d, u, v = self._coords(landmarks)
        dd = d.view(-1, 1)
        rel = landmarks - centre.unsqueeze(1)
        pu = (rel * right.unsqueeze(1)).sum(2) / dd  # every landmark in the face's frame (units of d)
        pv = (rel * down.unsqueeze(1)).sum(2) / dd
        at = lambda a, i: a[:, i].view(-1, 1, 1, 1)
        # inside the jaw's outline, the chin included (seen: an ellipse held off the chin's edge
        # greyed the moustache of a bearded face made 70+ and left the beard on the chin dark);
        # not past it beside the jaw, where long hair is dark and textured on both sides too
        jaw = self._inside_jaw(landmarks)
        inside = self.small_blur(jaw)
        below_nose = torch.sigmoid((v - at(pv, 33) - 0.08) / 0.04)
        mu, mv = pu[:, 48:60].mean(1).view(-1, 1, 1, 1), pv[:, 48:60].mean(1).view(-1, 1, 1, 1)
        a = (at(pu, 54) - at(pu, 48)).abs() / 2 + 0.05
        b = (at(pv, 57) - at(pv, 51)).abs() / 2 + 0.02
        lips = torch.sigmoid((1.0 - torch.sqrt(((u - mu) / a) ** 2 + ((v - mv) / b) ** 2 + 1e-8)) / 0.08)
        zone = inside * below_nose * (1 - lips)
        # (the cheeks' skin, lower cheeks included: on a clean-shaven dark skin the shading around the
        # mouth is darker than the lit upper cheeks, and against those alone it greyed into an ashy
        # ring; a full beard on the lower cheeks darkens the reference and is found less)
        skin_y = (self._cheeks(full, landmarks) * self.luma).sum(1, keepdim=True)
        y = (image01 * self.luma).sum(1, keepdim=True)
        base = self.small_blur(y)
        texture = torch.sqrt(self.small_blur((y - base) ** 2) + 1e-8)
        darker = torch.sigmoid((skin_y - base - BEARD_DARKER) / 0.03)
        # strands all over a patch, not only along its edges: a fold's shadow (a turned face's far
        # cheek, the line from the nose to the mouth's corner) is textured at its two edges and
        # smooth in between, and greyed it drew a light crescent beside the mouth
        k = 2 * STUBBLE_PATCH + 1
        strands = torch.sigmoid((-F.max_pool2d(-texture, k, 1, STUBBLE_PATCH) - 0.02) / 0.006)
        beard = zone * darker * strands
        # a beard hangs past the chin (its lower edge stayed dark): below the chin (landmarks 6-10)
        # by BEARD_BELOW, what continues a beard found above it, 2 px inside the chin (the shadow
        # under a clean-shaven chin, over a striped collar, is dark, textured and on both sides
        # too, and reaches a little inside the outline's soft edge)
        reach = lambda m, n: F.max_pool2d(F.pad(m, (0, 0, n, 0)), (n + 1, 1), 1)  # each pixel: the most of n above it
        chin_width = ((u > at(pu, 6)) & (u < at(pu, 10))).float()
        below_chin = self.small_blur((reach(jaw, BEARD_BELOW) - jaw).clamp_min(0.0) * chin_width)
        on_chin = -F.max_pool2d(-jaw, 5, 1, 2)  # 2 px inside the jaw's outline
        beard = torch.maximum(beard, below_chin * darker * strands * reach(beard * on_chin, BEARD_BELOW + 2))
        beard = self._opened(beard)  # what is too thin to be a beard (a fold's shadow line) is dropped
        if BEARD_MIRROR > 0:
            beard = torch.minimum(beard, self._other_side(beard, centre, right, down, d, u, v, pu))
        return F.interpolate(self.small_blur(beard).clamp(0.0, 1.0), size=(self.full, self.full), mode="bilinear", align_corners=False)

    def _other_side(self, mask, centre, right, down, d, u, v, pu):
        """(N, 1, s, s): the half-resolution ``mask`` mirrored across the face's midline (the
        nose's ridge, 27-30), each side scaled to the other's width (jaw points 0-16 from the
        ridge: a turned face's far side is narrower), widened by a max-pool of BEARD_MIRROR pixels
        so a face's asymmetry does not count. A beard grows on both sides of the face; a shadow
        cast or a fold turned away from the light lies on one."""
        axis = pu[:, 27:31].mean(1).view(-1, 1, 1, 1)
        left = (axis - pu[:, 0].view(-1, 1, 1, 1)).clamp_min(0.1)
        right_w = (pu[:, 16].view(-1, 1, 1, 1) - axis).clamp_min(0.1)
        off = u - axis
        mirrored_u = axis - torch.where(off > 0, off * left / right_w, off * right_w / left)
        pts = centre.view(-1, 2, 1, 1) + d.view(-1, 1, 1, 1) * (mirrored_u * right.view(-1, 2, 1, 1) + v * down.view(-1, 2, 1, 1))
        grid = (pts.permute(0, 2, 3, 1) - 0.5) / 2 * (2.0 / (self.size - 1)) - 1  # crop pixels -> the half-resolution grid
        other = F.grid_sample(mask, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        k = 2 * BEARD_MIRROR + 1
        return F.max_pool2d(other, k, 1, BEARD_MIRROR)

    def grey(self, image01, amount, whiteness, level=None):
        """Move (N, 3, S, S) colours towards grey by ``amount`` (N, 1, S, S); ``whiteness`` (N,)
        sets the grey's lightness (or ``level``, (N, 1, S, S), gives it)."""
        y = (image01 * self.luma).sum(1, keepdim=True)
        base = self.base_blur(y)
        detail = y - base
        if level is None:
            level = (0.5 + 0.25 * whiteness).view(-1, 1, 1, 1)
        # only lighter: grey hair is lighter than dark hair, and a light wall taken for hair stays
        y2 = base + (level - base).clamp_min(0) * amount + detail * (1 + 0.5 * amount)
        chroma = image01 - y
        return (y2 + chroma * (1 - amount)).clamp(0.0, 1.0)

    def forward(self, image, landmarks, face, hair_amount, brow_amount, beard_share=None):
        """``beard_share`` (N,) in [0, 1]: how much of the hair's greying the beard takes (default
        all; a child has none, and what is dark around its mouth is not one)."""
        x = (image + 1) * 0.5
        hair, brows = self.masks(x, landmarks, face)
        beard = self.beard(x, landmarks)
        if beard_share is not None:
            beard = beard * beard_share.view(-1, 1, 1, 1)
        hair = torch.maximum(hair, beard)
        skin = self._cheeks(x, landmarks)
        hair_a = (hair * hair_amount.view(-1, 1, 1, 1) * (1 - self.skin_like(x, skin))).clamp(0.0, 0.9)
        x = self.grey(x, hair_a, hair_amount.clamp(0.0, 1.0))
        # grey brows: towards the skin's own lightness, not white
        skin_y = (self._cheeks(x, landmarks) * self.luma).sum(1, keepdim=True)
        brow_a = (brows * brow_amount.view(-1, 1, 1, 1)).clamp(0.0, 0.9)
        return self.grey(x, brow_a, brow_amount, level=0.85 * skin_y) * 2 - 1, hair, brows
