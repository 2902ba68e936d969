"""Face finding in a helper process: same faces as in-process, errors and crashes reported, and the GUI
thread never frozen by dlib (which holds the GIL while it loads its models and detects)."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from app.face_process import FaceProcess, ProcessGone, RemoteFinder
from app.tasks import Cancelled
from core.errors import FaceError
from core.faces import FaceFinder

pytestmark = pytest.mark.usefixtures("app_env")  # every test here: its own settings, data and cache


@pytest.fixture
def helper():
    p = FaceProcess("interactive")  # a private, cold helper (not the app's shared one)
    yield p
    p.stop()


def _finder(helper, mode="fast") -> RemoteFinder:
    f = RemoteFinder(mode)
    f.process = helper
    return f


def test_the_helper_finds_the_same_faces_as_dlib_in_process(helper, astronaut):
    remote = _finder(helper).detect(astronaut)
    local = FaceFinder().detect(astronaut)
    assert len(remote) == len(local) == 1
    np.testing.assert_array_equal(remote[0].box, local[0].box)
    np.testing.assert_array_equal(remote[0].landmarks, local[0].landmarks)
    box = (150, 60, 330, 260)
    manual = _finder(helper).face_from_box(astronaut, box)
    assert manual.source == "manual"
    np.testing.assert_array_equal(manual.landmarks, FaceFinder().face_from_box(astronaut, box).landmarks)


def test_without_shared_memory_the_photo_goes_through_the_pipe(helper, astronaut, monkeypatch):
    from app import face_process

    def no_shm(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(face_process.shared_memory, "SharedMemory", no_shm)
    faces = _finder(helper).detect(astronaut)
    assert len(faces) == 1 and faces[0].landmarks.shape == (68, 2)


def test_errors_and_crashes_come_back_as_exceptions(helper, astronaut):
    finder = _finder(helper)
    with pytest.raises(FaceError, match="too small"):
        finder.face_from_box(astronaut, (10, 10, 12, 12))
    assert finder.detect(astronaut)  # the helper goes on after an error
    proc = helper._proc
    os.kill(helper.pid, signal.SIGKILL)  # killed while idle: started again on the next request
    proc.join(10)
    assert finder.detect(astronaut) and helper.starts == 2

    killer = threading.Timer(0.3, lambda: os.kill(helper.pid, signal.SIGKILL))
    big = np.ascontiguousarray(np.tile(astronaut, (6, 6, 1)))  # long enough to be killed in the middle
    killer.start()
    with pytest.raises((ProcessGone, FaceError)):
        FaceProcess.call(helper, "detect", "accurate", big)
    killer.join()
    assert finder.detect(astronaut) and helper.starts == 3

    with pytest.raises(Cancelled):
        RemoteFinder("fast", cancelled=lambda: True).detect(astronaut)  # a request no longer wanted is not sent


def test_a_cold_helper_does_not_freeze_the_calling_process(helper, astronaut):
    """In-process, loading dlib's models alone holds the GIL for about two seconds."""
    result, longest = {}, 0.0

    def work():
        result["faces"] = _finder(helper).detect(astronaut)

    t = threading.Thread(target=work)
    last = time.perf_counter()
    t.start()
    while t.is_alive():
        time.sleep(0.005)
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    t.join()
    assert result["faces"]
    assert longest < 0.25, f"the calling process was frozen for {longest * 1000:.0f} ms"
