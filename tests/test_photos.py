"""core.photos: orientation, pixel formats and every kind of bad file (all built in tmp_path)."""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from core import photos
from core.errors import PhotoError
from core.photos import SUPPORTED_EXTENSIONS, Photo, load_photo, load_preview, read_size

# What an EXIF orientation asks for, written from the EXIF specification (independently of Pillow):
# the upright picture as a function of the stored pixels.
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored horizontally
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1, :],  # mirrored vertically
    5: lambda a: a.transpose(1, 0, 2),  # mirror + rotate 270 CW = transpose
    6: lambda a: np.rot90(a, k=-1),  # rotate 90 CW
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # transverse
    8: lambda a: np.rot90(a, k=1),  # rotate 90 CCW
}


def _asymmetric(block: int = 1) -> np.ndarray:
    """A 2x3-cell picture with six distinct colours: every flip or rotation of it is different."""
    colours = np.array(
        [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255, 255, 0], [0, 255, 255], [255, 0, 255]]], np.uint8
    )
    return np.repeat(np.repeat(colours, block, axis=0), block, axis=1)


def _save_with_orientation(arr: np.ndarray, path: Path, orientation: int, **kw) -> None:
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"  # Make: something to find again in Photo.exif
    im.save(path, exif=exif.tobytes(), **kw)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_png_orientation_exact(tmp_path, orientation):
    raw = _asymmetric()
    p = tmp_path / f"o{orientation}.png"
    _save_with_orientation(raw, p, orientation)
    photo = load_photo(p)
    expected = UPRIGHT[orientation](raw)
    assert photo.rgb.shape == expected.shape
    np.testing.assert_array_equal(photo.rgb, expected)
    assert (photo.width, photo.height) == (expected.shape[1], expected.shape[0])
    assert read_size(p) == (expected.shape[1], expected.shape[0])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_orientation(tmp_path, orientation):
    block = 16
    raw = _asymmetric(block)
    p = tmp_path / f"o{orientation}.jpg"
    _save_with_orientation(raw, p, orientation, quality=95)
    photo = load_photo(p)
    expected = UPRIGHT[orientation](raw)
    assert photo.rgb.shape == expected.shape
    # compare the centre of every 16x16 cell (JPEG is lossy at colour edges)
    for y in range(block // 2, expected.shape[0], block):
        for x in range(block // 2, expected.shape[1], block):
            assert np.abs(photo.rgb[y, x].astype(int) - expected[y, x]).max() < 40, (y, x)
    assert photo.exif is not None and b"TestCam" in photo.exif
    assert photo.rgb.dtype == np.uint8 and photo.rgb.flags.c_contiguous and photo.rgb.flags.writeable


def test_load_returns_photo_and_keeps_original(tmp_path, astronaut):
    p = tmp_path / "a.jpg"
    Image.fromarray(astronaut).save(p, quality=90)
    before = _sha(p)
    photo = load_photo(p)
    assert isinstance(photo, Photo) and photo.path == p
    assert photo.rgb.shape == (512, 512, 3)
    assert np.abs(photo.rgb.astype(int) - astronaut).mean() < 4
    assert photo.exif is None
    assert _sha(p) == before


def test_zero_bytes(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(PhotoError, match="empty") as ei:
        load_photo(p)
    assert ei.value.path == p and str(p) in str(ei.value)


def test_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "cut.jpg"
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(p, quality=90)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(PhotoError, match="truncated") as ei:
        load_photo(p)
    assert ei.value.path == p


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(1)
    p = tmp_path / "cut.png"
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:2000])
    with pytest.raises(PhotoError) as ei:
        load_photo(p)
    assert ei.value.path == p


def test_wrong_extension_decoded_by_content(tmp_path):
    raw = _asymmetric(4)
    p = tmp_path / "really_a_png.jpg"
    Image.fromarray(raw).save(p, format="PNG")
    np.testing.assert_array_equal(load_photo(p).rgb, raw)


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\n" * 20)
    with pytest.raises(PhotoError, match="not a recognised image") as ei:
        load_photo(p)
    assert ei.value.path == p


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (the data is a few bytes): a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_huge(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_claiming(100_000, 100_000))
    with pytest.raises(PhotoError) as ei:
        load_photo(p)
    assert ei.value.path == p and "bomb" in ei.value.reason


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_limit_checked_from_header(tmp_path, monkeypatch):
    # 12000 x 12000 = 144 MP: under Pillow's own hard limit, so this is our check, before any decoding.
    p = tmp_path / "big.png"
    p.write_bytes(_png_claiming(12_000, 12_000))
    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self, *a: loads.append(1))
    with pytest.raises(PhotoError, match="over the limit"):
        load_photo(p, max_pixels=100_000_000)
    assert loads == []  # refused from the header: nothing was decoded


def test_pixel_limit_small_image(tmp_path):
    p = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(p)
    with pytest.raises(PhotoError, match="limit"):
        load_photo(p, max_pixels=5000)
    assert load_photo(p, max_pixels=10_000).rgb.shape == (100, 100, 3)


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(p, quality=95)  # pure red in CMYK
    rgb = load_photo(p).rgb
    assert rgb.shape == (32, 32, 3)
    assert rgb[16, 16, 0] > 230 and rgb[16, 16, 1] < 30 and rgb[16, 16, 2] < 30


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_gray(tmp_path, ext):
    g = np.array([[0, 32768, 65535, 257 * 100]], np.uint16).repeat(4, axis=0)
    p = tmp_path / f"g16{ext}"
    Image.fromarray(g).save(p)
    assert Image.open(p).mode.startswith("I;16")
    rgb = load_photo(p).rgb
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 128, 255, 100])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_rgb(tmp_path, ext):
    rgb16 = np.zeros((4, 4, 3), np.uint16)
    rgb16[..., 0] = 65535  # red, written in RGB order (cv2 wants BGR)
    rgb16[..., 2] = 257 * 64
    p = tmp_path / f"c16{ext}"
    assert cv2.imwrite(str(p), rgb16[..., ::-1].copy())
    rgb = load_photo(p).rgb
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], [255, 0, 64])


def test_int32_and_float_tiff(tmp_path):
    p = tmp_path / "i.tif"
    Image.fromarray(np.array([[0, 65535]], np.int32)).save(p)
    assert Image.open(p).mode == "I"
    np.testing.assert_array_equal(load_photo(p).rgb[0, :, 1], [0, 255])
    q = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(q)
    assert Image.open(q).mode == "F"
    np.testing.assert_array_equal(load_photo(q).rgb[0, :, 0], [0, 128, 255])


def test_grayscale_and_bilevel(tmp_path):
    p = tmp_path / "g.png"
    Image.fromarray(np.array([[10, 200]], np.uint8)).save(p)
    rgb = load_photo(p).rgb
    assert rgb.shape == (1, 2, 3)
    np.testing.assert_array_equal(rgb[0], [[10, 10, 10], [200, 200, 200]])
    b = tmp_path / "b.bmp"
    Image.new("1", (3, 2), 1).save(b)
    assert (load_photo(b).rgb == 255).all()


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = [255, 0, 0, 255]  # opaque red
    a[0, 1] = [255, 0, 0, 0]  # fully transparent
    a[1, 0] = [0, 0, 0, 128]  # half-transparent black
    a[1, 1] = [0, 0, 255, 255]
    p = tmp_path / "rgba.png"
    Image.fromarray(a, "RGBA").save(p)
    rgb = load_photo(p).rgb
    np.testing.assert_array_equal(rgb[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(rgb[0, 1], [255, 255, 255])
    assert np.abs(rgb[1, 0].astype(int) - 127).max() <= 1
    np.testing.assert_array_equal(rgb[1, 1], [0, 0, 255])


def test_palette_with_transparency_and_webp(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    im.putpixel((0, 0), 0)
    im.putpixel((1, 0), 1)
    p = tmp_path / "p.png"
    im.save(p, transparency=0)
    np.testing.assert_array_equal(load_photo(p).rgb[0], [[255, 255, 255], [0, 255, 0]])
    w = tmp_path / "x.webp"
    Image.fromarray(_asymmetric(8)).save(w, lossless=True)
    np.testing.assert_array_equal(load_photo(w).rgb, _asymmetric(8))


def test_heic(tmp_path):
    pytest.importorskip("pillow_heif")
    photos._register_heif()
    p = tmp_path / "x.heic"
    try:
        Image.new("RGB", (64, 48), (200, 30, 30)).save(p)
    except (KeyError, OSError) as exc:  # a pillow-heif build without an HEVC encoder
        pytest.skip(f"cannot write HEIC here: {exc}")
    rgb = load_photo(p).rgb
    assert rgb.shape == (48, 64, 3)
    assert np.abs(rgb[24, 32].astype(int) - [200, 30, 30]).max() < 25
    # orientation: libheif applies it and pillow-heif resets the tag; it must not be applied twice
    a = np.zeros((48, 64, 3), np.uint8)
    a[:16, :16] = 255  # white top-left
    exif = Image.Exif()
    exif[0x0112] = 6
    q = tmp_path / "turned.heic"
    Image.fromarray(a).save(q, exif=exif.tobytes(), quality=95)
    rgb = load_photo(q).rgb
    assert rgb.shape == (64, 48, 3)
    assert rgb[:16, -16:].mean() > 200 and rgb[:16, :16].mean() < 50  # turned 90 CW: now top-right


def test_heic_without_pillow_heif(tmp_path, monkeypatch):
    monkeypatch.setattr(photos, "_heif_state", None)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import fails
    p = tmp_path / "phone.heic"
    p.write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 200)  # not decodable without the plugin
    with pytest.raises(PhotoError, match="pillow-heif") as ei:
        load_photo(p)
    assert ei.value.path == p


def test_missing_directory_and_unreadable(tmp_path, monkeypatch):
    with pytest.raises(PhotoError, match="not found"):
        load_photo(tmp_path / "nope.jpg")
    d = tmp_path / "folder.jpg"
    d.mkdir()
    with pytest.raises(PhotoError, match="not a regular file"):
        load_photo(d)
    p = tmp_path / "locked.jpg"
    Image.new("RGB", (4, 4)).save(p)

    def deny(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(photos, "open", deny, raising=False)  # tests run as root: chmod would not block
    with pytest.raises(PhotoError, match="permission denied") as ei:
        load_photo(p)
    assert ei.value.path == p


def test_opened_read_only(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(p)
    modes = []
    real_open = open

    def spy(file, mode="r", *a, **k):
        modes.append(mode)
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(photos, "open", spy, raising=False)
    load_photo(p)
    read_size(p)
    load_preview(p, 4)
    assert modes and all(m == "rb" for m in modes)


def test_load_preview(tmp_path, astronaut):
    big = cv2.resize(astronaut, (2048, 1536))
    p = tmp_path / "big.jpg"
    _save_with_orientation(big, p, 6, quality=90)  # stored landscape, shown portrait
    prev = load_preview(p, 256)
    assert prev.shape == (256, 192, 3)
    full = load_photo(p).rgb
    small = cv2.resize(full, (192, 256), interpolation=cv2.INTER_AREA)
    assert np.abs(prev.astype(int) - small).mean() < 6
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (30, 20), (9, 9, 9)).save(tiny)
    assert load_preview(tiny, 256).shape == (20, 30, 3)  # never upscaled


def test_supported_extensions():
    for ext in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif"):
        assert ext in SUPPORTED_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in SUPPORTED_EXTENSIONS)
    assert photos.is_supported("X.JPG") and not photos.is_supported("notes.txt")


# ------------------------------------------------------------------------------------ issue 12

def test_one_pixel_limit_in_our_own_words(tmp_path):
    """196 MP is under our 200 MP limit, though over Pillow's own (179 MP): Pillow's check is not ours."""
    assert photos.DEFAULT_MAX_PIXELS == 200_000_000
    under = tmp_path / "196mp.png"
    under.write_bytes(_png_claiming(14_000, 14_000))  # the header only: its data is a few bytes
    assert read_size(under) == (14_000, 14_000)
    with pytest.raises(PhotoError) as ei:
        load_photo(under)
    assert "178956970" not in ei.value.reason and "limit" not in ei.value.reason  # truncated, not too big
    over = tmp_path / "201mp.png"
    over.write_bytes(_png_claiming(15_000, 13_400))
    with pytest.raises(PhotoError) as ei:
        load_photo(over)
    assert ei.value.reason == ("image is 15000x13400 = 201 MP, over the limit of 200 MP "
                               "(refused as a possible decompression bomb)")


def _jpeg_bytes(rgb: np.ndarray, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_lacking_only_its_end_marker_opens_with_a_warning(tmp_path, astronaut, caplog, progressive):
    data = _jpeg_bytes(astronaut, progressive=progressive)
    assert data.endswith(b"\xff\xd9")
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(data)
    expected = load_photo(whole).rgb
    for name, cut in (("no_end.jpg", data[:-2]), ("half_end.jpg", data[:-1])):
        p = tmp_path / name
        p.write_bytes(cut)
        caplog.clear()
        with caplog.at_level("WARNING", logger="core.photos"):
            np.testing.assert_array_equal(load_photo(p).rgb, expected)
            assert load_preview(p, 64).shape[:2] == (64, 64)
        assert any(str(p) in r.getMessage() and "end marker" in r.getMessage() for r in caplog.records)
        assert p.read_bytes() == cut  # never written
    for name, cut in (("minus3.jpg", data[:-3]), ("90pc.jpg", data[: len(data) * 9 // 10])):
        p = tmp_path / name  # picture data missing too: refused, as before
        p.write_bytes(cut)
        with pytest.raises(PhotoError, match="truncated"):
            load_photo(p)


def _damaged_exif(orientation: int = 6) -> bytes:
    """EXIF whose Make entry claims more bytes than the block holds; Orientation is intact."""
    exif = Image.Exif()
    exif[0x010F] = "TestCameraMaker"
    exif[0x0112] = orientation
    raw = bytearray(exif.tobytes())
    order = ">" if raw[6:8] == b"MM" else "<"
    first = 6 + struct.unpack_from(order + "I", raw, 10)[0] + 2  # the first entry of IFD0
    assert struct.unpack_from(order + "H", raw, first)[0] == 0x010F
    struct.pack_into(order + "I", raw, first + 4, 5000)  # its count
    return bytes(raw)


@pytest.mark.filterwarnings("ignore:Tag data larger than file")  # pytest records what our filter keeps off stderr
def test_damaged_exif_is_logged_not_warned_and_its_orientation_still_applies(tmp_path, caplog):
    raw = _asymmetric(8)
    p = tmp_path / "damaged_exif.jpg"
    Image.fromarray(raw).save(p, quality=95, exif=_damaged_exif(6))
    with caplog.at_level("INFO", logger="core.photos"):
        photo = load_photo(p)
    assert photo.rgb.shape == (raw.shape[1], raw.shape[0], 3)  # rotated: orientation 6 was read
    notes = [r for r in caplog.records if r.name == "core.photos" and "EXIF" in r.getMessage()]
    assert notes and str(p) in notes[0].getMessage() and notes[0].levelname == "INFO"
    import subprocess

    code = f"from core.photos import load_photo; load_photo({str(p)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and done.stderr == ""  # Pillow's "corrupt EXIF" warning stays off stderr
