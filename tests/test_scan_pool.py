"""core.scan with a pool of helper processes (issue 13, item 4): the same report, catalog and progress as a
scan in one thread, in the order of the photos; cancel; a helper that dies; no helpers at all."""

from __future__ import annotations

import os
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core import scan
from core.catalog import Catalog
from core.faces import FaceFinder
from core.scan import scan_folder


class CrashingFinder(FaceFinder):
    """Kills its process on a photo 250 px wide (what a crash in a decoder or in dlib does)."""

    def detect(self, rgb):
        if rgb.shape[1] == 250:
            os._exit(3)
        return super().detect(rgb)


@pytest.fixture()
def folder(tmp_path, astronaut) -> Path:
    """Ten small photos (one face each, a faceless one, a 250 px wide one) and two unreadable files."""
    root = tmp_path / "album"
    root.mkdir()
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    for i in range(8):
        Image.fromarray(np.ascontiguousarray(np.roll(small, 8 * i, axis=1))).save(root / f"p{i}.jpg", quality=92)
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(root / "p8_plain.png")
    Image.fromarray(small[:, :250].copy()).save(root / "p9_narrow.png")
    (root / "q_empty.jpg").write_bytes(b"")
    (root / "q_text.jpg").write_text("not a photo")
    return root


def _catalog_rows(cat: Catalog, root: Path) -> dict:
    out = {}
    for rec in cat.photos():
        faces = [np.round(f.face.box, 1).tolist() for f in cat.faces(rec.path)]
        out[rec.path.relative_to(rec.path.parent).name] = (rec.scan_state, rec.width, rec.height, faces)
    return out


def test_pool_gives_what_one_thread_gives_in_order(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "POOL_MIN_PHOTOS", 4)
    started = []
    real_start = scan._start_pool
    monkeypatch.setattr(scan, "_start_pool", lambda f, w: started.append(w) or real_start(f, w))
    results = {}
    for workers in (1, 2):
        calls = []
        with Catalog(tmp_path / f"c{workers}.db") as cat:
            report = scan_folder(folder, FaceFinder("fast"), catalog=cat, workers=workers,
                                 progress=lambda d, t: calls.append((d, t)))
            results[workers] = (list(report.faces.items()), report.errors, _catalog_rows(cat, folder), calls)
    assert started == [2]  # the second scan ran in helper processes, the first in this thread
    assert results[1] == results[2]  # same faces, same order, same errors, same catalog, same progress
    faces, errors, rows, calls = results[2]
    assert [p.name for p, _ in faces] == [f"p{i}.jpg" for i in range(8)] + ["p8_plain.png", "p9_narrow.png"]
    assert [n for _, n in faces][:8] == [1] * 8 and dict(faces)[folder / "p8_plain.png"] == 0
    assert {p.name for p, _ in errors} == {"q_empty.jpg", "q_text.jpg"}
    assert calls == [(i, 12) for i in range(1, 13)]


def test_unchanged_photos_start_no_helpers(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "POOL_MIN_PHOTOS", 4)
    with Catalog(tmp_path / "c.db") as cat:
        scan_folder(folder, FaceFinder("fast"), catalog=cat, workers=2)
        monkeypatch.setattr(scan, "_start_pool", lambda f, w: pytest.fail("no photo to search, no pool"))
        again = scan_folder(folder, FaceFinder("fast"), catalog=cat, workers=2)
        assert len(again.skipped) == 12 and not again.faces and not again.errors


def test_cancel_stores_only_finished_photos(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "POOL_MIN_PHOTOS", 4)
    done = []
    with Catalog(tmp_path / "c.db") as cat:
        report = scan_folder(folder, FaceFinder("fast"), catalog=cat, workers=2,
                             progress=lambda d, t: done.append(d), cancel=lambda: len(done) >= 3)
        assert report.cancelled and done == [1, 2, 3]
        assert len(report.faces) == 3 and [p.name for p in report.faces] == ["p0.jpg", "p1.jpg", "p2.jpg"]
        assert len(cat.photos()) == 3  # the photos in flight when it stopped were not stored
        resumed = scan_folder(folder, FaceFinder("fast"), catalog=cat, workers=2)
        assert not resumed.cancelled and len(resumed.skipped) == 3 and len(cat.photos()) == 12


def test_a_helper_that_dies_fails_its_photo_and_the_scan_goes_on(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "POOL_MIN_PHOTOS", 4)
    with Catalog(tmp_path / "c.db") as cat:
        report = scan_folder(folder, FaceFinder("fast"), catalog=cat, workers=2,
                             pool_finder=CrashingFinder("fast"))
        messages = dict(report.errors)
        assert "process stopped" in messages[folder / "p9_narrow.png"]
        assert set(messages) == {folder / "p9_narrow.png", folder / "q_empty.jpg", folder / "q_text.jpg"}
        assert [report.faces[folder / f"p{i}.jpg"] for i in range(8)] == [1] * 8
        assert cat.photo(folder / "p9_narrow.png").scan_state == "error"


class BreaksBetweenSubmissions:
    """An executor that runs its photos at once, in this process, until a helper "dies" between two
    submissions: then its next submit raises, before any result has said so (a race a real pool
    has when a helper crashes while the window is being filled)."""

    pools = 0

    def __init__(self, finder):
        scan._init_worker(finder)
        BreaksBetweenSubmissions.pools += 1
        self.breaks = BreaksBetweenSubmissions.pools == 1  # the first pool only
        self.calls = 0

    def submit(self, fn, *args):
        self.calls += 1
        if self.breaks and self.calls >= 3:
            raise BrokenProcessPool("a helper died")
        future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, **kwargs):
        pass


def test_a_pool_that_breaks_while_photos_are_submitted_restarts_and_the_scan_goes_on(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "POOL_MIN_PHOTOS", 4)
    monkeypatch.setattr(BreaksBetweenSubmissions, "pools", 0)
    monkeypatch.setattr(scan, "_start_pool", lambda finder, workers: BreaksBetweenSubmissions(finder))
    with Catalog(tmp_path / "c.db") as cat:
        report = scan_folder(folder, FaceFinder("fast"), catalog=cat, workers=2, pool_finder=FaceFinder("fast"))
        assert set(dict(report.errors)) == {folder / "q_empty.jpg", folder / "q_text.jpg"}  # only the unreadable files
        assert [report.faces[folder / f"p{i}.jpg"] for i in range(8)] == [1] * 8
        assert report.faces[folder / "p9_narrow.png"] == 1
    assert BreaksBetweenSubmissions.pools == 2  # one new pool, not a scan in this thread


class NoProcesses:
    """An executor whose processes never start (a sandbox, a frozen app without multiprocessing support)."""

    def submit(self, *args):
        future = Future()
        future.set_exception(BrokenProcessPool("cannot start"))
        return future

    def shutdown(self, **kwargs):
        pass


def test_without_helper_processes_the_scan_runs_in_this_thread(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "POOL_MIN_PHOTOS", 4)
    monkeypatch.setattr(scan, "_start_pool", lambda f, w: NoProcesses())
    calls = []
    with Catalog(tmp_path / "c.db") as cat:
        report = scan_folder(folder, FaceFinder("fast"), catalog=cat, workers=2,
                             progress=lambda d, t: calls.append(d))
        assert [report.faces[folder / f"p{i}.jpg"] for i in range(8)] == [1] * 8
        assert {p.name for p, _ in report.errors} == {"q_empty.jpg", "q_text.jpg"}
        assert calls == list(range(1, 13)) and len(cat.photos()) == 12
