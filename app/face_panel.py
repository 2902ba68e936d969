"""The right-hand panel: the selected face (which one, how it was found, its estimated age), the face
actions (draw a face, re-detect, reset landmarks, show landmarks) and the per-region strengths."""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QGridLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from app.regions_panel import RegionsPanel

SOURCES = {"hog": "found automatically", "cnn": "found automatically (accurate)", "manual": "drawn by hand"}


class FacePanel(QWidget):
    def __init__(self, actions: list[QAction], parent=None):
        super().__init__(parent)
        self.title = QLabel("Face")
        self.title.setObjectName("sectionLabel")
        self.info = QLabel("No face selected")
        self.info.setObjectName("dimLabel")
        self.info.setWordWrap(True)
        self.age = QLabel("\u2014")
        self.age.setObjectName("ageLabel")
        self.age.setToolTip("The age the age model estimates for this face")
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        for i, action in enumerate(actions):
            button = QToolButton()
            button.setDefaultAction(action)
            button.setMinimumWidth(110)
            grid.addWidget(button, i // 2, i % 2)
        regions_title = QLabel("Aging strength by region")
        regions_title.setObjectName("sectionLabel")
        self.regions = RegionsPanel()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 6, 10, 6)
        lay.addWidget(self.info)
        lay.addWidget(self.age)
        lay.addLayout(grid)
        lay.addSpacing(8)
        lay.addWidget(regions_title)
        lay.addWidget(self.regions)
        lay.addStretch(1)
        self.set_face(None)

    def set_face(self, stored, index: int = 0, count: int = 0) -> None:
        self.regions.setEnabled(stored is not None)
        if stored is None:
            self.info.setText("No face selected" if count == 0 else f"{count} faces: click one")
            self.age.setText("\u2014")
            return
        how = SOURCES.get(stored.face.source, stored.face.source)
        edited = " \u00b7 landmarks edited" if stored.edited else ""
        self.info.setText(f"Face {index + 1} of {count} \u00b7 {how}{edited}")
        self.regions.set_stored(stored.strengths)

    def set_age(self, age: float | None, note: str = "") -> None:
        self.age.setText(f"\u2248 {age:.0f} years" if age is not None else (note or "\u2014"))
