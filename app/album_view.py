"""The album panel: folder tree, thumbnail grid with face badges, the "faces only" filter.

The grid is a QListView in icon mode over :class:`app.album_model.PhotoListModel`, with uniform item
sizes (the delegate's size hint never reads the data) so 10,000 photos lay out at once and scroll smoothly; the delegate paints the
thumbnail (or a placeholder while it loads), the name and a badge: the number of faces, "!" for a photo
that could not be read. Arrow keys move between photos; :meth:`AlbumPanel.step` does so from anywhere.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QDir, QItemSelectionModel, QModelIndex, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QFileSystemModel, QHBoxLayout, QLabel, QListView, QSplitter,
    QStyle, QStyledItemDelegate, QToolButton, QTreeView, QVBoxLayout, QWidget,
)

from app.album_model import FacesRole, PhotoListModel, ThumbnailLoader, ThumbRole
from app.tasks import TaskRunner
from core.text import display

log = logging.getLogger(__name__)

ACCENT = QColor(255, 166, 77)
CELL_EXTRA_H = 22  # the name under the thumbnail


class ThumbnailDelegate(QStyledItemDelegate):
    def __init__(self, size: int, parent=None):
        super().__init__(parent)
        self.size = size

    def sizeHint(self, option, index) -> QSize:  # never touches the data: layout of 10,000 rows is free
        return QSize(self.size + 8, self.size + 8 + CELL_EXTRA_H)

    def paint(self, painter: QPainter, option, index) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = option.rect.adjusted(3, 3, -3, -3)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.setPen(QPen(ACCENT, 2))
            painter.setBrush(QColor(255, 166, 77, 40))
            painter.drawRoundedRect(r, 6, 6)
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(255, 255, 255, 18))
            painter.drawRoundedRect(r, 6, 6)
        box = QRect(r.x() + 3, r.y() + 3, r.width() - 6, r.width() - 6)
        thumb = index.data(ThumbRole)
        if thumb is None or isinstance(thumb, str):
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(255, 255, 255, 14))
            painter.drawRoundedRect(box.adjusted(8, 8, -8, -8), 4, 4)
            if thumb == "error":
                painter.setPen(QColor(230, 90, 90))
                painter.drawText(box, Qt.AlignmentFlag.AlignCenter, "cannot read")
        else:
            scaled = thumb.size().scaled(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, scaled.width(), scaled.height())
            target.moveCenter(box.center())
            painter.drawImage(target, thumb)
        name_rect = QRect(r.x() + 2, box.bottom() + 2, r.width() - 4, CELL_EXTRA_H - 4)
        painter.setPen(option.palette.color(option.palette.ColorRole.Text) if not selected else ACCENT)
        name = option.fontMetrics.elidedText(index.data(), Qt.TextElideMode.ElideMiddle, name_rect.width())
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignCenter, name)
        faces = index.data(FacesRole)
        if faces is not None and faces != 0:
            text = "!" if faces < 0 else str(faces)
            font = QFont(option.font)
            font.setBold(True)
            font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
            painter.setFont(font)
            w = max(18, painter.fontMetrics().horizontalAdvance(text) + (24 if faces > 0 else 12))
            badge = QRect(box.right() - w - 2, box.top() + 2, w, 18)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(210, 70, 70) if faces < 0 else ACCENT)
            painter.drawRoundedRect(badge, 9, 9)
            painter.setPen(QColor(20, 20, 20))
            if faces > 0:  # a small head-and-shoulders glyph
                painter.setBrush(QColor(20, 20, 20))
                cx, cy = badge.left() + 9, badge.center().y()
                painter.drawEllipse(cx - 2, cy - 5, 5, 5)
                painter.drawChord(cx - 4, cy + 1, 9, 8, 0, 180 * 16)
                painter.drawText(badge.adjusted(15, 0, -4, 0), Qt.AlignmentFlag.AlignCenter, text)
            else:
                painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()


class AlbumPanel(QWidget):
    """Folder tree + thumbnail grid (see the module doc)."""

    photo_activated = Signal(Path)  # the current photo changed (debounced)
    folder_opened = Signal(Path, int)  # album root, number of photos
    folder_failed = Signal(str)

    def __init__(self, runner: TaskRunner, catalog, thumb_size: int = 160, thumb_cache=None, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.catalog = catalog
        self.root: Path | None = None
        self.loader = ThumbnailLoader(runner, thumb_cache, thumb_size, parent=self)
        self.model = PhotoListModel(self.loader, self)

        self.title = QToolButton()
        self.title.setObjectName("albumTitle")
        self.title.setText("No album open")
        self.title.setToolTip("Show every photo of the album")
        self.title.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.title.clicked.connect(self.show_all)
        self.faces_only = QCheckBox("Faces only")
        self.faces_only.setToolTip("Show only photos in which faces were found")
        self.faces_only.toggled.connect(lambda on: self.model.set_filter(self.model.folder, on))
        self.count_label = QLabel("")
        self.count_label.setObjectName("dimLabel")

        self.fs_model = QFileSystemModel(self)
        self.fs_model.setFilter(QDir.Filter.AllDirs | QDir.Filter.NoDotAndDotDot)
        self.tree = QTreeView()
        self.tree.setModel(self.fs_model)
        for col in (1, 2, 3):
            self.tree.hideColumn(col)
        self.tree.setHeaderHidden(True)
        self.tree.clicked.connect(self._folder_clicked)
        self.tree.hide()

        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setLayoutMode(QListView.LayoutMode.SinglePass)  # with uniform sizes 10,000 rows lay out in ms
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.grid.setMouseTracking(True)
        self.grid.setSpacing(2)
        self.delegate = ThumbnailDelegate(thumb_size, self.grid)
        self.grid.setItemDelegate(self.delegate)
        self.grid.setModel(self.model)
        self.grid.selectionModel().currentChanged.connect(self._current_changed)
        self.model.modelReset.connect(self._update_count)
        self.model.rowsInserted.connect(self._update_count)
        self.model.rowsRemoved.connect(self._update_count)
        self.loader.idle.connect(self.grid.viewport().update)  # rows skipped while scrolling ask again

        self._activate_timer = QTimer(self, singleShot=True, interval=60)
        self._activate_timer.timeout.connect(self._emit_activated)
        self._want_current: str | None = None

        head = QHBoxLayout()
        head.setContentsMargins(6, 4, 6, 2)
        head.addWidget(self.title, 1)
        head.addWidget(self.faces_only)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tree)
        split.addWidget(self.grid)
        split.setStretchFactor(1, 4)
        foot = QHBoxLayout()
        foot.setContentsMargins(6, 0, 6, 2)
        foot.addWidget(self.count_label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(head)
        lay.addWidget(split, 1)
        lay.addLayout(foot)

    # -- opening

    def open_folder(self, folder: str | os.PathLike, select: str | os.PathLike | None = None) -> None:
        """List the album in the background; the grid fills when that is done."""
        folder = Path(os.path.abspath(Path(folder).expanduser()))
        self._want_current = os.path.abspath(select) if select else None
        self.title.setText(display(f"Listing {folder.name}\u2026"))
        self.runner.submit(_list_album, folder, self.catalog, key="list",
                           on_result=lambda r, f=folder: self._listed(f, *r),
                           on_error=lambda exc, f=folder: self._list_failed(f, exc))

    def _list_failed(self, folder: Path, exc: Exception) -> None:
        self.title.setText(display(self.root.name) if self.root else "No album open")
        self.folder_failed.emit(display(f"Cannot open {folder}: {exc}"))

    def _listed(self, folder: Path, paths: list[Path], faces: dict[str, int]) -> None:
        self.root = folder
        self.title.setText(display(folder.name or str(folder)))
        self.model.set_photos(paths, faces)
        self.fs_model.setRootPath(str(folder))
        self.tree.setRootIndex(self.fs_model.index(str(folder)))
        self.tree.setVisible(any(p.parent != folder for p in paths))
        self.folder_opened.emit(folder, len(paths))
        target = self.model.row_of(self._want_current) if self._want_current else None
        if self.model.rowCount() and target is None:
            target = 0
        if target is not None:
            self.select_row(target)

    def _update_count(self, *args) -> None:
        n, total = self.model.rowCount(), self.model.photo_count()
        with_faces = self.model.with_faces
        self.count_label.setText(f"{n} of {total} photos \u00b7 {with_faces} with faces" if n != total
                                 else f"{total} photos \u00b7 {with_faces} with faces")

    # -- filtering

    def show_all(self) -> None:
        self.tree.clearSelection()
        self._refilter(None)

    def _folder_clicked(self, index: QModelIndex) -> None:
        self._refilter(self.fs_model.filePath(index))

    def _refilter(self, folder: str | None) -> None:
        current = self.current_path()
        self.model.set_filter(folder, self.faces_only.isChecked())
        row = self.model.row_of(current) if current else None
        if row is not None:
            self.select_row(row, activate=False)

    def set_thumbnail_size(self, size: int) -> None:
        self.loader.set_size(size)
        self.delegate.size = size
        self.grid.doItemsLayout()
        self.grid.viewport().update()

    def set_faces(self, path: str | os.PathLike, count: int) -> None:
        self.model.set_faces(path, count)
        self._update_count()

    # -- current photo, selection, keyboard

    def current_path(self) -> Path | None:
        idx = self.grid.currentIndex()
        return self.model.path(idx.row()) if idx.isValid() and idx.row() < self.model.rowCount() else None

    def selected_paths(self) -> list[Path]:
        rows = sorted(i.row() for i in self.grid.selectionModel().selectedIndexes())
        return [self.model.path(r) for r in rows]

    def select_row(self, row: int, activate: bool = True) -> None:
        idx = self.model.index(row)
        sm = self.grid.selectionModel()
        sm.setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.grid.scrollTo(idx)
        if activate:
            self._activate_timer.start()

    def select_path(self, path: str | os.PathLike) -> bool:
        row = self.model.row_of(path)
        if row is None:
            return False
        self.select_row(row)
        return True

    def step(self, delta: int) -> None:
        """Move to the next (+1) or previous (-1) photo of the grid."""
        n = self.model.rowCount()
        if not n:
            return
        cur = self.grid.currentIndex().row()
        self.select_row(min(max(cur + delta, 0), n - 1) if cur >= 0 else 0)

    def _current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        if current.isValid():
            self._activate_timer.start()

    def _emit_activated(self) -> None:
        path = self.current_path()
        if path is not None:
            self.photo_activated.emit(path)


def _list_album(folder: Path, catalog) -> tuple[list[Path], dict[str, int]]:
    """Worker: the album's photos and what the catalog knows of their faces."""
    from core.album import list_images

    paths = list_images(folder)
    faces: dict[str, int] = {}
    if catalog is not None:
        prefix = str(folder).rstrip(os.sep) + os.sep
        for rec in catalog.photos():
            key = str(rec.path)
            if key.startswith(prefix):
                if rec.scan_state == "done":
                    faces[key] = rec.face_count
                elif rec.scan_state == "error":
                    faces[key] = -1
    return paths, faces
