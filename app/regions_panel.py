"""Strength sliders (0-150 %) and on/off toggles of the selected face: the five regions and the hair.

``changed(stored, gesture)`` carries the strengths as stored in the catalog (``app.state``: the effective
strengths of the five regions and the hair, plus the slider value of those switched off). It is emitted
when a slider is released, a toggle is clicked, or 250 ms after the last keyboard/wheel step, so a drag of
a slider recomputes the face once, not at every pixel.

``gesture`` names the person's action, for the undo stack (``app.editor``): each drag, toggle and reset
is a gesture of its own; consecutive keyboard/wheel steps of one slider share one gesture (their undo
steps merge), until another slider, a drag, a toggle or a reset comes between.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QCheckBox, QGridLayout, QLabel, QPushButton, QSlider, QWidget

from app.state import RegionSetting, settings_from_stored, stored_from_settings
from core.pipeline import HAIR, MAX_STRENGTH, STRENGTH_NAMES
from core.regions import REGION_COLORS

HAIR_COLOR = (170, 170, 176)  # grey: the hair's own swatch (it has no outline on the face)
TITLES = {HAIR: "Hair"}
TIPS = {HAIR: ("Age the hair, beard and brows (greying; off: leave them as they are)",
               "How strongly the hair, beard and brows age (100 % = as the model learned)")}


def _swatch(name: str) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(*REGION_COLORS.get(name, HAIR_COLOR)))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawEllipse(1, 1, 10, 10)
    p.end()
    return QIcon(pix)


class RegionsPanel(QWidget):
    changed = Signal(dict, str)  # stored strengths, gesture

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
        self._gestures = 0
        self._gesture = ""
        self._nudged: str | None = None  # the slider whose keyboard/wheel steps make the current gesture
        for row, name in enumerate(STRENGTH_NAMES):
            toggle_tip, slider_tip = TIPS.get(name, (f"Age the {name} (off: leave them as they are)",
                                                     f"How strongly the {name} age (100 % = as the model learned)"))
            toggle = QCheckBox(TITLES.get(name, name.capitalize()))
            toggle.setIcon(_swatch(name))
            toggle.setChecked(True)
            toggle.setToolTip(toggle_tip)
            toggle.toggled.connect(self._toggled)
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, int(round(MAX_STRENGTH * 100)))
            slider.setSingleStep(5)
            slider.setPageStep(25)
            slider.setValue(100)
            slider.setToolTip(slider_tip)
            slider.valueChanged.connect(lambda _v, n=name: self._slid(n))
            slider.sliderPressed.connect(self._new_gesture)
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
        grid.addWidget(self.reset_button, len(STRENGTH_NAMES), 0, 1, 3)
        grid.setColumnStretch(1, 1)

    def settings(self) -> dict[str, RegionSetting]:
        return {n: RegionSetting(self.sliders[n].value() / 100.0, self.toggles[n].isChecked()) for n in STRENGTH_NAMES}

    def stored(self) -> dict[str, float]:
        return stored_from_settings(self.settings())

    def set_stored(self, stored: dict[str, float] | None) -> None:
        """Show a face's strengths (no signal; the next keyboard step starts a new gesture)."""
        self._timer.stop()
        self._nudged = None
        for name, s in settings_from_stored(stored).items():
            for w in (self.sliders[name], self.toggles[name]):
                w.blockSignals(True)
            self.sliders[name].setValue(int(round(s.value * 100)))
            self.toggles[name].setChecked(s.enabled)
            for w in (self.sliders[name], self.toggles[name]):
                w.blockSignals(False)
            self._refresh(name)

    def set_value(self, name: str, percent: int, enabled: bool = True) -> None:
        """Set one strength as a person would (one gesture; emits ``changed``)."""
        self._new_gesture()
        self.toggles[name].blockSignals(True)
        self.toggles[name].setChecked(enabled)
        self.toggles[name].blockSignals(False)
        self.sliders[name].blockSignals(True)
        self.sliders[name].setValue(int(percent))
        self.sliders[name].blockSignals(False)
        self._refresh(name)
        self._emit()

    def reset(self) -> None:
        self.set_stored({})
        self._new_gesture()
        self._emit()

    def _new_gesture(self, nudged: str | None = None) -> None:
        self._gestures += 1
        self._gesture = f"g{self._gestures}"
        self._nudged = nudged

    def _refresh(self, name: str) -> None:
        on = self.toggles[name].isChecked()
        self.sliders[name].setEnabled(on)
        self.values[name].setText(f"{self.sliders[name].value()} %" if on else "off")

    def _slid(self, name: str) -> None:
        self._refresh(name)
        if self.sliders[name].isSliderDown():
            return  # a drag: emitted once, on release
        if self._nudged != name:
            self._new_gesture(nudged=name)
        self._timer.start()

    def _toggled(self, _on: bool) -> None:
        self._new_gesture()
        for name in STRENGTH_NAMES:
            self._refresh(name)
        self._emit()

    def _emit(self) -> None:
        self._timer.stop()
        self.changed.emit(self.stored(), self._gesture)
