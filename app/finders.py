"""The face finder a task uses: a helper process's (``app.face_process.RemoteFinder``: dlib holds the GIL,
so on a thread it would freeze the GUI), or, with ``AGELAPSE_DLIB_IN_PROCESS=1``, this thread's own
(``app.tasks.local_finder``, dlib calls serialised by a lock).

Its own module so that ``app.tasks`` (which ``app.face_process`` uses for cancelling and its in-process
fall-back) never imports ``app.face_process``: no import circle.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from app.tasks import local_finder


def face_finder(mode: str = "fast", role: str = "interactive", cancelled: Callable[[], bool] | None = None):
    """The finder for ``mode`` ("fast" | "accurate"); ``role`` picks the helper process ("interactive" for
    the shown photo, "scan" for the album), ``cancelled`` lets a long detection stop early."""
    if os.environ.get("AGELAPSE_DLIB_IN_PROCESS") == "1":
        return local_finder(mode)
    from app.face_process import RemoteFinder  # starts helper processes only when first asked

    return RemoteFinder(mode, role, cancelled)
