"""Benchmark: drag the age timeline of the desktop app over a ~12-megapixel photo.

    OMP_NUM_THREADS=1 python bench/gui_drag.py [--photo FILE] [--frames 240] [--size 1500x940]
                                               [--models DIR] [--aging-size 128]

The photo (default: ../shared/data/album/face_recognition/obama.jpg when present, else scikit-image's
astronaut) is upscaled to 4000x3000 and written as a JPEG into a temporary album. The main window opens it
(offscreen unless $DISPLAY is set: run it under xvfb-run for a real X11 window), finds the face, computes
its age groups (models: --models, else resources/models when present, else a contract model of realistic
cost at --aging-size px built on the fly), then the timeline handle is dragged back and forth with real
mouse events. Each frame is the mouse move (the frame is rendered) plus the event loop painting what
changed, i.e. everything the GUI thread does for one frame (--full-repaint: the whole view and strip are repainted
every frame, not only what changed). Printed: frames per second, frame-time percentiles,
and the longest GUI-thread stall (the longest gap of a 5 ms heartbeat timer) while loading, computing and
dragging; then a landmark drag is released three times (the nose tip moved a few pixels, through the editor
as the landmark layer does on release) and the time until the strip shows the new groups is printed. Settings, catalog and thumbnail cache go to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout: core, app, bench and testkit (shared with the tests)

from bench.timeline import twelve_megapixels  # noqa: E402  (the same 12 MP test photo as bench/timeline.py)


class Heartbeat:
    """A 5 ms timer on the GUI thread; the longest gap between its ticks is the longest stall."""

    def __init__(self):
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self.reset()
        self.timer.start()

    def reset(self) -> None:
        self.last = time.perf_counter()
        self.longest = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photo", help="a portrait to upscale to 12 MP")
    ap.add_argument("--frames", type=int, default=240, help="drag frames to time (default 240)")
    ap.add_argument("--size", default="1500x940", help="window size (default 1500x940)")
    ap.add_argument("--models", type=Path, help="models folder (default: resources/models, else a contract model)")
    ap.add_argument("--aging-size", type=int, default=128, help="S of the contract model when one is built (default 128)")
    ap.add_argument("--full-repaint", action="store_true", help="repaint the whole view and strip every frame (worst case)")
    args = ap.parse_args(argv)

    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="agelapse-bench-"))
    os.environ["AGELAPSE_DATA_DIR"] = str(tmp / "data")
    os.environ["AGELAPSE_CACHE_DIR"] = str(tmp / "cache")

    from PIL import Image
    from PySide6.QtCore import QEvent, QPointF, QSettings, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    from app.main import make_app
    from app.main_window import MainWindow
    from tools.screenshot import spin_until
    from app.settings import Settings
    from core.models import models_dir

    rgb, name = twelve_megapixels(args.photo)
    album = tmp / "album"
    album.mkdir()
    Image.fromarray(rgb).save(album / "twelve_mp.jpg", quality=92)
    models = args.models
    which = "given"
    if models is None and (models_dir() / "aging.onnx").is_file():
        models, which = models_dir(), "bundled"
    if models is None:
        from testkit.contract_model import write_contract_models

        models = write_contract_models(tmp / "models", aging_size=args.aging_size, realistic=True)
        which = f"contract model, realistic cost, S={args.aging_size}"

    app = make_app()
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))
    settings = Settings("AgelapseBench", "Agelapse")
    settings.scan_on_open = False
    w, h = (int(v) for v in args.size.lower().split("x"))
    t_start = time.perf_counter()
    win = MainWindow(settings, models_folder=models)
    win.resize(w, h)
    win.show()
    spin_until(lambda: win.aging.models.aging is not None or bool(win.aging.models.errors), 120)
    t_start = time.perf_counter() - t_start
    spin_until(lambda: False, 0.5)  # idle: the window is up, the face finder process warming up
    beat = Heartbeat()
    t0 = time.perf_counter()
    win.open_folder(album)
    ok = spin_until(lambda: win.editor.current_face() is not None, 300)
    t_face = time.perf_counter() - t0
    ok = ok and spin_until(lambda: win.aging.result is not None and not win.timeline.busy, 300)
    t_groups = time.perf_counter() - t0
    spin_until(lambda: False, 0.3)
    load_stall = beat.longest
    if not ok:
        print("the face or its groups did not come (see the banner): " + " | ".join(win.banner.texts()), file=sys.stderr)
        return 2

    tl, view = win.timeline, win.view
    k = len(tl.labels)
    y = tl.height() / 2

    def send(kind, p, buttons):
        pos = QPointF(tl.x_of(p), y)
        QApplication.sendEvent(tl, QMouseEvent(kind, pos, tl.mapToGlobal(pos), Qt.MouseButton.LeftButton, buttons,
                                               Qt.KeyboardModifier.NoModifier))

    import gc

    gc_pauses: list[tuple[int, float]] = []  # (generation, seconds) of each garbage collection while dragging
    gc_start = [0.0]

    def gc_watch(phase, info):
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_pauses.append((info["generation"], time.perf_counter() - gc_start[0]))

    times = []
    gc.callbacks.append(gc_watch)
    beat.reset()
    send(QEvent.Type.MouseButtonPress, 0.0, Qt.MouseButton.LeftButton)
    start = time.perf_counter()
    for i in range(args.frames):
        phase = (i / 120.0) % 2.0  # 0 -> K-1 -> 0 every 240 frames
        p = (phase if phase <= 1 else 2 - phase) * (k - 1)
        t = time.perf_counter()
        send(QEvent.Type.MouseMove, p, Qt.MouseButton.LeftButton)
        if args.full_repaint:  # worst case: the whole view and strip repainted, not just what changed
            view.viewport().repaint()
            tl.repaint()
        app.processEvents()  # Qt paints what changed (the face's rectangle, the strip); the heartbeat runs
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    send(QEvent.Type.MouseButtonRelease, tl.position, Qt.MouseButton.NoButton)
    drag_stall = beat.longest
    gc.callbacks.remove(gc_watch)
    x0, y0, x1, y1 = win.aging.result.renderer.rect

    # a landmark drag released: what the landmark layer hands the editor on release (one undo step), then
    # the time until the strip shows the recomputed groups; the best of three
    releases, release_stalls = [], []
    for i in range(3):
        stored = win.editor.current_face()
        before = (stored.face.landmarks.copy(), stored.face.forehead_height)
        moved = before[0].copy()
        moved[30] += (4.0 if i % 2 == 0 else -4.0, 3.0)  # the nose tip, a few pixels
        old = win.aging.result
        spin_until(lambda: False, 0.3)
        beat.reset()
        t = time.perf_counter()
        win.editor.on_layer_edited(before, (moved, before[1]))
        spin_until(lambda: win.aging.result is not old and not win.timeline.busy, 60)
        releases.append(time.perf_counter() - t)
        release_stalls.append(beat.longest)
    slowest = max(range(len(times)), key=times.__getitem__)
    times.sort()
    pct = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000  # noqa: E731

    print(f"photo        {name}, upscaled to {rgb.shape[1]}x{rgb.shape[0]} ({rgb.shape[0] * rgb.shape[1] / 1e6:.1f} MP); "
          f"face rectangle {x1 - x0}x{y1 - y0} px")
    print(f"window       {w}x{h}, platform {QApplication.platformName()}, view scale {view.current_scale():.3f}")
    print(f"models       {which}: {models}; providers {win.aging.models.providers_in_use}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}; {os.cpu_count()} CPUs")
    print(f"start-up     window and models ready in {t_start:.2f} s")
    print(f"opening      face shown after {t_face:.2f} s, every age group after {t_groups:.2f} s "
          f"(decoding, detection and inference on workers)")
    print(f"GUI stall    longest while opening the photo (decode, faces, groups): {load_stall * 1000:.1f} ms; while dragging: "
          f"{drag_stall * 1000:.1f} ms")
    print(f"drag         {len(times)} frames in {total:.2f} s = {len(times) / total:.1f} frames per second "
          f"(GUI work alone: {len(times) / sum(times):.1f} fps)")
    print(f"frame time   median {statistics.median(times) * 1000:.1f} ms, p95 {pct(0.95):.1f} ms, "
          f"max {times[-1] * 1000:.1f} ms (frame {slowest}); target >= 30 fps: {'met' if len(times) / total >= 30 else 'NOT met'}")
    longest_gc = max(gc_pauses, key=lambda g: g[1], default=(0, 0.0))
    print(f"collections  {len(gc_pauses)} garbage collections while dragging, the longest {longest_gc[1] * 1000:.1f} ms "
          f"(generation {longest_gc[0]})")
    print(f"GUI stall    target <= 16 ms while dragging: {'met' if drag_stall <= 0.016 else 'NOT met'}")
    print(f"landmark     strip updated {min(releases):.2f} s after a landmark drag is released (best of 3: "
          f"{', '.join(f'{r:.2f}' for r in releases)} s; target <= 0.3 s: {'met' if min(releases) <= 0.3 else 'NOT met'}); "
          f"longest GUI stall meanwhile {min(release_stalls) * 1000:.1f} ms")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
