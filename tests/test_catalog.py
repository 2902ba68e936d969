"""core.catalog: schema, migration, edits across reopen, threads, and surviving a SIGKILL mid-write."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core import catalog as catalog_mod
from core.catalog import SCHEMA_VERSION, Catalog, CatalogError, StoredFace, default_catalog_path
from core.faces import DEFAULT_FOREHEAD_HEIGHT, Face

ROOT = Path(__file__).resolve().parents[1]


def _face(x: float = 100.0, w: float = 80.0, source: str = "hog", score: float = 1.5) -> Face:
    lm = np.stack([np.linspace(x, x + w, 68), np.linspace(50, 50 + w, 68)], axis=1)
    return Face(np.array([x, 50, x + w, 50 + w]), lm, score, source)


def test_schema_and_pragmas(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        assert cat.schema_version == SCHEMA_VERSION == 2
        assert cat._query("PRAGMA journal_mode")[0][0] == "wal"
        assert cat._query("PRAGMA foreign_keys")[0][0] == 1
        cols = {r[1] for r in cat._query("PRAGMA table_info(faces)")}
        assert {"photo_id", "box", "landmarks", "edited_landmarks", "forehead_height", "score", "source",
                "strengths", "estimated_age", "edited_forehead_height"} <= cols
        with pytest.raises(sqlite3.IntegrityError):  # foreign keys are enforced
            with cat._tx() as db:
                db.execute("INSERT INTO faces (photo_id, box, landmarks, forehead_height, source) "
                           "VALUES (999, '[]', '[]', 0.3, 'hog')")


def test_scan_roundtrip_and_replace(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        p = tmp_path / "a.jpg"
        assert cat.needs_scan(p, 10, 1)
        pid = cat.mark_scanned(p, [_face(100), _face(300, 40)], size=10, mtime_ns=1, width=640, height=480,
                               detector="fast")
        rec = cat.photo(p)
        assert rec.id == pid and rec.scan_state == "done" and rec.face_count == 2 and rec.width == 640
        assert rec.detector == "fast" and rec.scanned_at is not None and rec.path == p
        assert not cat.needs_scan(p, 10, 1)
        assert cat.needs_scan(p, 11, 1) and cat.needs_scan(p, 10, 2)
        faces = cat.faces(p)
        assert [type(f) for f in faces] == [StoredFace, StoredFace]
        np.testing.assert_allclose(faces[0].face.landmarks, _face(100).landmarks, atol=1e-3)
        assert faces[0].face.landmarks.dtype == np.float32 and faces[0].face.box.shape == (4,)
        assert faces[0].face.score == pytest.approx(1.5) and faces[0].face.source == "hog"
        assert [f.id for f in cat.faces(pid)] == [f.id for f in faces]
        # a changed file: all its faces replaced, one transaction
        cat.mark_scanned(p, [_face(500)], size=12, mtime_ns=3)
        assert [f.face.box[0] for f in cat.faces(p)] == [500]
        assert cat.photo(p).face_count == 1
        assert [r.path for r in cat.photos_with_faces()] == [p]
        cat.mark_scanned(p, [], size=12, mtime_ns=3)
        assert cat.photos_with_faces() == [] and cat.photo(p).face_count == 0


def test_edits_persist_across_reopen(tmp_path):
    db = tmp_path / "c.db"
    p = tmp_path / "a.jpg"
    with Catalog(db) as cat:
        cat.mark_scanned(p, [_face(100)], size=10, mtime_ns=1)
        fid = cat.faces(p)[0].id
        edited = _face(100).landmarks + 5
        cat.save_landmarks(fid, edited, forehead_height=0.5)
        cat.save_strengths(fid, {"eyes": 0.5, "forehead": 1.25})
        cat.save_estimated_age(fid, 33.5)
        manual = cat.add_face(p, _face(400, 60, source="manual", score=0.0))
    with Catalog(db) as cat:
        f = cat.face(fid)
        assert f.edited and f.face.forehead_height == pytest.approx(0.5)
        np.testing.assert_allclose(f.face.landmarks, edited, atol=1e-3)
        assert f.strengths == {"eyes": 0.5, "forehead": 1.25} and f.estimated_age == pytest.approx(33.5)
        assert cat.photo(p).face_count == 2 and cat.face(manual).face.source == "manual"
        cat.reset_landmarks(fid)
    with Catalog(db) as cat:
        f = cat.face(fid)
        assert not f.edited and f.face.forehead_height == pytest.approx(DEFAULT_FOREHEAD_HEIGHT)
        np.testing.assert_allclose(f.face.landmarks, _face(100).landmarks, atol=1e-3)
        assert f.strengths == {"eyes": 0.5, "forehead": 1.25}  # strengths are not landmarks
        cat.remove_face(manual)
        assert cat.photo(p).face_count == 1
        with pytest.raises(KeyError):
            cat.face(manual)
        with pytest.raises(KeyError):
            cat.save_strengths(manual, {"eyes": 1.0})
        with pytest.raises(ValueError):
            cat.save_landmarks(fid, np.zeros((5, 2)))
        with pytest.raises(ValueError):
            cat.save_strengths(fid, {"eyes": float("nan")})


def test_rescan_unchanged_keeps_edits_and_manual_faces(tmp_path):
    p = tmp_path / "a.jpg"
    with Catalog(tmp_path / "c.db") as cat:
        cat.mark_scanned(p, [_face(100), _face(300)], size=10, mtime_ns=1)
        first, second = cat.faces(p)
        cat.save_landmarks(first.id, first.face.landmarks + 3)
        cat.save_strengths(second.id, {"mouth": 0.2})
        cat.add_face(p, _face(600, source="manual", score=0.0))
        # same file, slightly moved detections, plus a new one
        cat.mark_scanned(p, [_face(302), _face(103), _face(800)], size=10, mtime_ns=1)
        faces = cat.faces(p)
        by_x = {round(float(f.face.box[0])): f for f in faces}
        assert set(by_x) == {600, 302, 103, 800}
        assert by_x[103].edited and not by_x[800].edited
        assert by_x[302].strengths == {"mouth": 0.2}
        np.testing.assert_allclose(by_x[103].face.landmarks, _face(100).landmarks + 3, atol=1e-3)
        assert cat.photo(p).face_count == 4
        # a changed file: everything goes, manual faces and edits too
        cat.mark_scanned(p, [_face(103)], size=99, mtime_ns=2)
        (only,) = cat.faces(p)
        assert not only.edited and only.strengths == {} and cat.photo(p).face_count == 1


def test_errors_and_states(tmp_path):
    with Catalog(tmp_path / "c.db") as cat:
        a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
        cat.add_photo(a, size=1, mtime_ns=1)
        assert cat.photo(a).scan_state == "pending" and cat.needs_scan(a, 1, 1)
        cat.mark_error(b, "truncated file", size=5, mtime_ns=5)
        rec = cat.photo(b)
        assert rec.scan_state == "error" and rec.error == "truncated file"
        assert not cat.needs_scan(b, 5, 5) and cat.needs_scan(b, 6, 5)
        assert [r.path for r in cat.photos("error")] == [b]
        assert [r.path for r in cat.photos()] == [a, b]
        cat.mark_scanned(b, [_face()], size=6, mtime_ns=5)
        assert cat.photo(b).error is None and cat.photo(b).scan_state == "done"
        cat.remove_photo(b)
        assert cat.photo(b) is None and cat.faces(b) == []
        assert cat._query("SELECT COUNT(*) FROM faces")[0][0] == 0  # cascade
        with pytest.raises(ValueError):
            cat.photos("weird")


V1_ROWS = textwrap.dedent(
    """
    INSERT INTO photos (id, path, size, mtime_ns, width, height, scan_state, face_count, scanned_at)
        VALUES (1, '/album/a.jpg', 10, 1, 640, 480, 'done', 2, 1.0);
    INSERT INTO faces (photo_id, box, landmarks, edited_landmarks, forehead_height, score, source, strengths)
        VALUES (1, '[1,2,3,4]', '{lm}', '{lm2}', 0.55, 1.0, 'hog', '{{"eyes": 0.3}}');
    INSERT INTO faces (photo_id, box, landmarks, forehead_height, score, source)
        VALUES (1, '[5,6,7,8]', '{lm}', {default}, 0.5, 'hog');
    """
)


def test_migrates_v1_database(tmp_path):
    db = tmp_path / "old.db"
    lm = json.dumps(np.zeros((68, 2)).tolist())
    lm2 = json.dumps(np.ones((68, 2)).tolist())
    con = sqlite3.connect(db)
    catalog_mod.MIGRATIONS[0](con)  # the version-1 schema, as a v1 app wrote it
    con.executescript(V1_ROWS.format(lm=lm, lm2=lm2, default=DEFAULT_FOREHEAD_HEIGHT))
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    with Catalog(db) as cat:
        assert cat.schema_version == SCHEMA_VERSION
        edited, plain = cat.faces("/album/a.jpg")
        assert edited.edited and edited.face.forehead_height == pytest.approx(0.55)
        assert edited.strengths == {"eyes": 0.3} and (edited.face.landmarks == 1).all()
        assert cat.photo("/album/a.jpg").detector is None
        cat.reset_landmarks(edited.id)  # the detected forehead comes back, not the edited one
        assert cat.face(edited.id).face.forehead_height == pytest.approx(DEFAULT_FOREHEAD_HEIGHT)
        assert not plain.edited
        assert {r[1] for r in cat._query("PRAGMA index_list(faces)")} >= {"faces_photo"}


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    catalog_mod.MIGRATIONS[0](con)
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()

    def broken(db_):
        db_.execute("ALTER TABLE photos ADD COLUMN detector TEXT")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(catalog_mod, "MIGRATIONS", [catalog_mod._v1, broken])
    with pytest.raises(RuntimeError, match="migration bug"):
        Catalog(db)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "detector" not in {r[1] for r in con.execute("PRAGMA table_info(photos)")}
    con.close()


def test_newer_and_damaged_files_refused(tmp_path):
    db = tmp_path / "new.db"
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(CatalogError, match="newer"):
        Catalog(db)
    assert db.read_bytes() == before
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match="cannot open"):
        Catalog(junk)


def test_default_catalog_path(tmp_path, monkeypatch):
    monkeypatch.setenv("AGELAPSE_DATA_DIR", str(tmp_path / "d"))
    assert default_catalog_path() == tmp_path / "d" / "catalog.sqlite3"
    monkeypatch.delenv("AGELAPSE_DATA_DIR")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
        assert default_catalog_path() == tmp_path / "xdg" / "agelapse" / "catalog.sqlite3"


def test_two_threads(tmp_path):
    cat = Catalog(tmp_path / "c.db")
    errors = []

    def worker(prefix):
        try:
            for i in range(60):
                cat.mark_scanned(f"/{prefix}/{i}.jpg", [_face()], size=i, mtime_ns=i)
                cat.photos_with_faces()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(p,)) for p in ("gui", "scan")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cat.photos()) == 120 and len(cat.photos_with_faces()) == 120
    cat.close()
    cat.close()  # idempotent
    with pytest.raises(CatalogError, match="closed"):
        cat.photos()


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from core.catalog import Catalog
    from core.faces import Face
    cat = Catalog(sys.argv[1])
    lm = np.stack([np.arange(68.0), np.arange(68.0)], axis=1)
    i = 0
    while True:
        path = f"/album/{i:06d}.jpg"
        cat.mark_scanned(path, [Face(np.array([0, 0, 50, 50]), lm + i, 1.0, "hog")], size=i, mtime_ns=i)
        if i % 2:
            cat.save_strengths(cat.faces(path)[0].id, {"eyes": i / 10})
        print(i, flush=True)  # printed only once the writes above have returned (committed)
        i += 1
    """
)


def test_survives_sigkill_mid_write(tmp_path):
    db = tmp_path / "crash.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    done = []
    deadline = time.monotonic() + 60
    try:
        while len(done) < 150 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            done.append(int(line))
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    done += [int(x) for x in rest.split()]
    assert proc.returncode == -signal.SIGKILL
    assert len(done) >= 150, f"child wrote only {len(done)} rows"
    with Catalog(db) as cat:
        assert cat.integrity_check() == "ok"
        paths = {str(r.path) for r in cat.photos()}
        for i in done:
            assert f"/album/{i:06d}.jpg" in paths
            (face,) = cat.faces(f"/album/{i:06d}.jpg")
            assert face.face.landmarks[0, 0] == pytest.approx(i)
            if i % 2:
                assert face.strengths == {"eyes": pytest.approx(i / 10)}
        assert len(paths) - len(done) <= 1  # at most the row whose print the kill cut off


def test_any_name_the_file_system_holds_has_its_row(tmp_path):
    """A latin-1 name (bytes that are not UTF-8: lone surrogates in Python) and the name that reads the same
    with U+FFFD are two photos; both are stored, found, listed in order and keep their exact bytes."""
    latin1 = tmp_path / os.fsdecode(b"latin1_\xe9t\xe9.jpg")
    lookalike = tmp_path / "latin1_\ufffdt\ufffd.jpg"
    plain = tmp_path / "plain.jpg"
    with Catalog(tmp_path / "c.db") as cat:
        assert cat.needs_scan(latin1, 10, 1)
        cat.mark_scanned(latin1, [_face()], size=10, mtime_ns=1, detector="fast")
        cat.mark_scanned(plain, [], size=5, mtime_ns=1)
        cat.mark_error(lookalike, f"cannot read {latin1.name}", size=3, mtime_ns=1)
        assert not cat.needs_scan(latin1, 10, 1) and cat.needs_scan(latin1, 11, 1)
        assert os.fsencode(cat.photo(latin1).path) == os.fsencode(latin1)
        assert cat.photo(latin1).face_count == 1 and len(cat.faces(latin1)) == 1
        assert cat.photo(lookalike).scan_state == "error"
        assert cat.photo(lookalike).error == "cannot read latin1_\ufffdt\ufffd.jpg"  # valid text
        assert [r.path for r in cat.photos()] == sorted([latin1, lookalike, plain], key=str)
        assert [r.path for r in cat.photos_with_faces()] == [latin1]
        fid = cat.faces(latin1)[0].id
        cat.save_strengths(fid, {"eyes": 0.5, "hair": 0.0, "off:hair": 0.7})
    with Catalog(tmp_path / "c.db") as cat:  # and after reopening
        assert cat.faces(latin1)[0].strengths == {"eyes": 0.5, "hair": 0.0, "off:hair": 0.7}
        cat.remove_photo(latin1)
        assert cat.photo(latin1) is None and cat.photo(lookalike) is not None
