"""core.scan on folders mixing good and bad files; a fake finder for the bookkeeping, dlib for the real thing."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import album
from core.catalog import Catalog
from core.export import save_image
from core.faces import Face
from core.photos import load_photo
from core.scan import scan_folder, scan_paths


class FakeFinder:
    """One face per photo, centred; remembers the shapes it saw; fails on photos of width `fail_width`."""

    mode = "fake"

    def __init__(self, fail_width: int | None = None):
        self.seen: list[tuple[int, int]] = []
        self.fail_width = fail_width

    def detect(self, rgb: np.ndarray) -> list[Face]:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        h, w = rgb.shape[:2]
        self.seen.append((h, w))
        if w == self.fail_width:
            raise RuntimeError("detector exploded")
        lm = np.stack([np.linspace(w * 0.3, w * 0.7, 68), np.linspace(h * 0.3, h * 0.7, 68)], axis=1)
        return [Face(np.array([w * 0.25, h * 0.25, w * 0.75, h * 0.75]), lm, 1.0, "hog")]


def _bomb_png() -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture()
def mixed(tmp_path, astronaut) -> tuple[Path, set[Path], set[Path]]:
    root = tmp_path / "album"
    (root / "sub").mkdir(parents=True)
    good = {root / "a.jpg", root / "sub" / "b.png", root / "c_really_png.jpg", root / "d.tif"}
    Image.fromarray(astronaut).save(root / "a.jpg", quality=90)
    Image.fromarray(astronaut[:300]).save(root / "sub" / "b.png")
    Image.fromarray(astronaut[:, :400]).save(root / "c_really_png.jpg", format="PNG")
    Image.fromarray(astronaut[:200, :200]).save(root / "d.tif")
    bad = {root / "empty.jpg", root / "notes.jpg", root / "sub" / "cut.jpg", root / "bomb.png"}
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("hello")
    (root / "sub" / "cut.jpg").write_bytes((root / "a.jpg").read_bytes()[:5000])
    (root / "bomb.png").write_bytes(_bomb_png())
    (root / "readme.txt").write_text("not listed")
    return root, good, bad


def _hashes(root: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_mixed_folder(mixed, tmp_path):
    root, good, bad = mixed
    before = _hashes(root)
    calls = []
    with Catalog(tmp_path / "c.db") as cat:
        report = scan_folder(root, FakeFinder(), catalog=cat, progress=lambda d, t: calls.append((d, t)))
        assert report.listed == 8
        assert set(report.faces) == good and all(n == 1 for n in report.faces.values())
        assert {p for p, _ in report.errors} == bad
        messages = dict(report.errors)
        assert "empty" in messages[root / "empty.jpg"] and "truncated" in messages[root / "sub" / "cut.jpg"]
        assert "bomb" in messages[root / "bomb.png"]
        assert calls[-1] == (8, 8) and len(calls) == 8
        assert {r.path for r in cat.photos("done")} == good
        assert {r.path for r in cat.photos("error")} == bad
        assert cat.photo(root / "a.jpg").width == 512 and cat.photo(root / "sub" / "b.png").height == 300
        assert cat.photo(root / "a.jpg").detector == "fake"
        assert len(cat.faces(root / "d.tif")) == 1
        # exporting next to the originals changes none of them either
        photo = load_photo(root / "a.jpg")
        save_image(photo.rgb, root / "a_aged.jpg", exif=photo.exif)
    after = _hashes(root)
    assert {p: h for p, h in after.items() if p.name != "a_aged.jpg"} == before
    assert "scanned" in report.summary() and "4 errors" in report.summary()


def test_rescan_skips_unchanged(mixed, tmp_path):
    root, good, bad = mixed
    with Catalog(tmp_path / "c.db") as cat:
        scan_folder(root, FakeFinder(), catalog=cat)
        finder = FakeFinder()
        again = scan_folder(root, finder, catalog=cat)
        assert finder.seen == [] and set(again.skipped) == good | bad and again.errors == []
        # a changed file is scanned again, the rest skipped
        Image.new("RGB", (64, 32)).save(root / "d.tif")
        st = (root / "d.tif").stat()
        os.utime(root / "d.tif", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        third = scan_folder(root, finder, catalog=cat)
        assert set(third.faces) == {root / "d.tif"} and finder.seen == [(32, 64)]
        assert cat.photo(root / "d.tif").width == 64
        forced = scan_folder(root, FakeFinder(), catalog=cat, rescan=True)
        assert set(forced.faces) == good and {p for p, _ in forced.errors} == bad


def test_finder_failure_is_reported_and_scan_goes_on(mixed, tmp_path):
    root, good, _ = mixed
    with Catalog(tmp_path / "c.db") as cat:
        report = scan_folder(root, FakeFinder(fail_width=400), catalog=cat)  # c_really_png.jpg is 400 wide
        messages = dict(report.errors)
        assert "detector exploded" in messages[root / "c_really_png.jpg"]
        assert set(report.faces) == good - {root / "c_really_png.jpg"}
        assert cat.photo(root / "c_really_png.jpg").scan_state == "error"


def test_cancel_between_photos(mixed, tmp_path):
    root, _, _ = mixed
    finder = FakeFinder()
    with Catalog(tmp_path / "c.db") as cat:
        report = scan_folder(root, finder, catalog=cat, cancel=lambda: len(finder.seen) >= 2)
        assert report.cancelled and len(report.faces) == 2
        assert len(cat.photos("done")) == 2 and len(cat.photos()) == len(report.faces) + len(report.errors)
        resumed = scan_folder(root, FakeFinder(), catalog=cat)
        assert not resumed.cancelled and set(resumed.skipped) >= set(report.faces)
        assert len(cat.photos()) == 8


def test_without_catalog_and_unreadable_folder(mixed, monkeypatch):
    root, good, bad = mixed
    real = os.scandir

    def scandir(path="."):
        if Path(path) == root / "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(album.os, "scandir", scandir)
    report = scan_folder(root, FakeFinder())
    assert set(report.faces) == {p for p in good if p.parent == root}
    assert (root / "sub", "cannot read folder (Permission denied)") in report.errors
    empty = scan_paths([], FakeFinder())
    assert (empty.listed, empty.faces, empty.errors, empty.skipped, empty.cancelled) == (0, {}, [], [], False)


def test_vanished_file(tmp_path):
    report = scan_paths([tmp_path / "gone.jpg"], FakeFinder())
    assert report.errors and report.errors[0][0] == tmp_path / "gone.jpg"


def test_real_detector_on_rotated_astronaut(tmp_path, astronaut):
    from core.faces import FaceFinder

    root = tmp_path / "album"
    root.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned 90 CW; shown upright after a 90 CCW turn
    Image.fromarray(np.rot90(astronaut, k=-1).copy()).save(root / "turned.jpg", quality=92, exif=exif.tobytes())
    with Catalog(tmp_path / "c.db") as cat:
        report = scan_folder(root, FaceFinder(mode="fast"), catalog=cat)
        assert report.errors == [] and report.faces[root / "turned.jpg"] >= 1
        face = cat.faces(root / "turned.jpg")[0].face
        # the astronaut's face is around x 175..265, y 75..165 in the upright 512x512 picture
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        assert 180 < cx < 260 and 80 < cy < 170
        assert face.landmarks.shape == (68, 2)
        assert (face.landmarks[:, 0] > face.box[0] - 20).all() and (face.landmarks[:, 0] < face.box[2] + 20).all()
        assert cat.photo(root / "turned.jpg").detector == "fast"


def test_a_name_that_is_not_utf8_does_not_stop_the_scan(tmp_path, astronaut):
    root = tmp_path / "album"
    root.mkdir()
    names = [b"a_first.jpg", b"latin1_\xe9t\xe9.jpg", b"z_last.jpg"]
    for name in names:
        Image.fromarray(astronaut[:200, :200]).save(os.path.join(os.fsencode(root), name), format="JPEG")
    with Catalog(tmp_path / "c.db") as cat:
        report = scan_folder(root, FakeFinder(), catalog=cat)
        assert not report.errors and report.scanned == 3
        assert [os.path.basename(os.fsencode(p)) for p in report.faces] == names  # the last one too
        again = scan_folder(root, FakeFinder(), catalog=cat)
        assert again.scanned == 0 and len(again.skipped) == 3 and not again.errors
