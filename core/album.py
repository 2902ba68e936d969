"""List the photos of an album folder: recursive, sorted, robust against what real folders contain.

- Files are kept when their extension (any case) is in `core.photos.SUPPORTED_EXTENSIONS`; content is only
  checked later, by `load_photo`.
- Hidden entries are skipped: names starting with "." (which covers macOS "._x.jpg" resource forks) and,
  on Windows, files and folders with the hidden or system attribute; so are the litter folders and files
  of NAS boxes and operating systems (`SKIPPED_NAMES`: @eaDir, Thumbs.db, $RECYCLE.BIN, __MACOSX, ...).
- Symbolic links are followed, to files and to folders, but every folder is visited once: folders are
  identified by (device, inode) of their target (their resolved path where the system has no inodes), so a
  link loop or two links to the same folder cannot repeat or hang the walk.
- A folder that cannot be read (permissions, vanished while walking, I/O error) is logged and skipped;
  the walk goes on (an optional `on_error(path, exc)` callback is told as well).
- `cancel()` returning True stops the walk between entries; `list_images` then returns what it found so
  far, sorted, and logs that it was cancelled.

`iter_images` yields paths as it finds them (depth first, entries in name order); `list_images` returns
them all, sorted.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from core.photos import SUPPORTED_EXTENSIONS

log = logging.getLogger(__name__)

Progress = Callable[[int, "int | None"], None]
Cancel = Callable[[], bool]

#: Folder and file names never listed (compared case-insensitively).
SKIPPED_NAMES: frozenset[str] = frozenset(
    n.lower()
    for n in (
        "@eaDir",  # Synology thumbnails
        "#recycle",
        "#snapshot",
        "$RECYCLE.BIN",
        "System Volume Information",
        "__MACOSX",
        "Thumbs.db",
        "ehthumbs.db",
        "desktop.ini",
        "lost+found",
    )
)
_WIN_HIDDEN = getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 2) | getattr(stat, "FILE_ATTRIBUTE_SYSTEM", 4)


def _skipped(entry: os.DirEntry) -> bool:
    name = entry.name
    if name.startswith(".") or name.lower() in SKIPPED_NAMES:
        return True
    if os.name == "nt":
        try:
            return bool(entry.stat().st_file_attributes & _WIN_HIDDEN)
        except (OSError, AttributeError):
            return False
    return False


def _folder_key(path: str) -> tuple:
    st = os.stat(path)  # follows links: the identity of the target folder
    if st.st_ino:
        return (st.st_dev, st.st_ino)
    return ("path", os.path.normcase(os.path.realpath(path)))


def iter_images(
    root: str | os.PathLike,
    *,
    cancel: Cancel | None = None,
    on_error: Callable[[Path, OSError], None] | None = None,
) -> Iterator[Path]:
    """Yield the photo files under `root` (see the module doc). `root` may also be a single photo file.

    Raises FileNotFoundError / NotADirectoryError when `root` itself is missing or is not a folder or photo.
    """
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() in SUPPORTED_EXTENSIONS:
            yield root
            return
        raise NotADirectoryError(f"{root}: not a folder nor a supported photo")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: folder not found")

    visited: set[tuple] = set()
    stack: list[str] = [os.fspath(root)]
    while stack:
        if cancel is not None and cancel():
            return
        folder = stack.pop()
        try:
            key = _folder_key(folder)
            if key in visited:
                log.debug("%s: already visited (link loop or second link), skipped", folder)
                continue
            visited.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot read folder %s (%s); skipped", folder, exc.strerror or exc)
            if on_error is not None:
                on_error(Path(folder), exc)
            continue
        subfolders: list[str] = []
        for entry in entries:
            if cancel is not None and cancel():
                return
            if _skipped(entry):
                continue
            try:
                if entry.is_dir():  # follows symlinks
                    subfolders.append(entry.path)
                elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in SUPPORTED_EXTENSIONS:
                    yield Path(entry.path)
            except OSError as exc:  # a broken entry: log and go on
                log.warning("cannot inspect %s (%s); skipped", entry.path, exc.strerror or exc)
        stack.extend(reversed(subfolders))  # pop() takes them in name order


def list_images(
    root: str | os.PathLike,
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    on_error: Callable[[Path, OSError], None] | None = None,
) -> list[Path]:
    """All photo files under `root`, sorted. `progress(found, None)` is called as photos are found (the total
    is unknown while walking), then `progress(n, n)` at the end; `cancel()` returning True stops early and
    returns the photos found so far."""
    found: list[Path] = []
    for path in iter_images(root, cancel=cancel, on_error=on_error):
        found.append(path)
        if progress is not None and len(found) % 50 == 0:
            progress(len(found), None)
    if cancel is not None and cancel():
        log.info("listing of %s cancelled after %d photos", root, len(found))
    found.sort()
    if progress is not None:
        progress(len(found), len(found))
    return found
