"""How far the age judge can be moved by changing a face's interior: real faces swapped between heads
(``python -m training ceiling``).

An aging model that keeps the person changes the face inside its outline (the five regions); the
hair, the head's outline, the ears, the neck and the background stay the photo's. The judge (like
any age estimator) reads all of it. To know how much of a target group's age a change of the
interior alone can reach, real faces of that group (donors) are warped onto a source face's own
landmarks (piecewise-affine, a Delaunay mesh over the source's points and the crop's frame) and
their interior (the union of the five region masks, feathered) is pasted into the source photo,
matched to the source's mean colour there (so only the light and shade, lines and features of the
real older or younger face move, not its skin tone); and the reverse, the source's interior on the
donor's head. The judge's mean estimate of "donor interior on source head" is what a perfect
face-interior change would reach, with nothing of the source's head changed; with ``--model``, also
that perfect interior with the model's hair change on top (its regions' strengths at 0): what a
model that changes the interior and greys the hair could reach at best.

Measured on UTKFace's validation split (80 faces of 20-49, one random donor each; the committed
judge): a real 70+ interior on the source head is judged ~52 years (the donors themselves ~72),
a real 3-9 interior ~19 (the children ~8), and every group between falls as short (a real 40-49
interior ~36 against its donors' 41, 60-69 ~45 against 60); see MODEL_CARD.md. Deterministic for a
seed.
"""

from __future__ import annotations

import logging

import numpy as np

from core.regions import face_mask
from .filters import LUMA, gauss
from .prototype import Mesh

log = logging.getLogger(__name__)

FEATHER = 2.0  # px at 128: the pasted interior's soft edge
SOURCES = (20, 49)  # source ages: adults a model would age or rejuvenate
# donors per target; below 3 a chip frames a baby's head otherwise. Drawn in this order from one
# generator (``_draw``): the groups added later come after the first two, whose donors stay the same
DONORS = {"70+": (70, 200), "0-9": (3, 9), "10-19": (10, 19), "40-49": (40, 49), "50-59": (50, 59), "60-69": (60, 69)}


def _inside(points: np.ndarray, size: int) -> np.ndarray:
    return np.clip(points, 0, size - 1)


def _onto_source(source: np.ndarray, source_points: np.ndarray, donor: np.ndarray, donor_points: np.ndarray):
    """(source, donor warped onto the source's landmarks, the source's feathered interior mask
    (S, S)), float32: what every transplant starts from."""
    size = source.shape[0]
    sp, dp = _inside(source_points, size), _inside(donor_points, size)
    warped = Mesh(sp, size).to_mean(np.ascontiguousarray(donor), dp).astype(np.float32)
    m = np.clip(gauss(face_mask(sp, (size, size)).astype(np.float32), FEATHER * size / 128), 0, 1)
    return source.astype(np.float32), warped, m


def transplant(source: np.ndarray, source_points: np.ndarray, donor: np.ndarray, donor_points: np.ndarray,
               match_colour: bool = True) -> np.ndarray:
    """``donor``'s face interior warped onto ``source``'s landmarks and pasted into ``source``: uint8
    (S, S, 3) crops (the same aligned frame) and their 68 points. ``match_colour``: scaled per channel
    to the source's mean colour inside the pasted area."""
    src, warped, m = _onto_source(source, source_points, donor, donor_points)
    m = m[..., None]
    if match_colour:
        warped = warped * ((src * m).sum((0, 1)) / np.maximum((warped * m).sum((0, 1)), 1e-3))
    return np.clip(src * (1 - m) + warped * m, 0, 255).round().astype(np.uint8)


# the parts of a real face's interior, each moved alone (``parts``): a band of the luminance's
# detail (px at 128, between two Gaussian scales; None: the interior's mean) as a relative contrast,
# or the shape (the source's own face warped to the donor's proportions)
BANDS = {"fine (< 2 px)": (0.0, 2.0), "mid (2-6 px)": (2.0, 6.0), "fine and mid (< 6 px)": (0.0, 6.0), "broad (> 6 px)": (6.0, None)}


def band_transplant(source: np.ndarray, source_points: np.ndarray, donor: np.ndarray, donor_points: np.ndarray,
                    band: tuple) -> np.ndarray:
    """``source`` with the donor's luminance detail in ``band`` = (lo, hi) px at 128 in place of its
    own, inside the face's interior: each pixel scaled by the donor's band over the source's, both
    as a ratio of the finer to the coarser scale (the same on a dark and a light skin, the
    source's colour and everything outside the band kept)."""
    size = source.shape[0]
    src, warped, m = _onto_source(source, source_points, donor, donor_points)
    lo, hi = (None if v is None else v * size / 128 for v in band)

    def contrast(y):
        fine = gauss(y, lo) if lo else y
        coarse = gauss(y, hi) if hi else np.full_like(y, (y * m).sum() / m.sum())
        return fine / coarse

    luma = np.asarray(LUMA, np.float32)
    ratio = contrast(warped @ luma + 1) / contrast(src @ luma + 1)
    return np.clip(src * (1 + m * (ratio - 1))[..., None], 0, 255).round().astype(np.uint8)


def shape_transplant(source: np.ndarray, source_points: np.ndarray, donor_points: np.ndarray) -> np.ndarray:
    """``source`` warped (piecewise-affine) from its own landmarks to the donor's, the donor's put
    on the source's eyes, brows, nose and mouth by a similarity: the donor's proportions, the
    source's skin and features."""
    from core.align import ALIGN_POINTS, similarity, transform_points

    size = source.shape[0]
    sp = _inside(source_points, size)
    dp = _inside(transform_points(donor_points, similarity(donor_points[ALIGN_POINTS], sp[ALIGN_POINTS])), size)
    return Mesh(dp, size).to_mean(np.ascontiguousarray(source), sp)


def _judged(judge, images: list) -> float:
    from .evaluate import estimate_ages

    return round(float(estimate_ages(judge, np.stack(images)).mean()), 1)


def _aged(aging, cache, sources: np.ndarray, age: int, images: list | None = None, regions: bool = True) -> list:
    """The aging model's outputs for ``sources`` at the group of ``age``, in the cache's crop.
    ``images``: other pictures of those sources on their landmarks (a transplant) to age instead;
    ``regions=False``: every region's strength 0, so the model changes the hair alone."""
    from .evaluate import Reframe
    from .groups import group_index

    frame = Reframe(cache, aging)
    k = len(aging.age_groups)
    target = np.eye(k, dtype=np.float32)[group_index(age, [list(g) for g in aging.age_groups])]
    out = []
    for j in range(0, len(sources), 16):
        part = sources[j : j + 16]
        pics = np.asarray(cache.images[part]) if images is None else np.stack(images[j : j + 16])
        masks = np.asarray(cache.masks[part]) * (1 if regions else 0)
        out += list(frame.run(aging, pics, cache.landmarks[part], masks, k, targets=np.repeat(target[None], len(part), 0)))
    return out


def _draw(cache, split: str, faces: int, seed: int):
    """The random sources (up to ``faces`` of ``split`` aged SOURCES, sorted) and each donor
    group's donors (one per source, None where the split has none), drawn in DONORS' order from one
    generator: ``run`` and ``parts`` see the same faces."""
    r = np.random.default_rng(seed)
    idx = cache.indices(split)
    ages = cache.ages[idx]
    sources = idx[(ages >= SOURCES[0]) & (ages <= SOURCES[1])]
    if len(sources) == 0:
        raise ValueError(f"the {split} split has no face aged {SOURCES[0]}-{SOURCES[1]}")
    sources = np.sort(r.choice(sources, min(faces, len(sources)), replace=False))
    donors = {}
    for target, (lo, hi) in DONORS.items():
        pool = idx[(ages >= lo) & (ages <= hi)]
        donors[target] = r.choice(pool, len(sources)) if len(pool) else None
    return sources, donors


def run(cache, judge, split: str = "val", faces: int = 80, seed: int = 0, aging=None) -> dict:
    """Judged mean ages (see the module docstring) for up to ``faces`` sources of ``split`` aged
    20-49, per donor group: {"sources": n, "source": age, target: {"donors", "donor_interior_on_source",
    "source_interior_on_donor"[, "model"]} or None where the split has no donor of that age}.
    ``aging``: an aging model (core.models.AgingModel) whose outputs for the same sources at each
    target are judged too ("model")."""
    sources, donors = _draw(cache, split, faces, seed)
    out = {"split": split, "sources": int(len(sources)), "source": _judged(judge, [cache.images[i] for i in sources])}
    for target, (lo, hi) in DONORS.items():
        picked = donors[target]
        if picked is None:
            log.info("no %s donor in the %s split", target, split)
            out[target] = None
            continue
        onto_source, onto_donor = [], []
        for s, d in zip(sources, picked):
            x, xp = np.asarray(cache.images[s]), cache.landmarks[s]
            y, yp = np.asarray(cache.images[d]), cache.landmarks[d]
            onto_source.append(transplant(x, xp, y, yp))
            onto_donor.append(transplant(y, yp, x, xp))
        out[target] = {"donors": _judged(judge, [cache.images[d] for d in picked]),
                       "donor_interior_on_source": _judged(judge, onto_source),
                       "source_interior_on_donor": _judged(judge, onto_donor)}
        if aging is not None:
            out[target]["model"] = _judged(judge, _aged(aging, cache, sources, lo))
            # a perfect interior and the model's own hair change on top (its regions off)
            out[target]["donor_interior_and_model_hair"] = _judged(judge, _aged(aging, cache, sources, lo, onto_source, regions=False))
    return out


def parts(cache, judge, identity, split: str = "val", faces: int = 80, seed: int = 0, aging=None) -> dict:
    """Which part of a real 70+ face's interior moves the judge, and what each costs the person: the
    same sources and donors as ``run`` (20-49, one random 70+ donor each), each part moved alone
    (BANDS, the shape) and all of it (``transplant``), judged and verified (``identity``: a
    descriptor model, distance < 0.6 to the source's at its landmarks). {"sources": n, "source":
    age, part: {"judged", "verified"}}; "model" for ``aging``'s outputs at 70+."""
    sources, drawn = _draw(cache, split, faces, seed)
    donors = drawn["70+"]
    if donors is None:
        raise ValueError(f"the {split} split has no face aged {DONORS['70+'][0]}+")
    images = [np.asarray(cache.images[i]) for i in sources]
    points = [cache.landmarks[i] for i in sources]
    made = {name: [] for name in (*BANDS, "shape", "whole interior")}
    for x, xp, d in zip(images, points, donors):
        y, yp = np.asarray(cache.images[d]), cache.landmarks[d]
        for name, band in BANDS.items():
            made[name].append(band_transplant(x, xp, y, yp, band))
        made["shape"].append(shape_transplant(x, xp, yp))
        made["whole interior"].append(transplant(x, xp, y, yp))
    if aging is not None:
        made["model"] = _aged(aging, cache, sources, DONORS["70+"][0])
    base = identity.descriptors(np.stack(images), np.stack(points))
    out = {"split": split, "sources": int(len(sources)), "source": _judged(judge, images)}
    for name, imgs in made.items():
        dist = np.linalg.norm(identity.descriptors(np.stack(imgs), np.stack(points)) - base, axis=1)
        out[name] = {"judged": _judged(judge, imgs), "verified": round(float((dist < 0.6).mean()), 4)}
    return out


def format_parts(result: dict) -> str:
    lines = [f"{result['sources']} {result['split']} faces aged {SOURCES[0]}-{SOURCES[1]} (judged {result['source']}), "
             "each given one part of a real 70+ face's interior",
             "| part | judged | verified |", "|---|---|---|"]
    for name, row in result.items():
        if isinstance(row, dict):
            lines.append(f"| {name} | {row['judged']} | {100 * row['verified']:.0f} % |")
    return "\n".join(lines)


def format_table(result: dict) -> str:
    lines = [f"{result['sources']} {result['split']} faces aged {SOURCES[0]}-{SOURCES[1]}: judged {result['source']}",
             "| donors | donors judged | donor interior on source head | the same, the model's hair on it "
             "| source interior on donor head | the aging model |",
             "|---|---|---|---|---|---|"]
    for target in sorted(DONORS, key=lambda t: DONORS[t][0]):
        row = result.get(target)
        if row is None:
            lines.append(f"| {target} | (none in the split) | | | | |")
        else:
            lines.append(f"| {target} | {row['donors']} | {row['donor_interior_on_source']} "
                         f"| {row.get('donor_interior_and_model_hair', '')} | {row['source_interior_on_donor']} "
                         f"| {row.get('model', '')} |")
    return "\n".join(lines)
