"""Work-arounds for bugs of the libraries the GUI runs on.

PySide6 6.12.0 on Python < 3.12 treats None, True and False as immortal, which they are only from Python
3.12 on, and loses references to them: every call of a Qt method that returns nothing
(``widget.update()``, ``painter.setPen(...)``, ...) takes one reference from ``None``, and every
``emit`` of a Python-defined ``Signal(bool)`` one from ``True`` or ``False``. They start with a few
thousand references, so after a few thousand such calls - about a second of painting - Python aborts
with "Fatal Python error: none_dealloc: deallocating None" (or bool_dealloc, often at exit). Measured
here: PySide6-Essentials 6.12.0 loses them, 6.11.3 does not; other values (ints, str, float, objects)
are not affected.

:func:`protect_none` gives None, True and False a practically endless reference count (2**40: a million
lost references a second would take 12 days), making them as immortal as Python 3.12 makes them. It is
applied only on Python < 3.12 with PySide6 >= 6.12, once, before any Qt call of the app
(``app/__init__``). The real fix is in the packaging: require PySide6-Essentials < 6.12 (or != 6.12.0)
on Python 3.11, or Python >= 3.12.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_BOOST = 1 << 40
_done = False


def _pyside_version() -> tuple[int, ...]:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("PySide6-Essentials", "PySide6"):
        try:
            return tuple(int(p) for p in version(dist).split(".")[:2] if p.isdigit())
        except (PackageNotFoundError, ValueError):
            continue
    return ()


def needs_none_protection() -> bool:
    return sys.version_info < (3, 12) and _pyside_version() >= (6, 12)


def protect_none() -> bool:
    """Apply the work-around where it is needed (see the module doc); True if it was applied."""
    global _done
    if _done or not needs_none_protection():
        return _done
    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += _BOOST  # ob_refcnt is the first field
    _done = True
    log.debug("PySide6 %s on Python %s: None, True and False made immortal (see app/_compat.py)",
              ".".join(map(str, _pyside_version())), sys.version.split()[0])
    return True
