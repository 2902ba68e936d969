"""A landmark drag released recomputes the face's age groups at once (issue 13, item 6): the strip waits on
the groups' computing time, not on the 250 ms pause that slider moves are debounced by; the groups go
before the age estimate."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.usefixtures("app_env")


class RecordingRunner:
    """Records what is submitted (key order); runs nothing."""

    def __init__(self):
        self.keys: list[str] = []

    def submit(self, fn, *args, key=None, **kwargs):
        self.keys.append(key)

    def cancel(self, key):
        pass


def _controller(qtbot):
    from app.aging import AgingController

    runner = RecordingRunner()
    controller = AgingController(runner)
    face = SimpleNamespace(id=7, face=SimpleNamespace(copy=lambda: "face"), strengths={}, estimated_age=30.0)
    controller.pipeline = SimpleNamespace(age=object(), labels=["a"], estimate_age=lambda *a: 30.0)
    controller._photo, controller._face = SimpleNamespace(rgb=None), face
    return controller, runner, face


def test_a_released_landmark_recomputes_at_once_groups_first(qtbot):
    controller, runner, face = _controller(qtbot)
    started = []
    controller.groups_started.connect(started.append)
    controller.face_changed(face, immediate=True)
    assert started == [7] and runner.keys == ["groups", "age"]  # synchronously, the groups before the age


def test_slider_moves_are_still_debounced(qtbot):
    controller, runner, face = _controller(qtbot)
    controller.face_changed(face, age_too=False)
    controller.face_changed(face, age_too=False)
    assert runner.keys == []  # nothing yet: more moves may come
    qtbot.waitUntil(lambda: runner.keys == ["groups"], timeout=2000)  # once, after the pause
    qtbot.wait(400)
    assert runner.keys == ["groups"]


def test_the_main_window_releases_immediately(qtbot, monkeypatch):
    """The window's handler for a finished edit (a drag released, an undo) asks for the immediate path."""
    from app.main_window import MainWindow

    calls = []
    fake = SimpleNamespace(editor=SimpleNamespace(current_face=lambda: None),
                           aging=SimpleNamespace(face_changed=lambda s, **kw: calls.append(kw)))
    MainWindow._face_edited(fake, object())
    assert calls == [{"immediate": True}]
