"""The background-task helper: results on the GUI thread, errors and progress as signals, stale results
dropped, cancellation, shutdown waiting for catalog writes, one face finder per thread."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QThread

from app.tasks import Cancelled, TaskRunner, local_finder
from testkit.gui import WAIT_MS

pytestmark = pytest.mark.usefixtures("app_env")  # every test here: its own settings, data and cache


@pytest.fixture
def runner(qapp):
    r = TaskRunner()
    yield r
    r.shutdown()


def test_result_comes_back_on_the_gui_thread(qtbot, runner):
    got = {}
    gui = QThread.currentThread()

    def work(x):
        got["worker"] = threading.current_thread() is not threading.main_thread()
        return x * 2

    def on_result(value):
        got["value"] = value
        got["on_gui"] = QThread.currentThread() is gui

    runner.submit(work, 21, on_result=on_result)
    qtbot.waitUntil(lambda: "value" in got, timeout=WAIT_MS)
    assert got == {"worker": True, "value": 42, "on_gui": True}
    qtbot.waitUntil(lambda: runner.pending() == 0, timeout=WAIT_MS)


def test_errors_go_to_on_error_or_the_failed_signal(qtbot, runner):
    errors = []
    runner.submit(lambda: 1 / 0, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=WAIT_MS)
    assert isinstance(errors[0], ZeroDivisionError)
    with qtbot.waitSignal(runner.failed, timeout=WAIT_MS) as blocker:
        runner.submit(lambda: (_ for _ in ()).throw(ValueError("bad photo")), key="decode")
    assert blocker.args[0] == "decode" and "bad photo" in str(blocker.args[1])


def test_a_newer_task_with_the_same_key_drops_the_older_result(qtbot, runner):
    release = threading.Event()
    results = []

    def slow(name):
        release.wait(10)
        return name

    first = runner.submit(slow, "old photo", key="photo", on_result=results.append)
    runner.submit(slow, "new photo", key="photo", on_result=results.append)
    assert first.cancelled
    release.set()
    qtbot.waitUntil(lambda: runner.pending() == 0, timeout=WAIT_MS)
    assert results == ["new photo"]


def test_progress_and_cancellation_inside_the_task(qtbot, runner):
    steps, finished = [], []
    started = threading.Event()
    go_on = threading.Event()

    def work(ctx):
        ctx.progress(1, 3, "first")
        started.set()
        go_on.wait(10)
        ctx.check()  # raises Cancelled once cancelled
        return "not reached"

    task = runner.submit(work, key="long", on_progress=lambda d, t, p: steps.append((d, t, p)),
                         on_result=finished.append, on_error=finished.append)
    qtbot.waitUntil(lambda: bool(steps), timeout=WAIT_MS)
    assert steps == [(1, 3, "first")]
    assert runner.is_running("long")
    runner.cancel("long")
    go_on.set()
    qtbot.waitUntil(lambda: runner.pending() == 0, timeout=WAIT_MS)
    assert task.cancelled and finished == []  # neither a result nor an error: cancelled work is silent
    assert not runner.is_running("long")


def test_cancelled_exception_is_silent(qtbot, runner):
    failed = []
    runner.failed.connect(lambda *a: failed.append(a))
    runner.submit(lambda: (_ for _ in ()).throw(Cancelled()))
    qtbot.waitUntil(lambda: runner.pending() == 0, timeout=WAIT_MS)
    assert failed == []


def test_shutdown_runs_queued_catalog_writes_and_drops_the_rest(qtbot, qapp):
    runner = TaskRunner()
    written, delivered = [], []
    gate = threading.Event()
    runner.submit(gate.wait, 10, pool="io")
    for i in range(5):
        runner.submit(written.append, i, pool="io", on_result=delivered.append)
    runner.submit(lambda: written.append("inference"), pool="default")  # may or may not start: no callback
    gate.set()
    assert runner.shutdown(timeout_ms=WAIT_MS)
    assert [w for w in written if w != "inference"] == [0, 1, 2, 3, 4]  # in order, none lost
    qapp.processEvents()
    assert delivered == []  # after shutdown no callback runs (the window is going away)
    later = runner.submit(lambda: 1)
    assert later.cancelled


def test_the_in_process_fallback_gives_each_thread_its_own_face_finder(qtbot, runner):
    seen = []
    barrier = threading.Barrier(2, timeout=10)

    def grab():
        f = local_finder("fast")
        barrier.wait()
        return id(f), id(local_finder("fast"))

    runner.submit(grab, on_result=seen.append)
    runner.submit(grab, on_result=seen.append)
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=WAIT_MS)
    (a1, a2), (b1, b2) = seen
    assert a1 == a2 and b1 == b2  # one per thread, reused
    assert a1 != b1  # two threads, two finders
