"""The photo at full resolution with zoom and pan, its face boxes, a face box drawn by hand, and the
aged face drawn in place.

Scene coordinates are photo pixels. The photo is drawn from a :class:`app.imaging.Pyramid` (the level that
matches the zoom: sharp at 100 %, cheap when a 12 MP photo is seen whole). The aged face is an overlay
item covering only the face's rectangle; a timeline frame replaces its image (rendered at the resolution
it is shown at, see ``app.preview``), so a drag repaints that rectangle and nothing else.

Mouse: wheel zooms under the cursor, dragging the background pans, a click in a face box selects that
face; in "draw face" mode a drag draws a box (``box_drawn``, Escape cancels). Keys: Ctrl+0 fit,
Ctrl+1 100 %, Ctrl++ / Ctrl+- zoom (as window actions).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen, QTransform
from PySide6.QtWidgets import (
    QGraphicsItem, QGraphicsRectItem, QGraphicsScene, QGraphicsView,
    QStyleOptionGraphicsItem,
)

from app.imaging import Pyramid

ACCENT = QColor(255, 166, 77)
MIN_ZOOM, MAX_ZOOM = 0.02, 16.0


class PhotoItem(QGraphicsItem):
    """Draws a :class:`Pyramid`, only the exposed part, from the level that matches the zoom."""

    def __init__(self, pyramid: Pyramid):
        super().__init__()
        self.pyramid = pyramid
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def boundingRect(self) -> QRectF:
        s = self.pyramid.size
        return QRectF(0, 0, s.width(), s.height())

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        lod = QStyleOptionGraphicsItem.levelOfDetailFromTransform(painter.worldTransform())
        image, s = self.pyramid.level_for(lod)
        exposed = option.exposedRect.intersected(self.boundingRect())
        if exposed.isEmpty():
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, lod < 2.0)
        source = QRectF(exposed.x() * s, exposed.y() * s, exposed.width() * s, exposed.height() * s)
        painter.drawImage(exposed, image, source)


class OverlayItem(QGraphicsItem):
    """An image drawn over ``rect`` (photo pixels), whatever its own resolution."""

    def __init__(self):
        super().__init__()
        self.image: QImage | None = None
        self.rect = QRectF()
        self.setZValue(1)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def set_image(self, image: QImage | None, rect: QRectF) -> None:
        if rect != self.rect:
            self.prepareGeometryChange()
            self.rect = QRectF(rect)
        self.image = image
        self.update()

    def boundingRect(self) -> QRectF:
        return self.rect

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self.image is not None and not self.rect.isEmpty():
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(self.rect, self.image)


class LabelItem(QGraphicsItem):
    """A small text tag with a dark background that keeps its size on screen (above a face box)."""

    def __init__(self, text: str, parent: QGraphicsItem):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._text = text
        self.color = QColor(255, 255, 255)

    def setText(self, text: str) -> None:
        self.prepareGeometryChange()
        self._text = text
        self.update()

    def text(self) -> str:
        return self._text

    def boundingRect(self) -> QRectF:
        w = QFontMetrics(QFont()).horizontalAdvance(self._text) + 12
        return QRectF(0, -22, w, 20)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        r = self.boundingRect()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(20, 20, 22, 200))
        painter.drawRoundedRect(r, 4, 4)
        painter.setPen(self.color)
        painter.drawText(r, Qt.AlignmentFlag.AlignCenter, self._text)


class FaceBoxItem(QGraphicsRectItem):
    """A face's box. Its label is a separate, top-level item (``label``, added to the scene with the box)
    stacked above the landmark layer, so the region outlines never cover it (a child's Z-value only
    counts among its siblings)."""

    LABEL_Z = 7

    def __init__(self, index: int, rect: QRectF, label: str):
        super().__init__(rect)
        self.index = index
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(2)
        self.label = LabelItem(label, None)
        self.label.setPos(rect.topLeft())
        self.label.setZValue(self.LABEL_Z)
        self.set_selected(False)

    def set_selected(self, on: bool) -> None:
        color = ACCENT if on else QColor(255, 255, 255, 170)
        pen = QPen(color, 2.0 if on else 1.5)
        pen.setCosmetic(True)
        if not on:
            pen.setStyle(Qt.PenStyle.DashLine)
        self.setPen(pen)
        self.label.color = color
        self.label.update()


class PhotoView(QGraphicsView):
    """See the module doc."""

    face_clicked = Signal(int)
    box_drawn = Signal(QRectF)
    scale_changed = Signal(float)
    draw_mode_changed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setBackgroundBrush(QColor(24, 24, 26))
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # pan by dragging
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.photo_item: PhotoItem | None = None
        self.overlay = OverlayItem()
        self.scene().addItem(self.overlay)
        self.boxes: list[FaceBoxItem] = []
        self.message = "Open a folder of photos to begin"
        self._fit = True
        self._draw_mode = False
        self._rubber: QGraphicsRectItem | None = None
        self._press: QPointF | None = None
        self._press_grabbed = False

    # -- contents

    def set_photo(self, pyramid: Pyramid | None, message: str = "") -> None:
        """Show a photo (fitted to the view), or nothing with ``message``."""
        self.set_faces([], -1)
        self.clear_overlay()
        if self.photo_item is not None:
            self.scene().removeItem(self.photo_item)
            self.photo_item = None
        self.message = message
        if pyramid is not None:
            self.photo_item = PhotoItem(pyramid)
            self.scene().addItem(self.photo_item)
            self.scene().setSceneRect(self.photo_item.boundingRect())
            self.fit()
        else:
            self.scene().setSceneRect(QRectF())
        self.viewport().update()

    def photo_rect(self) -> QRectF:
        return self.photo_item.boundingRect() if self.photo_item is not None else QRectF()

    def set_faces(self, boxes: list[tuple[float, float, float, float]], selected: int,
                  labels: list[str] | None = None) -> None:
        for item in self.boxes:
            self.scene().removeItem(item.label)
            self.scene().removeItem(item)
        self.boxes = []
        for i, (l, t, r, b) in enumerate(boxes):
            label = labels[i] if labels else f"Face {i + 1}"
            item = FaceBoxItem(i, QRectF(l, t, r - l, b - t), label)
            self.scene().addItem(item)
            self.scene().addItem(item.label)
            self.boxes.append(item)
        self.set_selected(selected)

    def set_selected(self, index: int) -> None:
        for item in self.boxes:
            item.set_selected(item.index == index)

    def set_box_label(self, index: int, text: str) -> None:
        if 0 <= index < len(self.boxes):
            self.boxes[index].label.setText(text)

    def set_overlay(self, image: QImage | None, rect: QRectF) -> None:
        self.overlay.set_image(image, rect)

    def clear_overlay(self) -> None:
        self.overlay.set_image(None, QRectF())

    def show_overlay(self, on: bool) -> None:
        """Before/after: False shows the original photo under the aged face."""
        self.overlay.setVisible(on)

    # -- zoom and pan

    def current_scale(self) -> float:
        return float(self.transform().m11())

    def display_scale(self) -> float:
        """Screen pixels per photo pixel, device pixel ratio included (what previews render at)."""
        return self.current_scale() * self.devicePixelRatioF()

    def fit(self) -> None:
        self._fit = True
        r = self.photo_rect()
        if r.isEmpty():
            return
        self.fitInView(r, Qt.AspectRatioMode.KeepAspectRatio)
        self.scale_changed.emit(self.current_scale())

    def set_zoom(self, scale: float, anchor_center: bool = True) -> None:
        self._fit = False
        scale = min(max(scale, MIN_ZOOM), MAX_ZOOM)
        anchor = self.transformationAnchor()
        if anchor_center:
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setTransform(QTransform.fromScale(scale, scale))
        self.setTransformationAnchor(anchor)
        self.scale_changed.emit(self.current_scale())

    def zoom_by(self, factor: float) -> None:
        self.set_zoom(self.current_scale() * factor)

    def wheelEvent(self, event) -> None:
        if self.photo_item is None:
            return
        factor = 1.0015 ** event.angleDelta().y()
        target = min(max(self.current_scale() * factor, MIN_ZOOM), MAX_ZOOM)
        self._fit = False
        self.scale(target / self.current_scale(), target / self.current_scale())
        self.scale_changed.emit(self.current_scale())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit:
            self.fit()

    # -- drawing a face box, clicking a face

    def set_draw_mode(self, on: bool) -> None:
        if on == self._draw_mode:
            return
        self._draw_mode = on
        self.setDragMode(QGraphicsView.DragMode.NoDrag if on else QGraphicsView.DragMode.ScrollHandDrag)
        self.viewport().setCursor(Qt.CursorShape.CrossCursor if on else Qt.CursorShape.OpenHandCursor)
        if not on and self._rubber is not None:
            self.scene().removeItem(self._rubber)
            self._rubber = None
        self.draw_mode_changed.emit(on)

    @property
    def draw_mode(self) -> bool:
        return self._draw_mode

    def mousePressEvent(self, event) -> None:
        self._press = event.position()
        if self._draw_mode and event.button() == Qt.MouseButton.LeftButton and self.photo_item is not None:
            start = self.mapToScene(event.position().toPoint())
            self._rubber = QGraphicsRectItem(QRectF(start, start))
            pen = QPen(ACCENT, 2, Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            self._rubber.setPen(pen)
            self._rubber.setBrush(QColor(255, 166, 77, 40))
            self._rubber.setZValue(10)
            self._rubber.setData(0, start)
            self.scene().addItem(self._rubber)
            event.accept()
            return
        super().mousePressEvent(event)
        self._press_grabbed = self.scene().mouseGrabberItem() is not None

    def mouseMoveEvent(self, event) -> None:
        if self._rubber is not None:
            start = self._rubber.data(0)
            self._rubber.setRect(QRectF(start, self.mapToScene(event.position().toPoint())).normalized())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        if self._rubber is not None:
            rect = self._rubber.rect().intersected(self.photo_rect())
            self.scene().removeItem(self._rubber)
            self._rubber = None
            self.set_draw_mode(False)
            if rect.width() >= 8 and rect.height() >= 8:
                self.box_drawn.emit(rect)
            event.accept()
            return
        super().mouseReleaseEvent(event)
        press, self._press = self._press, None
        if press is None or self._press_grabbed or event.button() != Qt.MouseButton.LeftButton:
            return
        if (event.position() - press).manhattanLength() > 4:
            return  # that was a pan
        pos = self.mapToScene(event.position().toPoint())
        hits = [b for b in self.boxes if b.rect().contains(pos)]
        if hits:
            best = min(hits, key=lambda b: b.rect().width() * b.rect().height())
            self.face_clicked.emit(best.index)

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Escape and self._draw_mode:
            self.set_draw_mode(False)
            return
        super().keyPressEvent(event)

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        if self.photo_item is None and self.message:
            painter.save()
            painter.resetTransform()
            painter.setPen(QColor(170, 170, 175))
            f = painter.font()
            f.setPointSizeF(f.pointSizeF() * 1.2)
            painter.setFont(f)
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             self.message)
            painter.restore()
