"""The bundle's rules (packaging/bundle_rules.py), checked without building anything: what the spec
leaves out, where it puts the models, and that this matches what the code looks up at run time."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"


@pytest.fixture(scope="module")
def rules():
    # packaging/ is not a package (it would shadow the PyPI 'packaging'): load the file itself.
    spec = importlib.util.spec_from_file_location("bundle_rules", PACKAGING / "bundle_rules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundle_entry_points_start_the_command_line_and_the_app(tmp_path):
    """The scripts PyInstaller freezes run the engine's command line and the app's argument parsing."""
    from core import __version__

    assert not (PACKAGING / "__init__.py").exists(), "packaging/__init__.py would shadow the 'packaging' library"
    cli = subprocess.run([sys.executable, str(PACKAGING / "entry_cli.py"), "--version"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and cli.stdout.split() == ["agelapse-cli", __version__], cli.stderr
    gui = subprocess.run([sys.executable, str(PACKAGING / "entry_gui.py"), "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert gui.returncode == 0 and gui.stdout.startswith("usage: agelapse"), gui.stderr


def test_training_and_test_tools_are_excluded(rules):
    for name in ("torch", "training", "tests", "pytest", "pytestqt", "skimage", "tkinter", "onnx", "tensorboard",
                 "PySide6.QtWebEngineCore", "PySide6.QtQml", "PySide6.QtQuick", "PySide6.Qt3DCore",
                 "PySide6.QtMultimedia", "PySide6.QtNetwork"):
        assert name in rules.EXCLUDES, name
    for name in ("torch.nn", "training.cli", "pytest", "skimage.data", "tkinter", "torch/lib/libtorch_cpu.so",
                 "PySide6/Qt/lib/libQt6Network.so.6", "PySide6/Qt/lib/libQt6Qml.so.6",
                 "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
                 "PySide6/Qt/translations/qtbase_de.qm"):
        assert rules.forbidden_entries([name]) == [name], name
    for name in ("core.cli", "app.main_window", "numpy", "onnxruntime.capi._pybind_state", "PySide6.QtWidgets",
                 "PySide6/Qt/lib/libQt6Widgets.so.6", "resources/models/aging.onnx", "cv2/cv2.abi3.so",
                 "face_recognition_models/models/shape_predictor_68_face_landmarks.dat",
                 "imageio_ffmpeg/binaries/ffmpeg-linux-x86_64-v9.0.2"):
        assert rules.forbidden_entries([name]) == [], name


def test_the_gui_imports_no_excluded_qt_module(rules):
    used = set()
    for path in (ROOT / "app").glob("*.py"):
        used |= set(re.findall(r"\bPySide6\.(Qt\w+)", path.read_text(encoding="utf-8")))
    assert used, "app/ imports no PySide6 module?"
    excluded = {m.split(".", 1)[1] for m in rules.EXCLUDES if m.startswith("PySide6.")}
    assert not used & excluded, f"app/ imports {sorted(used & excluded)}, which the bundle excludes"


def test_no_excluded_package_is_imported_by_core_or_app(rules):
    top = {m for m in rules.EXCLUDES if "." not in m} - {"tests"}
    pattern = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.M)
    for folder in ("core", "app"):
        for path in (ROOT / folder).glob("*.py"):
            imported = set(pattern.findall(path.read_text(encoding="utf-8")))
            assert not imported & top, f"{path.relative_to(ROOT)} imports {sorted(imported & top)}, excluded from the bundle"


def test_qt_plugins_kept_and_dropped(rules):
    plugins = "PySide6/Qt/plugins/"
    for kept in ("platforms/libqxcb.so", "platforms/libqwayland.so", "platforms/libqoffscreen.so",
                 "platforms/qwindows.dll", "platforms/libqcocoa.dylib", "imageformats/libqjpeg.so",
                 "platformthemes/libqxdgdesktopportal.so", "xcbglintegrations/libqxcb-glx-integration.so",
                 "wayland-shell-integration/libxdg-shell.so", "styles/qmodernwindowsstyle.dll"):
        assert not rules.is_dropped(plugins + kept), kept
    for dropped in ("platforms/libqvnc.so", "platforms/libqeglfs.so", "platformthemes/libqgtk3.so",
                    "imageformats/libqsvg.so", "imageformats/libqpdf.so", "iconengines/libqsvgicon.so",
                    "tls/libqopensslbackend.so", "wayland-graphics-integration-client/libqt-plugin-wayland-egl.so"):
        assert rules.is_dropped(plugins + dropped), dropped
    assert rules.is_dropped("PySide6/Qt/translations/qtbase_fr.qm")
    assert rules.is_dropped("PySide6\\opengl32sw.dll")
    assert not rules.is_dropped("PySide6/Qt/lib/libQt6Gui.so.6")


def test_bundle_destinations_match_the_run_time_lookups(rules, tmp_path, monkeypatch, contract_models_dir):
    """The spec puts the models where core.models / core.dlib_models look under sys._MEIPASS, and the files
    it bundles are the ones the app loads."""
    import shutil

    from core import dlib_models, models

    (tmp_path / rules.DLIB_DEST).mkdir(parents=True)
    (tmp_path / rules.MODELS_DEST).mkdir(parents=True)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    monkeypatch.delenv("AGELAPSE_MODELS_DIR", raising=False)
    assert models.models_dir() == tmp_path / rules.MODELS_DEST
    assert dlib_models.models_folder() == tmp_path / rules.DLIB_DEST
    assert rules.MANIFEST == models.MANIFEST_FILE
    for name in (*rules.MODEL_FILES, rules.MANIFEST):  # only what the bundle carries
        shutil.copy(contract_models_dir / name, tmp_path / rules.MODELS_DEST / name)
    loaded = models.load_models(providers="cpu")
    assert loaded.errors == [] and loaded.aging is not None and loaded.age is not None


def test_dlib_files_are_the_ones_the_app_loads(rules):
    from core import dlib_models

    assert set(rules.DLIB_MODEL_FILES) == {dlib_models.LANDMARKS_68, dlib_models.CNN_DETECTOR}
    assert dlib_models.FACE_DESCRIPTOR in rules.DLIB_UNUSED_FILES
    assert all(p.is_file() for p in rules.dlib_model_files())
    # The descriptor model is left out because nothing in core/ or app/ loads it: if that changes,
    # add it to DLIB_MODEL_FILES.
    for folder in ("core", "app"):
        for path in (ROOT / folder).glob("*.py"):
            if path.name != "dlib_models.py":
                text = path.read_text(encoding="utf-8")
                assert "face_descriptor_model" not in text and "FACE_DESCRIPTOR" not in text, path


def test_version_comes_from_the_package(rules):
    import core

    assert rules.read_version(ROOT) == core.__version__
    assert rules.version_tuple("1.2.3") == (1, 2, 3, 0)
    assert rules.version_tuple("0.1.0rc2") == (0, 1, 2, 0)


def test_version_mismatch_is_refused(rules, tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text('__version__ = "0.2.0"\n')
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0.1.0"\n')
    with pytest.raises(rules.BundleError, match="version mismatch"):
        rules.read_version(tmp_path)


def test_models_are_checked_before_building(rules, contract_models_dir, tmp_path):
    files = rules.check_models(contract_models_dir)
    assert {p.name for p in files} >= {"aging.onnx", "age.onnx", "manifest.json"}

    broken = tmp_path / "models"
    shutil.copytree(contract_models_dir, broken)
    (broken / "age.onnx").unlink()
    with pytest.raises(rules.BundleError, match=r"age\.onnx is missing in .*--models DIR"):
        rules.check_models(broken)

    shutil.copy(contract_models_dir / "age.onnx", broken / "age.onnx")
    with open(broken / "aging.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(rules.BundleError, match=r"aging\.onnx has \d+ bytes"):
        rules.check_models(broken)

    (broken / "manifest.json").write_text(json.dumps({"models": {}}))
    with pytest.raises(rules.BundleError, match="not listed"):
        rules.check_models(broken)

    with pytest.raises(rules.BundleError, match="does not exist"):
        rules.check_models(tmp_path / "nowhere")


def test_other_resources_keep_their_place(rules, tmp_path):
    (tmp_path / "resources" / "models").mkdir(parents=True)
    (tmp_path / "resources" / "models" / "aging.onnx").write_bytes(b"x")
    (tmp_path / "resources" / "icons").mkdir()
    (tmp_path / "resources" / "icons" / "app.png").write_bytes(b"x")
    (tmp_path / "resources" / ".DS_Store").write_bytes(b"x")
    assert rules.other_resources(tmp_path) == [(str(tmp_path / "resources" / "icons" / "app.png"), "resources/icons")]
    assert rules.other_resources(tmp_path / "nowhere") == []
