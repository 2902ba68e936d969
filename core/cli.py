"""``agelapse-cli`` (also ``python -m core``): the engine without the GUI.

    agelapse-cli scan FOLDER [--accurate] [--catalog DB]
    agelapse-cli age PHOTO (--group 60-69 | --all-groups) --out DIR [--face N] [--strength eyes=0.5 ...]
                           [--format jpg|png] [--quality Q] [--overwrite]
    agelapse-cli estimate PHOTO
    agelapse-cli export PHOTO --out FILE (--strip | --gif | --mp4) [--face N] [--strength ...] [--whole]
                           [--max-side PX] [--fps F] [--steps N] [--overwrite]
    global options (before the command): --models DIR, --providers auto|gpu|cpu, -v / -vv

stdout carries only results, one tab-separated record a line:
    scan      PATH <TAB> FACES                          (one line per readable photo)
    age       LABEL <TAB> OUTPUT-PATH                   (labels as in the model, e.g. "60-69", "70+")
    estimate  FACE <TAB> AGE <TAB> LEFT,TOP,RIGHT,BOTTOM (FACE = the index --face takes, largest first)
    export    OUTPUT-PATH
Messages, errors and the progress bar go to stderr; errors name the file.

Exit codes: 0 ok; 1 partial failure (some photos unreadable or some outputs not written); 2 bad usage
or input (unknown option, missing or unreadable photo); 3 model missing or damaged; 4 no face found
(or no face number N).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from core import __version__
from core.errors import ExportError, FaceError, ModelError, PhotoError
from core.regions import REGION_NAMES

log = logging.getLogger("agelapse.cli")

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_MODEL, EXIT_NO_FACE = 0, 1, 2, 3, 4
PROG = "agelapse-cli"


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
        raise argparse.ArgumentTypeError(f"expected REGION=VALUE with REGION one of {', '.join(STRENGTH_NAMES)}, not {text!r}")
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
                                       "3 model missing or damaged, 4 no face found.")
    p.add_argument("--models", type=Path, metavar="DIR", help="folder with aging.onnx, age.onnx and manifest.json "
                   "(default: $AGELAPSE_MODELS_DIR or the bundled models)")
    p.add_argument("--providers", default="auto", choices=("auto", "gpu", "cpu"), help="where models run (default auto)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log progress (-vv: debug)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def face_options(sp, strengths=True):
        sp.add_argument("--accurate", action="store_true", help="dlib's CNN face detector (slower, finds more)")
        sp.add_argument("--face", type=int, default=0, metavar="N", help="which face, 0 = the largest (default)")
        if strengths:
            sp.add_argument("--strength", type=_strength, action="append", default=[], metavar="REGION=V",
                            help=f"strength 0..1.5 of a region or the hair ({', '.join(REGION_NAMES)}, hair); repeatable")

    sp = sub.add_parser("scan", help="find the faces in every photo of a folder")
    sp.add_argument("folder", type=Path)
    sp.add_argument("--accurate", action="store_true", help="dlib's CNN face detector (slower, finds more)")
    sp.add_argument("--catalog", type=Path, metavar="DB", help="store the faces in this catalog database")

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

    sp = sub.add_parser("estimate", help="estimate the age of each face in a photo")
    sp.add_argument("photo", type=Path)
    sp.add_argument("--accurate", action="store_true", help="dlib's CNN face detector (slower, finds more)")

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
    return p


# -------------------------------------------------------------------------------------- helpers

def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _out(*fields) -> None:
    print("\t".join(str(f) for f in fields), flush=True)


def _load_photo(path: Path):
    from core.photos import load_photo

    try:
        return load_photo(path)
    except PhotoError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from exc


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


def _ascii_label(label: str) -> str:
    return label.replace("\u2013", "-")


# ------------------------------------------------------------------------------------- commands

def cmd_scan(args) -> int:
    from tqdm import tqdm

    from core.catalog import Catalog, CatalogError
    from core.scan import scan_folder

    if not args.folder.is_dir():
        raise CliError(EXIT_USAGE, f"{args.folder}: not a folder")
    try:
        catalog = Catalog(args.catalog) if args.catalog is not None else None
    except CatalogError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from exc
    bar = tqdm(desc="scanning", unit="photo", file=sys.stderr, disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = scan_folder(args.folder, _finder(args.accurate), catalog=catalog, progress=progress)
        bar.close()
        for path, count in report.faces.items():
            _out(path, count)
        errors = list(report.errors)
        for path in report.skipped:  # unchanged since the catalog's last scan: report what it holds
            record = catalog.photo(path)
            if record is not None and record.error:
                errors.append((path, f"{record.error} (unchanged since the last scan)"))
            else:
                _out(path, record.face_count if record is not None else len(catalog.faces(path)))
    finally:
        bar.close()
        if catalog is not None:
            catalog.close()
    for path, message in errors:
        _err(f"{path}: {message}")
    print(report.summary(), file=sys.stderr)
    return EXIT_PARTIAL if errors else EXIT_OK


def cmd_age(args) -> int:
    from core.export import save_image

    photo = _load_photo(args.photo)
    pipeline = _aging_pipeline(args)
    try:
        groups = None if args.all_groups else [pipeline.aging.group_index(g) for g in args.group]
    except ValueError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from exc
    face = _one_face(photo, args)
    if not args.out.is_dir():
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(EXIT_USAGE, f"{args.out}: cannot create the folder ({exc.strerror})") from exc
    images = pipeline.age_face(photo.rgb, face, dict(args.strength), groups=groups)
    stem = args.photo.stem + (f"_face{args.face}" if args.face else "")
    failed = 0
    for label, rgb in images.items():
        target = args.out / f"{stem}_{_ascii_label(label)}.{args.format}"
        try:
            save_image(rgb, target, quality=args.quality, exif=photo.exif, overwrite=args.overwrite)
        except ExportError as exc:
            failed += 1
            _err(str(exc))
            continue
        _out(_ascii_label(label), target)
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_estimate(args) -> int:
    from core.models import AgeModel
    from core.pipeline import estimate_age

    photo = _load_photo(args.photo)
    try:
        model = AgeModel.load(_models_dir(args), providers=args.providers)
    except ModelError as exc:
        raise CliError(EXIT_MODEL, str(exc)) from exc
    for i, face in enumerate(_faces(photo, args.accurate)):
        box = ",".join(str(int(round(float(v)))) for v in face.box)
        _out(i, f"{estimate_age(model, photo.rgb, face):.1f}", box)
    return EXIT_OK


def _frame(rgb: np.ndarray, rect, max_side: int) -> np.ndarray:
    import cv2

    x0, y0, x1, y1 = rect
    crop = rgb[y0:y1, x0:x1]
    scale = max_side / max(crop.shape[:2])
    if scale < 1:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop)


def cmd_export(args) -> int:
    from core.align import source_rect
    from core.export import make_strip, save_gif, save_image, save_mp4

    suffix = args.out.suffix.lower()
    wanted = (".jpg", ".jpeg", ".png", ".webp") if args.strip else (".gif",) if args.gif else (".mp4",)
    if suffix not in wanted:
        raise CliError(EXIT_USAGE, f"{args.out}: the file name must end in {' or '.join(wanted)}")
    if args.out.exists() and not args.overwrite:
        raise CliError(EXIT_PARTIAL, f"{args.out}: exists (use --overwrite)")
    photo = _load_photo(args.photo)
    pipeline = _aging_pipeline(args)
    face = _one_face(photo, args)
    prepared = pipeline.prepare(photo.rgb, face, dict(args.strength))
    results = pipeline.age_all_groups(prepared)
    h, w = photo.rgb.shape[:2]
    rect = (0, 0, w, h) if args.whole else source_rect(prepared.matrix, prepared.size, (h, w))
    labels = [_ascii_label(label) for label in results.labels]
    try:
        if args.strip:
            cells = [_frame(pipeline.render(photo.rgb, prepared, out), rect, args.max_side) for out in results.aged]
            save_image(make_strip(cells, labels), args.out, quality=args.quality, exif=photo.exif,
                       overwrite=args.overwrite)
        else:
            k = len(results)
            positions = np.linspace(0, k - 1, (k - 1) * args.steps + 1)
            frames = [_frame(pipeline.render_position(photo.rgb, prepared, results, p), rect, args.max_side)
                      for p in positions]
            frames = _labelled(frames, [labels[int(round(p))] for p in positions])
            (save_gif if args.gif else save_mp4)(frames, args.out, fps=args.fps, overwrite=args.overwrite)
    except ExportError as exc:
        raise CliError(EXIT_PARTIAL, str(exc)) from exc
    _out(args.out)
    return EXIT_OK


def _labelled(frames: list[np.ndarray], labels: list[str]) -> list[np.ndarray]:
    """Each frame with its group label underneath, all frames the same size."""
    from core.export import make_strip

    out = [make_strip([f], [label]) for f, label in zip(frames, labels)]
    h = max(f.shape[0] for f in out)
    w = max(f.shape[1] for f in out)
    return [f if f.shape[:2] == (h, w) else np.pad(f, ((0, h - f.shape[0]), (0, w - f.shape[1]), (0, 0)),
                                                    constant_values=255) for f in out]


COMMANDS = {"scan": cmd_scan, "age": cmd_age, "estimate": cmd_estimate, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # bad usage (2) or --help (0): argparse has printed why
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        logging.getLogger("core.scan").setLevel(logging.ERROR)  # its warnings repeat the errors listed
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        _err(str(exc))
        return exc.code
    except ModelError as exc:  # e.g. inference failed inside onnxruntime
        _err(str(exc))
        return EXIT_MODEL
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
