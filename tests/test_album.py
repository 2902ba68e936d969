"""core.album (listing) and core.thumbnails (cache) on folders built in tmp_path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import album, thumbnails
from core.album import iter_images, list_images
from core.errors import PhotoError
from core.thumbnails import ThumbnailCache, default_cache_dir, make_thumbnails


def _touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@pytest.fixture()
def tree(tmp_path) -> Path:
    root = tmp_path / "album"
    for rel in ("b.jpg", "a.PNG", "c.JpEg", "sub/z.tif", "sub/deeper/y.webp", "sub/x.heic", "a/k.bmp"):
        _touch(root / rel)
    for rel in (
        "notes.txt", "movie.mp4", ".hidden.jpg", "._resource.jpg", ".git/obj.jpg", "@eaDir/b.jpg/SYNO.jpg",
        "Thumbs.db", ".DS_Store", "__MACOSX/a.jpg", "sub/$RECYCLE.BIN/r.jpg", "noext",
    ):
        _touch(root / rel)
    return root


def test_lists_sorted_and_filtered(tree):
    got = list_images(tree)
    rel = [p.relative_to(tree).as_posix() for p in got]
    assert rel == sorted(rel, key=lambda s: Path(s).parts)
    assert set(rel) == {"a.PNG", "b.jpg", "c.JpEg", "sub/z.tif", "sub/deeper/y.webp", "sub/x.heic", "a/k.bmp"}
    assert got == sorted(got)


def test_iterator_matches_list(tree):
    assert sorted(iter_images(tree)) == list_images(tree)


def test_symlink_loop_and_duplicate_links(tree, tmp_path):
    (tree / "sub" / "loop").symlink_to(tree, target_is_directory=True)  # sub/loop -> album (a cycle)
    (tree / "sub" / "deeper" / "up").symlink_to(tree / "sub", target_is_directory=True)
    outside = tmp_path / "outside"
    _touch(outside / "o.jpg")
    (tree / "linked").symlink_to(outside, target_is_directory=True)
    (tree / "link_to_file.jpg").symlink_to(outside / "o.jpg")
    (tree / "dangling.jpg").symlink_to(tmp_path / "missing.jpg")
    got = [p.relative_to(tree).as_posix() for p in list_images(tree)]
    assert len(got) == len(set(got))
    assert "linked/o.jpg" in got and "link_to_file.jpg" in got
    assert "dangling.jpg" not in got
    assert not any(g.startswith("sub/loop/") or "/up/" in g for g in got)
    assert len(got) == 9


def test_unreadable_folder_logged_and_skipped(tree, monkeypatch, caplog):
    # Tests run as root, where chmod 000 does not stop reading: make os.scandir refuse one folder instead.
    bad = tree / "sub"
    real = os.scandir

    def scandir(path="."):
        if Path(path) == bad:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(album.os, "scandir", scandir)
    errors = []
    with caplog.at_level("WARNING", logger="core.album"):
        got = list_images(tree, on_error=lambda p, e: errors.append((p, type(e))))
    rel = {p.relative_to(tree).as_posix() for p in got}
    assert rel == {"a.PNG", "b.jpg", "c.JpEg", "a/k.bmp"}
    assert errors == [(bad, PermissionError)]
    assert any(str(bad) in r.getMessage() for r in caplog.records)


def test_real_chmod_000(tree):
    locked = tree / "locked"
    _touch(locked / "p.jpg")
    locked.chmod(0)
    try:
        got = list_images(tree)  # must not raise, whether or not the OS lets us in (root)
        readable = os.access(locked, os.R_OK | os.X_OK)
        assert ((locked / "p.jpg") in got) == readable
    finally:
        locked.chmod(0o755)


def test_progress_and_cancel(tmp_path):
    root = tmp_path / "many"
    for i in range(120):
        _touch(root / f"d{i % 3}" / f"{i:03d}.jpg")
    calls = []
    got = list_images(root, progress=lambda d, t: calls.append((d, t)))
    assert len(got) == 120
    assert calls[-1] == (120, 120) and (50, None) in calls
    seen = []

    def cancel():
        return len(seen) >= 10

    for p in iter_images(root, cancel=cancel):
        seen.append(p)
    assert len(seen) == 10
    n = {"k": 0}

    def cancel_after():
        n["k"] += 1
        return n["k"] > 30

    partial = list_images(root, cancel=cancel_after)
    assert 0 < len(partial) < 120 and partial == sorted(partial)


def test_root_file_and_missing(tmp_path):
    f = _touch(tmp_path / "one.JPG")
    assert list_images(f) == [f]
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "nope")
    with pytest.raises(NotADirectoryError):
        list_images(_touch(tmp_path / "x.txt"))


# ----------------------------------------------------------------------------------------- thumbnails


def _photo(path: Path, size=(600, 400), colour=(200, 40, 40), orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, colour)
    im.paste((10, 10, 10), (0, 0, size[0] // 4, size[1] // 4))  # a dark top-left corner
    kw = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    im.save(path, quality=92, **kw)
    return path


def test_thumbnail_size_orientation(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    p = _photo(tmp_path / "p.jpg", orientation=6)  # stored 600x400, upright 400x600
    t = cache.get(p, 128)
    assert t.shape == (128, 85, 3) and t.dtype == np.uint8
    assert t[5, -5].mean() < 60 and t[-5, 5].mean() > 60  # dark corner now top-right after a 90 CW turn


def test_thumbnail_hit_miss_invalidation(tmp_path, monkeypatch):
    cache = ThumbnailCache(tmp_path / "cache")
    p = _photo(tmp_path / "p.jpg")
    decodes = []
    real = thumbnails.load_preview
    monkeypatch.setattr(thumbnails, "load_preview", lambda *a, **k: decodes.append(a[0]) or real(*a, **k))
    first = cache.get(p, 64)
    assert len(decodes) == 1 and cache.misses == 1
    files = list((tmp_path / "cache").rglob("*.jpg"))
    assert len(files) == 1
    second = cache.get(p, 64)
    assert len(decodes) == 1 and cache.hits == 1  # from disk, no decode
    assert np.abs(second.astype(int) - first).mean() < 3
    cache.get(p, 32)  # another size: another entry
    assert len(decodes) == 2
    # the file changes (new content, new mtime): a new thumbnail
    _photo(p, colour=(20, 200, 20))
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    third = cache.get(p, 64)
    assert len(decodes) == 3
    assert third[-5, -5, 1] > 150 and first[-5, -5, 1] < 100


def test_thumbnail_corrupt_cache_regenerated(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    p = _photo(tmp_path / "p.jpg")
    good = cache.get(p, 64)
    (entry,) = list((tmp_path / "cache").rglob("*.jpg"))
    entry.write_bytes(b"garbage")
    again = cache.get(p, 64)
    assert again.shape == good.shape and cache.misses == 2
    assert Image.open(entry).size == (64, 43)  # rewritten with a real thumbnail
    assert not [f for f in (tmp_path / "cache").rglob("*") if f.is_file() and f.suffix != ".jpg"]  # no temp left


def test_make_thumbnails_batch(tmp_path):
    good = _photo(tmp_path / "a.jpg")
    bad = _touch(tmp_path / "b.jpg", b"not an image")
    calls = []
    out = make_thumbnails([good, bad], 48, lambda d, t: calls.append((d, t)), cache=ThumbnailCache(tmp_path / "c"))
    assert out[good].shape == (32, 48, 3)
    assert isinstance(out[bad], PhotoError) and out[bad].path == bad
    assert calls[-1] == (2, 2)
    out2 = make_thumbnails([good, bad], 48, None, lambda: True, cache=ThumbnailCache(tmp_path / "c"))
    assert out2 == {}


def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AGELAPSE_CACHE_DIR", str(tmp_path / "override"))
    assert default_cache_dir() == tmp_path / "override"
    monkeypatch.delenv("AGELAPSE_CACHE_DIR")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert default_cache_dir() == tmp_path / "xdg" / "agelapse"
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert default_cache_dir() == tmp_path / "home" / ".cache" / "agelapse"


def test_prune_removes_least_recently_used(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    paths = [_photo(tmp_path / f"{i}.jpg", colour=(i * 40, 0, 0)) for i in range(4)]
    for p in paths:
        cache.get(p, 64)
    entries = [cache.entry_path(p, 64) for p in paths]
    for i, e in enumerate(entries):  # make them old, oldest first
        os.utime(e, (1_000_000 + i, 1_000_000 + i))
    cache.get(paths[0], 64)  # a hit: entry 0 becomes the most recently used
    assert cache.hits == 1
    keep = entries[0].stat().st_size + entries[3].stat().st_size
    removed = cache.prune(max_bytes=keep)
    assert removed == 2
    assert [e.exists() for e in entries] == [True, False, False, True]
