"""Read photo files into upright 8-bit RGB arrays; the original file is only ever opened read-only.

`load_photo(path)` decodes JPEG, PNG, TIFF, BMP, WebP and HEIC/HEIF (through pillow-heif, registered the
first time a photo is loaded) and returns a `Photo`: the pixels as a C-contiguous uint8 (H, W, 3) array with
the EXIF orientation already applied, plus the original EXIF bytes (kept for export).

Pixel formats are normalised to 8-bit RGB:
- grayscale, bilevel, palette, CMYK (through its embedded ICC profile when there is one), YCbCr, LAB -> RGB;
- 16-bit grayscale (``I;16*``) is scaled by 255/65535; 32-bit integer (``I``) likewise when its values exceed
  255, else taken as 8-bit; float (``F``) is taken as [0, 1] when it lies there, else stretched min..max;
  16-bit RGB files are reduced to 8 bits by Pillow itself;
- transparency (RGBA, LA, palette with a transparent colour, ...) is composited onto white.

Multi-page files (TIFF pages, animated WebP) give their first frame.

Refusals are always `PhotoError(path, reason)` naming the file: missing, not a file, empty, unreadable
(permissions), unrecognised content, truncated or corrupt data, or more pixels than ``max_pixels`` (checked
from the header before any pixel is decoded, so a decompression bomb costs nothing). That is the one pixel
limit: ``DEFAULT_MAX_PIXELS``, 200 megapixels, said in our words; Pillow's own bomb check (a different
limit, 179 MP, and its own text) is switched off for that reason (``Image.MAX_IMAGE_PIXELS = None``).

A JPEG that lacks only its end marker (cameras and phones leave such files after an interrupted transfer)
is opened, with a warning in the log; one whose picture data is cut short is refused as truncated. A damaged
EXIF block is no reason to refuse a photo: Pillow's warnings about it are kept off stderr, and the log says
(at INFO) which photo has one; the readable part of the block is used.

Files are decoded by their content, not by their extension: a ``.jpg`` that really holds a PNG loads (and a
debug message notes the mismatch). A text file named ``.jpg`` is refused as "not a recognised image".
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from core.errors import PhotoError

log = logging.getLogger(__name__)

#: Lower-case file extensions the album lists and `load_photo` is meant for.
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif"}
)
HEIF_EXTENSIONS: frozenset[str] = frozenset({".heic", ".heif"})

#: Default pixel limit: 200 megapixels (a 600 MB RGB array). Medium-format cameras reach ~150 MP.
DEFAULT_MAX_PIXELS = 200_000_000

_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}

# Our own pixel limit (max_pixels) is checked from the header of every photo before decoding: Pillow's check,
# with another limit and its own words, would only get in its way.
Image.MAX_IMAGE_PIXELS = None
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Pillow warns (on stderr) about damaged EXIF/TIFF metadata; _orientation logs which photo has such a block.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")

_JPEG_END = b"\xff\xd9"

_heif_lock = threading.Lock()
_heif_state: str | None = None  # None: not tried yet; "ok"; or the reason it is unavailable


def _register_heif() -> str:
    """Register pillow-heif's opener once (lazily: importing it costs time at start-up). Returns "ok" or why not."""
    global _heif_state
    with _heif_lock:
        if _heif_state is None:
            try:
                import pillow_heif

                pillow_heif.register_heif_opener()
                _heif_state = "ok"
            except Exception as exc:  # ImportError, or a broken native library
                _heif_state = f"HEIC/HEIF support needs the pillow-heif package ({exc})"
                log.warning("HEIC/HEIF photos cannot be read: %s", _heif_state)
        return _heif_state


@dataclass
class Photo:
    """A decoded photo: upright uint8 RGB pixels (H, W, 3) and the original EXIF block (or None)."""

    path: Path
    rgb: np.ndarray
    exif: bytes | None = None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise PhotoError(path, "file not found") from None
    except PermissionError:
        raise PhotoError(path, "permission denied") from None
    except OSError as exc:
        raise PhotoError(path, f"cannot read file ({exc.strerror or exc})") from None
    if not path.is_file():
        raise PhotoError(path, "not a regular file")
    if st.st_size == 0:
        raise PhotoError(path, "empty file (0 bytes)")


def _open(path: Path, data: io.BufferedReader) -> Image.Image:
    """Image.open on an already open binary file, with every failure turned into a PhotoError."""
    heif = _register_heif()
    try:
        return Image.open(data)
    except Image.DecompressionBombError as exc:
        raise PhotoError(path, f"too many pixels, refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        if path.suffix.lower() in HEIF_EXTENSIONS and heif != "ok":
            raise PhotoError(path, heif) from None
        raise PhotoError(path, "not a recognised image (unknown or corrupt content)") from None
    except Exception as exc:
        raise PhotoError(path, f"corrupt image header ({type(exc).__name__}: {exc})") from None


def _check_pixels(path: Path, im: Image.Image, max_pixels: int | None) -> None:
    w, h = im.size
    if w <= 0 or h <= 0:
        raise PhotoError(path, f"invalid image size {w}x{h}")
    if max_pixels is not None and w * h > max_pixels:
        raise PhotoError(
            path, f"image is {w}x{h} = {w * h / 1e6:.0f} MP, over the limit of {max_pixels / 1e6:.0f} MP "
            "(refused as a possible decompression bomb)"
        )


def _orientation(im: Image.Image, path: Path | None = None) -> int:
    try:
        exif = im.getexif()
    except Exception as exc:  # a broken EXIF block must not make the photo unreadable
        log.info("%s: its EXIF block is unreadable (%s); orientation not known", path, exc)
        return 1
    if path is not None and (damage := _exif_damage(im, len(exif))):
        log.info("%s: its EXIF block is damaged (%s); the readable part is used", path, damage)
    try:
        value = int(exif.get(_ORIENTATION_TAG, 1))
    except (TypeError, ValueError):
        return 1
    return value if value in _TRANSPOSE else 1


def _exif_damage(im: Image.Image, parsed: int) -> str | None:
    """Why an embedded EXIF block (JPEG, PNG, WebP) is damaged: fewer entries of its first directory could be
    read (``parsed``) than it declares; None when it is sound or there is none."""
    raw = im.info.get("exif")
    if not isinstance(raw, (bytes, bytearray)) or len(raw) < 8:
        return None
    data = bytes(raw[6:] if raw[:6] == b"Exif\0\0" else raw)
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8:
        return "no TIFF header"
    (offset,) = struct.unpack_from(order + "I", data, 4)
    if offset + 2 > len(data):
        return "its first directory lies outside it"
    (declared,) = struct.unpack_from(order + "H", data, offset)
    if parsed < declared:
        return f"{declared - parsed} of {declared} entries unreadable"
    return None


def _exif_bytes(im: Image.Image) -> bytes | None:
    raw = im.info.get("exif")
    if isinstance(raw, (bytes, bytearray)) and raw:
        return bytes(raw)
    try:  # TIFF keeps its EXIF in its own tags
        exif = im.getexif()
        return exif.tobytes() if len(exif) else None
    except Exception:
        return None


def _gray_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    if mode.startswith("I;16"):
        scaled = arr.astype(np.float32) * (255.0 / 65535.0)
    elif mode == "I":
        scaled = arr.astype(np.float32)
        if scaled.size and scaled.max() > 255:
            scaled *= 255.0 / 65535.0
    else:  # "F"
        scaled = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(scaled.min()), float(scaled.max())) if scaled.size else (0.0, 1.0)
        if lo >= 0.0 and hi <= 1.0:
            scaled = scaled * 255.0
        elif hi > lo:
            scaled = (scaled - lo) * (255.0 / (hi - lo))
        else:
            scaled = np.zeros_like(scaled)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit "RGB"; transparency composited onto white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        gray = _gray_to_uint8(np.asarray(im), mode)
        return Image.fromarray(np.ascontiguousarray(gray), "L").convert("RGB")
    if mode == "CMYK" and im.info.get("icc_profile"):
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
            return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception as exc:  # a broken profile: fall back to the plain formula
            log.debug("CMYK profile conversion failed (%s); using the plain formula", exc)
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
    return im.convert("RGB")


def _decode(path: Path, max_pixels: int | None, draft_side: int | None) -> tuple[Image.Image, bytes | None]:
    """Open, check and decode `path`; returns an upright RGB Pillow image and the EXIF bytes."""
    path = Path(path)
    _check_file(path)
    try:
        fh = open(path, "rb")  # read-only, always
    except OSError as exc:
        reason = "permission denied" if isinstance(exc, PermissionError) else f"cannot open ({exc.strerror or exc})"
        raise PhotoError(path, reason) from None
    with fh:
        im = _open(path, fh)
        try:
            _check_pixels(path, im, max_pixels)
            fmt = im.format or "?"
            if path.suffix.lower() not in _extensions_for(fmt):
                log.debug("%s: content is %s, not what its extension says; decoded by content", path, fmt)
            # A JPEG's EXIF is in its header, and must be read before draft() and load(); other formats may
            # keep theirs after the pixels (PNG's eXIf chunk): read once decoded, or getexif() would decode
            # the pixels itself and a failure there would pass for a damaged EXIF block.
            header_exif = fmt in ("JPEG", "MPO")
            if header_exif:
                orientation, exif = _orientation(im, path), _exif_bytes(im)
            try:
                _load(im, fmt, draft_side)
            except OSError as exc:
                if fmt not in ("JPEG", "MPO") or "truncated" not in str(exc).lower():
                    raise
                fh.seek(0)
                im = _without_end_marker(path, fh.read(), draft_side)
                if im is None:
                    raise
                log.warning("%s: the JPEG file lacks its end marker (an interrupted copy?); its picture is "
                            "complete and was read", path)
            if not header_exif:
                orientation, exif = _orientation(im, path), _exif_bytes(im)
            rgb = _to_rgb(im)
        except PhotoError:
            raise
        except Image.DecompressionBombError as exc:
            raise PhotoError(path, f"refused as a possible decompression bomb ({exc})") from None
        except MemoryError:
            raise PhotoError(path, "not enough memory to decode this image") from None
        except Exception as exc:  # OSError("image file is truncated"), SyntaxError, ValueError, ...
            msg = " ".join((str(exc) or type(exc).__name__).split())
            reason = "truncated file" if "truncated" in msg.lower() else f"corrupt image data ({msg})"
            raise PhotoError(path, reason) from None
    if orientation != 1:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    return rgb, exif


def _load(im: Image.Image, fmt: str, draft_side: int | None) -> None:
    if draft_side and fmt in ("JPEG", "MPO"):
        im.draft("RGB", (draft_side, draft_side))
    im.load()


def _without_end_marker(path: Path, data: bytes, draft_side: int | None) -> Image.Image | None:
    """The picture of a JPEG whose data is complete but lacks its end marker; None when data is missing.

    Decoded twice: with the end marker appended, and with filler bytes before it. When the picture data is
    complete the decoder never reads the filler (it skips bytes before a marker), so both agree; when it
    was cut short, the decoder reads the filler as picture data in one and fills with grey in the other."""
    if data.endswith(_JPEG_END):
        return None
    body = data[:-1] if data.endswith(b"\xff") else data  # cut between the marker's two bytes
    pictures = []
    for tail in (_JPEG_END, b"\x55" * 64 + _JPEG_END):
        try:
            im = Image.open(io.BytesIO(body + tail))
            _load(im, im.format or "JPEG", draft_side)
        except Exception as exc:
            log.debug("%s: not readable with an end marker appended (%s)", path, exc)
            return None
        pictures.append(im)
    if pictures[0].size != pictures[1].size or pictures[0].tobytes() != pictures[1].tobytes():
        return None
    return pictures[0]


def _extensions_for(fmt: str) -> frozenset[str]:
    return {
        "JPEG": frozenset({".jpg", ".jpeg", ".jpe", ".jfif"}),
        "MPO": frozenset({".jpg", ".jpeg", ".jpe", ".jfif"}),  # multi-picture JPEG (first picture)
        "PNG": frozenset({".png"}),
        "TIFF": frozenset({".tif", ".tiff"}),
        "BMP": frozenset({".bmp"}),
        "WEBP": frozenset({".webp"}),
        "HEIF": HEIF_EXTENSIONS,
    }.get(fmt, frozenset())


def _as_array(im: Image.Image) -> np.ndarray:
    arr = np.asarray(im, dtype=np.uint8)
    return arr if arr.flags.c_contiguous and arr.flags.writeable else np.array(arr, dtype=np.uint8, order="C")


def load_photo(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Photo:
    """Decode `path` into an upright RGB `Photo` (see the module doc for the formats and refusals).

    Raises PhotoError(path, reason) for every file that cannot be read; never writes the file.
    """
    path = Path(path)
    rgb, exif = _decode(path, max_pixels, None)
    return Photo(path=path, rgb=_as_array(rgb), exif=exif)


def load_preview(
    path: str | os.PathLike, max_side: int, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """An upright RGB copy whose long side is `max_side` (or less for smaller photos: never upscaled).

    Fast for big JPEGs: the decoder is asked for a reduced scale (`Image.draft`, 1/2..1/8) before decoding,
    then the result is resized with a Lanczos filter.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, not {max_side}")
    path = Path(path)
    im, _ = _decode(path, max_pixels, max_side)
    w, h = im.size
    if max(w, h) > max_side:
        scale = max_side / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return _as_array(im)


def read_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the upright photo, read from the header only (orientations 5..8 swap them)."""
    path = Path(path)
    _check_file(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise PhotoError(path, f"cannot open ({exc.strerror or exc})") from None
    with fh:
        im = _open(path, fh)
        w, h = im.size
        return (h, w) if _orientation(im, path) in (5, 6, 7, 8) else (w, h)


def is_supported(path: str | os.PathLike) -> bool:
    """True when the file name has one of SUPPORTED_EXTENSIONS (any case)."""
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS
