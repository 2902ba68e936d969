"""dlib's face descriptor in PyTorch (training/face_descriptor.py, training/dlib_dat.py) against dlib.

Real faces: skimage's astronaut, every face found in ../shared/data/album, and UTKFace test-split
chips from ../shared/data/utkface (the shared faces are skipped, with the reason, when absent;
the astronaut alone still checks the pipeline).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dlib = pytest.importorskip("dlib")

from training import dlib_dat  # noqa: E402
from training.face_descriptor import (  # noqa: E402
    VERIFY_THRESHOLD, FaceDescriptor, TorchIdentity, chip_details, face_chips, model_path)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
N_UTK = 48
MIN_FACES = 100


def _shape(lm: np.ndarray):
    """dlib's shape as training.evaluate.Identity builds it (integer points)."""
    x0, y0 = lm.min(0)
    x1, y1 = lm.max(0)
    return dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                      [dlib.point(int(round(x)), int(round(y))) for x, y in lm])


def _rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[..., ::-1])


def _photos() -> list[np.ndarray]:
    import skimage.data

    photos = [np.ascontiguousarray(skimage.data.astronaut())]
    album = SHARED / "album"
    if album.is_dir():
        photos += [_rgb(p) for p in sorted(album.rglob("*")) if p.suffix.lower() in (".jpg", ".png")]
    utk = SHARED / "utkface"
    if utk.is_dir():
        from training.data import Sample, split_of

        names = sorted(n for n in os.listdir(utk) if split_of(Sample(Path(n), 0)) == "test")
        pick = np.linspace(0, len(names) - 1, N_UTK).astype(int)  # spread over the ages
        photos += [_rgb(utk / names[i]) for i in pick]
    return photos


@pytest.fixture(scope="module")
def faces():
    """(photo, rounded landmarks, dlib's descriptor, dlib's chip) for every face found."""
    torch.set_num_threads(1)
    from core import dlib_models
    from core.faces import FaceFinder

    finder = FaceFinder()
    model = dlib_models.face_descriptor_model()
    out = []
    for photo in _photos():
        for face in finder.detect(photo):
            lm = np.round(face.landmarks.astype(np.float64))
            shape = _shape(lm)
            out.append((photo, lm, np.array(model.compute_face_descriptor(photo, shape)),
                        dlib.get_face_chip(photo, shape, 150, 0.25)))
    return out


@pytest.fixture(scope="module")
def net():
    return FaceDescriptor.from_dat()


def _torch_chip(photo: np.ndarray, lm: np.ndarray, **kw) -> np.ndarray:
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    return face_chips(x, lm[None], **kw)[0].permute(1, 2, 0).numpy()


def test_enough_real_faces(faces):
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: only the astronaut's face is checked")
    assert len(faces) >= MIN_FACES


def test_same_chip_same_descriptor(faces, net):
    """dlib's own chip through the torch network: dlib's descriptor to 1e-3 (max abs)."""
    chips = torch.from_numpy(np.stack([f[3] for f in faces])).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        mine = torch.cat([net(chips[i : i + 32]) for i in range(0, len(chips), 32)]).double().numpy()
    ref = np.stack([f[2] for f in faces])
    assert np.abs(mine - ref).max() <= 1e-3
    assert np.abs(ref).max() > 0.05  # descriptors, not zeros


def test_chip_matches_dlib(faces):
    """face_chips reproduces dlib.get_face_chip, large faces (image pyramid) included."""
    diffs, pyramids = [], 0
    for photo, lm, _, chip in faces:
        _, half, _ = chip_details(lm[None])
        pyramids += int(half[0] + 1 > 150)  # the halved rectangle is still larger than the chip
        diffs.append(np.abs(_torch_chip(photo, lm) - chip.astype(np.float32)))
    diffs = np.stack(diffs)
    # measured (dlib 20.0.1, 124 faces): 10 of 8.4 M values one grey level off, the rest identical
    # (a coordinate's last-bit rounding can flip the truncation to 8 bits)
    assert diffs.max() <= 1
    assert (diffs > 0).mean() < 1e-4
    if SHARED.is_dir():
        assert pyramids > 0, "no face large enough to exercise dlib's pyramid path"


def test_descriptors_and_verification_match_dlib(faces):
    """Full pipeline (torch chip + torch network) vs dlib's compute_face_descriptor: the same
    verification decision (distance < 0.6) on every pair of faces."""
    ident = TorchIdentity(batch=16)
    mine = np.concatenate([ident.descriptors(f[0][None], f[1][None]) for f in faces])
    ref = np.stack([f[2] for f in faces])
    assert np.abs(mine - ref).max() <= 1e-3
    i, j = np.triu_indices(len(faces), 1)
    d_ref = np.linalg.norm(ref[i] - ref[j], axis=1)
    d_mine = ident.distance(mine[i], mine[j])
    assert np.array_equal(d_ref < VERIFY_THRESHOLD, d_mine < VERIFY_THRESHOLD)
    if SHARED.is_dir():
        assert (d_ref < VERIFY_THRESHOLD).any() and (d_ref >= VERIFY_THRESHOLD).any()


def test_identity_batches_faces(faces):
    """TorchIdentity on a batch of same-size faces equals one face at a time; landmarks are
    rounded as dlib's integer shape is."""
    same = [f for f in faces if f[0].shape == faces[-1][0].shape][-8:]
    imgs, lms = np.stack([f[0] for f in same]), np.stack([f[1] for f in same])
    ident = TorchIdentity(batch=3)
    batched = ident.descriptors(imgs, lms + 0.3)
    single = np.concatenate([ident.descriptors(imgs[k : k + 1], lms[k : k + 1]) for k in range(len(same))])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(batched, np.stack([f[2] for f in same]), atol=1e-3)


def test_gradient_reaches_the_image(faces, net):
    photo, lm = faces[0][0], faces[0][1]
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float().requires_grad_(True)
    for quantize in (True, False):
        x.grad = None
        d = net(face_chips(x, lm[None], quantize=quantize))
        (d - torch.from_numpy(faces[0][2]).float()).pow(2).sum().backward()
        g = x.grad[0].abs().sum(0)
        nose = lm[30].astype(int)
        assert g[nose[1] - 5 : nose[1] + 5, nose[0] - 5 : nose[0] + 5].sum() > 0
        center, half, _ = chip_details(lm[None])
        yy, xx = np.mgrid[: g.shape[0], : g.shape[1]]
        far = np.hypot(xx - center[0, 0], yy - center[0, 1]) > half[0] * np.sqrt(2) + 2
        assert far.any() and g[torch.from_numpy(far)].sum() == 0  # outside the chip: no influence
    soft = _torch_chip(photo, lm, quantize=False)
    hard = _torch_chip(photo, lm)
    assert np.all((soft - hard >= 0) & (soft - hard <= 1))  # truncation (float32: up to 1)
    assert (soft != hard).mean() > 0.5


def test_parser_reads_dlib_network():
    layers, loss = dlib_dat.read_network(model_path())
    assert layers[0].kind == "input" and layers[-1].kind == "fc"
    assert [l.kind for l in layers].count("con") == 29
    assert loss["distance_threshold"] == pytest.approx(0.6)


def test_parser_refuses_truncated_and_corrupt(tmp_path):
    data = model_path().read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(dlib_dat.DatFormatError, match="ends early"):
        FaceDescriptor.from_dat(cut)
    head = tmp_path / "head.dat"
    head.write_bytes(data[:10])
    with pytest.raises(dlib_dat.DatFormatError, match="ends early"):
        dlib_dat.read_network(head)
    bad = bytearray(data)
    bad[4:17] = b"loss_multicl_"  # another loss
    (tmp_path / "bad.dat").write_bytes(bytes(bad))
    with pytest.raises(dlib_dat.DatFormatError, match="loss_metric"):
        dlib_dat.read_network(tmp_path / "bad.dat")
    extra = tmp_path / "extra.dat"
    extra.write_bytes(data + b"\x01\x01")
    with pytest.raises(dlib_dat.DatFormatError, match="unexpected bytes"):
        dlib_dat.read_network(extra)
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes(b"\x7f" * 64)
    with pytest.raises(dlib_dat.DatFormatError, match="control byte"):
        dlib_dat.read_network(garbage)


def test_parser_refuses_another_architecture():
    spec = dlib_dat.face_recognition_spec()
    first_con = next(l for l in reversed(spec) if l.kind == "con")
    first_con.args["num_filters"] = 64
    with pytest.raises(dlib_dat.DatFormatError, match="num_filters"):
        dlib_dat.read_network(model_path(), spec)
