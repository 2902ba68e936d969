"""The selected face's 68 landmarks as draggable points, its five region outlines, the forehead's
editable top edge, and the undo command every edit becomes.

Points are coloured by the region they are edited as (``core.regions.LANDMARK_REGION`` /
``REGION_COLORS``) and keep their size on screen whatever the zoom. While a point (or the forehead
handle) is dragged the outlines follow live; on release the layer emits ``edited(before, after)`` and
the editor pushes ONE :class:`EditFaceCommand` (so one drag is one undo step). The forehead handle moves
along the face's up axis and sets ``Face.forehead_height`` (``app.state.forehead_height_at``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen, QPolygonF, QUndoCommand
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject, QGraphicsPathItem

from app.state import forehead_handle_point, forehead_height_at
from core.regions import LANDMARK_REGION, REGION_COLORS, REGION_NAMES, forehead_top, region_polygons

FaceGeometry = tuple[np.ndarray, float]  # (landmarks (68, 2) float32, forehead_height)


def _qcolor(name: str, alpha: int = 255) -> QColor:
    r, g, b = REGION_COLORS[name]
    return QColor(r, g, b, alpha)


class _Handle(QGraphicsItem):
    """A point that keeps its screen size; dragging it reports to the layer."""

    RADIUS = 4.0

    def __init__(self, layer: "LandmarkLayer", index: int, color: QColor, diamond: bool = False):
        super().__init__(layer)
        self.layer, self.index, self.color, self.diamond = layer, index, color, diamond
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setAcceptHoverEvents(True)
        self.setAcceptedMouseButtons(Qt.MouseButton.LeftButton)
        self.setCursor(Qt.CursorShape.SizeAllCursor if not diamond else Qt.CursorShape.SizeVerCursor)
        self.setZValue(5 if diamond else 4)
        self._hover = False
        self._offset = QPointF()

    def boundingRect(self) -> QRectF:
        r = self.RADIUS * 2 + 2
        return QRectF(-r, -r, 2 * r, 2 * r)

    def shape(self) -> QPainterPath:  # the hit area: the dot and a little more, not the whole bounding box
        path = QPainterPath()
        r = self.RADIUS + 2.5
        path.addEllipse(QPointF(0, 0), r, r)
        return path

    def paint(self, painter: QPainter, option, widget=None) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = self.RADIUS * (1.5 if self._hover else 1.0) * (1.4 if self.diamond else 1.0)
        painter.setPen(QPen(QColor(0, 0, 0, 200), 1.2))
        painter.setBrush(self.color)
        if self.diamond:
            painter.drawPolygon(QPolygonF([QPointF(0, -r), QPointF(r, 0), QPointF(0, r), QPointF(-r, 0)]))
        else:
            painter.drawEllipse(QPointF(0, 0), r, r)

    def hoverEnterEvent(self, event) -> None:
        self._hover = True
        self.update()

    def hoverLeaveEvent(self, event) -> None:
        self._hover = False
        self.update()

    def mousePressEvent(self, event) -> None:
        self._offset = self.pos() - event.scenePos()
        self.layer._begin_drag()
        event.accept()

    def mouseMoveEvent(self, event) -> None:
        self.layer._drag(self, event.scenePos() + self._offset)

    def mouseReleaseEvent(self, event) -> None:
        self.layer._end_drag()


class LandmarkLayer(QGraphicsObject):
    """Points, outlines and forehead edge of one face (see the module doc)."""

    edited = Signal(object, object)  # before, after: FaceGeometry, on release
    live_changed = Signal()  # during a drag

    FOREHEAD = -1  # index of the forehead handle

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents, True)
        self.setZValue(3)
        self.landmarks: np.ndarray | None = None
        self.forehead_height = 0.0
        self.bounds = QRectF()  # points are kept inside (the photo)
        self._before: FaceGeometry | None = None
        self.outlines: dict[str, QGraphicsPathItem] = {}
        for name in REGION_NAMES:
            item = QGraphicsPathItem(self)
            pen = QPen(_qcolor(name, 230), 1.6)
            pen.setCosmetic(True)
            item.setPen(pen)
            item.setBrush(QBrush(_qcolor(name, 38)))
            item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            self.outlines[name] = item
        self.top_edge = QGraphicsPathItem(self)
        pen = QPen(_qcolor("forehead"), 2.0, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.top_edge.setPen(pen)
        self.top_edge.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.handles = [_Handle(self, i, _qcolor(LANDMARK_REGION[i])) for i in range(68)]
        self.forehead_handle = _Handle(self, self.FOREHEAD, _qcolor("forehead"), diamond=True)
        self.forehead_handle.setToolTip("Drag to move the top edge of the forehead region")
        self.setVisible(False)

    def boundingRect(self) -> QRectF:
        return QRectF()

    def paint(self, painter, option, widget=None) -> None:
        pass

    # -- contents

    def set_face(self, landmarks: np.ndarray | None, forehead_height: float = 0.38) -> None:
        """Show a face's points (None hides the layer)."""
        if landmarks is None:
            self.landmarks = None
            self.setVisible(False)
            return
        self.landmarks = np.array(landmarks, dtype=np.float32).reshape(68, 2)
        self.forehead_height = float(forehead_height)
        for h, (x, y) in zip(self.handles, self.landmarks):
            h.setPos(float(x), float(y))
        self._refresh()

    def geometry(self) -> FaceGeometry:
        return self.landmarks.copy(), self.forehead_height

    def _refresh(self) -> None:
        lm, fh = self.landmarks, self.forehead_height
        for name, polys in region_polygons(lm, fh).items():
            path = QPainterPath()
            for poly in polys:
                path.addPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in poly]))
                path.closeSubpath()
            self.outlines[name].setPath(path)
        top = forehead_top(lm, fh)
        edge = QPainterPath()
        edge.addPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in top]))
        self.top_edge.setPath(edge)
        hx, hy = forehead_handle_point(lm, fh)
        self.forehead_handle.setPos(float(hx), float(hy))

    # -- dragging (called by the handles)

    def _begin_drag(self) -> None:
        self._before = self.geometry() if self.landmarks is not None else None

    def _drag(self, handle: _Handle, pos: QPointF) -> None:
        if self.landmarks is None:
            return
        if not self.bounds.isEmpty():
            pos = QPointF(min(max(pos.x(), self.bounds.left()), self.bounds.right()),
                          min(max(pos.y(), self.bounds.top()), self.bounds.bottom()))
        if handle.index == self.FOREHEAD:
            self.forehead_height = forehead_height_at(self.landmarks, (pos.x(), pos.y()))
        else:
            handle.setPos(pos)
            self.landmarks[handle.index] = (pos.x(), pos.y())
        self._refresh()
        self.live_changed.emit()

    def _end_drag(self) -> None:
        before, self._before = self._before, None
        if before is None or self.landmarks is None:
            return
        after = self.geometry()
        if not np.array_equal(before[0], after[0]) or before[1] != after[1]:
            self.edited.emit(before, after)

    def drag_point(self, index: int, to: tuple[float, float]) -> None:
        """A whole drag of point ``index`` (or FOREHEAD) to ``to`` as the mouse would do it (tests, scripts)."""
        handle = self.forehead_handle if index == self.FOREHEAD else self.handles[index]
        self._begin_drag()
        self._drag(handle, QPointF(*to))
        self._end_drag()


class EditFaceCommand(QUndoCommand):
    """One edit of a face's landmarks / forehead height (a drag, or a reset to the detected points).

    ``apply(face_id, landmarks, forehead_height, reset)`` puts a geometry in place (shown, saved to the
    catalog); ``reset`` True means "the detected values again" (the catalog drops the edit)."""

    def __init__(self, apply: Callable[[int, np.ndarray, float, bool], None], face_id: int,
                 before: FaceGeometry, after: FaceGeometry, text: str, *, reset: bool = False,
                 before_was_detected: bool = False):
        super().__init__(text)
        self.apply, self.face_id = apply, face_id
        self.before = (np.array(before[0], np.float32), float(before[1]))
        self.after = (np.array(after[0], np.float32), float(after[1]))
        self.reset, self.before_was_detected = reset, before_was_detected

    def redo(self) -> None:
        self.apply(self.face_id, self.after[0], self.after[1], self.reset)

    def undo(self) -> None:
        self.apply(self.face_id, self.before[0], self.before[1], self.before_was_detected)


def describe_edit(before: FaceGeometry, after: FaceGeometry) -> str:
    """Undo text: "Move landmark 31 (nose)", "Move 3 landmarks", "Move forehead edge"."""
    moved = np.flatnonzero(np.any(before[0] != after[0], axis=1))
    if len(moved) == 1:
        i = int(moved[0])
        return f"Move landmark {i} ({LANDMARK_REGION[i]})"
    if len(moved) > 1:
        return f"Move {len(moved)} landmarks"
    return "Move forehead edge"
