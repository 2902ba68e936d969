"""The models, the age groups of the selected face, its estimated age, and timeline frames.

- :meth:`AgingController.load_models` loads ``aging.onnx`` and ``age.onnx`` in the background
  (``core.models.load_models``); a missing or damaged model is a warning naming the file, and the rest of
  the app keeps working without it.
- :meth:`set_face` computes every age group of the face in ONE batched inference
  (``AgingPipeline.age_all_groups``) on a worker, with the timeline's thumbnails, and keeps a
  :class:`app.preview.PreviewRenderer` for it; edits (landmarks, strengths) recompute it, debounced, and
  results for a face or an edit that is no longer current are dropped.
- :meth:`frame` renders one timeline position for the screen (no inference; milliseconds) and is called
  on the GUI thread while the handle is dragged.
- :meth:`request_age` estimates the face's age (``AgingPipeline.estimate_age``) on a worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QRectF, QTimer, Signal
from PySide6.QtGui import QImage

from app.imaging import to_qimage
from app.preview import PreviewRenderer
from app.tasks import TaskRunner
from core.contracts import AGING
from core.pipeline import effective_strengths

log = logging.getLogger(__name__)

THUMB_SIDE = 120  # px, long side of a timeline thumbnail


@dataclass
class ModelsInfo:
    aging: object | None = None  # core.models.AgingModel
    age: object | None = None  # core.models.AgeModel
    errors: list = field(default_factory=list)  # [ModelError]
    folder: str = ""
    requested: str = "auto"

    @property
    def providers_in_use(self) -> str:
        model = self.aging or self.age
        if model is None:
            return ""
        return ", ".join(p.replace("ExecutionProvider", "") for p in model.session.providers)

    @property
    def on_gpu(self) -> bool:
        model = self.aging or self.age
        return model is not None and model.session.providers[0] != "CPUExecutionProvider"


@dataclass
class GroupsResult:
    face_id: int
    labels: list[str]
    groups: list  # [(lo, hi)]
    thumbnails: list[QImage]
    renderer: PreviewRenderer


class AgingController(QObject):
    models_changed = Signal(object)  # ModelsInfo
    groups_started = Signal(int)  # face id
    groups_progress = Signal(int, int)
    groups_ready = Signal(object)  # GroupsResult
    groups_failed = Signal(str)
    age_ready = Signal(int, float)  # face id, years
    message = Signal(str, str)

    def __init__(self, runner: TaskRunner, parent: QObject | None = None):
        super().__init__(parent)
        self.runner = runner
        self.models = ModelsInfo()
        self.pipeline = None
        self.result: GroupsResult | None = None
        self._photo = None
        self._face = None  # StoredFace
        self._age_too = False  # the pending recompute re-estimates the age too (landmarks moved)
        self._debounce = QTimer(self, singleShot=True, interval=250)
        self._debounce.timeout.connect(self._recompute)

    # -- models

    def load_models(self, folder, providers: str = "auto") -> None:
        self.runner.submit(_load_models, folder, providers, key="models",
                           on_result=self._models_loaded,
                           on_error=lambda exc: self.message.emit("error", f"Cannot load the models: {exc}"))

    def _models_loaded(self, info: ModelsInfo) -> None:
        from core.pipeline import AgingPipeline

        self.models = info
        self.pipeline = AgingPipeline(info.aging, info.age) if info.aging is not None else None
        for exc in info.errors:
            what = "Aging is off" if exc.kind == AGING.kind else "Age estimates are off"
            self.message.emit("warning", f"{what}: {exc}. Browsing, face finding and landmark editing still work.")
        if info.requested == "gpu" and (info.aging or info.age) is not None and not info.on_gpu:
            self.message.emit("warning", "No GPU is available to onnxruntime here: the models run on the CPU.")
        self.models_changed.emit(info)
        if self._face is not None:
            self.set_face(self._photo, self._face)

    @property
    def available(self) -> bool:
        return self.pipeline is not None

    @property
    def labels(self) -> list[str]:
        return self.pipeline.labels if self.pipeline is not None else []

    @property
    def groups(self) -> list:
        return list(self.pipeline.aging.age_groups) if self.pipeline is not None else []

    # -- the selected face

    def set_face(self, photo, stored_face) -> None:
        """A face was selected (None: no face). Computes its groups and age in the background."""
        self._debounce.stop()
        self._photo, self._face = photo, stored_face
        self.result = None
        self.runner.cancel("groups")
        self.runner.cancel("age")
        if stored_face is None or photo is None:
            return
        self._recompute()
        if stored_face.estimated_age is not None:
            self.age_ready.emit(stored_face.id, float(stored_face.estimated_age))
        else:
            self.request_age()

    def face_changed(self, stored_face, age_too: bool = True, immediate: bool = False) -> None:
        """The selected face was edited: recompute once the edits pause (slider moves), or at once when
        ``immediate`` (a finished edit: a landmark released, an undo), so the strip follows within the
        groups' computing time."""
        if self._face is None or stored_face is None or stored_face.id != self._face.id:
            return
        self._face = stored_face
        self._age_too = age_too or self._age_too
        if immediate:
            self._debounce.stop()
            self._recompute()
        else:
            self._debounce.start()

    def _recompute(self) -> None:
        age_too, self._age_too = self._age_too, False
        if self.pipeline is not None and self._face is not None:  # the groups first: the strip waits on them
            face = self._face
            self.groups_started.emit(face.id)
            self.runner.submit(_compute_groups, self.pipeline, self._photo.rgb, face.id, face.face.copy(),
                               effective_strengths(face.strengths), key="groups",
                               on_progress=lambda d, t, _: self.groups_progress.emit(d, t or 0),
                               on_result=self._groups_done,
                               on_error=lambda exc: self._groups_error(exc))
        if age_too:
            self.request_age()

    def _groups_done(self, result: GroupsResult) -> None:
        if self._face is None or result.face_id != self._face.id:
            return
        self.result = result
        self.groups_ready.emit(result)

    def _groups_error(self, exc: Exception) -> None:
        self.groups_failed.emit(str(exc))
        self.message.emit("error", f"Aging failed: {exc}")

    def request_age(self) -> None:
        if self.pipeline is None or self.pipeline.age is None or self._face is None:
            return
        face = self._face
        self.runner.submit(self.pipeline.estimate_age, self._photo.rgb, face.face.copy(), key="age",
                           on_result=lambda age, fid=face.id: self.age_ready.emit(fid, float(age)),
                           on_error=lambda exc: self.message.emit("warning", f"Age estimate failed: {exc}"))

    # -- frames

    def frame(self, position: float, scale: float) -> tuple[QImage, QRectF] | None:
        """The face's rectangle at a timeline position, rendered at ``scale`` (GUI thread, no inference)."""
        if self.result is None:
            return None
        out, (x0, y0, x1, y1) = self.result.renderer.render(position, scale)
        return to_qimage(out), QRectF(x0, y0, x1 - x0, y1 - y0)


# ----------------------------------------------------------------------------------------- workers

def _load_models(folder, providers: str) -> ModelsInfo:
    from core.models import load_models

    loaded = load_models(folder, providers=providers)
    return ModelsInfo(loaded.aging, loaded.age, loaded.errors, str(folder), providers)


def _compute_groups(pipeline, rgb, face_id: int, face, strengths: dict, ctx) -> GroupsResult:
    k = pipeline.aging.num_groups
    ctx.progress(0, k + 2)
    prepared = pipeline.prepare(rgb, face, strengths)
    ctx.check()
    ctx.progress(1, k + 2)
    results = pipeline.age_all_groups(prepared)  # ONE batched inference
    ctx.check()
    ctx.progress(2, k + 2)
    renderer = PreviewRenderer(rgb, prepared, results)
    x0, y0, x1, y1 = renderer.rect
    scale = min(1.0, THUMB_SIDE / max(1, x1 - x0, y1 - y0))
    thumbs = []
    for g in range(k):
        thumbs.append(to_qimage(renderer.render(float(g), scale)[0]))
        ctx.progress(3 + g, k + 2)
    return GroupsResult(face_id, pipeline.labels, list(pipeline.aging.age_groups), thumbs, renderer)
