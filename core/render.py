"""Timeline frames at the size they are shown or written: fast enough to drag at display rate.

Used by the app's preview (``app.preview``) and by animation exports (``core.export_jobs``).

A frame is the face's rectangle of the photo (``core.align.source_rect``: the only part the aging
changes) with the blended groups' change pasted back, rendered at the resolution it is shown at: at a
view scale of 0.25 a 12 MP photo's face rectangle is rendered at a quarter of its size, so one frame costs
what the screen shows, not what the photo holds. The view draws the frame over the unchanged photo.

The scaled crop of the photo is made once per scale and cached; each frame is then one blend of two
aligned S x S outputs (``AgingPipeline.blend``) and one ``paste_back`` into that small crop. No inference.
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np

from core.align import paste_back, source_rect
from core.pipeline import AgingPipeline, GroupResults, PreparedFace

SCALE_STEPS = 16  # scales are rounded to 1/16 so that zooming does not fill the cache with near-duplicates


class FrameRenderer:
    """Renders timeline positions of one prepared face (see the module doc)."""

    def __init__(self, photo_rgb: np.ndarray, prepared: PreparedFace, results: GroupResults, pad: int = 4,
                 rect: tuple[int, int, int, int] | None = None):
        """``rect``: the part of the photo to render (x0, y0, x1, y1); default the face's rectangle."""
        self.photo = photo_rgb
        self.prepared = prepared
        self.results = results
        h, w = photo_rgb.shape[:2]
        self.rect = tuple(int(v) for v in rect) if rect is not None else source_rect(
            prepared.matrix, prepared.size, (h, w), pad=pad)  # x0, y0, x1, y1
        self._bases: OrderedDict[float, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    @property
    def num_groups(self) -> int:
        return len(self.results)

    @staticmethod
    def quantise(scale: float) -> float:
        return min(1.0, max(1.0 / SCALE_STEPS, round(scale * SCALE_STEPS) / SCALE_STEPS))

    def _base(self, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """The photo's face rectangle at ``scale`` and the matrix taking its pixels to the aligned face."""
        cached = self._bases.get(scale)
        if cached is not None:
            self._bases.move_to_end(scale)
            return cached
        x0, y0, x1, y1 = self.rect
        crop = self.photo[y0:y1, x0:x1]
        if scale < 1.0:
            size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        crop = np.ascontiguousarray(crop)
        sx = crop.shape[1] / max(1, x1 - x0)
        sy = crop.shape[0] / max(1, y1 - y0)
        # crop pixel q -> photo pixel (q + 0.5) / s - 0.5 + origin (pixel centres line up)
        to_photo = np.array([[1 / sx, 0, 0.5 / sx - 0.5 + x0], [0, 1 / sy, 0.5 / sy - 0.5 + y0], [0, 0, 1]])
        m = np.vstack([np.asarray(self.prepared.matrix, dtype=np.float64), [0, 0, 1]]) @ to_photo
        self._bases[scale] = (crop, m[:2])
        while len(self._bases) > 4:
            self._bases.popitem(last=False)
        return crop, m[:2]

    def aligned_at(self, position: float) -> np.ndarray:
        """The model's aligned output at a timeline position (two neighbouring groups blended)."""
        return AgingPipeline.blend(self.results, position)

    def render(self, position: float, scale: float = 1.0, *, quantise: bool = True
               ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """(the rectangle at ``position`` rendered at ``scale`` (<= 1), the rectangle in photo pixels).
        ``quantise`` False renders at exactly ``scale`` (exports), else at the nearest 1/16."""
        base, m = self._base(self.quantise(scale) if quantise else min(1.0, float(scale)))
        out = paste_back(base, m, self.prepared.aligned, self.aligned_at(position), self.prepared.mask)
        return out, self.rect

    def original(self, scale: float = 1.0) -> np.ndarray:
        """The unchanged face rectangle at ``scale`` (for thumbnails and before/after)."""
        return self._base(self.quantise(scale))[0]
