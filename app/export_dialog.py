"""The export dialog: what to write (a portrait at one age, every group as files, a strip or grid, a GIF or
MP4 of the timeline), for this photo or every selected one, with format, quality and size; a progress
bar while it runs (on a worker, ``core.export_jobs``); existing files are never overwritten without
asking (:meth:`ExportDialog.ask_overwrite`, replaceable in tests).

The folder is the last one exported to (the first time: the person's Pictures folder, else the home
folder), never the photo's own folder, which may be read-only (a camera card, a shared drive); a folder
that cannot be written to is said so in words before anything runs. The area (whole photo or face only)
is remembered apart for stills and for animations; animations frame the face by default, as a whole
photo at 640 px makes the face tiny.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Signal
from PySide6.QtWidgets import (
    QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout,
    QHBoxLayout, QLabel, QLineEdit, QMessageBox, QProgressBar, QPushButton, QRadioButton, QSpinBox,
    QVBoxLayout, QWidget,
)

from app.finders import face_finder
from app.tasks import TaskRunner
from core.export_jobs import ExportOptions, ExportSource, existing, make_unique, plan, run_export
from core.text import display, printable
from core.timeline import position_label

log = logging.getLogger(__name__)

KIND_TEXT = [
    ("single", "Aged portrait at one age"),
    ("groups", "Every age group, one file each"),
    ("strip", "Every age group in one image (strip or grid)"),
    ("gif", "Timeline animation (GIF)"),
    ("mp4", "Timeline animation (MP4 video)"),
]


class ExportDialog(QDialog):
    finished_export = Signal(object)  # core.export_jobs.ExportReport (None when cancelled before it ran)

    def __init__(self, runner: TaskRunner, pipeline, settings, current: ExportSource | None,
                 selected: list[Path], position: float, catalog=None, detection_mode: str = "fast", parent=None):
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.runner, self.pipeline, self.settings, self.catalog = runner, pipeline, settings, catalog
        self.current, self.detection_mode = current, detection_mode
        self.selected = [p for p in selected if current is None or Path(p) != Path(current.path)]
        self.position = position
        self.task = None
        self.report = None
        labels, groups = pipeline.labels, list(pipeline.aging.age_groups)

        self.kind = QComboBox()
        for key, text in KIND_TEXT:
            self.kind.addItem(text, key)
        self.age = QComboBox()
        self.age.addItem(f"Timeline position ({position_label(position, labels, groups)})", float(position))
        for g, label in enumerate(labels):
            self.age.addItem(label, float(g))
        self.this_photo = QRadioButton("This photo")
        self.all_selected = QRadioButton(f"This and the other selected photos ({len(self.selected)})")
        self.all_selected.setEnabled(bool(self.selected))
        (self.this_photo if current is not None or not self.selected else self.all_selected).setChecked(True)
        self.this_photo.setEnabled(current is not None)
        which = QButtonGroup(self)
        which.addButton(self.this_photo)
        which.addButton(self.all_selected)
        self.area = QComboBox()
        self.area.addItem("The whole photo", "photo")
        self.area.addItem("The face only", "face")
        self.fmt = QComboBox()
        for key, text in (("jpg", "JPEG"), ("png", "PNG"), ("webp", "WebP")):
            self.fmt.addItem(text, key)
        self.quality = QSpinBox()
        self.quality.setRange(1, 100)
        self.quality.setValue(92)
        self.max_side = QSpinBox()
        self.max_side.setRange(0, 20000)
        self.max_side.setSingleStep(64)
        self.max_side.setSpecialValueText("original size")
        self.max_side.setSuffix(" px")
        self.columns = QSpinBox()
        self.columns.setRange(0, 16)
        self.columns.setSpecialValueText("one row")
        self.fps = QDoubleSpinBox()
        self.fps.setRange(1, 60)
        self.fps.setValue(8)
        self.steps = QSpinBox()
        self.steps.setRange(1, 30)
        self.steps.setValue(6)
        self.frame_labels = QCheckBox("Age under each frame")
        self.frame_labels.setChecked(True)
        self.folder = QLineEdit(str(settings.value("export/folder", "") or default_folder()))
        browse = QPushButton("Browse\u2026")
        browse.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)

        form = QFormLayout()
        form.addRow("Export", self.kind)
        self._rows = {}
        for name, label, widget in (("age", "Age", self.age), ("photos", "Photos", self._pair(self.this_photo, self.all_selected)),
                                    ("area", "Area", self.area), ("fmt", "Format", self.fmt),
                                    ("quality", "Quality", self.quality), ("max_side", "Long side", self.max_side),
                                    ("columns", "Columns", self.columns), ("fps", "Frames per second", self.fps),
                                    ("steps", "Frames between ages", self.steps), ("labels", "", self.frame_labels)):
            form.addRow(label, widget)
            self._rows[name] = widget
        form.addRow("Folder", folder_row)

        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.export_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self._cancel)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.buttons)
        self._restore()
        self.kind.currentIndexChanged.connect(self._update_rows)
        self._update_rows()

    @staticmethod
    def _pair(a: QWidget, b: QWidget) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(a)
        lay.addWidget(b)
        return w

    def _restore(self) -> None:
        s = self.settings
        for combo, key in ((self.kind, "export/kind"), (self.fmt, "export/format")):
            i = combo.findData(s.value(key))
            if i >= 0:
                combo.setCurrentIndex(i)
        self._areas = {}  # "still" / "animation" -> the area chosen for that sort of export
        for sort, key, default in (("still", "export/area", "photo"), ("animation", "export/animation_area", "face")):
            value = s.value(key)
            self._areas[sort] = value if self.area.findData(value) >= 0 else default
        self._sort = self._kind_sort()
        self.area.setCurrentIndex(self.area.findData(self._areas[self._sort]))
        self.area.currentIndexChanged.connect(lambda _i: self._areas.__setitem__(self._sort, self.area.currentData()))
        for spin, key in ((self.quality, "export/quality"), (self.columns, "export/columns"), (self.steps, "export/steps")):
            try:
                spin.setValue(int(s.value(key, spin.value())))
            except (TypeError, ValueError):
                pass

    def _remember(self, o: ExportOptions) -> None:
        area_key = "animation_area" if o.kind in ("gif", "mp4") else "area"
        for key, value in (("kind", o.kind), ("format", o.fmt), (area_key, o.area), ("quality", o.quality),
                           ("columns", o.columns), ("steps", o.steps), ("folder", str(o.folder))):
            self.settings.set_value(f"export/{key}", value)

    def _kind_sort(self) -> str:
        return "animation" if self.kind.currentData() in ("gif", "mp4") else "still"

    def _update_rows(self) -> None:
        kind = self.kind.currentData()
        animation = kind in ("gif", "mp4")
        sort = self._kind_sort()
        if sort != self._sort:  # still <-> animation: that sort's own area
            self._sort = sort
            self.area.setCurrentIndex(self.area.findData(self._areas[sort]))
        visible = {"age": kind == "single", "fmt": not animation, "quality": not animation,
                   "columns": kind == "strip", "fps": animation, "steps": animation, "labels": animation}
        form = self.layout().itemAt(0).layout()
        for name, widget in self._rows.items():
            on = visible.get(name, True)
            widget.setVisible(on)
            label = form.labelForField(widget)
            if label is not None:
                label.setVisible(on)
        if animation and self.max_side.value() == 0:
            self.max_side.setValue(640)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export to", self.folder.text())
        if folder:
            self.folder.setText(folder)

    # -- running

    def options(self) -> ExportOptions:
        return ExportOptions(
            folder=Path(self.folder.text()).expanduser(), kind=self.kind.currentData(),
            position=float(self.age.currentData()), area=self.area.currentData(), fmt=self.fmt.currentData(),
            quality=self.quality.value(), max_side=self.max_side.value(), columns=self.columns.value(),
            fps=self.fps.value(), steps=self.steps.value(), labels=self.frame_labels.isChecked())

    def sources(self) -> list[ExportSource]:
        out = [self.current] if self.current is not None else []
        if self.all_selected.isChecked():
            out += [ExportSource(Path(p)) for p in self.selected]
        return out

    def ask_overwrite(self, paths: list[Path]) -> str:
        """"overwrite", "rename" or "cancel": what to do about files that exist already."""
        names = "\n".join(printable(p.name) for p in paths[:8]) + ("\n\u2026" if len(paths) > 8 else "")
        box = QMessageBox(QMessageBox.Icon.Question, "Files exist",
                          f"{len(paths)} file(s) exist already in {display(paths[0].parent)}:\n{names}", parent=self)
        replace = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep both", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.exec()
        return "overwrite" if box.clickedButton() is replace else "rename" if box.clickedButton() is keep else "cancel"

    def start(self) -> bool:
        """Check, ask about existing files, then export in the background. False if nothing started."""
        if self.task is not None:
            return False
        from core.errors import ExportError
        from core.export import check_writable

        options = self.options()
        if not options.folder.is_dir():
            try:
                options.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self.status.setText(display(f"Cannot create {options.folder}: {(exc.strerror or str(exc)).lower()}."))
                return False
        try:
            check_writable(options.folder)
        except ExportError as exc:
            self.status.setText(display(f"{str(exc)[0].upper()}{str(exc)[1:]}. Choose another folder."))
            return False
        sources = self.sources()
        if not sources:
            self.status.setText("Nothing to export: select a photo with a face.")
            return False
        labels, groups = self.pipeline.labels, list(self.pipeline.aging.age_groups)
        targets = plan(sources, options, labels, groups)
        overwrite = False
        found = existing(targets)
        if found:
            answer = self.ask_overwrite(found)
            if answer == "cancel":
                self.status.setText("Nothing was written.")
                return False
            overwrite = answer == "overwrite"
            if not overwrite:
                targets = make_unique(targets)
        self._remember(options)
        self.export_button.setEnabled(False)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.status.setText("Exporting\u2026")
        self.targets = targets
        self.task = self.runner.submit(
            _export, sources, options, self.pipeline, targets, overwrite, self.catalog, self.detection_mode,
            key="export", on_progress=self._progress, on_result=self._done,
            on_error=lambda exc: self._failed(exc))
        return True

    def _progress(self, done: int, total: int | None, _payload) -> None:
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    def _done(self, report) -> None:
        self.task, self.report = None, report
        self.progress.hide()
        self.export_button.setEnabled(True)
        text = f"Wrote {len(report.written)} file(s) to {self.options().folder}."
        if report.errors:
            text += " Not written: " + "; ".join(m for _, m in report.errors[:3])
        if report.cancelled:
            text += " (cancelled)"
        self.status.setText(display(text))
        self.finished_export.emit(report)
        if not report.errors and not report.cancelled:
            self.accept()

    def _failed(self, exc: Exception) -> None:
        self.task = None
        self.progress.hide()
        self.export_button.setEnabled(True)
        self.status.setText(display(f"Export failed: {exc}"))
        self.finished_export.emit(None)

    def _cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
            self.progress.hide()
            self.export_button.setEnabled(True)
            self.status.setText("Export cancelled; files already written are kept.")
            self.finished_export.emit(None)
        else:
            self.reject()

    def reject(self) -> None:
        if self.task is not None:
            self._cancel()
        super().reject()


def default_folder() -> Path:
    """Where exports go the first time: the person's Pictures folder, else their home folder."""
    pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
    return Path(pictures) if pictures else Path.home()


def _export(sources, options, pipeline, targets, overwrite, catalog, mode, ctx):
    return run_export(sources, options, pipeline, targets, overwrite=overwrite, catalog=catalog,
                      finder=face_finder(mode, "scan", ctx.cancelled), progress=lambda d, t: ctx.progress(d, t), cancel=ctx.cancelled)
