"""Write results: still images (JPEG, PNG, WebP), comparison strips, GIF and MP4 animations.

Every writer is atomic and never overwrites by accident:
- the file is written under a temporary name in the target folder, flushed and fsync'ed, then moved into
  place, so a crash leaves either nothing or the whole file (and at most a hidden ``.name.*.tmp.ext`` file
  if the process dies mid-write; no temporary file is left on any error that Python sees);
- with ``overwrite=False`` (the default) an existing target raises ExportError before any work, and the final
  move is an exclusive operation (a hard link, which fails if the name exists; where links are not supported
  an O_EXCL creation reserves the name) so a file that appears meanwhile is not overwritten either;
- `unique_path` gives a free "name (2).jpg" style name for callers who want one.

Metadata of stills: the original's EXIF is kept (camera, date, GPS: it is the person's own photo) except the
Orientation tag, dropped because the pixels are already upright; the EXIF thumbnail (IFD1, showing the
unedited picture) is not copied. ImageDescription is set to `note` (GENERATED_NOTE by default, saying the
picture was altered by a model) and Software to "Agelapse <version>"; an XMP packet carries the note as
``dc:description`` and ``xmp:CreatorTool`` = Agelapse; PNG gets a "Description" text chunk as well.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import math
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np
from PIL import Image, PngImagePlugin

from core import __version__
from core.errors import ExportError
from core.text import ascii_text

log = logging.getLogger(__name__)

GENERATED_NOTE = (
    "Altered image: the faces in this picture were aged or rejuvenated by Agelapse, a computer model. "
    "It is not an original photograph."
)
SOFTWARE = f"Agelapse {__version__}"

_TAG_ORIENTATION = 0x0112
_TAG_DESCRIPTION = 0x010E
_TAG_SOFTWARE = 0x0131
_IFD_EXIF = 0x8769
_TAG_PIXEL_X, _TAG_PIXEL_Y = 0xA002, 0xA003
_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}


# --------------------------------------------------------------------------------------------- atomic files


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_WHY = {
    getattr(errno, name): why
    for name, why in (("EROFS", "the folder is on a read-only disk"), ("EACCES", "permission denied"),
                      ("EPERM", "permission denied"), ("ENOSPC", "the disk is full"),
                      ("EDQUOT", "the disk quota is used up"), ("ENAMETOOLONG", "the file name is too long"))
    if hasattr(errno, name)
}


def _why(exc: OSError) -> str:
    """An OSError in words, without its errno number or the (temporary) file name it was about."""
    return _WHY.get(exc.errno or -1) or (exc.strerror or str(exc) or type(exc).__name__).lower()


def _new_temp(path: Path) -> Path:
    """An empty, new hidden file beside `path` (created with O_EXCL, permissions per the umask)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise ExportError(f"cannot write to {path.parent}: {_why(exc)}") from exc
    raise ExportError(f"{path}: cannot create a temporary file")


def check_writable(folder: str | os.PathLike) -> None:
    """Raise ExportError ("cannot write to FOLDER: why", in words) unless a file can be created in `folder`
    (tried with a hidden temporary file, deleted at once)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"cannot write to {folder}: no such folder")
    tmp = _new_temp(folder / "agelapse-write-check")
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic, and refuses an existing name
        os.unlink(tmp)
        return
    except FileExistsError:
        raise ExportError(f"{path}: already exists; not overwritten") from None
    except (OSError, NotImplementedError, AttributeError) as exc:  # no hard links on this file system
        log.debug("hard link not possible for %s (%s); reserving the name instead", path, exc)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        raise ExportError(f"{path}: already exists; not overwritten") from None
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Context manager: yields a temporary path beside `path` to write; on success it is fsync'ed and moved
    to `path` (refusing an existing `path` unless `overwrite`); on any error it is deleted. OSError and
    ValueError raised inside become ExportError."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise ExportError(f"{path}: folder {folder} does not exist")
    if not overwrite and os.path.lexists(path):
        raise ExportError(f"{path}: already exists; not overwritten")
    tmp = _new_temp(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _commit(tmp, path, overwrite)
        _fsync_dir(folder)
    except ExportError:
        raise
    except OSError as exc:
        raise ExportError(f"{path}: cannot write ({_why(exc)})") from exc
    except ValueError as exc:
        raise ExportError(f"{path}: cannot write ({exc})") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def unique_path(path: str | os.PathLike) -> Path:
    """`path` if nothing has that name, else the first free "stem (2).ext", "stem (3).ext", ..."""
    path = Path(path)
    if not os.path.lexists(path):
        return path
    n = 2
    while True:
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
        if not os.path.lexists(candidate):
            return candidate
        n += 1


# --------------------------------------------------------------------------------------------- stills


def _check_rgb(rgb: np.ndarray, what: str = "image") -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        raise ExportError(f"{what} must be a uint8 numpy array, not {getattr(rgb, 'dtype', type(rgb))}")
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ExportError(f"{what} must be (H, W, 3) RGB, not shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _xmp_packet(note: str) -> bytes:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
        f"<xmp:CreatorTool>{escape(SOFTWARE)}</xmp:CreatorTool>"
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{escape(note)}</rdf:li></rdf:Alt></dc:description>'
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode("utf-8")


def _exif_for_export(exif: bytes | None, note: str | None, size: tuple[int, int]) -> Image.Exif:
    out = Image.Exif()
    if exif:
        try:
            out.load(exif)
            out.get_ifd(_IFD_EXIF)  # make sure the Exif sub-IFD is read, so that it is written back
        except Exception as exc:  # damaged EXIF: export without it rather than fail
            log.warning("original EXIF is unreadable (%s); exporting without it", exc)
            out = Image.Exif()
    out.pop(_TAG_ORIENTATION, None)
    exif_ifd = out.get_ifd(_IFD_EXIF)
    if _TAG_PIXEL_X in exif_ifd or _TAG_PIXEL_Y in exif_ifd:
        exif_ifd[_TAG_PIXEL_X], exif_ifd[_TAG_PIXEL_Y] = size
    if note:
        out[_TAG_DESCRIPTION] = ascii_text(note)
    out[_TAG_SOFTWARE] = SOFTWARE
    return out


def save_image(
    rgb: np.ndarray,
    path: str | os.PathLike,
    *,
    quality: int = 92,
    exif: bytes | None = None,
    overwrite: bool = False,
    note: str | None = GENERATED_NOTE,
) -> Path:
    """Write `rgb` (H, W, 3) uint8 as JPEG, PNG or WebP (by the suffix of `path`); returns `path`.

    `exif`: the original photo's EXIF block (`Photo.exif`), kept minus Orientation; `note` goes into
    ImageDescription, XMP and (PNG) a Description text chunk; None writes no note. `quality` applies to
    JPEG/WebP. Raises ExportError if `path` exists (unless `overwrite`), its folder is missing, the suffix is
    not supported or the write fails; no partial or temporary file is left behind.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ExportError(f"{path}: unsupported format {path.suffix!r} (use .jpg, .png or .webp)")
    rgb = _check_rgb(rgb)
    if not 1 <= int(quality) <= 100:
        raise ExportError(f"quality must be in 1..100, not {quality}")
    im = Image.fromarray(rgb, "RGB")
    exif_obj = _exif_for_export(exif, note, im.size)
    kw: dict = {"exif": exif_obj.tobytes()}
    if note:
        kw["xmp"] = _xmp_packet(note)
    if fmt == "JPEG":
        kw.update(quality=int(quality), subsampling=0 if quality >= 90 else 2)
    elif fmt == "WEBP":
        kw.update(quality=int(quality), method=4)
    else:
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", SOFTWARE)
        if note:
            info.add_text("Description", note)
            info.add_itxt("XML:com.adobe.xmp", kw.pop("xmp").decode("utf-8"))
        kw["pnginfo"] = info
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            im.save(fh, format=fmt, **kw)
    log.info("saved %s (%dx%d)", path, im.width, im.height)
    return path


# --------------------------------------------------------------------------------------------- strips


def make_strip(
    images: Sequence[np.ndarray],
    labels: Sequence[str | None] | None = None,
    *,
    columns: int | None = None,
    gap: int = 4,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Lay `images` out side by side (one row, or a grid of `columns`) with `gap` pixels around each cell,
    and `labels` (plain text; non-ASCII letters lose their accents, Hershey fonts have no others) centred
    under each. Cells are as big as the biggest image; smaller images are centred in theirs, not scaled.
    The label size follows the cell size and shrinks to fit the cell width."""
    if len(images) == 0:
        raise ExportError("make_strip needs at least one image")
    imgs = [_check_rgb(im, f"image {i}") for i, im in enumerate(images)]
    if labels is not None and len(labels) != len(imgs):
        raise ExportError(f"{len(labels)} labels for {len(imgs)} images")
    n = len(imgs)
    columns = n if columns is None else max(1, min(int(columns), n))
    rows = math.ceil(n / columns)
    gap = max(0, int(gap))
    cell_h = max(im.shape[0] for im in imgs)
    cell_w = max(im.shape[1] for im in imgs)
    bg = tuple(int(c) for c in background)
    ink = (0, 0, 0) if 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2] > 128 else (255, 255, 255)

    font = cv2.FONT_HERSHEY_SIMPLEX
    texts = [ascii_text(t) if t else "" for t in (labels or [])]
    band = scale = thickness = 0
    if any(texts):
        (_, base_h), _ = cv2.getTextSize("Ag", font, 1.0, 1)
        scale = min(max(cell_h * 0.06, 14.0), 64.0) / base_h
        for t in texts:
            if t:
                (tw, _), _ = cv2.getTextSize(t, font, scale, 1)
                scale = min(scale, (cell_w - 4) / max(tw, 1))
        scale = max(scale, 0.3)
        thickness = max(1, round(scale * 1.6))
        (_, th), base = cv2.getTextSize("Ag", font, scale, thickness)
        band = th + base + 2 * max(3, th // 3)

    out_h = rows * (cell_h + band) + (rows + 1) * gap
    out_w = columns * cell_w + (columns + 1) * gap
    out = np.empty((out_h, out_w, 3), np.uint8)
    out[:] = bg
    for i, im in enumerate(imgs):
        r, c = divmod(i, columns)
        y0 = gap + r * (cell_h + band + gap)
        x0 = gap + c * (cell_w + gap)
        oy, ox = (cell_h - im.shape[0]) // 2, (cell_w - im.shape[1]) // 2
        out[y0 + oy : y0 + oy + im.shape[0], x0 + ox : x0 + ox + im.shape[1]] = im
        if band and texts[i]:
            (tw, th), base = cv2.getTextSize(texts[i], font, scale, thickness)
            org = (x0 + (cell_w - tw) // 2, y0 + cell_h + (band + th - base) // 2)
            cv2.putText(out, texts[i], org, font, scale, ink, thickness, cv2.LINE_AA)
    return out


# --------------------------------------------------------------------------------------------- animations


def _frames(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    size = None
    for i, f in enumerate(frames):
        f = _check_rgb(f, f"frame {i}")
        if size is None:
            size = f.shape
        elif f.shape != size:
            raise ExportError(f"frame {i} is {f.shape[1]}x{f.shape[0]}, frame 0 is {size[1]}x{size[0]}")
        yield f
    if size is None:
        raise ExportError("no frames to write")


def save_gif(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike,
    *,
    fps: float = 8,
    loop: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write an animated GIF (each frame quantised to its own 256-colour palette, dithered); returns `path`.
    `loop` False plays it once. Note: GIF stores delays in 1/100 s, and Pillow merges consecutive identical
    frames into one longer frame."""
    path = Path(path)
    if fps <= 0:
        raise ExportError(f"fps must be > 0, not {fps}")
    it = _frames(frames)
    with atomic_output(path, overwrite=overwrite) as tmp:
        pal = [
            Image.fromarray(f).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
            for f in it
        ]
        kw = {"loop": 0} if loop else {}
        with open(tmp, "wb") as fh:
            pal[0].save(fh, format="GIF", save_all=True, append_images=pal[1:], duration=round(1000 / fps),
                        optimize=False, **kw)
    log.info("saved %s (%d frames)", path, len(pal))
    return path


def _ffmpeg() -> tuple[object, str]:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        from imageio_ffmpeg import _io  # its encoder probe is not exported at the top level

        find = getattr(_io, "get_first_available_h264_encoder", None)
        return imageio_ffmpeg, (find() if find else "libx264")
    except Exception as exc:
        raise ExportError(
            f"MP4 export needs ffmpeg, which was not found ({exc}). Install the imageio-ffmpeg package or set "
            "IMAGEIO_FFMPEG_EXE to an ffmpeg program; GIF export works without it."
        ) from None


def save_mp4(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike,
    *,
    fps: float = 8,
    overwrite: bool = False,
) -> Path:
    """Write an H.264 MP4 (yuv420p, playable everywhere; odd widths/heights are padded by one edge pixel to
    make them even); frames are streamed to ffmpeg one at a time. Raises ExportError when ffmpeg is
    unavailable. Returns `path`."""
    path = Path(path)
    if fps <= 0:
        raise ExportError(f"fps must be > 0, not {fps}")
    ffmpeg, codec = _ffmpeg()
    it = _frames(frames)
    with atomic_output(path, overwrite=overwrite) as tmp:
        first = next(it)
        h, w = first.shape[:2]
        pad = ((0, h % 2), (0, w % 2), (0, 0))
        params = ["-movflags", "+faststart"] + (["-crf", "18", "-preset", "medium"] if codec == "libx264" else [])
        writer = ffmpeg.write_frames(
            str(tmp), (w + w % 2, h + h % 2), fps=fps, codec=codec, quality=None, macro_block_size=2,
            ffmpeg_log_level="error", output_params=params,
        )
        count = 0
        try:
            writer.send(None)
            for frame in itertools.chain([first], it):
                writer.send(np.pad(frame, pad, mode="edge") if h % 2 or w % 2 else frame)
                count += 1
        except (RuntimeError, BrokenPipeError, OSError) as exc:
            raise ExportError(f"{path}: ffmpeg failed ({exc})") from exc
        finally:
            writer.close()
    log.info("saved %s (%d frames, %dx%d)", path, count, w + w % 2, h + h % 2)
    return path
