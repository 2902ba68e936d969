"""Preferences, persisted with QSettings (INI format, the user's scope), and their dialog.

The INI format is used on every system (a readable file, and one place tests can redirect with
``QSettings.setPath(IniFormat, UserScope, tmp)``). The organisation and application names are
parameters so tests use their own.

Keys: ``models/folder`` ("" = the bundled models, ``core.models.models_dir()``), ``models/providers``
(auto | cpu | gpu), ``detection/mode`` (fast | accurate), ``album/thumbnail_size`` (px),
``album/recent`` (folders, newest first), ``album/scan_on_open``, ``view/show_landmarks``,
``window/geometry`` and ``window/state``, ``export/*`` (the export dialog's last choices).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import (
    QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
    QPushButton, QSpinBox, QWidget,
)

ORGANISATION = "Agelapse"
APPLICATION = "Agelapse"
PROVIDERS = ("auto", "cpu", "gpu")
DETECTION_MODES = ("fast", "accurate")
THUMB_MIN, THUMB_MAX, THUMB_DEFAULT = 96, 320, 136
MAX_RECENT = 8


def _bool(value, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return bool(value)


class Settings:
    """Typed access to the preferences (see the module doc)."""

    def __init__(self, organisation: str = ORGANISATION, application: str = APPLICATION,
                 qsettings: QSettings | None = None):
        self.q = qsettings or QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                                        organisation, application)

    def sync(self) -> None:
        self.q.sync()

    # -- models

    @property
    def models_folder(self) -> str:
        return str(self.q.value("models/folder", "") or "")

    @models_folder.setter
    def models_folder(self, value: str | os.PathLike | None) -> None:
        self.q.setValue("models/folder", os.fspath(value) if value else "")

    def resolved_models_folder(self) -> Path:
        from core.models import models_dir

        return Path(self.models_folder) if self.models_folder else models_dir()

    @property
    def providers(self) -> str:
        v = str(self.q.value("models/providers", "auto")).lower()
        return v if v in PROVIDERS else "auto"

    @providers.setter
    def providers(self, value: str) -> None:
        if value not in PROVIDERS:
            raise ValueError(f"providers must be one of {PROVIDERS}")
        self.q.setValue("models/providers", value)

    # -- detection, album, view

    @property
    def detection_mode(self) -> str:
        v = str(self.q.value("detection/mode", "fast")).lower()
        return v if v in DETECTION_MODES else "fast"

    @detection_mode.setter
    def detection_mode(self, value: str) -> None:
        if value not in DETECTION_MODES:
            raise ValueError(f"detection mode must be one of {DETECTION_MODES}")
        self.q.setValue("detection/mode", value)

    @property
    def thumbnail_size(self) -> int:
        try:
            v = int(self.q.value("album/thumbnail_size", THUMB_DEFAULT))
        except (TypeError, ValueError):
            v = THUMB_DEFAULT
        return min(max(v, THUMB_MIN), THUMB_MAX)

    @thumbnail_size.setter
    def thumbnail_size(self, value: int) -> None:
        self.q.setValue("album/thumbnail_size", int(min(max(int(value), THUMB_MIN), THUMB_MAX)))

    @property
    def scan_on_open(self) -> bool:
        return _bool(self.q.value("album/scan_on_open"), True)

    @scan_on_open.setter
    def scan_on_open(self, value: bool) -> None:
        self.q.setValue("album/scan_on_open", bool(value))

    @property
    def show_landmarks(self) -> bool:
        return _bool(self.q.value("view/show_landmarks"), True)

    @show_landmarks.setter
    def show_landmarks(self, value: bool) -> None:
        self.q.setValue("view/show_landmarks", bool(value))

    @property
    def recent_folders(self) -> list[str]:
        v = self.q.value("album/recent", [])
        if v is None:
            return []
        if isinstance(v, str):
            v = [v] if v else []
        return [str(x) for x in v][:MAX_RECENT]

    def add_recent_folder(self, folder: str | os.PathLike) -> list[str]:
        folder = os.path.abspath(os.fspath(folder))
        recent = [folder] + [f for f in self.recent_folders if f != folder]
        self.q.setValue("album/recent", recent[:MAX_RECENT])
        return recent[:MAX_RECENT]

    # -- window and free-form values

    def geometry(self, key: str) -> QByteArray | None:
        v = self.q.value(f"window/{key}")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def set_geometry(self, key: str, value: QByteArray) -> None:
        self.q.setValue(f"window/{key}", value)

    def value(self, key: str, default=None):
        return self.q.value(key, default)

    def set_value(self, key: str, value) -> None:
        self.q.setValue(key, value)


class PreferencesDialog(QDialog):
    """Model folder, execution provider (with the providers actually in use), detection mode,
    thumbnail size. ``apply()`` writes them to the settings; the caller reacts to what changed."""

    def __init__(self, settings: Settings, providers_in_use: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.settings = settings
        form = QFormLayout(self)

        self.models_edit = QLineEdit(settings.models_folder)
        self.models_edit.setPlaceholderText(f"bundled models ({settings.resolved_models_folder() if not settings.models_folder else ''})")
        browse = QPushButton("Browse\u2026")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.models_edit, 1)
        row.addWidget(browse)
        form.addRow("Model folder", row)

        self.providers_combo = QComboBox()
        for key, text in (("auto", "Automatic (GPU when available)"), ("cpu", "CPU"), ("gpu", "GPU")):
            self.providers_combo.addItem(text, key)
        self.providers_combo.setCurrentIndex(PROVIDERS.index(settings.providers))
        form.addRow("Run models on", self.providers_combo)
        self.in_use_label = QLabel(providers_in_use or "models not loaded")
        self.in_use_label.setObjectName("inUseLabel")
        form.addRow("In use", self.in_use_label)

        self.detection_combo = QComboBox()
        self.detection_combo.addItem("Fast (HOG)", "fast")
        self.detection_combo.addItem("Accurate (CNN, slower)", "accurate")
        self.detection_combo.setCurrentIndex(DETECTION_MODES.index(settings.detection_mode))
        form.addRow("Face detection", self.detection_combo)

        self.thumb_spin = QSpinBox()
        self.thumb_spin.setRange(THUMB_MIN, THUMB_MAX)
        self.thumb_spin.setSingleStep(16)
        self.thumb_spin.setSuffix(" px")
        self.thumb_spin.setValue(settings.thumbnail_size)
        form.addRow("Thumbnail size", self.thumb_spin)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder", self.models_edit.text())
        if folder:
            self.models_edit.setText(folder)

    def apply(self) -> set[str]:
        """Store the dialog's values; returns the names of what changed ("models", "detection", "thumbnails")."""
        s = self.settings
        changed = set()
        folder = self.models_edit.text().strip()
        provider = self.providers_combo.currentData()
        if folder != s.models_folder or provider != s.providers:
            s.models_folder, s.providers = folder, provider
            changed.add("models")
        if self.detection_combo.currentData() != s.detection_mode:
            s.detection_mode = self.detection_combo.currentData()
            changed.add("detection")
        if self.thumb_spin.value() != s.thumbnail_size:
            s.thumbnail_size = self.thumb_spin.value()
            changed.add("thumbnails")
        s.sync()
        return changed
