"""Shows the selected face's ages: connects the aging controller to the timeline, the photo view and the
face panel.

- A face is selected: the timeline shows its groups' labels with a progress bar until
  ``AgingController`` has them, then their thumbnails; or why there are none (no model, no face).
- Its age is estimated: the marker goes there ("now ~ 34"), the handle too while the person has not
  moved it, the face panel and the face box say it, and the catalog keeps it.
- The handle moves: the aged face is drawn over the photo (``AgingController.frame`` at the view's
  display scale; only the face's rectangle changes); zooming renders it again at the new scale.
- Before/after: :meth:`set_before` shows the original under the handle's age (the backslash key, held,
  or the toolbar toggle).

Until the person moves the handle the photo is shown as it is (``aged_active`` False).
"""

from __future__ import annotations

from PySide6.QtCore import QObject

from core.contracts import AGING
from core.timeline import age_to_position, position_label


class AgePresenter(QObject):
    def __init__(self, aging, editor, timeline, view, face_panel, parent: QObject | None = None):
        super().__init__(parent)
        self.aging, self.editor, self.timeline, self.view, self.panel = aging, editor, timeline, view, face_panel
        self.aged_active = False
        self.before = False
        aging.groups_started.connect(lambda _fid: timeline.set_busy(True))
        aging.groups_progress.connect(lambda d, t: timeline.set_busy(True, d, t))
        aging.groups_ready.connect(self._groups_ready)
        aging.groups_failed.connect(lambda text: timeline.clear(f"Aging failed: {text}"))
        aging.age_ready.connect(self._age_ready)
        timeline.position_changed.connect(self._moved)
        view.scale_changed.connect(lambda _s: self.render())

    def reset(self, placeholder: str | None = None) -> None:
        """Back to the photo as it is (another photo or face)."""
        self.aged_active = False
        self.view.clear_overlay()
        if placeholder is not None:
            self.timeline.clear(placeholder)

    def face_selected(self, stored) -> None:
        self.reset()
        if stored is None:
            return
        if self.aging.available:
            self.timeline.set_groups(self.aging.labels)
            self.timeline.set_marker(None)
            self.timeline.set_busy(True)
        else:
            self.show_unavailable()

    def show_unavailable(self) -> None:
        err = next((e for e in self.aging.models.errors if e.kind == AGING.kind), None)
        self.timeline.clear(f"Aging is off: {err}" if err else "Loading the aging model\u2026")

    def _groups_ready(self, result) -> None:
        tl = self.timeline
        tl.set_groups(result.labels, result.thumbnails)
        tl.set_busy(False)
        if tl.marker is not None and not self.aged_active:
            tl.set_position(tl.marker)
        self.render()

    def _age_ready(self, face_id: int, age: float) -> None:
        face = self.editor.current_face()
        if face is None or face.id != face_id:
            return
        if face.estimated_age is None or abs(face.estimated_age - age) > 1e-3:
            self.editor.save_estimated_age(face_id, age)
        self.panel.set_age(age)
        self.view.set_box_label(self.editor.selected, f"Face {self.editor.selected + 1} \u00b7 \u2248{age:.0f}")
        groups = self.aging.groups
        if groups:
            pos = age_to_position(age, groups)
            self.timeline.set_marker(pos, f"now \u2248 {age:.0f}")
            if not self.aged_active:
                self.timeline.set_position(pos)

    def _moved(self, position: float) -> None:
        self.aged_active = True
        self.timeline.position_text = position_label(position, self.aging.labels, self.aging.groups)
        self.render()

    def render(self) -> None:
        """Draw the aged face at the handle's position (nothing until the person moved the handle)."""
        if not self.aged_active:
            return
        frame = self.aging.frame(self.timeline.position, self.view.display_scale())
        if frame is not None:
            self.view.set_overlay(*frame)
            self.view.show_overlay(not self.before)

    def set_before(self, on: bool) -> None:
        """Show the original photo (True) or the aged face (False)."""
        self.before = on
        self.view.show_overlay(not on)
