"""A corpus of bad and unusual files, generated for the scan tests (test_corpus.py); only this generator
is committed. This module holds no tests itself.

``make_corpus(root, portrait)`` writes, under ``root``:

- ``good``: files every scan must read (decode and search for faces): every EXIF orientation, CMYK,
  16-bit, float and 32-bit TIFF, palette, transparency, bilevel, animated and multi-page files, a
  progressive JPEG, one lacking only its end marker, content that is not what its extension says, a
  damaged EXIF block, 20000 x 8 and 8 x 20000 pixel strips, a 1-pixel image, and file names a scan
  meets in real folders (bytes that are not UTF-8, newline, tab, terminal escapes, right-to-left
  override, emoji, a leading dash, quotes, a backslash, 240 characters), a photo behind a symbolic
  link, one in a folder named like a photo, one nine folders deep;
- ``bad``: files named like photos that every scan must report, by name: empty, text, HTML, random
  bytes, truncated JPEG/PNG/WebP/TIFF, a broken PNG checksum, headers only, decompression bombs (a
  100,000-pixel-square PNG and BMP, 201 MP), a 196 MP header without its data, a zero-size PNG;
- ``ignored``: entries that are not photos and must neither be listed nor stop the walk: other file
  types, hidden files, NAS and macOS litter, a dangling link, a FIFO (opening it would block for
  ever), and a symbolic link loop.

A file made unreadable (mode 000) is good when the tests run as root (root reads it anyway), else bad.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ORIENTATION, MAKE = 0x0112, 0x010F


@dataclass
class Corpus:
    root: Path
    good: list[Path] = field(default_factory=list)
    bad: list[Path] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)

    def originals(self) -> dict[bytes, bytes]:
        """{path bytes: content} of every regular file that can be read (FIFOs and links skipped)."""
        out = {}
        for dirpath, _dirs, files in os.walk(os.fsencode(self.root)):  # does not follow the link loop
            for name in files:
                p = os.path.join(dirpath, name)
                if os.path.islink(p) or not stat.S_ISREG(os.lstat(p).st_mode) or not os.access(p, os.R_OK):
                    continue
                with open(p, "rb") as fh:
                    out[p] = fh.read()
        return out


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int, color_type: int = 2) -> bytes:
    """A PNG whose header claims width x height, with a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")


def _bmp_claiming(width: int, height: int) -> bytes:
    header = struct.pack("<2sIHHI", b"BM", 54 + 16, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 16, 2835, 2835, 0, 0)
    return header + info + b"\0" * 16


def _encode(rgb: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **kw)
    return buf.getvalue()


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "CorpusCam"
    return exif.tobytes()


def _damaged_exif() -> bytes:
    """Orientation 6 intact; the Make entry claims 5000 bytes the block does not hold."""
    raw = bytearray(_exif(6))
    order = ">" if raw[6:8] == b"MM" else "<"
    first = 6 + struct.unpack_from(order + "I", raw, 10)[0] + 2
    count = struct.unpack_from(order + "H", raw, first - 2)[0]
    for i in range(count):
        entry = first + 12 * i
        if struct.unpack_from(order + "H", raw, entry)[0] == MAKE:
            struct.pack_into(order + "I", raw, entry + 4, 5000)
    return bytes(raw)


def make_corpus(root: Path, portrait: np.ndarray) -> Corpus:
    """Write the corpus under ``root`` (see the module doc); ``portrait`` is an RGB photo with a face."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    c = Corpus(root)
    face = np.ascontiguousarray(cv2.resize(portrait, (256, 256), interpolation=cv2.INTER_AREA))
    small = np.ascontiguousarray(face[::4, ::4])
    rng = np.random.default_rng(12)

    def put(kind: list[Path], name: str | bytes, data: bytes) -> Path:
        path = os.path.join(os.fsencode(root), os.fsencode(name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
        p = Path(os.fsdecode(path))
        kind.append(p)
        return p

    def good(name, data):
        return put(c.good, name, data)

    def bad(name, data):
        return put(c.bad, name, data)

    jpeg = _encode(face, "JPEG", quality=90)

    # -- good: pixels and formats
    for o in range(1, 9):
        good(f"orientation_{o}.jpg", _encode(face, "JPEG", quality=90, exif=_exif(o)))
    good("orientation_invalid.jpg", _encode(face, "JPEG", exif=_exif(9)))
    good("damaged_exif.jpg", _encode(face, "JPEG", exif=_damaged_exif()))
    cmyk = Image.fromarray(face).convert("CMYK")
    for name, fmt in (("cmyk.jpg", "JPEG"), ("cmyk.tif", "TIFF")):
        buf = io.BytesIO()
        cmyk.save(buf, fmt)
        good(name, buf.getvalue())
    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    good("gray16.png", _encode((gray.astype(np.uint16) * 257), "PNG"))
    good("rgb16.png", cv2.imencode(".png", face[..., ::-1].astype(np.uint16) * 257)[1].tobytes())
    good("gray16.tif", cv2.imencode(".tif", gray.astype(np.uint16) * 257)[1].tobytes())
    good("float.tif", _encode(gray.astype(np.float32) / 255.0, "TIFF"))
    good("int32.tif", _encode(gray.astype(np.int32) * 200, "TIFF"))
    good("gray.jpg", _encode(gray, "JPEG"))
    good("bilevel.bmp", _encode_pil(Image.fromarray(gray).convert("1"), "BMP"))
    good("palette.png", _encode_pil(Image.fromarray(face).convert("P"), "PNG"))
    pal = Image.fromarray(face).convert("P")
    good("palette_transparent.png", _encode_pil(pal, "PNG", transparency=0))
    rgba = np.dstack([face, np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))])
    good("rgba.png", _encode(rgba, "PNG"))
    good("la.png", _encode(np.dstack([gray, np.full_like(gray, 128)]), "PNG"))
    good("plain.bmp", _encode(face, "BMP"))
    good("lossless.webp", _encode(face, "WEBP", lossless=True))
    frames = [Image.fromarray(face), Image.fromarray(face[::-1].copy())]
    good("animated.webp", _encode_pil(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100))
    good("multipage.tif", _encode_pil(frames[0], "TIFF", save_all=True, append_images=frames[1:]))
    good("progressive.jpg", _encode(face, "JPEG", quality=90, progressive=True))
    good("no_end_marker.jpg", jpeg[:-2])  # only its end marker is missing: read, with a warning
    good("png_inside.jpg", _encode(face, "PNG"))
    good("gif_inside.png", _encode_pil(Image.fromarray(face).convert("P"), "GIF"))
    good("UPPER CASE.JPEG", jpeg)
    good("panorama_20000x8.png", _encode(np.full((8, 20000, 3), 120, np.uint8), "PNG"))
    good("tower_8x20000.png", _encode(np.full((20000, 8, 3), 120, np.uint8), "PNG"))
    good("one_pixel.png", _encode(np.full((1, 1, 3), 200, np.uint8), "PNG"))
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        good("photo.heic", _encode(face, "HEIF"))
    except Exception:  # no HEIF encoder in this pillow-heif build: the format is tested in test_photos
        pass

    # -- good: names and places
    small_jpeg = _encode(small, "JPEG")
    for name in (b"latin1_\xe9t\xe9.jpg", b"not_utf8_\xff\xfe.png", "two\nlines.jpg", "tab\there.jpg",
                 "escape_\x1b[31mred.jpg", "rtl_\u202egpj.jpg", "emoji_\U0001f600_e\u0301.jpg", "-starts-with-dash.jpg",
                 "it's \"quoted\" & $HOME.jpg", "back\\slash.jpg", "x" * 236 + ".jpg"):
        data = _encode(small, "PNG") if os.fsencode(name).endswith(b".png") else small_jpeg
        good(name, data)
    good("folder.jpg/inside.jpg", small_jpeg)
    good("deep/1/2/3/4/5/6/7/8/deep.jpg", small_jpeg)
    link = root / "link_to_a_photo.jpg"
    link.symlink_to(root / "orientation_1.jpg")
    c.good.append(link)
    locked = put(c.good, "unreadable.jpg", small_jpeg)
    locked.chmod(0)
    if not os.access(locked, os.R_OK):  # not root: it cannot be read, and must be reported
        c.good.remove(locked)
        c.bad.append(locked)

    # -- bad
    for name in ("empty.jpg", "empty.png", "empty.heic", b"empty_\xff.jpg"):
        bad(name, b"")
    bad("text.jpg", b"this is not a photo\n" * 20)
    bad("html.png", b"<!doctype html><html><body>404 Not Found</body></html>\n")
    bad("random.tif", rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    bad("random.webp", rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    bad("fake.heic", b"\0\0\0\x18ftypheic" + rng.integers(0, 256, 400, dtype=np.uint8).tobytes())
    bad("half.jpg", jpeg[: len(jpeg) // 2])
    bad("header_only.jpg", jpeg[:200])
    bad("soi_eoi.jpg", b"\xff\xd8\xff\xd9")
    progressive = _encode(face, "JPEG", quality=90, progressive=True)
    bad("half_progressive.jpg", progressive[: len(progressive) // 2])
    png = _encode(face, "PNG")
    bad("half.png", png[: len(png) // 2])
    bad("signature_only.png", png[:8])
    broken = bytearray(png)
    broken[len(png) // 2] ^= 0xFF
    bad("bad_checksum.png", bytes(broken))
    webp = _encode(face, "WEBP")
    bad("half.webp", webp[: len(webp) // 2])
    tif = _encode(face, "TIFF")
    bad("half.tif", tif[: len(tif) // 3])
    bad("bomb_100000x100000.png", png_claiming(100_000, 100_000))
    bad("bomb_201mp.png", png_claiming(15_000, 13_400))
    bad("header_196mp.png", png_claiming(14_000, 14_000, color_type=0))  # under the limit, but no data
    bad("bomb.bmp", _bmp_claiming(100_000, 100_000))
    bad("zero_size.png", png_claiming(0, 0))

    # -- ignored: not photos
    for name, data in (("notes.txt", b"hello"), ("movie.mp4", b"\0\0\0\x18ftypmp42"), (".hidden.jpg", small_jpeg),
                       ("._resource_fork.jpg", b"\0\5\x16\7"), ("Thumbs.db", b"\0" * 10),
                       ("@eaDir/SYNOFILE_THUMB.jpg", small_jpeg), ("__MACOSX/x.jpg", small_jpeg)):
        put(c.ignored, name, data)
    dangling = root / "dangling.jpg"
    dangling.symlink_to(root / "no such file.jpg")
    loop = root / "deep" / "loop"
    loop.symlink_to(root)
    fifo = root / "fifo.jpg"
    os.mkfifo(fifo)
    c.ignored += [dangling, loop, fifo]
    return c


def _encode_pil(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()
