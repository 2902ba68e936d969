"""Errors the engine raises: each names the file or model it is about."""

from __future__ import annotations

from pathlib import Path


class AgelapseError(Exception):
    """Base class of every error the engine raises on purpose."""


class PhotoError(AgelapseError):
    """A photo could not be read: unreadable, unsupported, corrupt or too large."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelError(AgelapseError):
    """A model file is missing, damaged or does not honour its contract. ``name``: the file;
    ``kind``: which model (``core.contracts``: "aging" or "age"), None when not known."""

    def __init__(self, name: str, reason: str, kind: str | None = None):
        self.name = name
        self.reason = reason
        self.kind = kind
        super().__init__(f"model {name}: {reason}")


class ExportError(AgelapseError):
    """An export could not be written (exists, bad format, disk error)."""


class FaceError(AgelapseError):
    """No face, or landmarks could not be found."""


def describe(exc: BaseException, limit: int = 300) -> str:
    """An exception in one line: its type and message, whitespace (newlines) collapsed, at most `limit`
    characters (OpenCV's and dlib's messages run over several lines)."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
