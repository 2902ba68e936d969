"""The photo being shown and its faces: decoding, finding faces, selecting one, editing it.

Everything slow runs on the task runner: decoding (and the drawing pyramid) on "default", finding faces
(or reading them from the catalog when the photo was scanned before) on "default", catalog writes on
"io" (one thread, so writes happen in the order they were made, and the window waits for them on close).
Opening another photo cancels the previous photo's tasks: their results are dropped.

Edits: each landmark or forehead drag, and each reset to the detected points, is one
:class:`app.landmark_items.EditFaceCommand` on the photo's own QUndoStack (a QUndoGroup holds one stack
per photo opened in this session, so going back to a photo keeps its history). Applying a command updates
the face in memory, tells the view (``face_edited``) and saves it to the catalog at once; undoing the first
edit of a face resets it in the catalog (its landmarks are "detected" again). Strength changes are
:class:`StrengthsCommand` steps on the same stack: one per slider drag, toggle or reset; the keyboard
steps of one slider merge into one (``app.regions_panel``'s gestures).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoGroup, QUndoStack

from app.landmark_items import EditFaceCommand, FaceGeometry, describe_edit
from app.state import describe_strengths
from core.text import display
from app.finders import face_finder
from app.tasks import TaskRunner

log = logging.getLogger(__name__)


class PhotoEditor(QObject):
    photo_loading = Signal(Path)
    photo_loaded = Signal(Path, object)  # path, app.imaging.Pyramid
    photo_failed = Signal(Path, str)
    faces_loading = Signal(Path)
    faces_changed = Signal(list)  # [core.catalog.StoredFace]
    face_selected = Signal(object)  # StoredFace or None
    face_edited = Signal(object)  # StoredFace whose landmarks / forehead changed
    strengths_changed = Signal(object)  # StoredFace
    photo_scanned = Signal(object, int)  # path (str: Qt would drop bytes of a name not in UTF-8), faces
    message = Signal(str, str)  # level ("info", "warning", "error"), text

    def __init__(self, runner: TaskRunner, catalog, mode_getter=lambda: "fast", parent: QObject | None = None):
        super().__init__(parent)
        self.runner = runner
        self.catalog = catalog
        self.mode_getter = mode_getter
        self.path: Path | None = None
        self.photo = None  # core.photos.Photo
        self.pyramid = None
        self.faces: list = []
        self.selected = -1
        self.undo_group = QUndoGroup(self)
        self._stacks: dict[str, QUndoStack] = {}

    # -- opening a photo

    def open_photo(self, path: str | os.PathLike) -> None:
        path = Path(os.path.abspath(path))
        if self.path == path and self.photo is not None:
            return
        self.runner.cancel("faces")
        self.runner.cancel("face-from-box")
        self.path, self.photo, self.pyramid, self.faces, self.selected = path, None, None, [], -1
        self.undo_group.setActiveStack(self._stack_for(path))
        self.photo_loading.emit(path)
        self.face_selected.emit(None)
        self.runner.submit(_decode, path, key="photo", on_result=lambda r, p=path: self._decoded(p, *r),
                           on_error=lambda exc, p=path: self._decode_failed(p, exc))

    def _stack_for(self, path: Path) -> QUndoStack:
        key = str(path)
        if key not in self._stacks:
            stack = QUndoStack(self.undo_group)
            stack.setUndoLimit(200)
            self._stacks[key] = stack
        return self._stacks[key]

    @property
    def undo_stack(self) -> QUndoStack | None:
        return self.undo_group.activeStack()

    def _decoded(self, path: Path, photo, pyramid) -> None:
        if path != self.path:
            return
        self.photo, self.pyramid = photo, pyramid
        self.photo_loaded.emit(path, pyramid)
        self.load_faces()

    def _decode_failed(self, path: Path, exc: Exception) -> None:
        if path != self.path:
            return
        reason = getattr(exc, "reason", None) or str(exc)
        self.photo_failed.emit(path, reason)
        self.message.emit("error", display(f"Cannot open {path.name}: {reason}"))

    # -- faces

    def load_faces(self, redetect: bool = False) -> None:
        """The photo's faces from the catalog, or found now (``redetect``: found again, edits of faces
        that are found again are kept, see core.catalog)."""
        if self.photo is None:
            return
        path = self.path
        self.faces_loading.emit(path)
        self.runner.submit(_find_faces, path, self.photo, self.catalog, self.mode_getter(), redetect, key="faces",
                           on_result=lambda r, p=path: self._faces_found(p, *r),
                           on_error=lambda exc, p=path: self._faces_failed(p, exc))

    def redetect(self) -> None:
        self.load_faces(redetect=True)

    def _faces_found(self, path: Path, faces: list, detected_now: bool, select_id: int | None = None) -> None:
        if path != self.path:
            return
        previous = self.current_face()
        self.faces = faces
        if detected_now:
            self.photo_scanned.emit(str(path), len(faces))
        self.faces_changed.emit(faces)
        if not faces:
            self.message.emit("info", display(f"No face found in {path.name}. Draw a box around a face to add one."))
            self.select_face(-1)
            return
        index = 0
        if select_id is not None:
            index = next((i for i, f in enumerate(faces) if f.id == select_id), 0)
        elif previous is not None:  # found again (re-detect): the same face stays selected
            index = max(range(len(faces)), key=lambda i: _iou(faces[i].face.box, previous.face.box))
        self.select_face(index)

    def _faces_failed(self, path: Path, exc: Exception) -> None:
        if path == self.path:
            self.faces = []
            self.faces_changed.emit([])
            self.message.emit("error", display(f"Face finding failed on {path.name}: {exc}"))

    def select_face(self, index: int) -> None:
        self.selected = index if 0 <= index < len(self.faces) else -1
        self.face_selected.emit(self.current_face())

    def current_face(self):
        return self.faces[self.selected] if 0 <= self.selected < len(self.faces) else None

    def face_by_id(self, face_id: int):
        return next((f for f in self.faces if f.id == face_id), None)

    def add_face_from_box(self, box: tuple[float, float, float, float]) -> None:
        """A face box drawn by hand: landmarks found in it, stored as a manual face, selected."""
        if self.photo is None:
            return
        path = self.path
        self.runner.submit(_face_from_box, path, self.photo, box, self.catalog, self.mode_getter(),
                           key="face-from-box",
                           on_result=lambda r, p=path: self._faces_found(p, r[0], False, r[1]),
                           on_error=lambda exc: self.message.emit("error", f"Cannot add that face: {exc}"))

    # -- edits

    def on_layer_edited(self, before: FaceGeometry, after: FaceGeometry) -> None:
        """A drag ended (the layer already shows ``after``): one undo step."""
        face = self.current_face()
        if face is None or self.undo_stack is None:
            return
        self.undo_stack.push(EditFaceCommand(self.apply_geometry, face.id, before, after, describe_edit(before, after),
                                             before_was_detected=not face.edited))

    def apply_geometry(self, face_id: int, landmarks: np.ndarray, forehead_height: float, reset: bool = False) -> None:
        """Put a face's geometry in place: memory, view, catalog (reset: back to "detected")."""
        face = self.face_by_id(face_id)
        if face is not None:
            face.face.landmarks = np.array(landmarks, np.float32)
            face.face.forehead_height = float(forehead_height)
            face.edited = not reset
            self.face_edited.emit(face)
        if reset:
            self._write(self.catalog.reset_landmarks, face_id)
        else:
            self._write(self.catalog.save_landmarks, face_id, np.array(landmarks, np.float32), float(forehead_height))

    def reset_landmarks(self) -> None:
        """Back to the detected landmarks and forehead (one undo step)."""
        face = self.current_face()
        if face is None:
            return
        if not face.edited:
            self.message.emit("info", "This face's landmarks are already the detected ones.")
            return
        before = (face.face.landmarks.copy(), face.face.forehead_height)
        fid = face.id

        def push(detected) -> None:
            if self.face_by_id(fid) is None or self.undo_stack is None:
                return
            after = (detected.landmarks, detected.forehead_height)
            self.undo_stack.push(EditFaceCommand(self.apply_geometry, fid, before, after,
                                                 "Reset landmarks to detected", reset=True))

        self.runner.submit(_reset_in_catalog, self.catalog, fid, pool="io", on_result=push,
                           on_error=lambda exc: self.message.emit("error", f"Cannot reset the landmarks: {exc}"))

    def set_strengths(self, stored: dict[str, float], gesture: str = "") -> None:
        """New strengths of the selected face (as stored: see app.state): one undo step, merged with the
        step before when it belongs to the same ``gesture`` ("" never merges)."""
        face = self.current_face()
        if face is None or dict(stored) == dict(face.strengths):
            return
        if self.undo_stack is None:
            self.apply_strengths(face.id, stored)
            return
        self.undo_stack.push(StrengthsCommand(self.apply_strengths, face.id, face.strengths, stored, gesture))

    def apply_strengths(self, face_id: int, stored: dict[str, float]) -> None:
        """Put a face's strengths in place: memory, the aging (``strengths_changed``), catalog."""
        face = self.face_by_id(face_id)
        if face is not None:
            face.strengths = dict(stored)
            self.strengths_changed.emit(face)
        self._write(self.catalog.save_strengths, face_id, dict(stored))

    def save_estimated_age(self, face_id: int, age: float | None) -> None:
        face = self.face_by_id(face_id)
        if face is not None:
            face.estimated_age = age
        self._write(self.catalog.save_estimated_age, face_id, age)

    def _write(self, fn, *args) -> None:
        self.runner.submit(fn, *args, pool="io",
                           on_error=lambda exc: self.message.emit("error", f"Could not save to the catalog: {exc}"))


class StrengthsCommand(QUndoCommand):
    """One change of a face's strengths; merges with the next one of the same face and gesture."""

    ID = 0x5354  # "ST"

    def __init__(self, apply, face_id: int, before: dict, after: dict, gesture: str = ""):
        super().__init__(describe_strengths(before, after))
        self.apply, self.face_id, self.gesture = apply, face_id, gesture
        self.before, self.after = dict(before), dict(after)

    def id(self) -> int:
        return self.ID

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not (isinstance(other, StrengthsCommand) and other.face_id == self.face_id and self.gesture
                and other.gesture == self.gesture):
            return False
        self.after = dict(other.after)
        self.setText(describe_strengths(self.before, self.after))
        return True

    def redo(self) -> None:
        self.apply(self.face_id, self.after)

    def undo(self) -> None:
        self.apply(self.face_id, self.before)


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return float(iw * ih / union) if union > 0 else 0.0


# ----------------------------------------------------------------------------------------- workers

def _decode(path: Path):
    from app.imaging import build_pyramid
    from core.photos import load_photo

    photo = load_photo(path)
    return photo, build_pyramid(photo.rgb)


def _find_faces(path: Path, photo, catalog, mode: str, redetect: bool, ctx):
    """(stored faces, whether a detection ran now)."""
    st = path.stat()
    if not redetect and not catalog.needs_scan(path, st.st_size, st.st_mtime_ns):
        rec = catalog.photo(path)
        if rec is not None and rec.scan_state == "done":
            return catalog.faces(path), False
    faces = face_finder(mode, "interactive", ctx.cancelled).detect(photo.rgb)
    catalog.mark_scanned(path, faces, size=st.st_size, mtime_ns=st.st_mtime_ns, width=photo.width,
                         height=photo.height, detector=mode)
    return catalog.faces(path), True


def _face_from_box(path: Path, photo, box, catalog, mode: str):
    face = face_finder(mode, "interactive").face_from_box(photo.rgb, box)
    fid = catalog.add_face(path, face)
    return catalog.faces(path), fid


def _reset_in_catalog(catalog, face_id: int):
    catalog.reset_landmarks(face_id)
    return catalog.face(face_id).face
