"""The app's timeline preview: :class:`core.render.FrameRenderer` (the frame rendering lives in the
engine, shared with animation exports); this name is kept for the GUI's modules."""

from __future__ import annotations

from core.render import SCALE_STEPS, FrameRenderer

PreviewRenderer = FrameRenderer

__all__ = ["SCALE_STEPS", "PreviewRenderer"]
