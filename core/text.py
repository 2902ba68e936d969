"""File names as text: any name the file system can hold, shown, stored and printed without failing.

On POSIX a file name is bytes; Python decodes the bytes that are not valid UTF-8 into lone surrogates
(``b"\\xe9"`` -> ``"\\udce9"``, PEP 383), which cannot be encoded as UTF-8: printing them or storing them in
SQLite fails, and Qt silently drops them. These helpers give each use what it needs:

- :func:`is_text`: whether a name is valid Unicode (encodable as UTF-8);
- :func:`display`: a name for people: every undecodable byte shown as U+FFFD (the replacement character);
- :func:`printable`: :func:`display`, with control characters (newline, tab, escape, bidirectional
  overrides, ...) written as backslash escapes (``\\n``, ``\\t``, ``\\x1b``, ``\\u202e``), so a name is
  always one line and can neither drive a terminal nor read backwards;
- :func:`name_bytes`: the exact bytes of a name (``os.fsencode``), for machine-readable output;
- :func:`ascii_text`: text as plain ASCII (EXIF ASCII tags, OpenCV's Hershey fonts, labels in CLI output);
- :func:`file_label`: a label ("60\u201369", "about 63") made safe for a file name ("60-69", "about-63").
"""

from __future__ import annotations

import os
import unicodedata

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_INVISIBLE = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _str(name: str | os.PathLike | bytes) -> str:
    name = os.fspath(name)
    return os.fsdecode(name) if isinstance(name, bytes) else name


def is_text(name: str | os.PathLike | bytes) -> bool:
    """True when the name holds no undecodable bytes (it encodes as UTF-8)."""
    try:
        _str(name).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def display(name: str | os.PathLike | bytes) -> str:
    """The name as valid Unicode: bytes that were not valid UTF-8 become U+FFFD (one per byte)."""
    text = _str(name)
    if is_text(text):
        return text
    out = []
    for ch in text:
        if "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")  # a byte of a name that is not UTF-8 (or a lone UTF-16 surrogate)
        else:
            out.append(ch)
    return "".join(out)


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str | os.PathLike | bytes) -> str:
    """:func:`display`, with control characters escaped: C0, DEL, C1, the line and paragraph separators,
    and the explicit bidirectional controls (a right-to-left override makes "exe.jpg" read "gpj.exe")."""
    out = []
    for ch in display(text):
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F or ch in _INVISIBLE:
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)


def name_bytes(name: str | os.PathLike | bytes) -> bytes:
    """The exact bytes of a file name as the operating system holds it."""
    return os.fsencode(name)


def ascii_text(text: str) -> str:
    """``text`` as plain ASCII: dashes (en, em, minus) become "-", letters lose their accents, anything else
    without an ASCII form is dropped. The one place labels and notes are made ASCII."""
    text = text.replace("\u2013", "-").replace("\u2014", "-").replace("\u2212", "-")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def file_label(text: str) -> str:
    """A label made safe for a file name ("60\u201369" -> "60-69", "about 63" -> "about-63")."""
    text = ascii_text(text).replace("/", "-").replace(" ", "-")
    return "".join(c for c in text if c.isalnum() or c in "-+_")
