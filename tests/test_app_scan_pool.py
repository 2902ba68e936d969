"""The app's album scan searches photos in the engine's pool of helper processes (issue 13, item 4): badges
arrive in the photos' order and the catalog holds every photo, as with one helper."""

from __future__ import annotations

import cv2
import pytest

from testkit.gui import WAIT_MS, write_jpeg

pytestmark = pytest.mark.usefixtures("app_env")


def test_the_app_scan_uses_the_pool_in_order(qtbot, tmp_path, astronaut, catalog, monkeypatch):
    from app.scanning import ScanController
    from app.tasks import TaskRunner
    from core import scan as core_scan

    started = []
    real_start = core_scan._start_pool
    monkeypatch.setattr(core_scan, "_start_pool", lambda f, w: started.append((f.mode, w)) or real_start(f, w))
    monkeypatch.setattr(core_scan, "cpu_count", lambda: 2)
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    paths = [write_jpeg(small, tmp_path / "album" / f"p{i:02d}.jpg") for i in range(10)]
    runner = TaskRunner()
    controller = ScanController(runner, catalog)
    scanned = []
    controller.photo_scanned.connect(lambda p, n: scanned.append((p, n)))
    with qtbot.waitSignal(controller.finished, timeout=WAIT_MS * 4) as done:
        controller.start(paths)
    runner.shutdown()
    report = done.args[0]
    assert started == [("fast", 2)]
    assert not report.cancelled and report.scanned == 10
    assert scanned == [(str(p), 1) for p in paths]  # every badge, in the photos' order
    assert len(catalog.photos("done")) == 10 and all(r.detector == "fast" for r in catalog.photos())
