"""``agelapse-cli`` (also ``python -m core``): the engine without the GUI.

    agelapse-cli scan FOLDER [--accurate] [--catalog DB] [--json]
    agelapse-cli age PHOTO (--group 60-69 | --all-groups) --out DIR [--face N] [--strength eyes=0.5 hair=0 ...]
                           [--format jpg|png] [--quality Q] [--overwrite] [--json]
    agelapse-cli estimate PHOTO [--json]
    agelapse-cli export PHOTO --out FILE (--strip | --gif | --mp4) [--face N] [--strength ...] [--whole]
                           [--max-side PX] [--fps F] [--steps N] [--overwrite] [--json]
    global options (before the command): --models DIR, --providers auto|gpu|cpu, -v / -vv, --debug

stdout carries only results, one tab-separated record a line:
    scan      PATH <TAB> FACES                          (one line per readable photo)
    age       LABEL <TAB> OUTPUT-PATH                   (labels as in the model, e.g. "60-69", "70+")
    estimate  FACE <TAB> AGE <TAB> LEFT,TOP,RIGHT,BOTTOM (FACE = the index --face takes, largest first)
    export    OUTPUT-PATH
In these text records (and in every message) control characters of file names are escaped (a newline
reads ``\n``, a tab ``\t``, escape ``\x1b``) and bytes of a name that are not UTF-8 read U+FFFD, so a
record is always one line. ``--json`` writes JSON Lines instead, one object per photo (scan), face
(estimate) or written file (age, export), always ASCII; a ``path`` (or ``output``) whose name is not valid
UTF-8 also comes as ``path_bytes`` (``output_bytes``): its exact bytes, base64. A scan's photos that
could not be read are objects with an ``error``.

Messages, errors and progress go to stderr; errors name the file, in one line (tracebacks only with
``--debug``). On a terminal progress is a bar; when stderr is not a terminal (a log file), a plain line
every few seconds: count, rate, time left.

Exit codes: 0 ok; 1 partial failure (some photos unreadable or some outputs not written); 2 bad usage
or input (unknown option, missing, unreadable or unusable photo); 3 model missing or damaged; 4 no face
found (or no face number N); 5 an unexpected error (a bug: ``--debug`` shows where).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path


from core import __version__
from core.errors import AgelapseError, ExportError, FaceError, ModelError, PhotoError, describe
from core.text import ascii_text, display, is_text, name_bytes, printable

log = logging.getLogger("agelapse.cli")

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_MODEL, EXIT_NO_FACE, EXIT_BUG = 0, 1, 2, 3, 4, 5
PROG = "agelapse-cli"
PROGRESS_EVERY = 5.0  # seconds between two progress lines when stderr is not a terminal


class CliError(Exception):
    """Ends the command with a message on stderr and an exit code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------- parser

def _strength(text: str) -> tuple[str, float]:
    from core.pipeline import MAX_STRENGTH, STRENGTH_NAMES

    name, sep, value = text.partition("=")
    name = name.strip().lower()
    if not sep or name not in STRENGTH_NAMES:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with NAME one of {', '.join(STRENGTH_NAMES)}, not {text!r}")
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"strength {value!r} is not a number") from None
    if not 0.0 <= v <= MAX_STRENGTH:
        raise argparse.ArgumentTypeError(f"strength of {name} must be within 0 .. {MAX_STRENGTH}, not {v}")
    return name, v


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
        return v
    return parse


def _quality(text: str) -> int:
    try:
        q = int(text)
    except ValueError:
        q = 0
    if not 1 <= q <= 100:
        raise argparse.ArgumentTypeError(f"quality must be an integer 1..100, not {text!r}")
    return q


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Age the faces in your photos, without the GUI.",
                                epilog="Exit codes: 0 ok, 1 partial failure, 2 bad usage or input, "
                                       "3 model missing or damaged, 4 no face found, 5 unexpected error.")
    p.add_argument("--models", type=Path, metavar="DIR", help="folder with aging.onnx, age.onnx and manifest.json "
                   "(default: $AGELAPSE_MODELS_DIR or the bundled models)")
    p.add_argument("--providers", default="auto", choices=("auto", "gpu", "cpu"), help="where models run (default auto)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log progress (-vv: debug)")
    p.add_argument("--debug", action="store_true", help="show tracebacks (of unexpected errors, and in the log)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def json_option(sp):
        sp.add_argument("--json", action="store_true", help="JSON Lines on stdout, one object per record")

    def face_options(sp, strengths=True):
        sp.add_argument("--accurate", action="store_true", help="dlib's CNN face detector (slower, finds more)")
        sp.add_argument("--face", type=int, default=0, metavar="N", help="which face, 0 = the largest (default)")
        if strengths:
            sp.add_argument("--strength", type=_strength, action="append", default=[], metavar="NAME=V",
                            help="strength 0..1.5 (default 1) of a region (forehead, eyes, nose, mouth, cheeks) or "
                                 "of the hair, beard and brows (hair; 0 leaves them alone); repeatable")

    sp = sub.add_parser("scan", help="find the faces in every photo of a folder")
    sp.add_argument("folder", type=Path)
    sp.add_argument("--accurate", action="store_true", help="dlib's CNN face detector (slower, finds more)")
    sp.add_argument("--workers", type=int, default=None, metavar="N",
                    help="processes searching photos at once (default: one per core)")
    sp.add_argument("--catalog", type=Path, metavar="DB", help="store the faces in this catalog database")
    json_option(sp)

    sp = sub.add_parser("age", help="age one face of a photo, one file per age group")
    sp.add_argument("photo", type=Path)
    which = sp.add_mutually_exclusive_group(required=True)
    which.add_argument("--group", action="append", metavar="G", help='an age group: "60-69", "70+" or an age; repeatable')
    which.add_argument("--all-groups", action="store_true")
    sp.add_argument("--out", type=Path, required=True, metavar="DIR")
    face_options(sp)
    sp.add_argument("--format", choices=("jpg", "png"), default="jpg")
    sp.add_argument("--quality", type=_quality, default=92, metavar="Q", help="JPEG quality 1..100")
    sp.add_argument("--overwrite", action="store_true")
    json_option(sp)

    sp = sub.add_parser("estimate", help="estimate the age of each face in a photo")
    sp.add_argument("photo", type=Path)
    sp.add_argument("--accurate", action="store_true", help="dlib's CNN face detector (slower, finds more)")
    json_option(sp)

    sp = sub.add_parser("export", help="all age groups as a strip image or a timeline animation")
    sp.add_argument("photo", type=Path)
    sp.add_argument("--out", type=Path, required=True, metavar="FILE")
    kind = sp.add_mutually_exclusive_group(required=True)
    kind.add_argument("--strip", action="store_true", help="one image, the age groups side by side (.jpg/.png)")
    kind.add_argument("--gif", action="store_true", help="animated GIF along the timeline")
    kind.add_argument("--mp4", action="store_true", help="H.264 video along the timeline")
    face_options(sp)
    sp.add_argument("--whole", action="store_true", help="the whole photo, not the area around the face")
    sp.add_argument("--max-side", type=_positive(int), default=640, metavar="PX", help="long side of each picture (default 640)")
    sp.add_argument("--fps", type=_positive(float), default=12.0, help="animation frames per second (default 12)")
    sp.add_argument("--steps", type=_positive(int), default=6, metavar="N", help="animation frames from one group to the next (default 6)")
    sp.add_argument("--quality", type=_quality, default=92, metavar="Q", help="JPEG quality of a strip")
    sp.add_argument("--overwrite", action="store_true")
    json_option(sp)
    return p


# -------------------------------------------------------------------------------------- helpers

def _err(message: str) -> None:
    print(f"{PROG}: {printable(message)}", file=sys.stderr, flush=True)


def _out(*fields) -> None:
    """One text record: tab-separated fields, control characters escaped (always one line)."""
    print("\t".join(printable(str(f)) for f in fields), flush=True)


def _path_fields(key: str, path) -> dict:
    """{key: the path as text} and, when the name is not valid UTF-8, {key_bytes: its exact bytes, base64}."""
    fields = {key: display(path)}
    if not is_text(path):
        fields[f"{key}_bytes"] = base64.b64encode(name_bytes(path)).decode("ascii")
    return fields


def _json(record: dict) -> None:
    print(json.dumps(record, ensure_ascii=True, allow_nan=False), flush=True)


@contextlib.contextmanager
def _about(path: Path, debug: bool):
    """Turns an unexpected failure while working on one photo into one line naming it (exit 2)."""
    try:
        yield
    except (CliError, AgelapseError, KeyboardInterrupt):
        raise
    except Exception as exc:  # cv2.error, RuntimeError from dlib, MemoryError, ...
        if debug:
            raise
        log.debug("while working on %s", path, exc_info=True)
        raise CliError(EXIT_USAGE, f"{path}: cannot process this photo ({describe(exc)})") from exc


def _writable(folder: Path) -> None:
    from core.export import check_writable

    try:
        check_writable(folder)
    except ExportError as exc:
        raise CliError(EXIT_PARTIAL, str(exc)) from exc


def _load_photo(path: Path):
    from core.photos import load_photo

    try:
        return load_photo(path)
    except PhotoError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from exc


class Progress:
    """Progress on stderr: tqdm's bar on a terminal; otherwise (stderr redirected to a file or a pipe) a
    plain line at most every ``every`` seconds: "scanning: 120/800 photos (15 %), 2.3 photos/s, about
    4 min 55 s left". ``clock`` is injectable for tests."""

    def __init__(self, desc: str, unit: str, *, stream=None, every: float | None = None, tty: bool | None = None,
                 clock=time.monotonic):
        self.desc, self.unit = desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.every = PROGRESS_EVERY if every is None else every
        self.clock = clock
        self.start = clock()
        self.last = self.start
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.bar = None
        if tty:
            from tqdm import tqdm

            self.bar = tqdm(desc=desc, unit=unit, file=self.stream)

    def update(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            return
        now = self.clock()
        if now - self.last < self.every or done >= total:
            return
        self.last = now
        elapsed = now - self.start
        line = f"{self.desc}: {done}/{total} {self.unit}s ({100 * done // max(total, 1)} %)"
        if done and elapsed > 0:
            rate = done / elapsed
            line += f", {rate:.2f} {self.unit}s/s, about {_duration((total - done) / rate)} left"
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _finder(accurate: bool):
    from core.faces import FaceFinder

    return FaceFinder("accurate" if accurate else "fast")


def _faces(photo, accurate: bool) -> list:
    try:
        faces = _finder(accurate).detect(photo.rgb)
    except (FaceError, ModelError) as exc:
        raise CliError(EXIT_NO_FACE if isinstance(exc, FaceError) else EXIT_MODEL, f"{photo.path}: {exc}") from exc
    if not faces:
        raise CliError(EXIT_NO_FACE, f"{photo.path}: no face found")
    return faces


def _one_face(photo, args):
    faces = _faces(photo, args.accurate)
    if not 0 <= args.face < len(faces):
        raise CliError(EXIT_NO_FACE, f"{photo.path}: no face {args.face} (found {len(faces)}, numbered from 0)")
    return faces[args.face]


def _models_dir(args) -> Path:
    from core.models import models_dir

    return args.models if args.models is not None else models_dir()


def _aging_pipeline(args):
    from core.models import AgingModel
    from core.pipeline import AgingPipeline

    try:
        return AgingPipeline(AgingModel.load(_models_dir(args), providers=args.providers))
    except ModelError as exc:
        raise CliError(EXIT_MODEL, str(exc)) from exc


# ------------------------------------------------------------------------------------- commands

def cmd_scan(args) -> int:
    from core.catalog import Catalog, CatalogError
    from core.scan import scan_folder

    if not args.folder.is_dir():
        raise CliError(EXIT_USAGE, f"{args.folder}: not a folder")
    try:
        catalog = Catalog(args.catalog) if args.catalog is not None else None
    except CatalogError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from exc
    bar = Progress("scanning", "photo")
    records: list[tuple[Path, dict]] = []  # (path, what happened), printed in path order
    try:
        report = scan_folder(args.folder, _finder(args.accurate), catalog=catalog, progress=bar.update,
                             workers=args.workers)
        bar.close()
        records += [(path, {"faces": count}) for path, count in report.faces.items()]
        records += [(path, {"error": message}) for path, message in report.errors]
        for path in report.skipped:  # unchanged since the catalog's last scan: report what it holds
            record = catalog.photo(path)
            if record is not None and record.error:
                records.append((path, {"error": f"{record.error} (unchanged since the last scan)", "unchanged": True}))
            else:
                count = record.face_count if record is not None else len(catalog.faces(path))
                records.append((path, {"faces": count, "unchanged": True}))
    finally:
        bar.close()
        if catalog is not None:
            catalog.close()
    records.sort(key=lambda r: os.fspath(r[0]))
    for path, what in records:
        if args.json:
            _json({**_path_fields("path", path), **what})
        elif "faces" in what:
            _out(path, what["faces"])
    errors = [(path, what["error"]) for path, what in records if "error" in what]
    for path, message in errors:
        _err(f"{path}: {message}")
    print(printable(report.summary()), file=sys.stderr)
    return EXIT_PARTIAL if errors else EXIT_OK


def _export(args, pipeline, source, options, targets):
    """Runs the engine's export job (``core.export_jobs``) for one photo, with progress on stderr; a failure
    of the whole photo ends the command as it would have without the job (model: 3, face: 4, ...)."""
    from core.export_jobs import run_export

    bar = Progress("exporting", "file")
    try:
        with _about(args.photo, args.debug):
            report = run_export([source], options, pipeline, targets, overwrite=args.overwrite, progress=bar.update)
            if report.failures:
                raise report.failures[0]
    except FaceError as exc:
        raise CliError(EXIT_NO_FACE, str(exc)) from exc
    finally:
        bar.close()
    return report


def cmd_age(args) -> int:
    from core.export_jobs import ExportOptions, ExportSource, plan

    photo = _load_photo(args.photo)
    pipeline = _aging_pipeline(args)
    try:
        groups = (list(range(pipeline.aging.num_groups)) if args.all_groups
                  else [pipeline.aging.group_index(g) for g in args.group])
    except ValueError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from exc
    with _about(args.photo, args.debug):
        face = _one_face(photo, args)
    if not args.out.is_dir():
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(EXIT_USAGE, f"{args.out}: cannot create the folder ({exc.strerror})") from exc
    _writable(args.out)
    source = ExportSource(args.photo, face, dict(args.strength), face_index=args.face, photo=photo)
    options = ExportOptions(args.out, "groups", fmt=args.format, quality=args.quality, groups=groups)
    targets = plan([source], options, pipeline.labels)
    report = _export(args, pipeline, source, options, targets)
    errors = dict(report.errors)
    for g, target in zip(groups, targets[0]):
        label = ascii_text(pipeline.labels[g])
        record = {**_path_fields("path", args.photo), "face": args.face, "group": label}
        if str(target) in errors:
            _err(errors[str(target)])
            if args.json:
                _json({**record, "error": display(errors[str(target)])})
        elif args.json:
            _json({**record, **_path_fields("output", target)})
        else:
            _out(label, target)
    return EXIT_PARTIAL if errors else EXIT_OK


def cmd_estimate(args) -> int:
    from core.models import AgeModel
    from core.pipeline import estimate_age

    photo = _load_photo(args.photo)
    try:
        model = AgeModel.load(_models_dir(args), providers=args.providers)
    except ModelError as exc:
        raise CliError(EXIT_MODEL, str(exc)) from exc
    with _about(args.photo, args.debug):
        faces = _faces(photo, args.accurate)
        ages = [estimate_age(model, photo.rgb, face) for face in faces]
    for i, (face, age) in enumerate(zip(faces, ages)):
        box = [int(round(float(v))) for v in face.box]
        if args.json:
            _json({**_path_fields("path", args.photo), "face": i, "age": round(age, 1), "box": box})
        else:
            _out(i, f"{age:.1f}", ",".join(map(str, box)))
    return EXIT_OK


def cmd_export(args) -> int:
    from core.export_jobs import ExportOptions, ExportSource

    suffix = args.out.suffix.lower()
    wanted = (".jpg", ".jpeg", ".png", ".webp") if args.strip else (".gif",) if args.gif else (".mp4",)
    if suffix not in wanted:
        raise CliError(EXIT_USAGE, f"{args.out}: the file name must end in {' or '.join(wanted)}")
    if args.out.exists() and not args.overwrite:
        raise CliError(EXIT_PARTIAL, f"{args.out}: exists (use --overwrite)")
    if not args.out.parent.is_dir():
        raise CliError(EXIT_USAGE, f"{args.out}: folder {args.out.parent} does not exist")
    _writable(args.out.parent)
    photo = _load_photo(args.photo)
    pipeline = _aging_pipeline(args)
    with _about(args.photo, args.debug):
        face = _one_face(photo, args)
    source = ExportSource(args.photo, face, dict(args.strength), face_index=args.face, photo=photo)
    options = ExportOptions(args.out.parent, "strip" if args.strip else "gif" if args.gif else "mp4",
                            area="photo" if args.whole else "face", quality=args.quality, max_side=args.max_side,
                            fps=args.fps, steps=args.steps)
    report = _export(args, pipeline, source, options, [[args.out]])
    if report.errors:
        raise CliError(EXIT_PARTIAL, report.errors[0][1])
    if args.json:
        _json({**_path_fields("path", args.photo), "face": args.face, **_path_fields("output", args.out)})
    else:
        _out(args.out)
    return EXIT_OK


class _LogFormatter(logging.Formatter):
    """One line a record, control characters escaped; tracebacks only with --debug."""

    def __init__(self, debug: bool):
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.debug = debug

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        if self.debug:
            return super().format(record)
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


@contextlib.contextmanager
def _logging(args):
    """Log records to stderr through _LogFormatter while the command runs; then logging as it was (main may
    run more than once in a process: tests, scripts)."""
    quiet = not args.verbose and not args.debug
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter(args.debug))
    levels = {"": logging.WARNING if quiet else logging.INFO if not args.debug and args.verbose < 2 else logging.DEBUG,
              "py.warnings": logging.ERROR if quiet else logging.NOTSET,
              "core.scan": logging.ERROR if quiet else logging.NOTSET}  # its warnings repeat the errors listed
    saved = {name: logging.getLogger(name or None).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    root.addHandler(handler)
    logging.captureWarnings(True)  # a library's warning is a log record, not raw text on stderr
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name or None).setLevel(level)


def _safe_streams() -> None:
    """stdout/stderr never fail on a character their encoding lacks (a latin-1 terminal, say)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            if stream.errors == "strict":
                stream.reconfigure(errors="backslashreplace")


COMMANDS = {"scan": cmd_scan, "age": cmd_age, "estimate": cmd_estimate, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    _safe_streams()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # bad usage (2) or --help (0): argparse has printed why
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    with _logging(args):
        return _run(args)


def _run(args) -> int:
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        _err(str(exc))
        return exc.code
    except ModelError as exc:  # e.g. inference failed inside onnxruntime
        _err(str(exc))
        return EXIT_MODEL
    except AgelapseError as exc:
        _err(str(exc))
        return EXIT_PARTIAL
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        _err(f"unexpected error: {describe(exc)} (run again with --debug for the details, and please report it)")
        return EXIT_BUG
