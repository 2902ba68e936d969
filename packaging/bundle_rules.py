"""What goes into the Agelapse bundle and what stays out: the rules ``agelapse.spec`` applies.

Plain standard library and the engine's contract table (``core.contracts``, itself plain standard
library), no PyInstaller import, so ``tests/test_packaging.py`` can check the rules without building. (This folder is deliberately not a Python package: a ``packaging/__init__.py``
would shadow the ``packaging`` library on PyPI.)

- :data:`EXCLUDES`       modules never analysed: torch, the training package, test tools, tkinter,
                         Qt modules the GUI does not use, ...
- :data:`DROP_PATTERNS`  files the hooks collect but the app never loads (Qt translations, unused
                         Qt plugins, onnxruntime's sample data, ...), matched on the bundle path
- :data:`FORBIDDEN`      top-level names that must not be in a finished bundle (checked twice:
                         on the analysis in the spec, and on the built folder by smoke_test.py)
- :func:`check_models`   the shipped ONNX models and their manifest, before anything is built
- :func:`dlib_model_files` the two dlib files the app loads at run time
- :func:`read_version`   the version from ``core/__init__.py``, cross-checked with pyproject.toml
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import json
import os
import sys
from pathlib import Path

from core.contracts import AGE, AGING, sha256_of

# -------------------------------------------------------------------------------------- contents

APP_NAME = "agelapse"          # the GUI executable (and the bundle folder)
CLI_NAME = "agelapse-cli"      # the console executable, same folder, same libraries
MACOS_APP = "Agelapse.app"
BUNDLE_ID = "org.agelapse.Agelapse"

# The shipped models: core.models.models_dir() looks for them in <_MEIPASS>/resources/models.
MODEL_FILES = (AGING.file, AGE.file)
MANIFEST = "manifest.json"
OPTIONAL_MODEL_FILES = ("MODEL_CARD.md",)
MODELS_DEST = "resources/models"

# dlib's model files that core loads at run time (core/dlib_models.py): the 68-point landmarks
# and the CNN detector (accurate mode). The face descriptor (dlib_face_recognition_resnet_model_v1,
# 22 MB) is used only by the training package's evaluation, the 5-point predictor by nothing.
DLIB_MODEL_FILES = ("shape_predictor_68_face_landmarks.dat", "mmod_human_face_detector.dat")
DLIB_UNUSED_FILES = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")
DLIB_DEST = "face_recognition_models/models"   # core.dlib_models.models_folder() under _MEIPASS

# Imported lazily by the engine (inside functions), so named explicitly.
HIDDEN_IMPORTS = ("pillow_heif", "imageio_ffmpeg", "imageio_ffmpeg._io", "tqdm", "dlib")

# Never analysed. Top-level names also end up in FORBIDDEN below.
EXCLUDES = (
    # the training stack and developer tools
    "torch", "torchvision", "torchaudio", "training", "tests", "testkit", "onnx", "onnxscript", "onnx_ir",
    "tensorboard", "tensorflow", "pytest", "_pytest", "pytestqt", "pluggy", "skimage", "scipy",
    "matplotlib", "pandas", "IPython", "jupyter", "notebook", "sympy", "networkx", "tifffile",
    "lazy_loader",
    # packaging tools that pip/setuptools leave in any venv
    "setuptools", "pkg_resources", "pip", "wheel", "distutils", "PyInstaller",
    # imageio itself is a dependency but the engine uses only imageio_ffmpeg (core/export.py)
    "imageio",
    # onnxruntime's optional tooling (model conversion, transformers helpers)
    "onnxruntime.tools", "onnxruntime.transformers", "onnxruntime.quantization", "flatbuffers",
    "google.protobuf",
    # the standard library's GUI and developer modules
    "tkinter", "_tkinter", "turtle", "turtledemo", "idlelib", "lib2to3", "pydoc_data", "test",
    # Qt modules the GUI never imports (app/ uses QtCore, QtGui, QtWidgets only)
    "PySide6.QtNetwork", "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtQuickWidgets",
    "PySide6.QtQuickControls2", "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets", "PySide6.QtSql",
    "PySide6.QtDesigner", "PySide6.QtUiTools", "PySide6.QtHelp", "PySide6.QtTest", "PySide6.QtXml",
    "PySide6.QtDBus", "PySide6.QtPrintSupport", "PySide6.QtSvg", "PySide6.QtSvgWidgets",
    "PySide6.QtConcurrent", "PySide6.QtStateMachine", "PySide6.QtMultimedia",
    "PySide6.QtMultimediaWidgets", "PySide6.QtWebEngineCore", "PySide6.QtWebEngineWidgets",
    "PySide6.QtWebEngineQuick", "PySide6.QtWebChannel", "PySide6.QtWebSockets", "PySide6.Qt3DCore",
    "PySide6.Qt3DRender", "PySide6.QtCharts", "PySide6.QtDataVisualization", "PySide6.QtGraphs",
    "PySide6.QtPdf", "PySide6.QtPdfWidgets", "PySide6.QtPositioning", "PySide6.QtLocation",
    "PySide6.QtBluetooth", "PySide6.QtNfc", "PySide6.QtSerialPort", "PySide6.QtSensors",
    "PySide6.QtTextToSpeech", "PySide6.QtRemoteObjects", "PySide6.QtScxml", "PySide6.QtAxContainer",
    "PySide6.scripts",
)

# Files the hooks collect that the app never loads. fnmatch patterns on the bundle path, "/"
# separated ("*" also matches "/"). Everything else the hooks collect is kept.
DROP_PATTERNS = (
    # Qt: translations (the app's own strings are English; Qt's dialogs then are too)
    "PySide6/Qt/translations/*",
    # Qt platforms: keep xcb, wayland, offscreen, minimal (Linux), cocoa, windows
    "PySide6/Qt/plugins/platforms/*eglfs*", "PySide6/Qt/plugins/platforms/*linuxfb*",
    "PySide6/Qt/plugins/platforms/*vnc*", "PySide6/Qt/plugins/platforms/*vkkhrdisplay*",
    "PySide6/Qt/plugins/platforms/*minimalegl*",
    "PySide6/Qt/plugins/egldeviceintegrations/*", "PySide6/Qt/plugins/generic/*",
    # the GTK3 theme plugin links the system's GTK (bundling GTK is a known source of crashes);
    # the XDG desktop portal theme still gives native file dialogs where a portal runs
    "PySide6/Qt/plugins/platformthemes/*gtk3*",
    # image formats Qt would decode: photos are decoded by Pillow (core/photos.py), Qt only
    # displays QImages built from numpy arrays (built in)
    "PySide6/Qt/plugins/imageformats/*pdf*", "PySide6/Qt/plugins/imageformats/*svg*",
    "PySide6/Qt/plugins/imageformats/*tiff*", "PySide6/Qt/plugins/imageformats/*webp*",
    "PySide6/Qt/plugins/imageformats/*icns*", "PySide6/Qt/plugins/imageformats/*tga*",
    "PySide6/Qt/plugins/imageformats/*wbmp*", "PySide6/Qt/plugins/iconengines/*",
    "PySide6/Qt/plugins/platforminputcontexts/*virtualkeyboard*",
    "PySide6/Qt/plugins/networkinformation/*", "PySide6/Qt/plugins/tls/*",
    "PySide6/Qt/plugins/sqldrivers/*", "PySide6/Qt/plugins/qmltooling/*",
    "PySide6/Qt/plugins/designer/*", "PySide6/Qt/plugins/printsupport/*",
    # Wayland: keep the platform, the shell integrations and the plain decoration; the app draws
    # with the raster engine over shared memory, so the OpenGL/EGL buffer integrations (and the
    # compositor side) are not needed; the adwaita decoration pulls QtSvg
    "PySide6/Qt/plugins/wayland-graphics-integration-server/*",
    "PySide6/Qt/plugins/wayland-graphics-integration-client/*",
    "PySide6/Qt/plugins/wayland-decoration-client/*adwaita*",
    # Windows: the software OpenGL renderer (20 MB) and the Direct3D shader compiler, for OpenGL
    # on machines without a driver; the app draws with the raster engine
    "opengl32sw.dll", "PySide6/opengl32sw.dll", "d3dcompiler_*.dll", "PySide6/d3dcompiler_*.dll",
    # Linux: libraries that must come from the user's system, not the build machine's. The C++
    # runtime: the system's GPU (Mesa) drivers that Qt loads need a libstdc++ at least as new as
    # the one they were built with (pyinstaller#6993, #5573); libmvec is part of glibc; fontconfig
    # and freetype read the system's /etc/fonts, whose format follows the system's version (#5600).
    # The bundle needs a glibc at least as new as the build machine's anyway (see README), so the
    # system's copies are new enough.
    "libstdc++.so.6", "libgcc_s.so.1", "libmvec.so.1", "libfontconfig.so.1", "libfreetype.so.6",
    # onnxruntime: sample models and docs of its conversion tools
    "onnxruntime/datasets/*", "onnxruntime/tools/*", "onnxruntime/transformers/*",
    # OpenCV's cascades and samples (the engine detects with dlib)
    "cv2/data/*",
)

# Top-level names (module packages or bundle folders) that must not be in a finished bundle.
FORBIDDEN = (
    "torch", "torchvision", "training", "tests", "testkit", "pytest", "_pytest", "pytestqt", "skimage",
    "scipy", "tkinter", "_tkinter", "onnx", "tensorboard", "matplotlib", "imageio", "setuptools",
    "pip", "PyInstaller",
)
# Files that must not be in a finished bundle (fnmatch on the path inside the bundle).
FORBIDDEN_FILES = (
    "*/libtorch*", "*/libtk*", "*/libtcl*", "*/_tkinter*", "*/dlib_face_recognition_resnet_model_v1.dat",
    "*/shape_predictor_5_face_landmarks.dat", "PySide6/Qt/lib/*Qt6Quick*", "PySide6/Qt/lib/*Qt6Qml*",
    "PySide6/Qt/lib/*Qt6WebEngine*", "PySide6/Qt/lib/*Qt63D*", "PySide6/Qt/lib/*Qt6Multimedia*",
    "PySide6/Qt/lib/*Qt6Network*", "PySide6/Qt/translations/*",
)


class BundleError(Exception):
    """The bundle cannot be built as asked; the message says what to do."""


def _norm(path: str) -> str:
    return path.replace("\\", "/")


def is_dropped(dest: str) -> bool:
    """Whether a file collected at bundle path ``dest`` is one of :data:`DROP_PATTERNS`."""
    dest = _norm(dest)
    return any(fnmatch.fnmatchcase(dest, p) for p in DROP_PATTERNS)


def forbidden_entries(names) -> list[str]:
    """The entries of ``names`` (module names like ``torch.nn`` or bundle paths like
    ``torch/lib/libtorch.so``) that break the rules of :data:`FORBIDDEN` / :data:`FORBIDDEN_FILES`."""
    bad = []
    for name in names:
        n = _norm(str(name))
        top = n.split("/", 1)[0].split(".", 1)[0]
        if top in FORBIDDEN or any(fnmatch.fnmatchcase(n, p) or fnmatch.fnmatchcase("x/" + n, p)
                                   for p in FORBIDDEN_FILES):
            bad.append(str(name))
    return bad


# ---------------------------------------------------------------------------------------- version

def read_version(repo: str | os.PathLike) -> str:
    """``core.__version__`` (read from the source, not imported), which must equal pyproject's."""
    repo = Path(repo)
    tree = ast.parse((repo / "core" / "__init__.py").read_text(encoding="utf-8"))
    version = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            version = ast.literal_eval(node.value)
    if not isinstance(version, str):
        raise BundleError(f"{repo / 'core' / '__init__.py'} has no __version__ = \"...\"")
    pyproject = repo / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        declared = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("version")
        if declared is not None and declared != version:
            raise BundleError(f"version mismatch: core/__init__.py says {version}, pyproject.toml says {declared}; "
                              "make them equal before building")
    return version


def version_tuple(version: str) -> tuple[int, int, int, int]:
    """"0.1.0" -> (0, 1, 0, 0), for the Windows version resource (non-numeric parts count as 0)."""
    parts = []
    for piece in version.split(".")[:4]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple((parts + [0, 0, 0, 0])[:4])


# ----------------------------------------------------------------------------------------- models

def check_models(folder: str | os.PathLike) -> list[Path]:
    """The files to ship from the models ``folder``: the two ONNX models and ``manifest.json``
    (plus MODEL_CARD.md where present), each model present, listed in the manifest and matching
    its size and sha256. Raises BundleError naming the file and what to do."""
    folder = Path(folder)
    hint = ("Export the trained models there (python -m training export RUN --out resources/models/), "
            "or build with other models: python packaging/build.py --models DIR "
            "(or AGELAPSE_BUNDLE_MODELS=DIR).")
    if not folder.is_dir():
        raise BundleError(f"the models folder {folder} does not exist. {hint}")
    absent = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if absent:
        raise BundleError(f"the model file{'s' if len(absent) > 1 else ''} {' and '.join(absent)} "
                          f"{'are' if len(absent) > 1 else 'is'} missing in {folder}. {hint}")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"the model manifest {manifest_path} is missing. {hint}")
    try:
        entries = json.loads(manifest_path.read_text(encoding="utf-8"))["models"]
        if not isinstance(entries, dict):
            raise TypeError("'models' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"the model manifest {manifest_path} is unreadable ({exc}). {hint}") from None
    files = []
    for name in MODEL_FILES:
        path = folder / name
        entry = entries.get(name)
        if not isinstance(entry, dict):
            raise BundleError(f"the model file {path} is not listed in {manifest_path}. {hint}")
        size = path.stat().st_size
        if "bytes" in entry and int(entry["bytes"]) != size:
            raise BundleError(f"the model file {path} has {size} bytes, {manifest_path} says {entry['bytes']} "
                              f"(damaged or re-exported without updating the manifest). {hint}")
        if sha256_of(path) != str(entry.get("sha256", "")).lower():
            raise BundleError(f"the sha256 of {path} does not match {manifest_path} "
                              f"(damaged or re-exported without updating the manifest). {hint}")
        files.append(path)
    files.append(manifest_path)
    files += [folder / n for n in OPTIONAL_MODEL_FILES if (folder / n).is_file()]
    return files


def dlib_model_files() -> list[Path]:
    """The dlib model files the app loads, from the installed face-recognition-models package
    (located without importing it: its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise BundleError("the face-recognition-models package is not installed in the build environment "
                          "(pip install face-recognition-models, or packaging/build.py which installs it)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    files = []
    for name in DLIB_MODEL_FILES:
        if not (folder / name).is_file():
            raise BundleError(f"dlib's model file {folder / name} is missing; reinstall face-recognition-models")
        files.append(folder / name)
    return files


def check_runtime_environment(allow_dev: bool = False) -> None:
    """Refuse to build from an environment with the training stack or test tools installed (they
    are excluded either way, but a runtime-only environment is the only proof that nothing needs
    them). ``allow_dev`` (--allow-dev-env) turns the refusal into a warning."""
    present = [m for m in ("torch", "pytest", "skimage", "onnx", "tensorboard")
               if importlib.util.find_spec(m) is not None]
    if present:
        message = (f"the build environment ({sys.prefix}) has {', '.join(present)} installed: build from a "
                   "runtime-only environment (python packaging/build.py makes one) or pass --allow-dev-env")
        if not allow_dev:
            raise BundleError(message)
        print(f"WARNING: {message}", file=sys.stderr)


def collect_qt_module(module_name: str):
    """For the hook overrides in packaging/hooks/: PyInstaller's own collection of a PySide6 module
    (hiddenimports, binaries, datas) without the plugins and translations of DROP_PATTERNS."""
    from PyInstaller.utils.hooks import logger
    from PyInstaller.utils.hooks.qt import get_qt_library_info

    def dest(entry) -> str:
        return _norm(f"{entry[1]}/{os.path.basename(entry[0])}")

    hiddenimports, binaries, datas = get_qt_library_info(module_name.split(".")[0]).collect_module(module_name)
    kept_b = [b for b in binaries if not is_dropped(dest(b))]
    kept_d = [d for d in datas if not is_dropped(dest(d))]
    logger.info("agelapse: %s: left out %d Qt plugins and %d data files (bundle_rules.DROP_PATTERNS)",
                module_name, len(binaries) - len(kept_b), len(datas) - len(kept_d))
    return hiddenimports, kept_b, kept_d


def other_resources(repo: str | os.PathLike) -> list[tuple[str, str]]:
    """(source, bundle folder) of every file under ``resources/`` except ``resources/models/`` (which
    comes from the checked models folder): icons and the like, should the app gain them, keep the
    same relative place under ``sys._MEIPASS``."""
    root = Path(repo) / "resources"
    out = []
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        rel = path.relative_to(root)
        if path.is_file() and rel.parts[0] != "models" and not path.name.startswith("."):
            out.append((str(path), _norm(str(Path("resources") / rel.parent))))
    return out
