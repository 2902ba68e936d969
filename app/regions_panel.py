"""Per-region strength sliders (0-150 %) and on/off toggles of the selected face.

``changed(stored)`` carries the strengths as stored in the catalog (``app.state``: the five regions'
effective strengths, plus the slider value of regions switched off). It is emitted when a slider is
released, a toggle is clicked, or 250 ms after the last keyboard/wheel step, so a drag of a slider
recomputes the face once, not at every pixel.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPixmap, QIcon
from PySide6.QtWidgets import QCheckBox, QGridLayout, QLabel, QPushButton, QSlider, QWidget

from app.state import RegionSetting, settings_from_stored, stored_from_settings
from core.pipeline import MAX_STRENGTH
from core.regions import REGION_COLORS, REGION_NAMES


def _swatch(name: str) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(*REGION_COLORS[name]))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawEllipse(1, 1, 10, 10)
    p.end()
    return QIcon(pix)


class RegionsPanel(QWidget):
    changed = Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 4, 8, 4)
        grid.setVerticalSpacing(6)
        self.toggles: dict[str, QCheckBox] = {}
        self.sliders: dict[str, QSlider] = {}
        self.values: dict[str, QLabel] = {}
        self._timer = QTimer(self, singleShot=True, interval=250)
        self._timer.timeout.connect(self._emit)
        for row, name in enumerate(REGION_NAMES):
            toggle = QCheckBox(name.capitalize())
            toggle.setIcon(_swatch(name))
            toggle.setChecked(True)
            toggle.setToolTip(f"Age the {name} (off: leave them as they are)")
            toggle.toggled.connect(self._toggled)
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, int(round(MAX_STRENGTH * 100)))
            slider.setSingleStep(5)
            slider.setPageStep(25)
            slider.setValue(100)
            slider.setToolTip(f"How strongly the {name} age (100 % = as the model learned)")
            slider.valueChanged.connect(self._slid)
            slider.sliderReleased.connect(self._emit)
            value = QLabel("100 %")
            value.setMinimumWidth(44)
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            grid.addWidget(toggle, row, 0)
            grid.addWidget(slider, row, 1)
            grid.addWidget(value, row, 2)
            self.toggles[name], self.sliders[name], self.values[name] = toggle, slider, value
        self.reset_button = QPushButton("Reset strengths")
        self.reset_button.clicked.connect(self.reset)
        grid.addWidget(self.reset_button, len(REGION_NAMES), 0, 1, 3)
        grid.setColumnStretch(1, 1)

    def settings(self) -> dict[str, RegionSetting]:
        return {n: RegionSetting(self.sliders[n].value() / 100.0, self.toggles[n].isChecked()) for n in REGION_NAMES}

    def stored(self) -> dict[str, float]:
        return stored_from_settings(self.settings())

    def set_stored(self, stored: dict[str, float] | None) -> None:
        """Show a face's strengths (no signal)."""
        self._timer.stop()
        for name, s in settings_from_stored(stored).items():
            for w in (self.sliders[name], self.toggles[name]):
                w.blockSignals(True)
            self.sliders[name].setValue(int(round(s.value * 100)))
            self.toggles[name].setChecked(s.enabled)
            for w in (self.sliders[name], self.toggles[name]):
                w.blockSignals(False)
            self._refresh(name)

    def set_value(self, name: str, percent: int, enabled: bool = True) -> None:
        """Set one region as a person would (emits ``changed``)."""
        self.toggles[name].blockSignals(True)
        self.toggles[name].setChecked(enabled)
        self.toggles[name].blockSignals(False)
        self.sliders[name].setValue(int(percent))
        self._emit()

    def reset(self) -> None:
        self.set_stored({})
        self._emit()

    def _refresh(self, name: str) -> None:
        on = self.toggles[name].isChecked()
        self.sliders[name].setEnabled(on)
        self.values[name].setText(f"{self.sliders[name].value()} %" if on else "off")

    def _slid(self, _value: int) -> None:
        for name in REGION_NAMES:
            self._refresh(name)
        if not any(s.isSliderDown() for s in self.sliders.values()):
            self._timer.start()

    def _toggled(self, _on: bool) -> None:
        for name in REGION_NAMES:
            self._refresh(name)
        self._emit()

    def _emit(self) -> None:
        self._timer.stop()
        self.changed.emit(self.stored())
