"""An inline message banner: errors and warnings from background work, never a modal dialog.

Messages have a level ("info", "warning", "error") and an optional key; a message with the key of one
already shown replaces it (e.g. the models' state). The newest message is shown; closing it shows the
one before. Info messages go away by themselves after a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton

from core.text import display

COLORS = {"info": "#3a6ea5", "warning": "#a5762a", "error": "#a53a3a"}
INFO_SECONDS = 8


@dataclass
class Message:
    level: str
    text: str
    key: str | None = None


class Banner(QFrame):
    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("banner")
        self.messages: list[Message] = []
        self.icon = QLabel()
        self.icon.setFixedWidth(18)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.count = QLabel()
        self.close_button = QToolButton()
        self.close_button.setText("\u2715")
        self.close_button.setToolTip("Dismiss")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(self.dismiss)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.addWidget(self.icon)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.count)
        lay.addWidget(self.close_button)
        self._timer = QTimer(self, singleShot=True)
        self._timer.timeout.connect(self._expire)
        self.hide()

    def show_message(self, level: str, text: str, key: str | None = None) -> None:
        text = display(text)  # a name that is not UTF-8: U+FFFD, not silently dropped bytes
        if key is not None:
            self.messages = [m for m in self.messages if m.key != key]
        self.messages = [m for m in self.messages if m.text != text]
        self.messages.append(Message(level, text, key))
        self.messages = self.messages[-20:]
        self._refresh()

    def dismiss(self) -> None:
        if self.messages:
            self.messages.pop()
        self._refresh()

    def current(self) -> Message | None:
        return self.messages[-1] if self.messages else None

    def texts(self) -> list[str]:
        return [m.text for m in self.messages]

    def _expire(self) -> None:
        if self.messages and self.messages[-1].level == "info":
            self.dismiss()

    def _refresh(self) -> None:
        msg = self.current()
        self._timer.stop()
        if msg is None:
            self.hide()
        else:
            color = COLORS.get(msg.level, COLORS["info"])
            self.setStyleSheet(f"#banner {{ background: {color}; border-radius: 4px; }} QLabel {{ color: white; }}")
            self.icon.setText({"info": "\u2139", "warning": "\u26a0", "error": "\u2716"}.get(msg.level, ""))
            self.label.setText(msg.text)
            self.count.setText(f"+{len(self.messages) - 1}" if len(self.messages) > 1 else "")
            self.show()
            if msg.level == "info":
                self._timer.start(INFO_SECONDS * 1000)
        self.changed.emit()
