"""Thumbnails of album photos, cached on disk as JPEG.

A cache entry is named by the sha256 of (resolved path, file size, mtime_ns, thumbnail size, format
version): a file that changes (new size or modification time) gets a new entry, the stale one is simply
never read again (`prune` removes the least recently used entries when the cache grows too big).
Entries are written atomically (temporary file in the same folder, then `os.replace`), so a crash or two
threads making the same thumbnail never leave a half-written entry; an entry that cannot be decoded anyway
(disk damage) is regenerated.

Thumbnails are upright (EXIF orientation applied) RGB with their long side = `size` (smaller photos keep
their size: never upscaled). Big JPEGs are decoded at 1/2..1/8 scale (`Image.draft`) through
`core.photos.load_preview`, which is what makes a folder of 24 MP photos browsable.

`ThumbnailCache` is safe to use from several threads (no shared mutable state but two counters).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import PhotoError
from core.photos import load_preview

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1
_QUALITY = 88


def default_cache_dir() -> Path:
    """The user's cache folder for Agelapse: $AGELAPSE_CACHE_DIR if set, else %LOCALAPPDATA%\\Agelapse\\Cache
    (Windows), ~/Library/Caches/Agelapse (macOS), $XDG_CACHE_HOME/agelapse or ~/.cache/agelapse."""
    if env := os.environ.get("AGELAPSE_CACHE_DIR"):
        return Path(env)
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "Agelapse" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "Agelapse"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agelapse"


class ThumbnailCache:
    """Disk cache of thumbnails in `cache_dir` (default: `default_cache_dir() / "thumbnails"`)."""

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "thumbnails"
        self.hits = 0
        self.misses = 0

    def entry_path(self, path: str | os.PathLike, size: int = 256) -> Path:
        """Where the thumbnail of `path` at `size` lives (it may not exist yet). Raises PhotoError if the
        photo cannot be stat'ed."""
        resolved = Path(path).resolve()
        try:
            st = resolved.stat()
        except OSError as exc:
            raise PhotoError(path, f"cannot read file ({exc.strerror or exc})") from None
        key = f"{resolved}\0{st.st_size}\0{st.st_mtime_ns}\0{int(size)}\0{_FORMAT_VERSION}"
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.jpg"

    def get(self, path: str | os.PathLike, size: int = 256) -> np.ndarray:
        """The upright RGB thumbnail of `path` (long side `size`), from the cache or made and stored now.

        Raises PhotoError when the photo cannot be read. A cache that cannot be written (read-only disk)
        only logs a warning: the thumbnail is still returned.
        """
        if size < 1:
            raise ValueError(f"thumbnail size must be >= 1, not {size}")
        entry = self.entry_path(path, size)
        cached = self._read(entry)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        thumb = load_preview(path, size)
        self._write(entry, thumb)
        return thumb

    def _read(self, entry: Path) -> np.ndarray | None:
        try:
            with Image.open(entry) as im:
                im.load()
                arr = np.asarray(im.convert("RGB"))
        except FileNotFoundError:
            return None
        except Exception as exc:  # corrupt or unreadable entry: make it again
            log.warning("thumbnail cache entry %s is unreadable (%s); regenerating", entry, exc)
            return None
        try:
            os.utime(entry)  # mark as recently used, for prune()
        except OSError:
            pass
        return np.ascontiguousarray(arr)

    def _write(self, entry: Path, thumb: np.ndarray) -> None:
        tmp = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=entry.parent)
            with os.fdopen(fd, "wb") as fh:
                Image.fromarray(thumb).save(fh, format="JPEG", quality=_QUALITY)
            os.replace(tmp, entry)
            tmp = None
        except OSError as exc:
            log.warning("cannot write thumbnail cache entry %s (%s)", entry, exc)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def prune(self, max_bytes: int) -> int:
        """Delete least recently used entries until the cache holds at most `max_bytes`; returns how many
        files were deleted (stale temporary files are deleted too)."""
        files = []
        removed = 0
        for f in self.cache_dir.glob("*/*"):
            try:
                st = f.stat()
            except OSError:
                continue
            if f.name.startswith(".tmp-"):
                try:
                    f.unlink()
                    removed += 1
                except OSError:
                    pass
                continue
            files.append((st.st_mtime_ns, st.st_size, f))
        files.sort()
        total = sum(s for _, s, _ in files)
        for _, s, f in files:
            if total <= max_bytes:
                break
            try:
                f.unlink()
                total -= s
                removed += 1
            except OSError as exc:
                log.warning("cannot delete %s (%s)", f, exc)
        return removed

    def clear(self) -> None:
        """Delete every cached thumbnail."""
        self.prune(0)


def make_thumbnails(
    paths: Iterable[str | os.PathLike],
    size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    *,
    cache: ThumbnailCache | None = None,
) -> dict[Path, np.ndarray | PhotoError]:
    """Thumbnails of many photos: {path: array, or the PhotoError that photo raised}. `progress(done, total)`
    after each photo; `cancel()` returning True stops before the next one (the dict holds those done)."""
    cache = cache if cache is not None else ThumbnailCache()
    paths = [Path(p) for p in paths]
    out: dict[Path, np.ndarray | PhotoError] = {}
    for i, p in enumerate(paths):
        if cancel is not None and cancel():
            log.info("thumbnails cancelled after %d of %d", i, len(paths))
            break
        try:
            out[p] = cache.get(p, size)
        except PhotoError as exc:
            out[p] = exc
        if progress is not None:
            progress(i + 1, len(paths))
    return out
