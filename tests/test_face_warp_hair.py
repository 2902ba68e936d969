"""The aging model's in-graph geometry: the piecewise-affine map onto the person's landmarks, and
the hair and brow greying found from the landmarks and the colours."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from testkit.contract_model import AGING_TEMPLATE  # noqa: E402
from training.filters import LUMA  # noqa: E402
from training.hair import HairGreying  # noqa: E402
from training.prototype import _border_points, triangulate  # noqa: E402
from training.warp import TemplateMap  # noqa: E402

S = 64


@pytest.fixture(scope="module")
def template() -> np.ndarray:
    return np.array(AGING_TEMPLATE, np.float64) * S


@pytest.fixture(scope="module")
def tmap(template) -> TemplateMap:
    border = _border_points(S)
    return TemplateMap(np.concatenate([template, border]), triangulate(template, border, S), S)


def test_the_template_face_maps_onto_itself(tmap, template):
    mapped = tmap(torch.tensor(template, dtype=torch.float32)[None])
    ys, xs = np.mgrid[0:S, 0:S].astype(np.float32)
    np.testing.assert_allclose(mapped[0].numpy(), np.stack([xs, ys], -1), atol=1e-3)


def test_a_moved_face_maps_its_landmarks_to_the_templates(tmap, template):
    moved = template + np.array([3.0, -2.0])
    moved[36:48] += np.array([1.5, 0.0])  # and the eyes further right, as on a turned face
    mapped = tmap(torch.tensor(moved, dtype=torch.float32)[None])[0].numpy()
    inner = np.arange(17, 68)
    px = np.round(moved[inner]).astype(int)
    got = mapped[px[:, 1], px[:, 0]]
    expected = template[inner] + (px - moved[inner])  # the map is locally a translation here
    assert np.abs(got - expected).max() < 1.0
    # the crop's border stays where it is
    np.testing.assert_allclose(mapped[0, 0], [0, 0], atol=1e-3)
    np.testing.assert_allclose(mapped[-1, -1], [S - 1, S - 1], atol=1e-3)


def test_sampling_puts_a_template_feature_on_the_person(tmap, template):
    field = torch.zeros(1, 1, S, S)
    nx, ny = np.round(template[30]).astype(int)  # the template's nose tip
    field[0, 0, ny, nx] = 1.0
    moved = template + np.array([5.0, 3.0])
    mapped = tmap(torch.tensor(moved, dtype=torch.float32)[None])
    on_person = tmap.sample(field, mapped)[0, 0]
    y, x = divmod(int(on_person.argmax()), S)
    assert (x, y) == (nx + 5, ny + 3)


def _portrait(size: int = 128, hair=(0.25, 0.15, 0.08), skin=(0.8, 0.6, 0.5), background=(0.3, 0.5, 0.8)):
    """A face from the template's landmarks: skin inside the jaw and up to the hairline, dark hair
    with strands around and above it, brows, on a flat background. RGB in [0, 1], (1, 3, S, S)."""
    import cv2

    pts = np.array(AGING_TEMPLATE, np.float64) * size
    img = np.zeros((size, size, 3), np.float32) + np.array(background, np.float32)
    d = np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0))
    centre = pts[27]
    cv2.ellipse(img, (int(centre[0]), int(centre[1] - 0.3 * d)), (int(1.9 * d), int(2.4 * d)), 0, 0, 360, hair, -1)
    rng = np.random.default_rng(0)
    strands = rng.normal(0, 0.06, (size, 1)).astype(np.float32) * np.ones((1, size), np.float32)
    hair_area = (np.abs(img - np.array(hair, np.float32)).sum(-1) < 1e-3)
    img[hair_area] += strands.T[hair_area][:, None]  # vertical strands
    face = np.concatenate([pts[0:17], pts[[26, 24, 19, 17]] - np.array([0, 0.9 * d])])
    cv2.fillPoly(img, [np.round(face).astype(np.int32)], skin)
    for idx in (range(17, 22), range(22, 27)):
        cv2.polylines(img, [np.round(pts[list(idx)]).astype(np.int32)], False, hair, 2)
    return torch.from_numpy(img.clip(0, 1)).permute(2, 0, 1)[None], torch.tensor(pts, dtype=torch.float32)[None]


def _scene(size: int, **portrait):
    """The hair model for a crop of ``size``, a portrait (``_portrait``'s keywords), its landmarks
    as numpy and its eye distance."""
    image01, lm = _portrait(size, **portrait)
    pts = lm[0].numpy()
    return HairGreying(size), image01, lm, pts, float(np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0)))


def test_hair_and_brows_are_found_and_greyed():
    size = 128
    model = HairGreying(size)
    image01, lm = _portrait(size)
    face = torch.zeros(1, 1, size, size)  # no face area given: the colours alone keep the skin out
    hair, brows = model.masks(image01, lm, face)
    pts = lm[0].numpy()
    d = float(np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0)))
    top = int(pts[19, 1] - 1.3 * d)  # above the hairline, on the hair
    assert hair[0, 0, top - 2 : top + 2, int(pts[27, 0]) - 4 : int(pts[27, 0]) + 4].mean() > 0.5
    nose_y = int(pts[30, 1])  # beside the face, at the nose: hair worn long is hair too
    assert hair[0, 0, nose_y, int(pts[1, 0] - 0.2 * d)] > 0.35 and hair[0, 0, nose_y, int(pts[15, 0] + 0.2 * d)] > 0.35
    cheek = (pts[2] + pts[30]) / 2
    assert hair[0, 0, int(cheek[1]), int(cheek[0])] < 0.05  # the skin is not hair
    assert hair[0, 0, -6:, :6].mean() < 0.05 and hair[0, 0, -6:, -6:].mean() < 0.05  # nor the background
    bx, by = np.round(pts[19]).astype(int)
    assert brows[0, 0, by, bx] > 0.5 and brows[0, 0, int(cheek[1]), int(cheek[0])] < 0.05

    x = image01 * 2 - 1
    none, _, _ = model(x, lm, face, torch.zeros(1), torch.zeros(1))
    assert torch.allclose(none, x, atol=1e-6)  # nothing to grey: nothing changes
    grey, _, _ = model(x, lm, face, torch.ones(1), torch.ones(1))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    y0, y1 = ((x + 1) / 2 * luma).sum(1), ((grey + 1) / 2 * luma).sum(1)
    chroma = lambda img: (img - (img * luma).sum(1, keepdim=True)).abs().sum(1)
    region = (slice(None), slice(top - 2, top + 2), slice(int(pts[27, 0]) - 4, int(pts[27, 0]) + 4))
    assert (y1[region] - y0[region]).mean() > 0.25  # the hair is much lighter ...
    # ... and grey (the crop's top edge is hair here, so it is told from a background of its colour
    # by its strands alone: a little less than all of it greys)
    assert chroma((grey + 1) / 2)[region].mean() < 0.4 * chroma(image01)[region].mean()
    assert torch.allclose(grey[..., int(cheek[1]), int(cheek[0])], x[..., int(cheek[1]), int(cheek[0])], atol=0.02)


def test_yaw_skin_tone_and_artefact_measures():
    from training import eval_slices as sl

    pts = np.array(AGING_TEMPLATE, np.float64) * 128
    assert abs(sl.yaw_degrees(pts[None])[0]) < 5  # the mean face looks ahead
    turned = pts.copy()
    half = (pts[16, 0] - pts[0, 0]) / 2
    turned[27:36, 0] += 0.3 * half  # the nose towards the image's right
    assert 20 < sl.yaw_degrees(turned[None])[0] < 40
    rng = np.random.default_rng(0)
    face = (rng.normal(0, 3, (64, 64, 3)) + np.array([200, 150, 120])).clip(0, 255).astype(np.uint8)
    masks = np.zeros((5, 64, 64), np.uint8)
    masks[4, 20:44, 10:54] = 255
    mask = sl.cheek_mask(masks)
    assert mask.sum() > 0 and not mask[18, 30]  # the region's edge is left out
    lighter = np.clip(face.astype(int) + 25, 0, 255).astype(np.uint8)
    drift = sl.tone_drift(face, np.stack([face, lighter]), mask)
    assert drift[0] < 1e-6 and drift[1] > 5
    band = face.copy()
    band[:, 30:34] = np.clip(band[:, 30:34].astype(int) - 60, 0, 255)
    smooth = np.clip(face.astype(int) - np.linspace(0, 30, 64)[None, :, None], 0, 255).astype(np.uint8)
    art = sl.artefact_score(face, np.stack([smooth, band]))
    assert art[1] > 3 * art[0]


def test_hair_greys_by_the_share_that_greys_between_the_two_ages():
    """A dark-haired face taken for a 50-59-year-old: made 70+, its hair greys fully (all that was
    still coloured greys by 70); at its own age it is left alone; made 60-69, part way."""
    from training.config import DECADES
    from training.nets import AgeNet
    from training.prototype import PrototypeAger

    size, k = 128, 8
    image01, lm = _portrait(size)
    protos = {"textures": torch.zeros(k, 3, size, size), "log_energy": torch.zeros(k, 3, size, size),
              "flows": torch.zeros(k, 2, size, size), "mean_shape": lm[0]}
    ones = torch.ones(size, size)
    levels = (0.0, 0.0, 0.0, 0.1, 0.3, 0.6, 0.85, 1.0)
    ager = PrototypeAger(protos, AgeNet(8), 32, DECADES, ones, ones, gains=(0, 0, 0), tone_gain=0.0,
                         hair_levels=levels, brow_levels=(0.0,) * k, margin=0).eval()
    ager.source = lambda image, landmarks: torch.eye(k)[[5] * len(image)]
    x = image01 * 2 - 1
    pts = lm[0].numpy()
    d = float(np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0)))
    top = int(pts[19, 1] - 1.3 * d)
    on_hair = (slice(None), slice(None), slice(top - 2, top + 2), slice(int(pts[27, 0]) - 4, int(pts[27, 0]) + 4))
    lighter = {}
    with torch.no_grad():
        for g in (5, 6, 7):
            out, _ = ager(x, torch.eye(k)[[g]], torch.zeros(1, 5, size, size), lm, torch.ones(1))
            lighter[g] = float((out - x)[on_hair].mean())
        ager.source = lambda image, landmarks: torch.eye(k)[[2] * len(image)]
        young, _ = ager(x, torch.eye(k)[[7]], torch.zeros(1, 5, size, size), lm, torch.ones(1))
    assert abs(lighter[5]) < 1e-4  # its own age: untouched
    # the hair still dark at 55 greys as fully by 70+ as a 25-year-old's
    assert lighter[7] == pytest.approx(float((young - x)[on_hair].mean()), rel=0.05)
    assert lighter[7] > 0.3  # 70+: much lighter (grey)
    assert 0.2 * lighter[7] < lighter[6] < 0.9 * lighter[7]  # 60-69: part of the way


def test_a_dark_background_beside_the_head_is_not_taken_for_hair():
    # short dark hair against a dark navy wall, white shirts filling the lower part and one side of
    # the frame: a mean over the whole background would be a grey that matches neither, and the
    # wall beside the head would be greyed as hair (seen: a grey glow around heads in a dark bar)
    size = 160
    navy = (0.12, 0.14, 0.32)
    model, image01, lm, pts, d = _scene(size, background=navy)
    img = image01[0].permute(1, 2, 0).numpy().copy()
    below = int(pts[57, 1] + 0.6 * d)
    img[below:] = 0.95  # white shirts
    img[:, int(pts[16, 0] + 2.2 * d):] = 0.95  # and a white door on the right
    # the hair kept short: the wall shows beside the head
    cx = pts[27, 0]
    xs = np.arange(size)[None, :]
    wall = (np.abs(xs - cx) > 1.45 * d) & (np.arange(size)[:, None] < below)
    wall &= ~(np.arange(size)[None, :] > pts[16, 0] + 2.2 * d)
    img[wall] = navy
    image01 = torch.from_numpy(img).permute(2, 0, 1)[None]
    hair, _ = model.masks(image01, lm, torch.zeros(1, 1, size, size))
    eye_y = int(pts[36:48, 1].mean())
    left = int(cx - 1.65 * d)  # on the wall, beside the temple, inside where hair is looked for
    assert wall[eye_y, left]
    assert hair[0, 0, eye_y - 3 : eye_y + 3, left - 1 : left + 2].max() < 0.03
    top = int(pts[19, 1] - 1.3 * d)
    assert hair[0, 0, top - 2 : top + 2, int(cx) - 4 : int(cx) + 4].mean() > 0.3  # the hair still is
    x = image01 * 2 - 1
    grey, _, _ = model(x, lm, torch.zeros(1, 1, size, size), torch.ones(1), torch.ones(1))
    # no glow: under 5 of 255 levels (the old mean background lifted the wall by some 20)
    assert (grey - x)[..., eye_y - 3 : eye_y + 3, left - 1 : left + 2].abs().max() < 0.04


def _beard(image01: torch.Tensor, lm: torch.Tensor, strands: bool) -> torch.Tensor:
    """The portrait with a dark patch on the chin, between the mouth and the jaw: stubble (dark
    dots) or, without strands, a smooth shadow of the same mean darkness."""
    img = image01[0].permute(1, 2, 0).numpy().copy()
    pts = lm[0].numpy()
    d = float(np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0)))
    y0, y1 = int(pts[57, 1] + 0.12 * d), int(pts[8, 1] - 0.2 * d)
    x0, x1 = int(pts[6, 0]), int(pts[10, 0])
    patch = img[y0:y1, x0:x1]
    if strands:
        rng = np.random.default_rng(1)
        dots = rng.random(patch.shape[:2]) < 0.5
        patch[dots] *= 0.35  # half the pixels dark: stubble, about 0.2 darker on average
    else:  # about as dark, smooth and soft-edged, as a shadow is
        import cv2

        shade = np.zeros(img.shape[:2], np.float32)
        shade[y0:y1, x0:x1] = 1.0
        shade = cv2.GaussianBlur(shade, (0, 0), 0.1 * d)
        img *= (1 - 0.35 * shade)[..., None]
    return torch.from_numpy(img).permute(2, 0, 1)[None], (y0, y1, x0, x1)


def test_a_beard_greys_with_the_hair_and_a_chin_shadow_or_the_lips_do_not():
    size = 256
    model = HairGreying(size)
    image01, lm = _portrait(size)
    pts = lm[0].numpy()
    lips = (slice(int(pts[51, 1]), int(pts[57, 1])), slice(int(pts[48, 0]) + 2, int(pts[54, 0]) - 2))
    body = (lips[0].start, lips[0].start + 2 * (lips[0].stop - lips[0].start) // 3)  # the lip off its lower edge, where the beard begins
    img = image01.clone()
    img[0, :, lips[0], lips[1]] = torch.tensor([0.55, 0.25, 0.25]).view(3, 1, 1)  # dark red lips
    for strands, expected in ((True, "found"), (False, "left")):
        face, (y0, y1, x0, x1) = _beard(img, lm, strands)
        beard = model.beard(face, lm)
        inner = beard[0, 0, y0 + 3 : y1 - 3, x0 + 3 : x1 - 3]
        if expected == "found":
            assert inner.mean() > 0.5
        else:
            assert inner.max() < 0.1  # a smooth shadow is not a beard
        assert beard[0, 0, body[0] : body[1], lips[1]].max() < 0.1  # nor the lips
        cheek = (pts[2] + pts[30]) / 2
        assert beard[0, 0, int(cheek[1]), int(cheek[0])] < 0.05  # nor the cheek
    face, (y0, y1, x0, x1) = _beard(img, lm, True)
    x = face * 2 - 1
    none, _, _ = model(x, lm, torch.zeros(1, 1, size, size), torch.zeros(1), torch.zeros(1))
    assert torch.allclose(none, x, atol=1e-6)
    grey, _, _ = model(x, lm, torch.zeros(1, 1, size, size), torch.ones(1), torch.zeros(1))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    lift = (((grey - x) / 2) * luma).sum(1)[0, y0 + 3 : y1 - 3, x0 + 3 : x1 - 3]
    assert lift.mean() > 0.1  # the stubble greys (lighter) with the hair amount
    child, _, _ = model(x, lm, torch.zeros(1, 1, size, size), torch.ones(1), torch.zeros(1), torch.zeros(1))
    assert float((child - x)[..., y0 + 3 : y1 - 3, x0 + 3 : x1 - 3].abs().max()) < 1e-4  # a beard share of 0: it stays
    assert float((grey - x)[..., body[0] : body[1], lips[1]].abs().mean()) < 0.02  # the lips keep their colour



def test_a_beard_on_the_chin_is_found_down_to_its_lower_edge():
    # a full beard covers the chin to its edge and hangs a little below it; the zone was an
    # ellipse held off the chin's edge, and a bearded face made 70+ got a grey moustache over a
    # dark beard on the chin, then (the jaw's outline alone) a dark rim along the beard's lower edge
    import cv2

    model, image01, lm, pts, d = _scene(256)
    img = image01[0].permute(1, 2, 0).numpy().copy()
    skin = img[int(pts[30, 1]), int(pts[30, 0])].copy()
    img[int(pts[8, 1] - 0.1 * d) :, int(pts[5, 0]) : int(pts[11, 0])] = skin  # a neck under the chin
    face = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(face, [np.round(pts[0:17]).astype(np.int32)], 1)
    beard = face > 0
    beard[: int(pts[57, 1] + 0.12 * d)] = False  # from below the lip ...
    beard[int(pts[8, 1] - 0.05 * d) : int(pts[8, 1] + 0.1 * d), int(pts[7, 0]) : int(pts[9, 0])] = True  # ... hanging past the chin
    beard[:, : int(pts[6, 0])] = False
    beard[:, int(pts[10, 0]) :] = False
    dots = np.random.default_rng(5).random(img.shape[:2]) < 0.5
    img[beard & dots] *= 0.35  # stubble
    found = model.beard(torch.from_numpy(img).permute(2, 0, 1)[None], lm)[0, 0]
    cols = slice(int(pts[7, 0]) + 2, int(pts[9, 0]) - 2)
    low = found[int(pts[8, 1] - 0.2 * d) : int(pts[8, 1] - 0.06 * d), cols]
    assert low.mean() > 0.7  # the lower chin greys with the rest of the beard (0.3 with the ellipse)
    hanging = found[int(pts[8, 1]) : int(pts[8, 1] + 0.06 * d), cols]
    assert hanging.mean() > 0.4  # and what hangs past it (0.29 with the jaw's outline alone)
    assert found[int(pts[8, 1] + 0.35 * d) :, :].max() < 0.05  # the neck below stays
    # a clean-shaven chin over a dark, striped collar in the chin's shadow: nothing hangs there
    shaven = image01[0].permute(1, 2, 0).numpy().copy()
    collar = (slice(int(pts[8, 1]), int(pts[8, 1] + 0.5 * d)), slice(int(pts[5, 0]), int(pts[11, 0])))
    shaven[collar] = skin * 0.45
    shaven[collar[0], collar[1].start : collar[1].stop : 3] *= 0.4  # its stripes
    found = model.beard(torch.from_numpy(shaven).permute(2, 0, 1)[None], lm)[0, 0]
    assert found[int(pts[8, 1]) : int(pts[8, 1] + 0.15 * d), cols].max() < 0.2  # the outline's soft edge (0.66 taken as a beard)


def test_a_folds_shadow_beside_the_mouth_is_not_a_beard():
    # the line from the nose to the mouth's corner on a turned face: a dark band, sharp-edged (so
    # textured along its two edges) and smooth inside; greyed it drew a light crescent
    model, image01, lm, pts, d = _scene(256)
    img = image01[0].permute(1, 2, 0).numpy().copy()
    rng = np.random.default_rng(3)
    img *= (1 + rng.normal(0, 0.015, img.shape[:2]))[..., None].astype(np.float32)  # a photo's grain
    x0 = int(pts[54, 0] + 0.1 * d)  # beside the mouth's corner, down to the jaw
    y0, y1 = int(pts[33, 1] + 0.15 * d), int(pts[8, 1] - 0.3 * d)
    band = slice(x0, x0 + int(0.3 * d))
    img[y0:y1, band] *= 0.6  # the fold's shadow: 40 % darker
    face = torch.from_numpy(img.clip(0, 1)).permute(2, 0, 1)[None]
    beard = model.beard(face, lm)
    assert beard[0, 0, y0 + 3 : y1 - 3, band].max() < 0.2
    stubble, (b0, b1, c0, c1) = _beard(image01, lm, True)  # the same model finds real stubble
    assert model.beard(stubble, lm)[0, 0, b0 + 3 : b1 - 3, c0 + 3 : c1 - 3].mean() > 0.5



def test_a_dark_textured_patch_on_one_side_of_the_mouth_is_not_a_beard():
    # beside the mouth of a turned, speaking face: the fold turned away from the light, dark and
    # textured (a sharp photo's pores), on one side only; a beard grows on both sides
    model, image01, lm, pts, d = _scene(256)
    rng = np.random.default_rng(4)
    y0, y1 = int(pts[33, 1] + 0.2 * d), int(pts[8, 1] - 0.35 * d)

    def patched(sides):
        img = image01[0].permute(1, 2, 0).numpy().copy()
        for corner in sides:
            x0 = int(pts[corner, 0] + (0.08 * d if corner == 54 else -0.48 * d))
            patch = img[y0:y1, x0 : x0 + int(0.4 * d)]
            patch *= np.where(rng.random(patch.shape[:2]) < 0.5, 0.35, 1.0)[..., None].astype(np.float32)
        return torch.from_numpy(img).permute(2, 0, 1)[None]

    one = model.beard(patched([54]), lm)[0, 0]
    both = model.beard(patched([48, 54]), lm)[0, 0]
    side = (slice(y0 + 3, y1 - 3), slice(int(pts[54, 0] + 0.1 * d), int(pts[54, 0] + 0.45 * d)))
    assert both[side].mean() > 0.3  # on both sides: stubble, greyed
    assert one[side].max() < 0.1  # on one side only: not a beard


def test_the_rim_where_the_hair_meets_the_background_is_not_greyed():
    # the pixels where dark hair meets a grey wall mix the two: textured and unlike either colour,
    # they were taken for hair, and greyed they drew a light halo around the head (seen around
    # curls on a grey studio wall, and on a dark curtain beside the temples)
    size = 160
    wall = (0.55, 0.56, 0.6)
    model, image01, lm, pts, d = _scene(size, background=wall)
    cx, cy = pts[27, 0], pts[27, 1] - 0.3 * d  # the hair ellipse's centre and axes (_portrait)
    # the wall has a photo's grain and a curtain's folds: texture of its own
    on_wall = (image01[0] - torch.tensor(wall).view(3, 1, 1)).abs().sum(0) < 1e-3
    rng = np.random.default_rng(2)
    grain = torch.from_numpy(rng.normal(0, 0.03, (size, size)).astype(np.float32))
    folds = 0.04 * torch.sin(torch.arange(size, dtype=torch.float32) * 0.7).view(1, size)
    image01 = torch.where(on_wall, (image01 + grain + folds).clamp(0, 1), image01)
    x = image01 * 2 - 1
    grey, _, _ = model(x, lm, torch.zeros(1, 1, size, size), torch.ones(1), torch.ones(1))
    lifted = ((grey - x) / 2 * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1)[0]

    def ring(outside: float) -> float:
        """The mean lift this many px outside the hair's edge, beside the head (temples to eyes)."""
        vals = []
        for row in range(int(cy - 1.8 * d), int(pts[36:48, 1].mean()) + 1, 2):
            half = 1.9 * d * np.sqrt(max(0.0, 1 - ((row - cy) / (2.4 * d)) ** 2))
            vals += [float(lifted[row, int(round(cx + side * (half + outside)))]) for side in (-1, 1)]
        return float(np.mean(vals))

    assert ring(0) < 0.05 and ring(2) < 0.015  # the rim: no halo (it was lifted 0.10 and 0.022)
    assert ring(-6) > 0.1  # inside, the hair greys


def test_the_skin_between_and_beside_the_stubble_keeps_its_colour_while_the_strands_grey():
    """The beard and hair masks are found at half resolution and blurred: without the skin guard
    (HairGreying.skin_like) the skin between the dark dots of stubble and a band of cheek beside
    the beard took a light grey veil; the strands themselves still grey."""
    size = 256
    model = HairGreying(size)
    image01, lm = _portrait(size)
    face, (y0, y1, x0, x1) = _beard(image01, lm, True)
    x = face * 2 - 1
    grey, _, _ = model(x, lm, torch.zeros(1, 1, size, size), torch.ones(1), torch.zeros(1))
    change = ((grey - x) / 2).abs().sum(1)[0]
    box = (slice(y0 + 3, y1 - 3), slice(x0 + 3, x1 - 3))
    dark = face[0].mean(0) < 0.4  # the stubble's dots (skin 0.63 on average, a dot 0.22)
    inside_dark = change[box][dark[box]]
    inside_skin = change[box][~dark[box]]
    assert inside_dark.mean() > 0.25  # the strands grey
    assert inside_skin.mean() < 0.25 * inside_dark.mean()  # the skin between them stays
    ring = torch.zeros(size, size, dtype=torch.bool)
    ring[y0 - 6 : y1 + 6, x0 - 6 : x1 + 6] = True
    ring[y0:y1, x0:x1] = False  # skin within 6 px of the beard, inside the face
    beside = change[ring & ~dark & (face[0, 0] > 0.7)]
    assert beside.mean() < 0.02
    guard = model.skin_like(face, model._cheeks(face, lm))[0, 0]
    assert guard[box][~dark[box]].mean() > 0.8 and guard[box][dark[box]].mean() < 0.1
