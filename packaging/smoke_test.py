#!/usr/bin/env python3
"""Smoke test of a built Agelapse bundle: does it run on its own, on its own models?

    python packaging/smoke_test.py [--bundle dist/agelapse] [--photo FILE] [--keep]

Run it with the dev venv's Python (it writes scikit-image's astronaut as its test photo; or give
``--photo``). The bundle's programs run with a scrubbed environment: a temporary HOME, PATH of
the system only, no PYTHON* or VIRTUAL_ENV, no AGELAPSE_MODELS_DIR (so the bundled models must be
found), Qt offscreen. Checks, in order:

1. layout: both executables, the models with a manifest whose sha256s match, the two dlib files and
   not the others, ffmpeg; nothing of bundle_rules.FORBIDDEN (torch, training, test tools, tkinter,
   unused Qt modules) among the files, nor in the executables' module archives; every file
   readable by all users; on Linux every library resolvable (ldd) and none taken from a Python
   installation or virtual environment;
2. ``agelapse-cli --help`` (timed: start-up), also through a symlink;
3. on Linux with ``xvfb-run`` available, the GUI on a folder with the portrait on a virtual X server
   with the xcb plugin (a user of its own), until its catalog and thumbnails appear;
4. the GUI started normally on that folder: its catalog, thumbnails and settings appear in the
   user's data, cache and config folders under the temporary HOME;
5. ``agelapse-cli age PHOTO --group 20-29`` and ``--group 60-69``: two JPEGs of the photo's size,
   different from each other; ``estimate``; ``export --mp4`` through the bundled ffmpeg;
6. the bundle folder is byte-for-byte unchanged afterwards (nothing written inside it), and the
   working directory holds only what was asked for.

Exit status 0 when all pass; prints the timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bundle_rules as rules  # noqa: E402
from core.contracts import sha256_of  # noqa: E402

IS_WIN, IS_MAC = sys.platform == "win32", sys.platform == "darwin"
EXE = ".exe" if IS_WIN else ""


class Failed(Exception):
    pass


def check(condition, message: str) -> None:
    if not condition:
        raise Failed(message)


# ------------------------------------------------------------------------------------------ helpers

def scrubbed_env(home: Path) -> dict:
    """A user with nothing but the bundle: fresh HOME, system PATH, no Python variables."""
    env = {
        "HOME": str(home), "USER": "smoke", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "QT_QPA_PLATFORM": "offscreen", "TMPDIR": str(home / "tmp"), "OMP_WAIT_POLICY": "PASSIVE",
    }
    if IS_WIN:
        env.update({"USERPROFILE": str(home), "LOCALAPPDATA": str(home / "AppData" / "Local"),
                    "APPDATA": str(home / "AppData" / "Roaming"), "TEMP": str(home / "tmp"),
                    "TMP": str(home / "tmp"), "SystemRoot": os.environ.get("SystemRoot", r"C:\Windows"),
                    "PATH": os.environ.get("SystemRoot", r"C:\Windows") + r"\System32"})
    else:
        env["PATH"] = "/usr/bin:/bin"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def user_folders(home: Path) -> dict[str, Path]:
    """Where core.catalog / core.thumbnails / QSettings put their files for this HOME."""
    if IS_WIN:
        local = home / "AppData" / "Local" / "Agelapse"
        return {"data": local, "cache": local / "Cache", "config": home / "AppData" / "Roaming" / "Agelapse"}
    if IS_MAC:
        return {"data": home / "Library" / "Application Support" / "Agelapse",
                "cache": home / "Library" / "Caches" / "Agelapse", "config": home / ".config" / "Agelapse"}
    return {"data": home / ".local" / "share" / "agelapse", "cache": home / ".cache" / "agelapse",
            "config": home / ".config" / "Agelapse"}


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def run(cmd, env, cwd, timeout=300, name=None) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise Failed(f"{name or Path(str(cmd[0])).name} {' '.join(str(c) for c in cmd[1:])} exited "
                     f"{proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
    return proc, elapsed


def make_photo(folder: Path, photo: Path | None) -> Path:
    folder.mkdir(parents=True)
    if photo is not None:
        target = folder / photo.name
        shutil.copyfile(photo, target)
        return target
    try:
        from PIL import Image
        from skimage import data
    except ImportError:
        raise Failed("no test photo: run this with the dev venv (scikit-image and Pillow) or pass --photo FILE") from None
    target = folder / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(target, quality=92)
    return target


# ------------------------------------------------------------------------------------------- checks

def check_layout(bundle: Path, internal: Path) -> list[str]:
    notes = []
    for exe in (rules.APP_NAME, rules.CLI_NAME):
        path = bundle / (exe + EXE)
        check(path.is_file() and (IS_WIN or os.access(path, os.X_OK)), f"{path} is missing or not executable")
    models = internal / rules.MODELS_DEST
    manifest = json.loads((models / rules.MANIFEST).read_text(encoding="utf-8"))["models"]
    for name in rules.MODEL_FILES:
        check((models / name).is_file(), f"bundled model {models / name} is missing")
        check(sha256_of(models / name) == manifest[name]["sha256"], f"bundled {name} does not match its manifest")
    if not (models / "MODEL_CARD.md").is_file():
        notes.append("the bundle has no MODEL_CARD.md (fine for stand-in models, not for a release)")
    dlib_dir = internal / rules.DLIB_DEST
    for name in rules.DLIB_MODEL_FILES:
        check((dlib_dir / name).is_file(), f"dlib model {dlib_dir / name} is missing")
    extra = sorted(p.name for p in dlib_dir.iterdir() if p.name not in rules.DLIB_MODEL_FILES)
    check(not extra, f"unused dlib files in the bundle: {extra}")
    check(list((internal / "imageio_ffmpeg" / "binaries").glob("ffmpeg*")), "imageio-ffmpeg's ffmpeg is missing")

    files = [str(p.relative_to(internal)).replace("\\", "/") for p in internal.rglob("*")]
    bad = rules.forbidden_entries(files)
    check(not bad, f"forbidden files in the bundle: {bad[:20]}")

    try:  # the pure-Python modules live inside the executables
        from PyInstaller.archive.readers import pkg_archive_contents
    except ImportError:
        notes.append("PyInstaller is not importable here: the executables' module archives were not inspected")
    else:
        for exe in (rules.APP_NAME, rules.CLI_NAME):
            modules = pkg_archive_contents(str(bundle / (exe + EXE)))
            bad = rules.forbidden_entries(modules)
            check(not bad, f"forbidden modules inside {exe}: {bad[:20]}")
            if exe == rules.CLI_NAME:
                check(not [m for m in modules if m.startswith(("PySide6", "app."))] and "app" not in modules,
                      "the command line's archive holds the GUI (PySide6 / app)")
            else:
                check("app.main_window" in modules and "core.pipeline" in modules, f"{exe} lacks app/core modules")

    if not IS_WIN:
        unreadable = [str(p) for p in bundle.rglob("*") if not p.is_symlink() and not p.stat().st_mode & 0o004]
        check(not unreadable, f"files not readable by other users (an install by root would break): {unreadable[:10]}")
    if sys.platform.startswith("linux") and shutil.which("ldd"):
        notes += check_libraries(bundle, internal)
    return notes


SYSTEM_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/local/lib/")


def check_libraries(bundle: Path, internal: Path) -> list[str]:
    """Every ELF file's libraries resolve inside the bundle or in the system's folders, never in a
    Python installation; a missing one is an error when the bundle should carry it (Qt, Python,
    the wheels' vendored libraries), a note when it is a system library the target must have."""
    env = dict(os.environ, LD_LIBRARY_PATH=str(internal))
    missing_system, outside = set(), set()
    elf = [p for p in internal.rglob("*") if p.is_file() and not p.is_symlink() and p.open("rb").read(4) == b"\x7fELF"]
    for path in elf + [bundle / rules.APP_NAME, bundle / rules.CLI_NAME]:
        out = subprocess.run(["ldd", str(path)], env=env, capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.match(r"\s*(\S+) => (not found|\S+)", line)
            if not m:
                continue
            lib, where = m.groups()
            if where == "not found":
                vendored = lib.startswith(("libQt6", "libpython", "libpyside", "libshiboken", "libicu")) or \
                    re.search(r"-[0-9a-f]{8}\.so", lib)
                check(not vendored, f"{path.relative_to(bundle)} needs {lib}, which the bundle lacks")
                missing_system.add(lib)
            else:
                real = os.path.realpath(where)
                inside = real.startswith(str(internal.resolve()) + os.sep)
                if not inside and not real.startswith(SYSTEM_DIRS):
                    outside.add(f"{lib} -> {real}")
    check(not outside, f"libraries resolved outside the bundle and the system: {sorted(outside)[:10]}")
    if missing_system:
        return [f"system libraries absent on this machine (the target desktop provides them; see README): "
                f"{', '.join(sorted(missing_system))}"]
    return []


def gui_normal_start(bundle: Path, album: Path, env: dict, work: Path, home: Path, timeout: float,
                     prefix: list[str] | None = None) -> float:
    """Start the GUI as a person would, wait until its catalog holds the scanned photo and a thumbnail is
    cached, then stop it. ``prefix``: a command that runs it (xvfb-run). Returns the seconds that took."""
    folders = user_folders(home)
    catalog = folders["data"] / "catalog.sqlite3"
    log = open(work / "gui.log", "w")
    t0 = time.perf_counter()
    group = bool(prefix) and not IS_WIN  # xvfb-run does not pass a signal on: stop its whole process group
    proc = subprocess.Popen([*(prefix or []), str(bundle / (rules.APP_NAME + EXE)), str(album)], env=env, cwd=work,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=group)

    def stop(sig) -> None:
        if group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    scanned = thumbs = False
    try:
        while time.perf_counter() - t0 < timeout and proc.poll() is None:
            time.sleep(0.25)
            thumbs = thumbs or any(p.is_file() for p in (folders["cache"] / "thumbnails").rglob("*"))
            if catalog.is_file() and not scanned:
                try:
                    with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=1) as db:
                        scanned = db.execute("SELECT COUNT(*) FROM photos WHERE scan_state = 'done' "
                                             "AND face_count > 0").fetchone()[0] > 0
                except sqlite3.Error:
                    pass
            if scanned and thumbs:
                break
        elapsed = time.perf_counter() - t0
        alive = proc.poll() is None
    finally:
        if proc.poll() is None or group:
            stop(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                stop(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
                proc.wait()
        log.close()
    output = (work / "gui.log").read_text(errors="replace")
    check(alive, f"the GUI exited by itself (code {proc.returncode}):\n{output[-3000:]}")
    check(catalog.is_file(), f"no catalog at {catalog} after {timeout:.0f} s:\n{output[-3000:]}")
    check(scanned, f"the catalog {catalog} holds no scanned photo with a face after {timeout:.0f} s")
    check(thumbs, f"no thumbnail under {folders['cache'] / 'thumbnails'}")
    check((folders["config"] / "Agelapse.ini").is_file() or IS_WIN or IS_MAC,
          f"no settings file {folders['config'] / 'Agelapse.ini'}")
    return elapsed


def check_aged(photo: Path, outputs: dict[str, Path]) -> str:
    """Both outputs decode to the photo's size and differ from each other."""
    try:
        import numpy as np
        from PIL import Image
    except ImportError:
        blobs = [p.read_bytes() for p in outputs.values()]
        check(all(b[:2] == b"\xff\xd8" for b in blobs), "an output is not a JPEG")
        check(blobs[0] != blobs[1], "the two age groups gave the same file")
        return "JPEG headers only (no Pillow here)"
    with Image.open(photo) as im:
        size = im.size
        original = np.asarray(im.convert("RGB"), dtype=np.int16)
    arrays = {}
    for label, path in outputs.items():
        with Image.open(path) as im:
            check(im.format == "JPEG", f"{path} is {im.format}, not JPEG")
            check(im.size == size, f"{path} is {im.size}, the photo is {size}")
            arrays[label] = np.asarray(im.convert("RGB"), dtype=np.int16)
    a, b = arrays.values()
    between = float(np.abs(a - b).mean())
    check(between > 0.05, f"the two age groups look the same (mean difference {between:.3f})")
    changed = [float(np.abs(x - original).max()) for x in arrays.values()]
    return f"{size[0]}x{size[1]}, mean |20-29 - 60-69| = {between:.2f}, max change vs photo {max(changed):.0f}"


# --------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="packaging/smoke_test.py", description="Smoke test of a built bundle.")
    p.add_argument("--bundle", type=Path, default=HERE.parent / "dist" / rules.APP_NAME)
    p.add_argument("--photo", type=Path, help="a portrait to use (default: scikit-image's astronaut)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per GUI run")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    args = p.parse_args(argv)

    bundle = args.bundle.resolve()
    internal = bundle / "_internal"
    if not bundle.is_dir():
        print(f"no bundle at {bundle}: build it with python packaging/build.py", file=sys.stderr)
        return 2
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="agelapse-smoke-"))
    home, work = tmp / "home", tmp / "work"
    work.mkdir(parents=True)
    env = scrubbed_env(home)
    cli = bundle / (rules.CLI_NAME + EXE)
    timings: dict[str, float] = {}
    notes: list[str] = []
    step = "layout"
    try:
        before = tree_state(bundle)
        notes += check_layout(bundle, internal)
        print("ok   layout, models, exclusions, libraries", flush=True)

        step = "cli --help"
        runs = [run([cli, "--help"], env, work)[1] for _ in range(3)]
        timings["agelapse-cli --help (first run)"] = runs[0]
        timings["agelapse-cli --help (best of next 2)"] = min(runs[1:])
        if not IS_WIN:
            link = tmp / "bin" / rules.CLI_NAME
            link.parent.mkdir()
            link.symlink_to(cli)
            out, _ = run([link, "--help"], env, work)
            check("agelapse-cli" in out.stdout, "--help through a symlink printed no usage")
        print(f"ok   agelapse-cli --help ({runs[0]:.2f} s first, {min(runs[1:]):.2f} s warm)", flush=True)

        step = "photo"
        album = tmp / "album"
        photo = make_photo(album, args.photo)

        if sys.platform.startswith("linux") and shutil.which("xvfb-run"):
            step = "gui on X11 (xvfb-run)"
            xhome = tmp / "home-xcb"  # a user of its own: the normal start below finds a fresh catalog
            timings["agelapse FOLDER on Xvfb (xcb plugin) until scanned + thumbnail"] = gui_normal_start(
                bundle, album, dict(scrubbed_env(xhome), QT_QPA_PLATFORM="xcb"), work, xhome, args.timeout,
                prefix=["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24"])
            print("ok   agelapse on Xvfb with the xcb platform plugin", flush=True)
        else:
            notes.append("xvfb-run not found: the X11 (xcb) platform plugin was not exercised")

        step = "gui normal start"
        timings["agelapse FOLDER until scanned + thumbnail"] = gui_normal_start(
            bundle, album, env, work, home, args.timeout)
        folders = user_folders(home)
        print(f"ok   agelapse {album.name}/: catalog in {folders['data']}, thumbnails in {folders['cache']} "
              f"({timings['agelapse FOLDER until scanned + thumbnail']:.1f} s)", flush=True)

        step = "cli age"
        out_dir = work / "aged"
        outputs = {}
        for group in ("20-29", "60-69"):
            proc, timings[f"agelapse-cli age --group {group}"] = run(
                [cli, "age", photo, "--group", group, "--out", out_dir], env, work)
            lines = [line.split("\t") for line in proc.stdout.splitlines() if line.strip()]
            check(len(lines) == 1 and lines[0][0] == group, f"age --group {group} printed {proc.stdout!r}")
            path = Path(lines[0][1])
            path = path if path.is_absolute() else work / path
            check(path.is_file() and path.parent == out_dir, f"age --group {group}: {path} was not written in {out_dir}")
            outputs[group] = path
        detail = check_aged(photo, outputs)
        print(f"ok   agelapse-cli age --group 20-29 / 60-69: {detail}", flush=True)

        step = "cli estimate"
        proc, timings["agelapse-cli estimate"] = run([cli, "estimate", photo], env, work)
        estimated = re.match(r"0\t(\d+(?:\.\d+)?)\t", proc.stdout)
        check(estimated, f"estimate printed {proc.stdout!r}")
        step = "cli export --mp4"
        mp4 = work / "timeline.mp4"
        proc, timings["agelapse-cli export --mp4 (bundled ffmpeg)"] = run(
            [cli, "export", photo, "--mp4", "--out", mp4], env, work)
        check(mp4.is_file() and mp4.read_bytes()[4:8] == b"ftyp", f"{mp4} is not an MP4")
        print(f"ok   agelapse-cli estimate: age {estimated.group(1)}; "
              f"export --mp4 ({mp4.stat().st_size // 1024} KiB)", flush=True)

        step = "bundle unchanged"
        after = tree_state(bundle)
        changed = sorted(set(before.items()) ^ set(after.items()))
        check(not changed, f"the bundle folder changed while it ran: {changed[:10]}")
        leftovers = sorted(str(p.relative_to(work)) for p in work.iterdir()
                           if p.name not in ("aged", "timeline.mp4", "gui.log"))
        check(not leftovers, f"unexpected files in the working directory: {leftovers}")
        print("ok   nothing written inside the bundle or the working directory", flush=True)
    except (Failed, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as exc:
        print(f"FAIL {step}: {exc}", file=sys.stderr)
        print(f"(files kept in {tmp})", file=sys.stderr)
        return 1

    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"\nbundle {bundle}: {size / 2**20:.0f} MiB, {sum(1 for _ in bundle.rglob('*'))} entries")
    for name, seconds in timings.items():
        print(f"  {name:48s} {seconds:6.2f} s")
    for note in notes:
        print(f"note: {note}")
    print(f"smoke test passed in {time.perf_counter() - started:.0f} s")
    if args.keep:
        print(f"(files kept in {tmp})")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
