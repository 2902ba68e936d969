"""The scan's place in the status bar: what it is doing, a progress bar and a cancel button; hidden
while no scan runs."""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QToolButton


class ScanStatus:
    def __init__(self, status_bar: QStatusBar, cancel: QAction):
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(180)
        self.label = QLabel()
        self.cancel = QToolButton()
        self.cancel.setDefaultAction(cancel)
        self.widgets = (self.label, self.bar, self.cancel)
        for w in self.widgets:
            status_bar.addPermanentWidget(w)
            w.hide()

    def started(self, total: int) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(0)
        self.label.setText("Finding faces\u2026")
        for w in self.widgets:
            w.show()

    def progress(self, done: int, total: int) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(done)
        self.label.setText(f"Finding faces {done}/{total}")

    def finished(self) -> None:
        for w in self.widgets:
            w.hide()
