"""The main window: wires the parts together (album, photo view, landmark layer, face panel, timeline,
aging, scan, export, settings). The logic lives in the parts; this module only connects signals,
builds menus, toolbar and docks, and reacts to a few of them.

Layout: album (folder tree + thumbnail grid) docked left; the photo with its faces in the middle under an
inline message banner, the age timeline under it; the selected face's panel (age, actions, region
strengths) docked right; scan progress and the execution provider in use in the status bar.

Before/after: hold backslash (anywhere in the window) or toggle "Before/After" to see the original.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QDockWidget, QFileDialog, QLabel, QMainWindow, QVBoxLayout, QWidget

from app.age_presenter import AgePresenter
from app.aging import AgingController
from app.album_view import AlbumPanel
from app.banner import Banner
from app.editor import PhotoEditor
from app.face_panel import FacePanel
from app.imaging import Pyramid
from app.landmark_items import LandmarkLayer
from app.photo_view import PhotoView
from app.scan_status import ScanStatus
from app.scanning import ScanController
from app.settings import PreferencesDialog, Settings
from app.tasks import TaskRunner
from app.timeline import TimelineWidget
from core.text import display

log = logging.getLogger(__name__)

THUMB_CACHE_BYTES = 1 << 30  # the thumbnail cache is trimmed to 1 GB (least recently used first) at start-up


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings | None = None, *, catalog=None, models_folder: str | os.PathLike | None = None,
                 thumb_cache=None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Agelapse")
        self.settings = settings or Settings()
        self.runner = TaskRunner(self)
        self.banner = Banner()
        self._own_catalog = catalog is None
        self.catalog = catalog if catalog is not None else self._open_catalog()
        self.models_folder = Path(models_folder) if models_folder else None

        mode = lambda: self.settings.detection_mode  # noqa: E731
        self.album = AlbumPanel(self.runner, self.catalog, self.settings.thumbnail_size, thumb_cache)
        self.scan = ScanController(self.runner, self.catalog, mode, self)
        self.editor = PhotoEditor(self.runner, self.catalog, mode, self)
        self.aging = AgingController(self.runner, self)
        self.view = PhotoView()
        self.layer = LandmarkLayer()
        self.view.scene().addItem(self.layer)
        self.timeline = TimelineWidget()
        self._make_actions()
        self.face_panel = FacePanel([self.act_draw, self.act_redetect, self.act_reset, self.act_landmarks])
        self.regions = self.face_panel.regions
        self.ages = AgePresenter(self.aging, self.editor, self.timeline, self.view, self.face_panel, self)
        self._make_layout()
        self._make_menus()
        self._connect()
        self._restore()
        QApplication.instance().installEventFilter(self)
        self.load_models()
        self.runner.submit(_warm_up, self.settings.detection_mode,
                           on_error=lambda exc: log.warning("face finder warm-up failed: %s", exc))
        self.runner.submit(self.album.loader.cache.prune, THUMB_CACHE_BYTES, pool="thumbs",
                           on_error=lambda exc: log.warning("thumbnail cache not pruned: %s", exc))

    # ------------------------------------------------------------------------------ construction

    def _open_catalog(self):
        from core.catalog import Catalog, CatalogError

        try:
            return Catalog()
        except (CatalogError, OSError) as exc:
            self.banner.show_message("error", f"The catalog could not be opened ({exc}); edits of this session "
                                              "will not be kept.", key="catalog")
            return Catalog(":memory:")

    def _action(self, text: str, slot, shortcut=None, checkable: bool = False, tip: str = "") -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcuts(shortcut if isinstance(shortcut, list) else [shortcut])
        act.setCheckable(checkable)
        act.setToolTip(tip or text)
        (act.toggled if checkable else act.triggered).connect(slot)
        self.addAction(act)
        return act

    def _make_actions(self) -> None:
        K = QKeySequence
        self.act_open = self._action("Open Folder\u2026", self.choose_folder, K.StandardKey.Open)
        self.act_export = self._action("Export\u2026", self.show_export, K("Ctrl+E"))
        self.act_prefs = self._action("Preferences\u2026", self.show_preferences, K.StandardKey.Preferences)
        self.act_quit = self._action("Quit", self.close, K.StandardKey.Quit)
        # Fixed texts (the toolbar must not jump as "Undo Move landmark 8 (cheeks)" grows); what they would
        # undo or redo is in their tooltips.
        group = self.editor.undo_group
        self.act_undo = self._action("Undo", group.undo, K.StandardKey.Undo)
        self.act_redo = self._action("Redo", group.redo, K.StandardKey.Redo)
        for act, verb, can, text, signal, text_signal in (
                (self.act_undo, "Undo", group.canUndo, group.undoText, group.canUndoChanged, group.undoTextChanged),
                (self.act_redo, "Redo", group.canRedo, group.redoText, group.canRedoChanged, group.redoTextChanged)):
            def update(*_, act=act, verb=verb, can=can, text=text) -> None:
                act.setEnabled(can())
                what = text()
                act.setToolTip(f"{verb}: {what} ({act.shortcut().toString(K.SequenceFormat.NativeText)})" if what
                               else f"Nothing to {verb.lower()}")
            signal.connect(update)
            text_signal.connect(update)
            group.activeStackChanged.connect(update)
            update()
        self.act_reset = self._action("Reset Points", self.editor.reset_landmarks, K("Ctrl+R"),
                                      tip="Put the landmarks back where they were detected")
        self.act_landmarks = self._action("Landmarks", self._show_landmarks, K("L"), checkable=True,
                                          tip="Show the landmarks and regions (L)")
        self.act_scan = self._action("Scan Album", lambda: self.start_scan(False), tip="Find the faces in every photo")
        self.act_rescan = self._action("Rescan Album", lambda: self.start_scan(True))
        self.act_cancel_scan = self._action("Cancel Scan", self.scan.cancel)
        self.act_redetect = self._action("Re-detect", self.editor.redetect, K("Ctrl+D"), tip="Find this photo's faces again")
        self.act_draw = self._action("Draw Face", self.view.set_draw_mode, K("F"), checkable=True,
                                     tip="Draw a box around a face that was missed (F)")
        self.act_before = self._action("Before/After", lambda on: self.set_before(on), checkable=True,
                                       tip="Show the original photo (or hold \\)")
        self.act_fit = self._action("Fit", self.view.fit, K("Ctrl+0"), tip="Fit the photo in the window")
        self.act_actual = self._action("Actual Size", lambda: self.view.set_zoom(1.0), K("Ctrl+1"))
        self.act_zoom_in = self._action("Zoom In", lambda: self.view.zoom_by(1.25), K.StandardKey.ZoomIn)
        self.act_zoom_out = self._action("Zoom Out", lambda: self.view.zoom_by(0.8), K.StandardKey.ZoomOut)
        self.act_next = self._action("Next Photo", lambda: self.album.step(1), [K("PgDown"), K("Alt+Right")])
        self.act_prev = self._action("Previous Photo", lambda: self.album.step(-1), [K("PgUp"), K("Alt+Left")])
        self.act_landmarks.setChecked(self.settings.show_landmarks)

    def _make_layout(self) -> None:
        centre = QWidget()
        lay = QVBoxLayout(centre)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.banner)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.timeline)
        self.setCentralWidget(centre)
        for title, widget, area, name in (("Album", self.album, Qt.DockWidgetArea.LeftDockWidgetArea, "albumDock"),
                                          ("Face", self.face_panel, Qt.DockWidgetArea.RightDockWidgetArea, "faceDock")):
            dock = QDockWidget(title, self)
            dock.setObjectName(name)
            dock.setWidget(widget)
            dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
            self.addDockWidget(area, dock)
        self.resizeDocks([self.findChild(QDockWidget, "albumDock"), self.findChild(QDockWidget, "faceDock")], [318, 300], Qt.Orientation.Horizontal)
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        for act in (self.act_open, self.act_scan, None, self.act_draw, self.act_redetect, self.act_landmarks, None,
                    self.act_undo, self.act_redo, None, self.act_before, self.act_fit, None, self.act_export):
            tb.addSeparator() if act is None else tb.addAction(act)
        self.scan_status = ScanStatus(self.statusBar(), self.act_cancel_scan)
        self.scan_bar = self.scan_status.bar
        self.models_label = QLabel("Loading models\u2026")
        self.models_label.setObjectName("dimLabel")
        self.statusBar().addPermanentWidget(self.models_label)

    def _make_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addAction(self.act_open)
        self.recent_menu = m.addMenu("Open &Recent")
        m.addAction(self.act_export)
        m.addSeparator()
        m.addAction(self.act_prefs)
        m.addSeparator()
        m.addAction(self.act_quit)
        m = mb.addMenu("&Edit")
        for a in (self.act_undo, self.act_redo, None, self.act_reset):
            m.addSeparator() if a is None else m.addAction(a)
        m = mb.addMenu("&View")
        for a in (self.act_fit, self.act_actual, self.act_zoom_in, self.act_zoom_out, None, self.act_landmarks,
                  self.act_before, None, self.act_next, self.act_prev):
            m.addSeparator() if a is None else m.addAction(a)
        m = mb.addMenu("F&aces")
        for a in (self.act_scan, self.act_rescan, self.act_cancel_scan, None, self.act_redetect, self.act_draw):
            m.addSeparator() if a is None else m.addAction(a)
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for folder in self.settings.recent_folders:
            self.recent_menu.addAction(folder, lambda f=folder: self.open_folder(f))
        self.recent_menu.setEnabled(bool(self.settings.recent_folders))

    def _connect(self) -> None:
        ed, view, ag, alb, sc = self.editor, self.view, self.aging, self.album, self.scan
        for source in (ed.message, ag.message):
            source.connect(self.show_message)
        self.runner.failed.connect(lambda key, exc: self.show_message("error", f"{key or 'A task'} failed: {exc}"))
        alb.folder_failed.connect(lambda text: self.show_message("error", text))
        alb.folder_opened.connect(self._folder_opened)
        alb.photo_activated.connect(ed.open_photo)
        ed.photo_scanned.connect(alb.set_faces)
        ed.photo_loading.connect(self._photo_loading)
        ed.photo_loaded.connect(self._photo_loaded)
        ed.photo_failed.connect(lambda p, reason: view.set_photo(None, display(f"Cannot show {p.name}\n{reason}")))
        ed.faces_changed.connect(self._faces_changed)
        ed.face_selected.connect(self._face_selected)
        ed.face_edited.connect(self._face_edited)
        ed.strengths_changed.connect(self._strengths_changed)
        view.face_clicked.connect(ed.select_face)
        view.box_drawn.connect(lambda r: ed.add_face_from_box((r.left(), r.top(), r.right(), r.bottom())))
        view.draw_mode_changed.connect(self.act_draw.setChecked)
        self.layer.edited.connect(ed.on_layer_edited)
        self.regions.changed.connect(ed.set_strengths)
        ag.models_changed.connect(self._models_changed)
        sc.started.connect(self.scan_status.started)
        sc.progress.connect(self.scan_status.progress)
        sc.photo_scanned.connect(alb.set_faces)
        sc.finished.connect(self._scan_finished)
        sc.stopped.connect(lambda why: self.show_message(
            "error", f"The scan stopped ({why}); the photos scanned so far are kept. Rescan Album tries again.",
            key="scan"))

    def _restore(self) -> None:
        geo = self.settings.geometry("geometry")
        if geo is None or not self.restoreGeometry(geo):
            self.resize(1400, 900)
        state = self.settings.geometry("state")
        if state is not None:
            self.restoreState(state)

    # ------------------------------------------------------------------------------ album and scan

    def choose_folder(self) -> None:
        start = self.settings.recent_folders[0] if self.settings.recent_folders else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of photos", start)
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str | os.PathLike, select: str | os.PathLike | None = None) -> None:
        if not Path(folder).is_dir():
            self.show_message("error", display(f"{folder} is not a folder (or is no longer there)."))
            return
        self.album.open_folder(folder, select)

    def _folder_opened(self, root: Path, count: int) -> None:
        self.settings.add_recent_folder(root)
        self._fill_recent()
        self.setWindowTitle(display(f"{root.name} \u2014 Agelapse"))
        if count == 0:
            self.view.set_photo(None, display(f"No photos in {root}"))
            self.show_message("info", f"{root} holds no photos Agelapse can read (JPEG, PNG, TIFF, WebP, HEIC\u2026).")
        elif self.settings.scan_on_open:
            self.start_scan(False)

    def start_scan(self, rescan: bool) -> None:
        paths = self.album.model.all_paths()
        if paths:
            self.scan.start(paths, rescan)

    def _scan_finished(self, report) -> None:
        self.scan_status.finished()
        if report is None:
            return
        self.statusBar().showMessage(("Scan cancelled: " if report.cancelled else "Scan done: ") + report.summary(), 8000)
        if report.errors:
            first = report.errors[0]
            self.show_message("warning", f"{len(report.errors)} photo(s) could not be scanned, e.g. "
                                         f"{Path(first[0]).name}: {first[1]}", key="scan")

    # ------------------------------------------------------------------------------ photo and faces

    def _photo_loading(self, path: Path) -> None:
        thumb = self.album.loader.cached(str(path))
        if thumb is not None:  # its thumbnail, enlarged, until the photo is decoded: no blank flash
            self.view.set_photo(Pyramid(thumb.size(), [thumb]))
        else:
            self.view.set_photo(None, display(f"Opening {path.name}\u2026"))
        self.layer.set_face(None)
        self.face_panel.set_face(None)
        self.ages.reset("Finding faces\u2026")
        self.aging.set_face(None, None)

    def _photo_loaded(self, path: Path, pyramid) -> None:
        self.view.set_photo(pyramid)
        self.layer.bounds = self.view.photo_rect()
        self.statusBar().showMessage(display(f"{path.name} \u00b7 {pyramid.size.width()} \u00d7 {pyramid.size.height()}"), 5000)

    def _faces_changed(self, faces: list) -> None:
        boxes = [tuple(float(v) for v in f.face.box) for f in faces]
        labels = [f"Face {i + 1}" + (f" \u00b7 \u2248{f.estimated_age:.0f}" if f.estimated_age is not None else "")
                  for i, f in enumerate(faces)]
        self.view.set_faces(boxes, -1, labels)
        if not faces:
            self.ages.reset("No face in this photo. Draw a box around a face (F) to add one.")

    def _face_selected(self, stored) -> None:
        ed = self.editor
        self.view.set_selected(ed.selected)
        self.face_panel.set_face(stored, ed.selected, len(ed.faces))
        self.ages.face_selected(stored)
        if stored is None:
            self.layer.set_face(None)
            self.aging.set_face(None, None)
            return
        self.layer.set_face(stored.face.landmarks, stored.face.forehead_height)
        self.layer.setVisible(self.act_landmarks.isChecked())
        self.aging.set_face(ed.photo, stored)

    def _face_edited(self, stored) -> None:
        if stored is self.editor.current_face():
            self.layer.set_face(stored.face.landmarks, stored.face.forehead_height)
            self.face_panel.set_face(stored, self.editor.selected, len(self.editor.faces))
        self.aging.face_changed(stored, immediate=True)  # a drag ended (or an undo): final, no debounce

    def _strengths_changed(self, stored) -> None:
        from app.state import settings_from_stored

        if stored is self.editor.current_face() and settings_from_stored(stored.strengths) != self.regions.settings():
            self.regions.set_stored(stored.strengths)  # an undo or redo: the sliders follow
        self.aging.face_changed(stored, age_too=False)

    def _show_landmarks(self, on: bool) -> None:
        self.settings.show_landmarks = on
        self.layer.setVisible(on and self.layer.landmarks is not None)

    # ------------------------------------------------------------------------------ aging and timeline

    def load_models(self) -> None:
        self.models_label.setText("Loading models\u2026")
        folder = self.models_folder or self.settings.resolved_models_folder()
        self.aging.load_models(folder, self.settings.providers)

    def _models_changed(self, info) -> None:
        if info.aging is None and info.age is None:
            self.models_label.setText("Models: not loaded")
        else:
            self.models_label.setText(f"Models on {info.providers_in_use}")
        self.act_export.setEnabled(self.aging.available)
        if not self.aging.available:
            self.ages.show_unavailable()
        elif self.editor.current_face() is not None:  # a face was waiting for the model
            self.ages.face_selected(self.editor.current_face())

    @property
    def aged_active(self) -> bool:
        """The person moved the timeline handle: the aged face is shown."""
        return self.ages.aged_active

    def set_before(self, on: bool) -> None:
        """Show the original photo (True) or the aged face (False)."""
        self.ages.set_before(on)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if (event.type() in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) and event.key() == Qt.Key.Key_Backslash
                and isinstance(obj, QWidget) and obj.window() is self):
            if not event.isAutoRepeat():
                self.set_before(event.type() == QEvent.Type.KeyPress or self.act_before.isChecked())
            return True
        return super().eventFilter(obj, event)

    # ------------------------------------------------------------------------------ dialogs, messages

    def show_message(self, level: str, text: str, key: str | None = None) -> None:
        text = display(text)
        self.banner.show_message(level, text, key)
        self.statusBar().showMessage(text, 6000)

    def export_dialog(self):
        from app.export_dialog import ExportDialog
        from core.export_jobs import ExportSource

        face = self.editor.current_face()
        current = (ExportSource(self.editor.path, face.face.copy(), dict(face.strengths), self.editor.selected)
                   if face is not None else None)
        dialog = ExportDialog(self.runner, self.aging.pipeline, self.settings, current, self.album.selected_paths(),
                              self.timeline.position, self.catalog, self.settings.detection_mode, self)
        dialog.finished_export.connect(self._exported)
        return dialog

    def show_export(self) -> None:
        if not self.aging.available:
            self.show_message("warning", "Export needs the aging model, which is not loaded.")
            return
        dialog = self.export_dialog()
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()  # window-modal, the event loop goes on

    def _exported(self, report) -> None:
        if report is not None:
            self.statusBar().showMessage(f"Exported {len(report.written)} file(s)", 8000)
            for target, message in report.errors:
                self.show_message("error", f"Not exported: {message}")

    def show_preferences(self) -> None:
        dialog = PreferencesDialog(self.settings, self.aging.models.providers_in_use, self)
        if dialog.exec():
            changed = dialog.apply()
            if "models" in changed:
                self.models_folder = None
                self.load_models()
            if "thumbnails" in changed:
                self.album.set_thumbnail_size(self.settings.thumbnail_size)

    def closeEvent(self, event) -> None:
        QApplication.instance().removeEventFilter(self)
        self.settings.set_geometry("geometry", self.saveGeometry())
        self.settings.set_geometry("state", self.saveState())
        self.settings.sync()
        self.scan.cancel()
        from app.face_process import interrupt_busy

        interrupt_busy()  # a detection under way (seconds in accurate mode) is not waited for
        self.runner.shutdown()
        if self._own_catalog:
            self.catalog.close()
        super().closeEvent(event)


def _warm_up(mode: str) -> None:
    """Start the face finder process and load dlib's models there, before the first photo needs them."""
    from app.finders import face_finder

    finder = face_finder(mode)
    if hasattr(finder, "warm_up"):
        finder.warm_up()
