"""The album's photos as a list model, with lazily loaded, disk-cached thumbnails.

:class:`PhotoListModel` holds every photo of the album (a plain list of paths: 10,000 rows cost nothing)
and shows a filtered subset (one folder and its subfolders, and/or only photos with faces). A thumbnail is
asked for only when the view asks for a row's picture, i.e. when the row is painted, so only visible rows
are ever loaded; :class:`ThumbnailLoader` serves the newest requests first (what is on screen after a
fast scroll), forgets the oldest when too many wait, and keeps an in-memory LRU of images on top of the
disk cache (``core.thumbnails.ThumbnailCache``).

Face badges: ``faces`` maps a photo's absolute path to its face count, -1 for a photo that could not be
read, or is absent while it has not been scanned.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QImage

from app.imaging import to_qimage
from app.tasks import TaskRunner
from core.text import display, printable

log = logging.getLogger(__name__)

PathRole = Qt.ItemDataRole.UserRole + 1
FacesRole = Qt.ItemDataRole.UserRole + 2
ThumbRole = Qt.ItemDataRole.UserRole + 3  # QImage, None while loading, or "error"

_ERROR = "error"


def _key(path: str | os.PathLike) -> str:
    return os.path.abspath(os.fspath(path))


class ThumbnailLoader(QObject):
    """Loads thumbnails on the "thumbs" pool, newest request first (see the module doc)."""

    ready = Signal(object)  # absolute path (str; a QString would drop the bytes of a name not in UTF-8)
    idle = Signal()

    def __init__(self, runner: TaskRunner, cache=None, size: int = 160, memory_items: int = 1500,
                 max_waiting: int = 400, parent: QObject | None = None):
        super().__init__(parent)
        from core.thumbnails import ThumbnailCache

        self.runner = runner
        self.cache = cache if cache is not None else ThumbnailCache()
        self.size = size
        self.memory_items = memory_items
        self.max_waiting = max_waiting
        self._images: OrderedDict[str, QImage | str] = OrderedDict()
        self._waiting: OrderedDict[str, None] = OrderedDict()  # newest last
        self._inflight: set[str] = set()
        self.requested = 0  # thumbnails asked of the disk cache (tests and benchmarks read it)

    def set_size(self, size: int) -> None:
        if size != self.size:
            self.size = size
            self._images.clear()
            self._waiting.clear()

    def image(self, path: str) -> QImage | str | None:
        """The thumbnail if loaded (or "error"); else None, and it is requested."""
        img = self._images.get(path)
        if img is not None:
            self._images.move_to_end(path)
            return img
        self.request(path)
        return None

    def cached(self, path: str) -> QImage | None:
        """The thumbnail if it is in memory (never requests it)."""
        img = self._images.get(path)
        return img if isinstance(img, QImage) else None

    def request(self, path: str) -> None:
        if path in self._inflight:
            return
        self._waiting.pop(path, None)
        self._waiting[path] = None
        while len(self._waiting) > self.max_waiting:
            self._waiting.popitem(last=False)
        self._pump()

    def clear(self) -> None:
        self._waiting.clear()
        self._images.clear()

    def _pump(self) -> None:
        limit = self.runner.pool("thumbs").maxThreadCount() + 1
        while self._waiting and len(self._inflight) < limit:
            path, _ = self._waiting.popitem(last=True)
            self._inflight.add(path)
            self.requested += 1
            size, cache = self.size, self.cache
            self.runner.submit(
                _load_thumbnail, cache, path, size, pool="thumbs",
                on_result=lambda img, p=path, s=size: self._done(p, s, img),
                on_error=lambda exc, p=path, s=size: self._done(p, s, _ERROR, exc),
            )

    def _done(self, path: str, size: int, image, exc=None) -> None:
        self._inflight.discard(path)
        if exc is not None:
            log.info("no thumbnail for %s: %s", path, exc)
        if size == self.size:
            self._images[path] = image
            while len(self._images) > self.memory_items:
                self._images.popitem(last=False)
            self.ready.emit(path)
        self._pump()
        if not self._waiting and not self._inflight:
            self.idle.emit()


def _load_thumbnail(cache, path: str, size: int) -> QImage:
    return to_qimage(cache.get(path, size))


class PhotoListModel(QAbstractListModel):
    """Every photo of the album, filtered (see the module doc)."""

    filter_changed = Signal()

    def __init__(self, loader: ThumbnailLoader, parent: QObject | None = None):
        super().__init__(parent)
        self.loader = loader
        self._all: list[str] = []
        self._all_set: set[str] = set()
        self._rows: list[str] = []
        self._row_of: dict[str, int] = {}
        self.faces: dict[str, int] = {}
        self.with_faces = 0  # photos with at least one face
        self.folder: str | None = None
        self.faces_only = False
        loader.ready.connect(self._thumbnail_ready)

    # -- contents

    def set_photos(self, paths, faces: dict[str, int] | None = None) -> None:
        self.beginResetModel()
        self._all = sorted(_key(p) for p in paths)
        self._all_set = set(self._all)
        self.faces = dict(faces or {})
        self.with_faces = sum(1 for v in self.faces.values() if v > 0)
        self.folder = None
        self._refilter()
        self.endResetModel()

    def set_filter(self, folder: str | os.PathLike | None = None, faces_only: bool | None = None) -> None:
        self.beginResetModel()
        self.folder = _key(folder) if folder else None
        if faces_only is not None:
            self.faces_only = bool(faces_only)
        self._refilter()
        self.endResetModel()
        self.filter_changed.emit()

    def _refilter(self) -> None:
        self._rows = [p for p in self._all if self._accepts(p)] if (self.folder or self.faces_only) else list(self._all)
        self._row_of = {p: i for i, p in enumerate(self._rows)}

    def set_faces(self, path: str | os.PathLike, count: int) -> None:
        """A scan result: ``count`` faces (-1: unreadable)."""
        key = _key(path)
        self.with_faces += (count > 0) - (self.faces.get(key, 0) > 0)
        self.faces[key] = int(count)
        row = self._row_of.get(key)
        wanted = key in self._all_set and self._accepts(key)
        if row is not None and wanted:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [FacesRole])
        elif row is not None:  # no longer passes the filter (a rescan found no face)
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._rows[row]
            self._row_of = {p: i for i, p in enumerate(self._rows)}
            self.endRemoveRows()
        elif wanted:  # now passes the filter: insert it in order, the rest of the view is left alone
            row = bisect.bisect_left(self._rows, key)
            self.beginInsertRows(QModelIndex(), row, row)
            self._rows.insert(row, key)
            self._row_of = {p: i for i, p in enumerate(self._rows)}
            self.endInsertRows()

    def _accepts(self, key: str) -> bool:
        if self.folder and not key.startswith(self.folder.rstrip(os.sep) + os.sep):
            return False
        return not self.faces_only or self.faces.get(key, 0) > 0

    def photo_count(self) -> int:
        return len(self._all)

    def all_paths(self) -> list[Path]:
        return [Path(p) for p in self._all]

    def path(self, row: int) -> Path:
        return Path(self._rows[row])

    def row_of(self, path: str | os.PathLike) -> int | None:
        return self._row_of.get(_key(path))

    # -- Qt model

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        path = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return printable(os.path.basename(path))  # one line; U+FFFD for bytes that are not UTF-8
        if role == ThumbRole:
            return self.loader.image(path)
        if role == PathRole:  # for display: Qt cannot hold every name; use path(row) to find the file
            return display(path)
        if role == FacesRole:
            return self.faces.get(path)
        if role == Qt.ItemDataRole.ToolTipRole:
            n = self.faces.get(path)
            what = ("not scanned yet" if n is None else "could not be read" if n < 0
                    else f"{n} face{'s' if n != 1 else ''}")
            return f"{display(path)}\n{what}"
        return None

    def _thumbnail_ready(self, path: str) -> None:
        row = self._row_of.get(path)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [ThumbRole])
