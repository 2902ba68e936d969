"""The age timeline: one thumbnail per age group of the selected face, a marker at the face's estimated
current age, and a handle to drag.

Positions are continuous group indices (``core.pipeline``): the centre of cell g is position g, and the
handle may stop anywhere between two cells (the main view then blends the two groups). A release close
to a cell's centre snaps to it. Keys: Left/Right move by a tenth of a group (with Shift or Ctrl: a whole
group), Home/End go to the ends. The widget paints a progress bar over itself while the groups are being
computed, and a placeholder text when there is nothing to show (no face, no model).

A drag repaints the strip at display rate, so the cells (rounded, clipped, smoothly scaled thumbnails and
their labels) are painted once into an image per highlighted cell and reused: a drag frame draws that
image, the marker and the handle (issue 13: no GUI stall over a frame while dragging).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

ACCENT = QColor(255, 166, 77)
MARKER = QColor(110, 200, 255)
SNAP = 0.08


class TimelineWidget(QWidget):
    drag_started = Signal()
    position_changed = Signal(float)  # while dragging, and on every key step
    drag_finished = Signal(float)

    MARGIN = 10
    TOP = 20  # room for the marker
    LABEL_H = 20

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(150)
        self.setMouseTracking(True)
        self.labels: list[str] = []
        self.thumbnails: list[QImage | None] = []
        self.position = 0.0
        self.position_text = ""
        self.marker: float | None = None
        self.marker_text = ""
        self.busy = False
        self.progress = (0, 0)
        self.placeholder = "Select a face to see it at every age"
        self.dragging = False
        self._cells_key = None
        self._cells: dict[int, QImage] = {}  # highlighted cell -> the cells painted (see the module doc)

    def sizeHint(self) -> QSize:
        return QSize(800, 160)

    # -- contents

    def set_groups(self, labels: list[str], thumbnails: list[QImage] | None = None) -> None:
        self.labels = list(labels)
        self.thumbnails = list(thumbnails) if thumbnails is not None else [None] * len(labels)
        self.position = min(max(self.position, 0.0), max(0.0, len(labels) - 1.0))
        self.update()

    def clear(self, placeholder: str) -> None:
        self.labels, self.thumbnails, self.marker, self.busy = [], [], None, False
        self.placeholder = placeholder
        self.update()

    def set_busy(self, busy: bool, done: int = 0, total: int = 0) -> None:
        self.busy = busy
        self.progress = (done, total)
        self.update()

    def set_marker(self, position: float | None, text: str = "") -> None:
        self.marker, self.marker_text = position, text
        self.update()

    def set_position(self, position: float, text: str = "") -> None:
        k = len(self.labels)
        self.position = min(max(float(position), 0.0), max(0.0, k - 1.0))
        self.position_text = text
        self.update()

    @property
    def has_groups(self) -> bool:
        return bool(self.labels) and any(t is not None for t in self.thumbnails)

    # -- geometry

    def cell_width(self) -> float:
        return (self.width() - 2 * self.MARGIN) / max(1, len(self.labels))

    def x_of(self, position: float) -> float:
        return self.MARGIN + (position + 0.5) * self.cell_width()

    def position_at(self, x: float) -> float:
        k = len(self.labels)
        p = (x - self.MARGIN) / self.cell_width() - 0.5
        return min(max(p, 0.0), max(0.0, k - 1.0))

    def cell_rect(self, g: int) -> QRectF:
        cw = self.cell_width()
        h = self.height() - self.TOP - self.LABEL_H - 8
        return QRectF(self.MARGIN + g * cw + 3, self.TOP, cw - 6, h)

    # -- input

    def _interactive(self) -> bool:
        return self.has_groups and self.isEnabled()

    def mousePressEvent(self, event) -> None:
        if not self._interactive() or event.button() != Qt.MouseButton.LeftButton:
            return
        self.dragging = True
        self.drag_started.emit()
        self._move_to(self.position_at(event.position().x()))

    def mouseMoveEvent(self, event) -> None:
        if self.dragging:
            self._move_to(self.position_at(event.position().x()))

    def mouseReleaseEvent(self, event) -> None:
        if not self.dragging:
            return
        self.dragging = False
        p = self.position_at(event.position().x())
        if abs(p - round(p)) < SNAP:
            p = float(round(p))
        self._move_to(p)
        self.drag_finished.emit(self.position)

    def keyPressEvent(self, event) -> None:
        if not self._interactive():
            return super().keyPressEvent(event)
        step = 1.0 if event.modifiers() & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier) else 0.1
        key = event.key()
        if key == Qt.Key.Key_Left:
            target = self.position - step
        elif key == Qt.Key.Key_Right:
            target = self.position + step
        elif key == Qt.Key.Key_Home:
            target = 0.0
        elif key == Qt.Key.Key_End:
            target = len(self.labels) - 1.0
        else:
            return super().keyPressEvent(event)
        self._move_to(round(target, 3))
        self.drag_finished.emit(self.position)

    def _move_to(self, p: float) -> None:
        self.position = min(max(p, 0.0), max(0.0, len(self.labels) - 1.0))
        self.position_changed.emit(self.position)
        self.update()

    # -- painting

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor(30, 30, 33))
        if not self.labels:
            painter.setPen(QColor(150, 150, 155))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
            return
        nearest = int(round(self.position)) if self.has_groups else -1
        painter.drawImage(QPointF(0, 0), self._cells_image(nearest))
        if self.marker is not None:
            self._paint_marker(painter)
        if self.has_groups:
            self._paint_handle(painter)
        if self.busy:
            self._paint_busy(painter)

    def _cells_image(self, nearest: int) -> QImage:
        """The background and every cell, ``nearest`` highlighted, painted once per state and size."""
        dpr = self.devicePixelRatioF()
        key = (self.width(), self.height(), dpr, tuple(self.labels), tuple(id(t) for t in self.thumbnails),
               self.font().key())
        if key != self._cells_key:
            self._cells_key, self._cells = key, {}
        image = self._cells.get(nearest)
        if image is None:
            image = QImage(max(1, round(self.width() * dpr)), max(1, round(self.height() * dpr)),
                           QImage.Format.Format_ARGB32_Premultiplied)
            image.setDevicePixelRatio(dpr)
            painter = QPainter(image)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setFont(self.font())
            painter.fillRect(QRectF(0, 0, self.width(), self.height()), QColor(30, 30, 33))
            for g, label in enumerate(self.labels):
                self._paint_cell(painter, g, label, g == nearest)
            painter.end()
            self._cells[nearest] = image
        return image

    def _paint_cell(self, painter: QPainter, g: int, label: str, current: bool) -> None:
        r = self.cell_rect(g)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(44, 44, 48))
        painter.drawRoundedRect(r, 5, 5)
        thumb = self.thumbnails[g] if g < len(self.thumbnails) else None
        if thumb is not None:
            size = thumb.size().scaled(r.size().toSize(), Qt.AspectRatioMode.KeepAspectRatioByExpanding)
            target = QRectF(0, 0, size.width(), size.height())
            target.moveCenter(r.center())
            path = QPainterPath()
            path.addRoundedRect(r, 5, 5)
            painter.save()
            painter.setClipPath(path)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(target, thumb)
            painter.restore()
        if current:
            painter.setPen(QPen(ACCENT, 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(r, 5, 5)
        painter.setPen(ACCENT if current else QColor(200, 200, 205))
        f = QFont(self.font())
        f.setBold(current)
        painter.setFont(f)
        painter.drawText(QRectF(r.left(), r.bottom() + 2, r.width(), self.LABEL_H), Qt.AlignmentFlag.AlignCenter, label)

    def _paint_marker(self, painter: QPainter) -> None:
        x = self.x_of(self.marker)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(MARKER)
        painter.drawPolygon(QPolygonF([QPointF(x - 6, 3), QPointF(x + 6, 3), QPointF(x, self.TOP - 6)]))
        if self.marker_text:
            painter.setPen(MARKER)
            fm = painter.fontMetrics()
            w = fm.horizontalAdvance(self.marker_text)
            tx = min(max(x + 9, self.MARGIN), self.width() - self.MARGIN - w)
            painter.drawText(QPointF(tx, self.TOP - 7), self.marker_text)

    def _paint_handle(self, painter: QPainter) -> None:
        x = self.x_of(self.position)
        top, bottom = self.TOP - 2, self.height() - self.LABEL_H - 18  # the knob sits inside the cell, above its label
        painter.setPen(QPen(QColor(0, 0, 0, 150), 5))
        painter.drawLine(QPointF(x, top), QPointF(x, bottom))
        painter.setPen(QPen(ACCENT, 2.5))
        painter.drawLine(QPointF(x, top), QPointF(x, bottom))
        painter.setBrush(ACCENT)
        painter.setPen(QPen(QColor(20, 20, 20), 1.5))
        painter.drawEllipse(QPointF(x, bottom), 7, 7)
        if self.position_text and (self.dragging or abs(self.position - round(self.position)) > 1e-3):
            fm = painter.fontMetrics()
            w = fm.horizontalAdvance(self.position_text) + 12
            box = QRectF(min(max(x - w / 2, 2), self.width() - w - 2), top + 4, w, fm.height() + 4)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(20, 20, 22, 220))
            painter.drawRoundedRect(box, 4, 4)
            painter.setPen(ACCENT)
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self.position_text)

    def _paint_busy(self, painter: QPainter) -> None:
        painter.fillRect(self.rect(), QColor(20, 20, 22, 150))
        done, total = self.progress
        bar = QRectF(self.width() * 0.3, self.height() / 2 + 8, self.width() * 0.4, 6)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(70, 70, 75))
        painter.drawRoundedRect(bar, 3, 3)
        if total:
            painter.setBrush(ACCENT)
            painter.drawRoundedRect(QRectF(bar.left(), bar.top(), bar.width() * done / total, bar.height()), 3, 3)
        painter.setPen(QColor(230, 230, 235))
        painter.drawText(QRectF(0, self.height() / 2 - 20, self.width(), 22), Qt.AlignmentFlag.AlignCenter,
                         "Computing every age\u2026")
