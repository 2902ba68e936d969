"""The album catalog: which photos were scanned, their faces, and the person's edits, in one SQLite file.

Durability: the database runs in WAL mode with ``synchronous=FULL`` and every public method that writes
commits before it returns (several statements that belong together run in one transaction), so a crash or
a kill loses nothing that a method had returned from, and never leaves a half-done change.

Threads: one connection, shared, every call serialised by a lock: a `Catalog` may be used from the GUI
thread and a worker thread at once. Several processes may open the same file (WAL; a writer waits up to
``busy_timeout`` for another).

Schema: ``PRAGMA user_version`` holds the schema version; `MIGRATIONS[i]` takes a database from version
``i`` to ``i + 1``, each in its own transaction together with the new user_version, so a failed migration
leaves the file at the last good version. A file from a newer Agelapse (higher version) is refused, not
touched. Version 1 is the schema as first specified; version 2 keeps the person's forehead edit apart from
the detected value (so that a reset restores it), records which detector scanned a photo, and adds indexes.

Paths are stored absolute and normalised (``os.path.abspath``), symbolic links not resolved: a photo is
known by the path it was listed under. A path that is not valid Unicode (a file name in latin-1 bytes on
Linux: Python holds such bytes as lone surrogates) is stored as a BLOB of its exact bytes, every other
path as TEXT, so any name the file system can hold has its one row; error messages are stored as valid
text (undecodable bytes shown as U+FFFD).

Faces: a scan stores detected faces (source "hog"/"cnn"); the person can edit their landmarks (kept apart
from the detected ones, so `reset_landmarks` can restore them), set per-region strengths, add faces by
hand (source "manual") and remove faces. Rescanning an unchanged file replaces the detected faces but hands
each old face's edits, strengths and age over to the new face that overlaps it (box IoU >= 0.5) and keeps
manual faces; when the file changed, all its old faces go.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import AgelapseError
from core.faces import DEFAULT_FOREHEAD_HEIGHT, Face
from core.text import display, is_text

log = logging.getLogger(__name__)

SCAN_STATES = ("pending", "done", "error")
_IOU_KEEP_EDITS = 0.5


class CatalogError(AgelapseError):
    """The catalog file cannot be opened or used (damaged, from a newer version, ...)."""


def default_catalog_path() -> Path:
    """$AGELAPSE_DATA_DIR/catalog.sqlite3 if set, else in the user's data folder: %LOCALAPPDATA%\\Agelapse
    (Windows), ~/Library/Application Support/Agelapse (macOS), $XDG_DATA_HOME/agelapse or
    ~/.local/share/agelapse."""
    if env := os.environ.get("AGELAPSE_DATA_DIR"):
        return Path(env) / "catalog.sqlite3"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "Agelapse"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support" / "Agelapse"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "agelapse"
    return base / "catalog.sqlite3"


# ------------------------------------------------------------------------------------------- migrations


def _v1(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE photos (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL DEFAULT 0,
            mtime_ns INTEGER NOT NULL DEFAULT 0,
            width INTEGER,
            height INTEGER,
            scan_state TEXT NOT NULL DEFAULT 'pending' CHECK (scan_state IN ('pending', 'done', 'error')),
            error TEXT,
            face_count INTEGER NOT NULL DEFAULT 0,
            scanned_at REAL)"""
    )
    db.execute(
        """CREATE TABLE faces (
            id INTEGER PRIMARY KEY,
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            box TEXT NOT NULL,
            landmarks TEXT NOT NULL,
            edited_landmarks TEXT,
            forehead_height REAL NOT NULL,
            score REAL NOT NULL DEFAULT 0,
            source TEXT NOT NULL,
            strengths TEXT NOT NULL DEFAULT '{}',
            estimated_age REAL)"""
    )


def _v2(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE photos ADD COLUMN detector TEXT")
    db.execute("ALTER TABLE faces ADD COLUMN edited_forehead_height REAL")
    # In v1 an edit overwrote forehead_height; detection always gave the default then.
    db.execute(
        "UPDATE faces SET edited_forehead_height = forehead_height, forehead_height = ? "
        "WHERE edited_landmarks IS NOT NULL",
        (DEFAULT_FOREHEAD_HEIGHT,),
    )
    db.execute("CREATE INDEX faces_photo ON faces(photo_id)")
    db.execute("CREATE INDEX photos_state ON photos(scan_state)")


#: MIGRATIONS[i] takes the schema from version i to i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2]
SCHEMA_VERSION = len(MIGRATIONS)


# ------------------------------------------------------------------------------------------- records


@dataclass
class PhotoRecord:
    """One row of the photos table."""

    id: int
    path: Path
    size: int
    mtime_ns: int
    width: int | None
    height: int | None
    scan_state: str
    error: str | None
    face_count: int
    scanned_at: float | None
    detector: str | None = None


@dataclass
class StoredFace:
    """A face as stored: `face` holds the person's edited landmarks and forehead height when there are
    (`edited` True), else the detected ones."""

    id: int
    photo_id: int
    face: Face
    edited: bool = False
    strengths: dict[str, float] = field(default_factory=dict)
    estimated_age: float | None = None


def _key(path: str | os.PathLike) -> str | bytes:
    """The stored form of a path: TEXT when it is valid Unicode, else a BLOB of its bytes."""
    key = os.path.abspath(os.fspath(path))
    if isinstance(key, bytes):
        key = os.fsdecode(key)
    return key if is_text(key) else os.fsencode(key)


def _path(stored: str | bytes) -> Path:
    return Path(os.fsdecode(stored) if isinstance(stored, bytes) else stored)


def _points_json(arr: np.ndarray, shape: tuple[int, ...], what: str) -> str:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, not {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} must be finite")
    return json.dumps(np.round(arr, 3).tolist())


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


_PHOTO_COLS = "id, path, size, mtime_ns, width, height, scan_state, error, face_count, scanned_at, detector"
_FACE_COLS = (
    "id, photo_id, box, landmarks, edited_landmarks, forehead_height, edited_forehead_height, score, source, "
    "strengths, estimated_age"
)


# ------------------------------------------------------------------------------------------- catalog


class Catalog:
    """The catalog in `db_path` (default `default_catalog_path()`; ":memory:" for a throw-away one).
    Usable as a context manager (closes on exit)."""

    def __init__(self, db_path: str | os.PathLike | None = None, *, busy_timeout_s: float = 5.0):
        self.path = Path(db_path) if db_path is not None else default_catalog_path()
        if str(db_path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                os.fspath(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._check_version()  # before anything that writes (WAL mode changes the file header)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{self.path}: cannot open the catalog ({exc})") from exc
        self._closed = False

    # -- plumbing

    def _check_version(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._db.close()
            raise CatalogError(
                f"{self.path}: catalog schema version {version} is newer than this Agelapse "
                f"understands ({SCHEMA_VERSION}); it was left untouched"
            )

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for v in range(version, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                MIGRATIONS[v](self._db)
                self._db.execute(f"PRAGMA user_version = {v + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            log.info("catalog %s migrated to schema version %d", self.path, v + 1)

    class _Tx:
        def __init__(self, cat: "Catalog"):
            self.cat = cat

        def __enter__(self) -> sqlite3.Connection:
            self.cat._lock.acquire()
            try:
                self.cat._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.cat._lock.release()
                raise
            return self.cat._db

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                self.cat._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.cat._lock.release()

    def _tx(self) -> "Catalog._Tx":
        """One write transaction under the lock: committed on success, rolled back on error."""
        if self._closed:
            raise CatalogError(f"{self.path}: catalog is closed")
        return Catalog._Tx(self)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            if self._closed:
                raise CatalogError(f"{self.path}: catalog is closed")
            return self._db.execute(sql, args).fetchall()

    @property
    def schema_version(self) -> int:
        return self._query("PRAGMA user_version")[0][0]

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- photos

    @staticmethod
    def _photo_id(db: sqlite3.Connection, photo: int | str | os.PathLike) -> int:
        if isinstance(photo, int):
            row = db.execute("SELECT id FROM photos WHERE id = ?", (photo,)).fetchone()
        else:
            row = db.execute("SELECT id FROM photos WHERE path = ?", (_key(photo),)).fetchone()
        if row is None:
            raise KeyError(f"photo not in the catalog: {photo}")
        return row[0]

    @staticmethod
    def _upsert(db, path, size, mtime_ns, width, height) -> tuple[int, bool]:
        """Insert or update a photo row; returns (id, changed) where changed = new file or new size/mtime
        (its scan state then goes back to 'pending')."""
        key = _key(path)
        row = db.execute("SELECT id, size, mtime_ns FROM photos WHERE path = ?", (key,)).fetchone()
        if row is None:
            cur = db.execute(
                "INSERT INTO photos (path, size, mtime_ns, width, height) VALUES (?, ?, ?, ?, ?)",
                (key, int(size), int(mtime_ns), width, height),
            )
            return cur.lastrowid, True
        pid, old_size, old_mtime = row
        changed = (old_size, old_mtime) != (int(size), int(mtime_ns))
        if changed:
            db.execute(
                "UPDATE photos SET size = ?, mtime_ns = ?, scan_state = 'pending', error = NULL WHERE id = ?",
                (int(size), int(mtime_ns), pid),
            )
        if width is not None and height is not None:
            db.execute("UPDATE photos SET width = ?, height = ? WHERE id = ?", (int(width), int(height), pid))
        return pid, changed

    def add_photo(
        self, path: str | os.PathLike, *, size: int, mtime_ns: int, width: int | None = None,
        height: int | None = None,
    ) -> int:
        """Record a photo (new: state 'pending'; known but changed size/mtime: back to 'pending'). Returns its id."""
        with self._tx() as db:
            return self._upsert(db, path, size, mtime_ns, width, height)[0]

    def needs_scan(self, path: str | os.PathLike, size: int, mtime_ns: int) -> bool:
        """True for a photo not in the catalog, changed since (size or mtime_ns differ) or still 'pending'.
        A photo that failed ('error') and has not changed is not retried (pass rescan to the scanner)."""
        rows = self._query("SELECT size, mtime_ns, scan_state FROM photos WHERE path = ?", (_key(path),))
        if not rows:
            return True
        old_size, old_mtime, state = rows[0]
        return (old_size, old_mtime) != (int(size), int(mtime_ns)) or state == "pending"

    def mark_scanned(
        self, path: str | os.PathLike, faces: Iterable[Face], *, size: int, mtime_ns: int,
        width: int | None = None, height: int | None = None, detector: str | None = None,
    ) -> int:
        """Store a scan's result in one transaction: the photo row (state 'done'), and `faces` replacing its
        detected faces (see the module doc for what happens to edits and manual faces). Returns the photo id."""
        new_faces = list(faces)
        with self._tx() as db:
            key = _key(path)
            known = db.execute("SELECT id FROM photos WHERE path = ?", (key,)).fetchone() is not None
            pid, changed = self._upsert(db, path, size, mtime_ns, width, height)
            old = [] if not known else db.execute(f"SELECT {_FACE_COLS} FROM faces WHERE photo_id = ?", (pid,)).fetchall()
            carry: dict[int, tuple] = {}
            if known and not changed:
                detected = [r for r in old if r[8] != "manual"]
                taken: set[int] = set()
                for i, f in enumerate(new_faces):
                    best, best_iou = None, _IOU_KEEP_EDITS
                    for r in detected:
                        if r[0] in taken:
                            continue
                        iou = _iou(np.asarray(f.box, np.float64), np.asarray(json.loads(r[2]), np.float64))
                        if iou >= best_iou:
                            best, best_iou = r, iou
                    if best is not None:
                        taken.add(best[0])
                        carry[i] = best
                db.execute("DELETE FROM faces WHERE photo_id = ? AND source != 'manual'", (pid,))
            else:
                db.execute("DELETE FROM faces WHERE photo_id = ?", (pid,))
            for i, f in enumerate(new_faces):
                prev = carry.get(i)
                self._insert_face(
                    db, pid, f,
                    edited_landmarks=prev[4] if prev else None,
                    edited_forehead=prev[6] if prev else None,
                    strengths=prev[9] if prev else "{}",
                    age=prev[10] if prev else None,
                )
            db.execute(
                "UPDATE photos SET scan_state = 'done', error = NULL, scanned_at = ?, detector = ?, "
                "face_count = (SELECT COUNT(*) FROM faces WHERE photo_id = ?) WHERE id = ?",
                (time.time(), detector, pid, pid),
            )
            return pid

    def mark_error(
        self, path: str | os.PathLike, message: str, *, size: int | None = None, mtime_ns: int | None = None
    ) -> int:
        """Record that `path` could not be scanned (state 'error' with `message`); its faces, if any from an
        earlier scan, are kept. Returns the photo id."""
        with self._tx() as db:
            if size is not None and mtime_ns is not None:
                pid = self._upsert(db, path, size, mtime_ns, None, None)[0]
            else:
                row = db.execute("SELECT id FROM photos WHERE path = ?", (_key(path),)).fetchone()
                pid = row[0] if row else db.execute("INSERT INTO photos (path) VALUES (?)", (_key(path),)).lastrowid
            db.execute(
                "UPDATE photos SET scan_state = 'error', error = ?, scanned_at = ? WHERE id = ?",
                (display(str(message)), time.time(), pid),
            )
            return pid

    def remove_photo(self, photo: int | str | os.PathLike) -> None:
        """Forget a photo and its faces (the file itself is not touched)."""
        with self._tx() as db:
            db.execute("DELETE FROM photos WHERE id = ?", (self._photo_id(db, photo),))

    @staticmethod
    def _record(row: tuple) -> PhotoRecord:
        return PhotoRecord(row[0], _path(row[1]), *row[2:])

    def photo(self, photo: int | str | os.PathLike) -> PhotoRecord | None:
        """The record of one photo (by path or id), or None."""
        if isinstance(photo, int):
            rows = self._query(f"SELECT {_PHOTO_COLS} FROM photos WHERE id = ?", (photo,))
        else:
            rows = self._query(f"SELECT {_PHOTO_COLS} FROM photos WHERE path = ?", (_key(photo),))
        return self._record(rows[0]) if rows else None

    @classmethod
    def _records(cls, rows: list[tuple]) -> list[PhotoRecord]:
        # SQLite sorts every TEXT before every BLOB; sorted here by the path's code points instead
        return sorted((cls._record(r) for r in rows), key=lambda r: os.fspath(r.path))

    def photos(self, state: str | None = None) -> list[PhotoRecord]:
        """All photos (or those in scan `state`), sorted by path."""
        if state is None:
            rows = self._query(f"SELECT {_PHOTO_COLS} FROM photos")
        else:
            if state not in SCAN_STATES:
                raise ValueError(f"state must be one of {SCAN_STATES}, not {state!r}")
            rows = self._query(f"SELECT {_PHOTO_COLS} FROM photos WHERE scan_state = ?", (state,))
        return self._records(rows)

    def photos_with_faces(self) -> list[PhotoRecord]:
        """Photos holding at least one face (detected or manual), sorted by path."""
        return self._records(self._query(f"SELECT {_PHOTO_COLS} FROM photos WHERE face_count > 0"))

    # -- faces

    @staticmethod
    def _insert_face(db, pid: int, f: Face, *, edited_landmarks=None, edited_forehead=None, strengths="{}", age=None) -> int:
        return db.execute(
            "INSERT INTO faces (photo_id, box, landmarks, edited_landmarks, forehead_height, "
            "edited_forehead_height, score, source, strengths, estimated_age) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                pid, _points_json(f.box, (4,), "box"), _points_json(f.landmarks, (68, 2), "landmarks"),
                edited_landmarks, float(f.forehead_height), edited_forehead, float(f.score), str(f.source),
                strengths, age,
            ),
        ).lastrowid

    @staticmethod
    def _stored(row: tuple) -> StoredFace:
        fid, pid, box, lm, edited_lm, fh, edited_fh, score, source, strengths, age = row
        edited = edited_lm is not None
        face = Face(
            box=np.array(json.loads(box), np.float32),
            landmarks=np.array(json.loads(edited_lm if edited else lm), np.float32),
            score=float(score),
            source=source,
            forehead_height=float(edited_fh if edited and edited_fh is not None else fh),
        )
        return StoredFace(fid, pid, face, edited, {k: float(v) for k, v in json.loads(strengths).items()}, age)

    def faces(self, photo: int | str | os.PathLike) -> list[StoredFace]:
        """The faces of a photo (by path or id), in stored order (detection order: largest first, then
        faces added by hand). Empty for an unknown photo."""
        with self._lock:
            try:
                pid = self._photo_id(self._db, photo)
            except KeyError:
                return []
            rows = self._query(f"SELECT {_FACE_COLS} FROM faces WHERE photo_id = ? ORDER BY id", (pid,))
        return [self._stored(r) for r in rows]

    def face(self, face_id: int) -> StoredFace:
        """One face by id; KeyError if there is none."""
        rows = self._query(f"SELECT {_FACE_COLS} FROM faces WHERE id = ?", (int(face_id),))
        if not rows:
            raise KeyError(f"no face with id {face_id}")
        return self._stored(rows[0])

    def _update_face(self, face_id: int, sql: str, args: tuple) -> None:
        with self._tx() as db:
            if db.execute(f"UPDATE faces SET {sql} WHERE id = ?", (*args, int(face_id))).rowcount != 1:
                raise KeyError(f"no face with id {face_id}")

    def save_landmarks(self, face_id: int, landmarks: np.ndarray, forehead_height: float | None = None) -> None:
        """Store the person's edit of a face's landmarks ((68, 2) photo pixels) and, optionally, of its
        forehead height (else the current value is kept). The detected landmarks stay for `reset_landmarks`."""
        lm = _points_json(landmarks, (68, 2), "landmarks")
        if forehead_height is not None:
            fh = float(forehead_height)
            if not math.isfinite(fh):
                raise ValueError("forehead_height must be finite")
            self._update_face(face_id, "edited_landmarks = ?, edited_forehead_height = ?", (lm, fh))
        else:
            self._update_face(
                face_id, "edited_landmarks = ?, edited_forehead_height = COALESCE(edited_forehead_height, "
                "forehead_height)", (lm,)
            )

    def reset_landmarks(self, face_id: int) -> None:
        """Drop the person's landmark and forehead edits: the detected values apply again."""
        self._update_face(face_id, "edited_landmarks = NULL, edited_forehead_height = NULL", ())

    def save_strengths(self, face_id: int, strengths: Mapping[str, float]) -> None:
        """Store the per-region strengths of a face ({region name: float}, replacing the previous dict)."""
        clean = {}
        for k, v in strengths.items():
            v = float(v)
            if not isinstance(k, str) or not math.isfinite(v):
                raise ValueError(f"bad strength {k!r}: {v!r}")
            clean[k] = v
        self._update_face(face_id, "strengths = ?", (json.dumps(clean, sort_keys=True),))

    def save_estimated_age(self, face_id: int, age: float | None) -> None:
        """Store (or clear, with None) the age the age model estimated for this face."""
        self._update_face(face_id, "estimated_age = ?", (None if age is None else float(age),))

    def add_face(self, photo: int | str | os.PathLike, face: Face) -> int:
        """Add a face to a photo (typically drawn by hand: `FaceFinder.face_from_box`, source "manual"); a
        photo path not yet in the catalog is added (stat'ed now). Returns the new face id."""
        with self._tx() as db:
            try:
                pid = self._photo_id(db, photo)
            except KeyError:
                if isinstance(photo, int):
                    raise
                st = os.stat(photo)
                pid = self._upsert(db, photo, st.st_size, st.st_mtime_ns, None, None)[0]
            fid = self._insert_face(db, pid, face)
            db.execute("UPDATE photos SET face_count = face_count + 1 WHERE id = ?", (pid,))
            return fid

    def remove_face(self, face_id: int) -> None:
        """Delete a face (detected or manual). A later rescan of the photo may find a deleted detected face again."""
        with self._tx() as db:
            row = db.execute("SELECT photo_id FROM faces WHERE id = ?", (int(face_id),)).fetchone()
            if row is None:
                raise KeyError(f"no face with id {face_id}")
            db.execute("DELETE FROM faces WHERE id = ?", (int(face_id),))
            db.execute("UPDATE photos SET face_count = face_count - 1 WHERE id = ?", (row[0],))

    def integrity_check(self) -> str:
        """SQLite's own check of the file: "ok" when sound."""
        return "\n".join(r[0] for r in self._query("PRAGMA integrity_check"))
