"""core.export: metadata, atomic no-overwrite writes, strips, GIF and MP4."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import export
from core.errors import ExportError
from core.export import GENERATED_NOTE, make_strip, save_gif, save_image, save_mp4, unique_path
from core.photos import load_photo
from core.text import ascii_text

ORIENTATION, MAKE, DESCRIPTION, SOFTWARE, EXIF_IFD, GPS_IFD = 0x0112, 0x010F, 0x010E, 0x0131, 0x8769, 0x8825
DATETIME_ORIGINAL = 0x9003


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name or p.name.startswith("."))


@pytest.fixture()
def original(tmp_path, astronaut) -> Path:
    """A camera-like JPEG: Orientation 6, Make, DateTimeOriginal (Exif IFD) and GPS."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[MAKE] = "TestCam"
    exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = "2001:02:03 04:05:06"
    exif.get_ifd(GPS_IFD)[1] = "N"  # GPSLatitudeRef
    p = tmp_path / "orig.jpg"
    Image.fromarray(astronaut).save(p, quality=90, exif=exif.tobytes())
    p.chmod(0o444)
    return p


def test_jpeg_keeps_exif_minus_orientation_and_adds_note(tmp_path, original):
    before = _sha(original)
    photo = load_photo(original)
    out = save_image(photo.rgb, tmp_path / "aged.jpg", exif=photo.exif)
    assert out == tmp_path / "aged.jpg"
    assert _sha(original) == before  # the original is never written
    with Image.open(out) as im:
        exif = im.getexif()
        assert ORIENTATION not in exif
        assert exif[MAKE] == "TestCam"
        assert exif[DESCRIPTION] == ascii_text(GENERATED_NOTE)
        assert exif[SOFTWARE].startswith("Agelapse")
        assert exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] == "2001:02:03 04:05:06"
        assert exif.get_ifd(GPS_IFD)[1] == "N"
        xmp = im.info["xmp"]
        assert b"<xmp:CreatorTool>Agelapse" in xmp and b"dc:description" in xmp
        assert b"aged or rejuvenated" in xmp
        assert im.size == (photo.width, photo.height)
    # re-loading the export gives the same upright picture (no orientation applied twice)
    again = load_photo(out).rgb
    assert again.shape == photo.rgb.shape
    assert np.abs(again.astype(int) - photo.rgb).mean() < 3


def test_png_and_webp(tmp_path, astronaut):
    exif = Image.Exif()
    exif[ORIENTATION] = 3
    exif[MAKE] = "PngCam"
    p = save_image(astronaut, tmp_path / "a.png", exif=exif.tobytes(), note="Custom note, d\u00e9j\u00e0 vu")
    with Image.open(p) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), astronaut)
        assert im.info["Description"] == "Custom note, d\u00e9j\u00e0 vu"
        assert "Agelapse" in im.info["XML:com.adobe.xmp"]
        e = im.getexif()
        assert ORIENTATION not in e and e[MAKE] == "PngCam" and e[DESCRIPTION] == "Custom note, deja vu"
    w = save_image(astronaut, tmp_path / "a.webp", quality=80)
    with Image.open(w) as im:
        assert im.format == "WEBP" and im.size == (512, 512)
        assert im.getexif()[DESCRIPTION] == ascii_text(GENERATED_NOTE)
    with pytest.raises(ExportError, match="unsupported"):
        save_image(astronaut, tmp_path / "a.bmp")
    with pytest.raises(ExportError, match="folder"):
        save_image(astronaut, tmp_path / "missing" / "a.jpg")
    with pytest.raises(ExportError):
        save_image(astronaut.astype(np.float32), tmp_path / "f.jpg")
    assert _leftovers(tmp_path) == []


def test_refuses_to_overwrite(tmp_path, astronaut):
    target = tmp_path / "x.jpg"
    target.write_bytes(b"precious")
    with pytest.raises(ExportError, match="exists"):
        save_image(astronaut, target)
    assert target.read_bytes() == b"precious"
    assert _leftovers(tmp_path) == []
    save_image(astronaut, target, overwrite=True)
    assert Image.open(target).size == (512, 512)
    assert _leftovers(tmp_path) == []


def test_race_target_appears_during_write(tmp_path, astronaut, monkeypatch):
    target = tmp_path / "race.png"
    real_save = Image.Image.save

    def save_and_race(self, fp, *a, **k):
        target.write_bytes(b"someone else's file")  # appears after the early check
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", save_and_race)
    with pytest.raises(ExportError, match="exists"):
        save_image(astronaut, target)
    assert target.read_bytes() == b"someone else's file"
    assert _leftovers(tmp_path) == []


def test_no_hard_links_fallback(tmp_path, astronaut, monkeypatch):
    def no_link(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(export.os, "link", no_link)
    p = save_image(astronaut, tmp_path / "n.png")
    np.testing.assert_array_equal(np.asarray(Image.open(p)), astronaut)
    with pytest.raises(ExportError, match="exists"):
        save_image(astronaut[::2], p)
    np.testing.assert_array_equal(np.asarray(Image.open(p)), astronaut)
    assert _leftovers(tmp_path) == []


def test_failed_write_leaves_nothing(tmp_path, astronaut, monkeypatch):
    def disk_full(self, fp, *a, **k):
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(ExportError, match="the disk is full"):
        save_image(astronaut, tmp_path / "full.jpg")
    assert list(tmp_path.iterdir()) == []


def test_unique_path(tmp_path):
    p = tmp_path / "a.jpg"
    assert unique_path(p) == p
    p.write_bytes(b"1")
    assert unique_path(p) == tmp_path / "a (2).jpg"
    (tmp_path / "a (2).jpg").write_bytes(b"2")
    assert unique_path(p) == tmp_path / "a (3).jpg"


def test_make_strip_row_grid_labels():
    a = np.full((100, 80, 3), 10, np.uint8)
    b = np.full((60, 80, 3), 200, np.uint8)
    row = make_strip([a, b, a], gap=4)
    assert row.shape == (100 + 8, 3 * 80 + 4 * 4, 3)
    assert (row[4:104, 4:84] == 10).all() and (row[:4] == 255).all()
    assert (row[24:84, 88:168] == 200).all() and (row[4:24, 88:168] == 255).all()  # centred vertically
    grid = make_strip([a, b, a, b, a], columns=2, gap=2, background=(0, 0, 0))
    assert grid.shape == (3 * 100 + 4 * 2, 2 * 80 + 3 * 2, 3)
    assert (grid[-2:] == 0).all()
    big = np.full((256, 256, 3), 128, np.uint8)
    lab = make_strip([big, big], ["20\u201329", "70+"], gap=4)
    band = lab[4 + 256 : -4, 4 : 4 + 256]
    assert lab.shape[0] > 256 + 8 + 14
    ink_rows = np.where((band < 100).any(axis=(1, 2)))[0]
    assert ink_rows.size >= 10  # text of a readable height, inside the band under the cell
    ink_cols = np.where((band < 100).any(axis=(0, 2)))[0]
    assert 30 < ink_cols.max() - ink_cols.min() < 250
    with pytest.raises(ExportError):
        make_strip([a, b], ["only one"])


def _frames(n=5, h=33, w=47):
    out = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, : (i + 1) * w // n] = (40 * i, 255 - 40 * i, 90)
        out.append(f)
    return out


def test_gif(tmp_path):
    p = save_gif(_frames(), tmp_path / "a.gif", fps=10)
    with Image.open(p) as im:
        assert im.n_frames == 5 and im.size == (47, 33)
        assert im.info["loop"] == 0 and im.info["duration"] == 100
    once = save_gif(_frames(3), tmp_path / "once.gif", loop=False)
    with Image.open(once) as im:
        assert im.n_frames == 3 and "loop" not in im.info
    before = _sha(p)
    with pytest.raises(ExportError, match="exists"):
        save_gif(_frames(2), p)
    assert _sha(p) == before
    with pytest.raises(ExportError, match="frame 1"):
        save_gif([_frames()[0], np.zeros((10, 10, 3), np.uint8)], tmp_path / "bad.gif")
    assert not (tmp_path / "bad.gif").exists() and _leftovers(tmp_path) == []


def test_mp4(tmp_path):
    import imageio_ffmpeg

    frames = _frames(7, h=33, w=47)  # odd sizes: padded to even for yuv420p
    p = save_mp4(frames, tmp_path / "a.mp4", fps=8)
    reader = imageio_ffmpeg.read_frames(str(p))
    meta = reader.__next__()
    assert tuple(meta["size"]) == (48, 34)
    got = [np.frombuffer(f, np.uint8).reshape(34, 48, 3) for f in reader]
    assert len(got) == 7
    assert abs(int(got[6][16, 40, 1]) - 15) < 30 and abs(int(got[0][16, 40, 1])) < 30
    before = _sha(p)
    with pytest.raises(ExportError, match="exists"):
        save_mp4(frames, p)
    assert _sha(p) == before and _leftovers(tmp_path) == []


def test_mp4_without_ffmpeg(tmp_path, monkeypatch):
    import imageio_ffmpeg

    def missing():
        raise RuntimeError("No ffmpeg exe could be found.")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", missing)
    with pytest.raises(ExportError, match="ffmpeg"):
        save_mp4(_frames(), tmp_path / "a.mp4")
    assert list(tmp_path.iterdir()) == []


def test_large_mp4_frames(tmp_path):
    big = [np.full((2001, 3001, 3), v, np.uint8) for v in (0, 128)]
    p = save_mp4(big, tmp_path / "big.mp4", fps=2)
    assert p.stat().st_size > 0
    assert os.path.getsize(p) < 5_000_000
