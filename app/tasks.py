"""The one helper for background work: thread pools, progress, cancellation, errors, stale results.

    runner = TaskRunner()
    task = runner.submit(load_photo, path, key="photo", on_result=show, on_error=report)

- ``fn`` runs on a worker thread of the named pool. If it takes a keyword argument ``ctx`` it gets a
  :class:`TaskContext` with ``progress(done, total, text)``, ``cancelled()`` and ``check()`` (raises
  :class:`Cancelled`).
- Results, errors and progress come back on the GUI thread through queued signals of the runner (a
  QObject living in the GUI thread), then go to the given callbacks. A task that was cancelled before its
  result arrived delivers nothing: that is how stale results (for a photo no longer shown, a face edited
  since) are dropped.
- ``key``: submitting a task with the key of a running one cancels the older one (only the newest matters).
- Errors without ``on_error`` are emitted as :attr:`TaskRunner.failed` (the main window shows them in
  its banner); :class:`Cancelled` raised by ``fn`` is silent.
- Pools: "default" (2 threads: photo decoding, inference, export), "scan" (1: the album scan),
  "thumbs" (2: thumbnails), "io" (1: catalog writes, so they happen in order). :meth:`shutdown` cancels
  everything and waits for the workers (called when the window closes, so nothing pending is lost).

Face finding in process: :func:`local_finder` is this thread's own FaceFinder (``threading.local``) with
dlib calls serialised by a lock; ``app.finders.face_finder`` chooses between it and a helper process's
finder (``app.face_process``).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)

POOL_SIZES = {"default": 2, "scan": 1, "thumbs": 2, "io": 1}


class Cancelled(Exception):
    """Raised by :meth:`TaskContext.check` when the task was cancelled."""


@dataclass(eq=False)
class Task:
    id: int
    key: str | None
    pool: str
    on_result: Callable | None = None
    on_error: Callable | None = None
    on_progress: Callable | None = None
    on_finished: Callable | None = None
    started: float = field(default_factory=time.perf_counter)
    _cancel: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()


class TaskContext:
    """Handed to a task function that accepts ``ctx``: progress reports and cancellation checks."""

    def __init__(self, runner: "TaskRunner", task: Task):
        self._runner = runner
        self._task = task

    def cancelled(self) -> bool:
        return self._task.cancelled or self._runner._closing

    def check(self) -> None:
        if self.cancelled():
            raise Cancelled()

    def progress(self, done: int, total: int | None = None, payload: object = None) -> None:
        if not self.cancelled():
            self._runner._progress.emit(self._task.id, (done, total, payload))


class _Job(QRunnable):
    def __init__(self, runner: "TaskRunner", task: Task, fn: Callable, args: tuple, kwargs: dict):
        super().__init__()
        self.setAutoDelete(True)
        self._runner, self._task, self._fn, self._args, self._kwargs = runner, task, fn, args, kwargs

    def run(self) -> None:
        runner, task = self._runner, self._task
        if task.cancelled or runner._closing:
            runner._done.emit(task.id, ("cancelled", None))
            return
        try:
            value = self._fn(*self._args, **self._kwargs)
        except Cancelled:
            runner._done.emit(task.id, ("cancelled", None))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back as a signal
            if not isinstance(exc, Exception):
                log.error("task %s raised %r", task.key or task.id, exc)
            else:
                log.debug("task %s failed", task.key or task.id, exc_info=True)
            runner._done.emit(task.id, ("error", exc))
        else:
            runner._done.emit(task.id, ("ok", value))
        finally:
            self._fn = self._args = self._kwargs = None  # drop references to big arrays at once


def _wants_ctx(fn: Callable) -> bool:
    try:
        return "ctx" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class TaskRunner(QObject):
    """Runs callables on thread pools and hands results back on the GUI thread (see the module doc)."""

    failed = Signal(str, object)  # key, exception: an error no on_error handled
    busy_changed = Signal(bool)
    task_finished = Signal(int)  # task id, after its callbacks ran (or were dropped)

    _done = Signal(int, object)
    _progress = Signal(int, object)

    def __init__(self, parent: QObject | None = None, pool_sizes: dict[str, int] | None = None):
        super().__init__(parent)
        self._pools: dict[str, QThreadPool] = {}
        for name, size in {**POOL_SIZES, **(pool_sizes or {})}.items():
            pool = QThreadPool(self)
            pool.setMaxThreadCount(max(1, size))
            pool.setExpiryTimeout(30_000)
            self._pools[name] = pool
        self._tasks: dict[int, Task] = {}
        self._by_key: dict[str, Task] = {}
        self._ids = itertools.count(1)
        self._closing = False
        self._done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)
        self._progress.connect(self._on_progress, Qt.ConnectionType.QueuedConnection)

    # -- submitting

    def submit(self, fn: Callable, *args, key: str | None = None, pool: str = "default",
               on_result: Callable | None = None, on_error: Callable | None = None,
               on_progress: Callable | None = None, on_finished: Callable | None = None, **kwargs) -> Task:
        """Run ``fn(*args, **kwargs)`` on ``pool`` (see the module doc); returns the :class:`Task`."""
        if pool not in self._pools:
            raise ValueError(f"unknown pool {pool!r}")
        task = Task(next(self._ids), key, pool, on_result, on_error, on_progress, on_finished)
        if self._closing:
            task.cancel()
            return task
        if key is not None:
            old = self._by_key.get(key)
            if old is not None:
                old.cancel()
            self._by_key[key] = task
        if _wants_ctx(fn):
            kwargs["ctx"] = TaskContext(self, task)
        was_busy = bool(self._tasks)
        self._tasks[task.id] = task
        self._pools[pool].start(_Job(self, task, fn, args, kwargs))
        if not was_busy:
            self.busy_changed.emit(True)
        return task

    def cancel(self, key: str) -> None:
        """Cancel the task running under ``key`` (its result will be dropped)."""
        task = self._by_key.pop(key, None)
        if task is not None:
            task.cancel()

    def is_running(self, key: str) -> bool:
        task = self._by_key.get(key)
        return task is not None and not task.cancelled and task.id in self._tasks

    def pending(self, pool: str | None = None) -> int:
        """Tasks submitted whose result has not been handed back yet (in ``pool``, or all)."""
        return sum(1 for t in self._tasks.values() if pool is None or t.pool == pool)

    def pool(self, name: str) -> QThreadPool:
        return self._pools[name]

    # -- delivery (GUI thread)

    @Slot(int, object)
    def _on_progress(self, task_id: int, value: object) -> None:
        task = self._tasks.get(task_id)
        if task is None or task.cancelled or task.on_progress is None:
            return
        done, total, payload = value
        task.on_progress(done, total, payload)

    @Slot(int, object)
    def _on_done(self, task_id: int, outcome: tuple[str, object]) -> None:
        task = self._tasks.pop(task_id, None)
        if task is None:
            return
        if task.key is not None and self._by_key.get(task.key) is task:
            del self._by_key[task.key]
        status, value = outcome
        try:
            if task.cancelled or self._closing or status == "cancelled":
                log.debug("task %s: result dropped (cancelled or stale)", task.key or task.id)
            elif status == "ok":
                if task.on_result is not None:
                    task.on_result(value)
            elif task.on_error is not None:
                task.on_error(value)
            else:
                log.warning("background task %s failed: %s", task.key or task.id, value)
                self.failed.emit(task.key or "", value)
            if task.on_finished is not None and not self._closing:
                task.on_finished()
        except Exception:  # a callback bug must not kill the event loop
            log.exception("callback of task %s failed", task.key or task.id)
        finally:
            self.task_finished.emit(task_id)
            if not self._tasks:
                self.busy_changed.emit(False)

    # -- shutdown

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Wait (blocking) until every pool is idle; True if they all are."""
        deadline = time.monotonic() + timeout_ms / 1000
        ok = True
        for pool in self._pools.values():
            left = max(0, int((deadline - time.monotonic()) * 1000))
            ok = pool.waitForDone(left) and ok
        return ok

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Cancel every task (queued ones never start; "io" writes already queued still run so no edit is
        lost) and wait for the workers. Callbacks are not called any more."""
        for name, pool in self._pools.items():
            if name != "io":
                pool.clear()
        for task in list(self._tasks.values()):
            if task.pool != "io":
                task.cancel()
        io_ok = self._pools["io"].waitForDone(timeout_ms)
        self._closing = True
        return self.wait(timeout_ms) and io_ok


# ------------------------------------------------------------------------------------ face finders

_local = threading.local()
#: dlib's HOG and CNN detectors are not safe to call from two threads at once, and core.dlib_models
#: caches ONE detector per process that every FaceFinder shares; so detection is serialised here.
DLIB_LOCK = threading.Lock()


class LockedFinder:
    """A thread's own FaceFinder whose dlib calls hold :data:`DLIB_LOCK` (the Finder protocol of
    core.scan: ``detect`` and ``mode``)."""

    def __init__(self, mode: str):
        from core.faces import FaceFinder

        self.finder = FaceFinder(mode)
        self.mode = mode

    def detect(self, rgb):
        with DLIB_LOCK:
            return self.finder.detect(rgb)

    def face_from_box(self, rgb, box):
        with DLIB_LOCK:
            return self.finder.face_from_box(rgb, box)


def local_finder(mode: str = "fast") -> LockedFinder:
    """This thread's own in-process finder for ``mode`` (one per thread, dlib calls serialised)."""
    finders = getattr(_local, "finders", None)
    if finders is None:
        finders = _local.finders = {}
    if mode not in finders:
        finders[mode] = LockedFinder(mode)
    return finders[mode]
