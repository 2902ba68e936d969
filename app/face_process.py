"""dlib runs in helper processes, not on threads of the GUI's process.

Why: dlib's Python calls hold the GIL while they work, so on a worker thread they still freeze the GUI
thread. Measured on a 12 MP photo: loading the HOG detector 1.1 s and the landmark model 1.1 s (once),
and the accurate (CNN) detector 31 s per photo, all with the GUI frozen. In a process they cost the GUI
nothing. It also settles dlib's thread-safety (``core.dlib_models`` shares one detector between all
FaceFinders of a process): each helper is single-threaded, with its own FaceFinder per mode.

Two helpers, started on first use and kept warm for the life of the app: "interactive" (the shown photo:
finding its faces, landmarks of a box drawn by hand) and "scan" (the album scan), so a scan never makes
the person wait for more than the photo it is on. A request sends the photo through shared memory (a
12 MP photo holds the GIL ~10 ms instead of ~100 ms through a pipe) and waits with the GIL released.
A helper that dies (crash, out of memory) is started again on the next request; that request fails
with a FaceError. :func:`interrupt_busy` kills the helpers that are in the middle of a request (the
window closing: nothing waits for a 30 s detection); :func:`close_all` stops them all.

``AGELAPSE_DLIB_IN_PROCESS=1`` (or a failure to start a helper) falls back to threads: one FaceFinder per
thread with every dlib call under one lock (``app.tasks.LockedFinder``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from multiprocessing import shared_memory

import numpy as np

log = logging.getLogger(__name__)

ROLES = ("interactive", "scan")


class ProcessGone(RuntimeError):
    """The helper process stopped while working on a request."""


class StartFailed(RuntimeError):
    """A helper process could not be started (the caller falls back to threads)."""


fallback_reason: str | None = None  # set when helpers cannot be started: dlib then runs on threads


class FaceProcess:
    """One helper process and the requests to it (one at a time)."""

    def __init__(self, role: str):
        self.role = role
        self._lock = threading.Lock()
        self._proc = None
        self._conn = None
        self.busy = False
        self.starts = 0  # how many times a process was started (tests)

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            try:
                if not self._conn.poll():  # idle and nothing to read: alive and in step
                    return
            except OSError:
                pass
            self.stop()  # the pipe says the helper is gone (or out of step): a new one
        ctx = mp.get_context("spawn")  # never fork a process that runs Qt threads
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child,), name=f"agelapse-faces-{self.role}", daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        self.starts += 1
        log.info("face finder process %s started (pid %s)", self.role, proc.pid)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def call(self, method: str, mode: str, rgb: np.ndarray | None = None, *args, cancelled=None):
        """Run ``FaceFinder(mode).<method>(rgb, *args)`` in the helper and return its result.
        ``cancelled()`` is checked before the request is sent (requests waiting for the helper give up)."""
        from app.tasks import Cancelled
        from core.errors import FaceError

        with self._lock:
            if cancelled is not None and cancelled():
                raise Cancelled()
            try:
                self._ensure()
            except Exception as exc:  # noqa: BLE001 - no processes here (sandbox, frozen app without support)
                raise StartFailed(f"cannot start a face finder process: {exc}") from exc
            shm = None
            try:
                payload = None
                if rgb is not None:
                    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
                    try:
                        shm = shared_memory.SharedMemory(create=True, size=max(1, rgb.nbytes))
                        np.copyto(np.ndarray(rgb.shape, np.uint8, buffer=shm.buf), rgb)
                        payload = (shm.name, rgb.shape)
                    except OSError as exc:  # no usable shared memory (a small /dev/shm): through the pipe
                        log.debug("shared memory unavailable (%s); sending the photo through the pipe", exc)
                        if shm is not None:
                            shm.close()
                            shm.unlink()
                            shm = None
                        payload = (None, rgb)
                self.busy = True
                try:
                    self._conn.send((method, mode, payload, args))
                except OSError:  # the helper died while idle: start a new one, send once more
                    self.stop()
                    self._ensure()
                    self._conn.send((method, mode, payload, args))
                while not self._conn.poll(0.05):  # waits with the GIL released
                    if not self._proc.is_alive():
                        code = self._proc.exitcode
                        self._proc = None
                        raise ProcessGone(f"the face finder process stopped (exit code {code})")
                ok, value = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                self._proc = None
                raise ProcessGone(f"the face finder process stopped ({exc})") from None
            finally:
                self.busy = False
                if shm is not None:
                    shm.close()
                    shm.unlink()
        if ok:
            return value
        raise FaceError(value)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(5)
            if proc.is_alive():
                proc.kill()


_processes: dict[str, FaceProcess] = {}
_registry_lock = threading.Lock()


def process_for(role: str) -> FaceProcess:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    with _registry_lock:
        if role not in _processes:
            _processes[role] = FaceProcess(role)
        return _processes[role]


def interrupt_busy() -> None:
    """Kill the helpers that are working on a request (they start again when needed)."""
    for p in list(_processes.values()):
        if p.busy:
            p.stop()


def close_all() -> None:
    for p in list(_processes.values()):
        p.stop()


class RemoteFinder:
    """The Finder protocol of ``core.scan`` (``detect``, ``mode``) plus ``face_from_box``, answered by a
    helper process."""

    def __init__(self, mode: str, role: str = "interactive", cancelled=None):
        self.mode = mode
        self.process = process_for(role)
        self.cancelled = cancelled

    def _call(self, method: str, rgb, *args):
        global fallback_reason
        if fallback_reason is None:
            try:
                return self.process.call(method, self.mode, rgb, *args, cancelled=self.cancelled)
            except StartFailed as exc:
                fallback_reason = str(exc)
                log.warning("%s; dlib runs on threads instead (the GUI may pause while it works)", exc)
        from app.tasks import local_finder

        finder = local_finder(self.mode)
        return None if method == "warm" else getattr(finder, method)(rgb, *args)

    def detect(self, rgb: np.ndarray) -> list:
        return self._call("detect", rgb)

    def face_from_box(self, rgb: np.ndarray, box):
        return self._call("face_from_box", rgb, tuple(float(v) for v in box))

    def warm_up(self) -> None:
        """Start the helper and load dlib's models there (seconds, but not the GUI's)."""
        self._call("warm", None)


# ------------------------------------------------------------------------------ the helper process

def _serve(conn) -> None:
    """The helper's loop: requests in, (ok, result or message) out, until the pipe closes."""
    from core.faces import FaceFinder

    finders: dict[str, FaceFinder] = {}
    while True:
        try:
            method, mode, payload, args = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            finder = finders.get(mode)
            if finder is None:
                finder = finders[mode] = FaceFinder(mode)
            if method == "warm":
                from core import dlib_models

                finder._predictor()
                dlib_models.hog_detector() if mode == "fast" else dlib_models.cnn_detector()
                result = None
            elif method in ("detect", "face_from_box") and payload[0] is None:  # sent through the pipe
                result = getattr(finder, method)(payload[1], *args)
            elif method in ("detect", "face_from_box"):
                shm = shared_memory.SharedMemory(name=payload[0])
                try:
                    rgb = np.ndarray(payload[1], np.uint8, buffer=shm.buf)
                    result = getattr(finder, method)(rgb, *args)
                    del rgb
                finally:
                    shm.close()
            else:
                raise ValueError(f"unknown request {method!r}")
            conn.send((True, result))
        except Exception as exc:  # noqa: BLE001 - reported to the caller, the helper goes on
            try:
                conn.send((False, f"{exc}" if type(exc).__name__ == "FaceError" else f"{type(exc).__name__}: {exc}"))
            except (OSError, EOFError):
                return
