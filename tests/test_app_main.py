"""The entry point: command line, the missing X11 libraries, what the running GUI loads (never torch or the
training package), and the README's screenshot tool (tools/screenshot.py: a real process, offscreen)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("app_env")  # every test here: its own settings, data and cache


ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path, **extra) -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1", **extra)
    env.pop("DISPLAY", None)
    env["HOME"] = str(tmp_path / "home")  # were anything to escape the temporary folders, it lands here
    return env


def test_help_and_bad_arguments():
    from app.main import build_parser

    p = build_parser()
    args = p.parse_args(["--models", "m", "album"])
    assert args.models == Path("m") and args.folder == Path("album")
    with pytest.raises(SystemExit):
        p.parse_args(["--screenshot", "x.png"])  # a developer tool (tools/screenshot.py), not the app's


def test_screenshot_renders_the_window_with_a_face_and_the_timeline(tmp_path, photo_album, contract_models_dir):
    from PIL import Image

    shot = tmp_path / "shot.png"
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "screenshot.py"), str(shot), "--album", str(photo_album),
         "--models", str(contract_models_dir), "--size", "1280x800", "--timeout", "240"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1280, 800)
        small = np.asarray(im.convert("RGB").resize((320, 200))).reshape(-1, 3)
    assert len(np.unique(small, axis=0)) > 2000  # a photo and thumbnails, not an empty window
    ours = [p for p in home.rglob("*") if "agelapse" in str(p).lower()]
    assert not ours, f"the screenshot wrote the person's settings, catalog or cache: {ours}"
    written = [p for p in home.rglob("*") if p.is_file()]
    assert not written, f"the screenshot wrote outside its own folders: {written}"  # onnxruntime's telemetry


def test_the_gui_never_imports_torch_or_training():
    code = ("import app.main, app.main_window, app.export_dialog, sys; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'training'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_missing_x11_libraries_are_named_with_the_one_line_that_installs_them(monkeypatch, capsys):
    import app.main as main_mod

    absent = {"libxcb-icccm.so.4", "libxcb-keysyms.so.1"}  # what a fresh server lacked (Qt blamed xcb-cursor0)
    loads = lambda name: name not in absent  # noqa: E731
    assert main_mod.missing_qt_libraries({}, "linux", loads) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert main_mod.missing_qt_libraries({"QT_QPA_PLATFORM": "xcb"}, "linux", loads)
    assert main_mod.missing_qt_libraries({"QT_QPA_PLATFORM": "offscreen"}, "linux", loads) == []
    assert main_mod.missing_qt_libraries({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"},
                                         "linux", loads) == []
    assert main_mod.missing_qt_libraries({}, "win32", loads) == [] and main_mod.missing_qt_libraries({}, "darwin", loads) == []

    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(main_mod.sys, "platform", "linux")
    monkeypatch.setattr(main_mod, "_loads", loads)
    monkeypatch.setattr(main_mod, "make_app", lambda *a: pytest.fail("Qt must not start without its libraries"))
    assert main_mod.main([]) == 1
    err = capsys.readouterr().err
    assert [line.strip() for line in err.splitlines() if "apt-get" in line] == [
        "sudo apt-get install libxcb-icccm4 libxcb-keysyms1"]
    assert "libxcb-icccm.so.4" in err and "cursor" not in err
