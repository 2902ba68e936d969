"""The timeline strip paints its cells once per state and reuses them while the handle is dragged (issue 13,
item 6), and never shows stale cells: new thumbnails, labels or a new size repaint them."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor, QImage

pytestmark = pytest.mark.usefixtures("app_env")


def _thumbs(hue: int) -> list[QImage]:
    out = []
    for g in range(8):
        image = QImage(64, 64, QImage.Format.Format_RGB32)
        image.fill(QColor.fromHsv((hue + 40 * g) % 360, 200, 120 + 10 * g))
        out.append(image)
    return out


def _strip(qtbot, thumbs):
    from app.timeline import TimelineWidget

    widget = TimelineWidget()
    qtbot.addWidget(widget)
    widget.resize(800, 160)
    widget.set_groups([f"{10 * g}-{10 * g + 9}" for g in range(8)], thumbs)
    return widget


def test_a_drag_reuses_the_painted_cells(qtbot, monkeypatch):
    from app.timeline import TimelineWidget

    widget = _strip(qtbot, _thumbs(0))
    calls = []
    real = TimelineWidget._paint_cell
    monkeypatch.setattr(TimelineWidget, "_paint_cell", lambda self, *a: calls.append(a[0]) or real(self, *a))
    widget.set_position(2.0)
    widget.grab()
    assert len(calls) == 8
    for p in (2.1, 2.3, 1.8):  # the same cell stays highlighted: no cell is painted again
        widget.set_position(p)
        widget.grab()
    assert len(calls) == 8
    widget.set_position(3.0)  # another cell highlighted: the cells once more
    widget.grab()
    assert len(calls) == 16
    widget.set_position(2.2)  # back: painted before, reused
    widget.grab()
    assert len(calls) == 16


def test_the_cells_follow_new_thumbnails_labels_and_size(qtbot):
    widget = _strip(qtbot, _thumbs(0))
    widget.set_position(4.4, "about 44")
    widget.grab()
    widget.set_groups(widget.labels, _thumbs(180))  # a landmark moved: new thumbnails
    fresh = _strip(qtbot, _thumbs(180))
    fresh.set_position(4.4, "about 44")
    assert widget.grab().toImage() == fresh.grab().toImage()
    before = widget.grab().toImage()
    widget.set_groups(["a"] * 8, _thumbs(180))  # new labels
    assert widget.grab().toImage() != before
    widget.resize(640, 160)
    fresh.resize(640, 160)
    fresh.set_groups(["a"] * 8, _thumbs(180))
    assert widget.grab().toImage() == fresh.grab().toImage()
