#!/usr/bin/env python3
"""Build the Agelapse bundle: one command, from a runtime-only environment.

    python packaging/build.py [--models DIR] [--venv DIR] [--dist DIR] [--work DIR] [--smoke] [--offline]

1. makes (once) a virtual environment outside the checkout (default ``../agelapse-pkgvenv``) and
   installs into it the project's runtime dependencies plus PyInstaller: ``pip install ".[package]"``
   (no torch, no test tools: the ``train`` and ``dev`` extras are not installed);
2. runs ``pyinstaller packaging/agelapse.spec`` with that environment's Python, which checks the
   models and writes the one-folder bundle to ``dist/agelapse/`` (``build/pyinstaller/`` holds
   PyInstaller's work files; both are git-ignored);
3. with ``--smoke``, runs ``packaging/smoke_test.py`` on the result with *this* Python (run it from
   the dev venv: the smoke test writes scikit-image's astronaut as its test photo).

Any Python >= 3.11 runs this script; it uses only the standard library. On Windows and macOS the
same command works (see packaging/README.md for what differs).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(cmd: list, **kw) -> None:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="packaging/build.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=None,
                   help="the models folder to ship (default $AGELAPSE_BUNDLE_MODELS, else resources/models)")
    p.add_argument("--venv", type=Path,
                   default=Path(os.environ.get("AGELAPSE_BUILD_VENV") or REPO.parent / "agelapse-pkgvenv"),
                   help="the runtime-only build environment (default $AGELAPSE_BUILD_VENV, else ../agelapse-pkgvenv)")
    p.add_argument("--dist", type=Path, default=REPO / "dist", help="where the bundle goes (default dist/)")
    p.add_argument("--work", type=Path, default=REPO / "build" / "pyinstaller",
                   help="PyInstaller's work folder (default build/pyinstaller/)")
    p.add_argument("--offline", action="store_true",
                   help="do not run pip: use the build environment as it is (it must exist)")
    p.add_argument("--smoke", action="store_true", help="run packaging/smoke_test.py on the bundle afterwards")
    args = p.parse_args(argv)

    venv = args.venv.expanduser().resolve()
    if venv == REPO or REPO in venv.parents:
        p.error(f"--venv {venv} is inside the checkout; keep the build environment outside it")
    started = time.monotonic()
    py = venv_python(venv)

    # 1. the runtime-only environment
    if not py.is_file():
        if args.offline:
            p.error(f"--offline: there is no build environment at {venv}")
        base = getattr(sys, "_base_executable", None) or sys.executable
        run([base, "-m", "venv", venv])
    if not args.offline:
        # The project's own dependencies (pyproject.toml) plus the 'package' extra (PyInstaller).
        run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{REPO}[package]"])
    t_env = time.monotonic() - started

    # 2. the bundle
    spec_args = []
    if args.models is not None:
        spec_args += ["--models", args.models.expanduser().resolve()]
    dist = args.dist.expanduser().resolve()
    t0 = time.monotonic()
    try:
        run([py, "-m", "PyInstaller", HERE / "agelapse.spec", "--noconfirm", "--log-level", "WARN",
             "--distpath", dist, "--workpath", args.work.expanduser().resolve(), "--", *spec_args], cwd=REPO)
    except subprocess.CalledProcessError as exc:
        print(f"\nbuild failed (exit {exc.returncode}); the reason is printed above", file=sys.stderr)
        return 1
    t_build = time.monotonic() - t0
    bundle = dist / "agelapse"
    size = folder_size(bundle)
    print(f"\nbundle: {bundle} ({size / 2**20:.0f} MiB)")
    print(f"time: environment {t_env:.0f} s, PyInstaller {t_build:.0f} s")

    # 3. the smoke test
    if args.smoke:
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, str(HERE / "smoke_test.py"), "--bundle", str(bundle)])
        print(f"time: smoke test {time.monotonic() - t0:.0f} s (exit {rc}); "
              f"all {time.monotonic() - started:.0f} s")
        return rc
    print(f"time: all {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
