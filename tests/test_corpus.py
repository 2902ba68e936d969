"""Issue 12's corpus (testkit/corpus.py: generated here, nothing of it committed): the CLI's scan and the app's
scan both get through every bad and unusual file: every good photo scanned, every bad one reported by
name, no traceback, the originals unchanged."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.corpus import Corpus, make_corpus
from testkit.gui import open_album, WAIT_MS

pytestmark = pytest.mark.usefixtures("app_env")  # every test here: its own settings, data and cache

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    from skimage import data

    c = make_corpus(tmp_path_factory.mktemp("corpus") / "odd album", data.astronaut())
    assert len(c.good) + len(c.bad) + len(c.ignored) >= 80 and len(c.bad) >= 20
    return c


def _raw(p) -> bytes:
    return os.fsencode(p)


def test_the_cli_scan_gets_through_the_corpus(corpus, tmp_path):
    before = corpus.originals()
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AGELAPSE_", "ORT_"))}
    env.update(HOME=str(home), OMP_NUM_THREADS="1")
    db = tmp_path / "catalog.db"
    done = subprocess.run([sys.executable, "-m", "core", "scan", str(corpus.root), "--catalog", str(db), "--json"],
                          cwd=ROOT, env=env, capture_output=True, timeout=600)
    out, err = done.stdout.decode("ascii"), done.stderr.decode("utf-8")  # JSON Lines are ASCII
    assert done.returncode == 1, err  # some photos could not be read
    records = {}
    for line in out.splitlines():
        r = json.loads(line)
        raw = base64.b64decode(r["path_bytes"]) if "path_bytes" in r else r["path"].encode("utf-8")
        assert raw not in records
        records[raw] = r
    scanned = {p for p, r in records.items() if "faces" in r}
    failed = {p for p, r in records.items() if "error" in r}
    assert scanned == {_raw(p) for p in corpus.good}
    assert failed == {_raw(p) for p in corpus.bad}
    assert "Traceback" not in err and "Warning:" not in err  # nor a library's raw warning
    error_lines = [line for line in err.splitlines() if line.startswith("agelapse-cli: ")]
    assert len(error_lines) == len(corpus.bad)  # each bad one on its own line, named
    for p in corpus.bad:
        from core.text import printable

        assert any(line.startswith(f"agelapse-cli: {printable(p)}: ") for line in error_lines), p
    assert corpus.originals() == before

    # again from the catalog (every photo unchanged), as text: one line a readable photo, never split
    done = subprocess.run([sys.executable, "-m", "core", "scan", str(corpus.root), "--catalog", str(db)],
                          cwd=ROOT, env=env, capture_output=True, timeout=600)
    lines = done.stdout.decode("utf-8").splitlines()
    assert done.returncode == 1 and len(lines) == len(corpus.good)
    assert all(line.count("\t") == 1 and line.rsplit("\t", 1)[1].isdigit() for line in lines)
    assert "Traceback" not in done.stderr.decode("utf-8")
    assert corpus.originals() == before
    assert not [p for p in home.rglob("*") if p.is_file()]  # nothing written outside its own folders


def test_the_app_scan_gets_through_the_corpus(qtbot, window, corpus, capfd):
    from PySide6.QtCore import Qt

    before = corpus.originals()
    with qtbot.waitSignal(window.scan.finished, timeout=10 * WAIT_MS) as done:
        open_album(qtbot, window, corpus.root)
    report = done.args[0]
    assert not report.cancelled and report.listed == len(corpus.good) + len(corpus.bad)
    faces = window.album.model.faces  # the album's badges: a count, or -1 for "could not be read"
    assert {_raw(p) for p, n in faces.items() if n >= 0} == {_raw(p) for p in corpus.good}
    assert {_raw(p) for p, n in faces.items() if n < 0} == {_raw(p) for p in corpus.bad}
    assert {_raw(p) for p, _ in report.errors} == {_raw(p) for p in corpus.bad}
    assert len(window.catalog.photos("done")) == len(corpus.good)
    assert len(window.catalog.photos("error")) == len(corpus.bad)
    banner = " ".join(window.banner.texts())
    assert f"{len(corpus.bad)} photo(s) could not be scanned" in banner and "stopped" not in banner

    latin1 = next(p for p in corpus.good if b"latin1_\xe9" in _raw(p))
    model = window.album.model
    row = model.row_of(latin1)
    assert model.data(model.index(row), Qt.ItemDataRole.DisplayRole) == "latin1_\ufffdt\ufffd.jpg"
    newline = next(p for p in corpus.good if "\n" in str(p))
    assert model.data(model.index(model.row_of(newline)), Qt.ItemDataRole.DisplayRole) == "two\\nlines.jpg"
    assert window.album.select_path(latin1)  # opened by its exact bytes, shown with U+FFFD
    qtbot.waitUntil(lambda: window.editor.photo is not None and _raw(window.editor.path) == _raw(latin1),
                    timeout=WAIT_MS)
    assert window.album.current_path() == latin1

    with qtbot.waitSignal(window.scan.finished, timeout=10 * WAIT_MS) as again:  # a rescan gets through too
        window.start_scan(True)
    assert not again.args[0].cancelled and again.args[0].scanned == len(corpus.good)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert corpus.originals() == before
