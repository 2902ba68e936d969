"""The application's look: Qt's Fusion style with a dark palette (photos read best on dark grey) and
one accent colour."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = "#ffa64d"

STYLE = f"""
QToolBar {{ border: none; spacing: 4px; padding: 3px; background: #26262a; }}
QToolBar QToolButton {{ padding: 4px 8px; border-radius: 4px; }}
QToolBar QToolButton:hover {{ background: #3a3a40; }}
QToolBar QToolButton:checked {{ background: #4a3a28; color: {ACCENT}; }}
QDockWidget::title {{ padding: 6px; background: #26262a; }}
QLabel#dimLabel {{ color: #9a9aa0; }}
QLabel#ageLabel {{ font-size: 15pt; color: {ACCENT}; }}
QLabel#sectionLabel {{ color: #c8c8cc; font-weight: bold; padding-top: 6px; }}
QToolButton#albumTitle {{ font-weight: bold; border: none; text-align: left; }}
QSlider::groove:horizontal {{ height: 4px; background: #45454b; border-radius: 2px; }}
QSlider::sub-page:horizontal {{ background: {ACCENT}; border-radius: 2px; }}
QSlider::handle:horizontal {{ background: #e8e8ec; width: 12px; margin: -5px 0; border-radius: 6px; }}
QSlider::sub-page:horizontal:disabled {{ background: #5a5a60; }}
QProgressBar {{ border: none; background: #3a3a40; border-radius: 3px; height: 8px; text-align: center; }}
QProgressBar::chunk {{ background: {ACCENT}; border-radius: 3px; }}
QStatusBar {{ background: #26262a; }}
QListView, QTreeView {{ background: #1f1f22; border: none; }}
"""


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    p = QPalette()
    base, window, text = QColor(31, 31, 34), QColor(38, 38, 42), QColor(225, 225, 230)
    p.setColor(QPalette.ColorRole.Window, window)
    p.setColor(QPalette.ColorRole.WindowText, text)
    p.setColor(QPalette.ColorRole.Base, base)
    p.setColor(QPalette.ColorRole.AlternateBase, window)
    p.setColor(QPalette.ColorRole.ToolTipBase, QColor(50, 50, 55))
    p.setColor(QPalette.ColorRole.ToolTipText, text)
    p.setColor(QPalette.ColorRole.Text, text)
    p.setColor(QPalette.ColorRole.Button, QColor(48, 48, 53))
    p.setColor(QPalette.ColorRole.ButtonText, text)
    p.setColor(QPalette.ColorRole.BrightText, QColor(255, 90, 90))
    p.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    p.setColor(QPalette.ColorRole.HighlightedText, QColor(20, 20, 20))
    p.setColor(QPalette.ColorRole.Link, QColor(ACCENT))
    p.setColor(QPalette.ColorRole.PlaceholderText, QColor(130, 130, 135))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(110, 110, 115))
    app.setPalette(p)
    app.setStyleSheet(STYLE)
