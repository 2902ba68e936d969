"""Shared fixtures. GUI tests run offscreen; tests that need ../shared/data skip without it.

The GUI fixtures (app_env, settings, catalog, photo_album, window) are here too; the helpers they and the
tests share (waiting, drags, JPEGs) are in testkit/gui.py, the stand-in models in testkit/contract_model.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from testkit.gui import WAIT_MS, write_jpeg

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# the training tests' tiny dataset, cache and age run (built once per session, used by several files)
pytest_plugins = ["testkit.training_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def torch_one_thread():
    """torch on one thread for the test (training tests share two cores with other work)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real portrait (512x512 RGB uint8) shipped by scikit-image."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (developer data, not shipped)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def album_dir(shared_data: Path) -> Path:
    d = shared_data / "album"
    if not d.is_dir():
        pytest.skip(f"{d} is absent")
    return d


@pytest.fixture(scope="session")
def contract_models_dir(tmp_path_factory) -> Path:
    """A models folder holding contract-honouring stand-ins for the trained models, built once per
    session (testkit/contract_model.py): ``aging.onnx`` (64 px, the 8 decade groups; its output
    visibly brightens with older targets and scales with the region strengths, exactly the input
    where all strengths are 0), ``age.onnx`` (48 px, its own template; brighter faces read older)
    and ``manifest.json``. Shared: copy it before damaging anything in it."""
    from testkit.contract_model import write_contract_models

    return write_contract_models(tmp_path_factory.mktemp("contract_models"))


# ------------------------------------------------------------------------------------------ GUI

@pytest.fixture
def app_env(tmp_path, monkeypatch, qapp):
    """Temporary data, cache and settings folders for this test: every GUI test uses it (the GUI test
    modules say so with ``pytestmark = pytest.mark.usefixtures("app_env")``), so the person's settings,
    catalog and thumbnails are never touched."""
    from PySide6.QtCore import QSettings

    data, cache, conf = tmp_path / "data", tmp_path / "cache", tmp_path / "settings"
    monkeypatch.setenv("AGELAPSE_DATA_DIR", str(data))
    monkeypatch.setenv("AGELAPSE_CACHE_DIR", str(cache))
    monkeypatch.delenv("AGELAPSE_MODELS_DIR", raising=False)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(conf))
    return {"data": data, "cache": cache, "settings": conf}


@pytest.fixture
def settings(app_env):
    from app.settings import Settings

    s = Settings("AgelapseTest", "AgelapseTest")
    s.q.clear()
    assert str(app_env["settings"]) in s.q.fileName()  # never the person's own file
    return s


@pytest.fixture
def catalog(tmp_path):
    from core.catalog import Catalog

    cat = Catalog(tmp_path / "catalog.sqlite3")
    yield cat
    cat.close()


@pytest.fixture
def photo_album(tmp_path, astronaut) -> Path:
    """A small album: the astronaut portrait (and a copy in a subfolder), a photo without a face, and a
    file that is not a photo at all."""
    import cv2

    root = tmp_path / "album"
    write_jpeg(astronaut, root / "a_astronaut.jpg")
    write_jpeg(cv2.resize(astronaut, (768, 768), interpolation=cv2.INTER_CUBIC), root / "sub" / "b_astronaut_big.jpg")
    sky = np.zeros((300, 400, 3), np.uint8)
    sky[:] = np.linspace(90, 200, 400, dtype=np.uint8)[None, :, None]
    write_jpeg(sky, root / "c_sky.jpg")
    (root / "d_broken.jpg").write_text("this is not a photo")
    return root


@pytest.fixture
def window(qtbot, settings, catalog, contract_models_dir, tmp_path):
    """The main window with the contract models and a throw-away catalog and thumbnail cache."""
    from app.main import make_app
    from app.main_window import MainWindow
    from core.thumbnails import ThumbnailCache

    make_app()
    win = MainWindow(settings, catalog=catalog, models_folder=contract_models_dir,
                     thumb_cache=ThumbnailCache(tmp_path / "thumbs"))
    qtbot.addWidget(win)
    win.resize(1300, 850)
    win.show()
    qtbot.waitUntil(lambda: win.aging.available, timeout=WAIT_MS)
    yield win
    win.close()
