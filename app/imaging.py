"""numpy <-> QImage at the boundary between the engine and the GUI.

QImage can be built on any thread (QPixmap cannot), so decoding, resizing and conversion happen on
workers and the GUI thread only draws. :func:`to_qimage` returns a QImage that owns its pixels
(``convertToFormat`` detaches it from the numpy buffer). :func:`shared_qimage` does not copy: it converts
with OpenCV (which releases the GIL; Qt's own conversion of a 12 MP photo holds it ~45 ms, a visible
hitch of the GUI thread) and returns the QImage together with the buffer it draws from, which the caller
keeps (:class:`Pyramid` does). Format_RGB32 is what the raster paint engine draws fastest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PySide6.QtCore import QSize
from PySide6.QtGui import QImage


def to_qimage(rgb: np.ndarray) -> QImage:
    """An owned Format_RGB32 QImage of a uint8 (H, W, 3) RGB (or (H, W) grey) array."""
    arr = np.ascontiguousarray(rgb)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, not {arr.dtype}")
    if arr.ndim == 2:
        arr = np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2))
    h, w = arr.shape[:2]
    view = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888)
    return view.convertToFormat(QImage.Format.Format_RGB32)  # deep copy: no reference to arr remains


def shared_qimage(rgb: np.ndarray) -> tuple[QImage, np.ndarray]:
    """(a Format_RGB32 QImage drawing from a new BGRA buffer, that buffer): keep the buffer alive."""
    bgra = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGRA)  # RGB32 in memory: B, G, R, 0xff
    h, w = bgra.shape[:2]
    return QImage(bgra.data, w, h, bgra.strides[0], QImage.Format.Format_RGB32), bgra


def from_qimage(image: QImage) -> np.ndarray:
    """A uint8 (H, W, 3) RGB copy of a QImage (any format)."""
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()  # a copy: the converted QImage goes away on return


@dataclass
class Pyramid:
    """A photo at several resolutions for drawing: ``levels[0]`` is full size, each next one half of
    the previous, down to about 512 px. The view draws the smallest level that still has at least one
    image pixel per screen pixel (sharp at every zoom, cheap when the photo is seen whole)."""

    size: QSize
    levels: list[QImage]
    buffers: list = field(default_factory=list, repr=False)  # the pixels the levels draw from

    def level_for(self, scale: float) -> tuple[QImage, float]:
        """The level to draw at view ``scale`` (screen px per photo px) and its scale vs the photo."""
        chosen, chosen_scale = self.levels[0], 1.0
        for img in self.levels:
            s = img.width() / max(1, self.size.width())
            if s >= scale:
                chosen, chosen_scale = img, s
        return chosen, chosen_scale


def build_pyramid(rgb: np.ndarray, min_side: int = 512) -> Pyramid:
    """The :class:`Pyramid` of a photo (run on a worker thread: a 12 MP photo takes ~0.1 s)."""
    h, w = rgb.shape[:2]
    pyramid = Pyramid(QSize(w, h), [])
    cur = rgb
    while True:
        image, buf = shared_qimage(cur)
        pyramid.levels.append(image)
        pyramid.buffers.append(buf)
        if max(cur.shape[:2]) // 2 < min_side:
            return pyramid
        cur = cv2.resize(cur, (max(1, cur.shape[1] // 2), max(1, cur.shape[0] // 2)), interpolation=cv2.INTER_AREA)
