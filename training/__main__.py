"""python -m training {preprocess, age, judge, aging, aging2, baseline, prototype, strengths, export, evaluate, ceiling, showcase} — see README.md."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


def _common(p: argparse.ArgumentParser):
    p.add_argument("--data", help="dataset folder (UTKFace, FG-NET, CACD, MORPH names) or a CSV (path, age[, identity])")
    p.add_argument("--format", default=None, help="utkface | fgnet | cacd | morph | csv (default: detect)")
    p.add_argument("--cache", default=None, help="preprocessed cache folder (default: beside --out)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--config", default=None, help="JSON file of config values")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config value")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")


def _cache_for(args, cfg) -> Path:
    from .data import DatasetError, load_dataset
    from .preprocess import preprocess

    data = cfg.data or args.data
    if not (args.cache or cfg.cache or data):
        raise DatasetError("pass --data (a dataset) or --cache (a preprocessed cache)")
    cache = Path(args.cache or cfg.cache or Path(args.out).resolve().parent / f"cache_{Path(data).name}_{cfg.size}")
    if (cache / "meta.json").is_file() and not data:
        return cache
    if not data:
        raise DatasetError(f"--data is required (no preprocessed cache at {cache})")
    samples, problems = load_dataset(Path(data), cfg.format or args.format)
    for line in problems[:20]:
        logging.warning("skipped %s", line)
    if problems:
        logging.warning("%d files skipped for malformed names", len(problems))
    chip = 200.0 if (cfg.format or args.format or "") == "utkface" or _looks_utk(samples) else None
    return preprocess(samples, cache, size=cfg.size, workers=max(1, cfg.workers), chip_frame=chip)


def _looks_utk(samples) -> bool:
    return bool(samples) and str(samples[0].path).endswith(".chip.jpg")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description="Train and export Agelapse's models.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, text in (("age", "train the age model"), ("aging", "train the aging model"),
                       ("judge", "train the independent age judge (evaluation only, training/judges)")):
        _common(sub.add_parser(name, help=text))
    p = sub.add_parser("aging2", help="train the learned aging network from the prototype teacher (training/gan)")
    _common(p)
    p.add_argument("--from", dest="start_from", default=None,
                   help="resume point to start from when --out holds no checkpoint (default: training/gan/resume/aging_net.pt)")
    p = sub.add_parser("reteach", help="give a stopped aging2 run a newer prototype run's settings and wrinkle map as its teacher")
    p.add_argument("--run", required=True, help="the aging2 run folder (stopped)")
    p.add_argument("--teacher", required=True, help="the prototype run folder whose settings and wrinkle map it takes")
    p = sub.add_parser("preprocess", help="landmark, align and cache a dataset")
    p.add_argument("--data", required=True)
    p.add_argument("--format", default=None)
    p.add_argument("--out", required=True, help="cache folder")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p = sub.add_parser("baseline", help="build the training-free mean-face aging baseline")
    p.add_argument("--cache", required=True, help="preprocessed cache")
    p.add_argument("--age-model", required=True, help="age-model run folder or exported age.onnx")
    p.add_argument("--out", required=True, help="run folder for the baseline")
    p = sub.add_parser("prototype", help="learn the prototype aging model (shape, colour and texture per age group)")
    p.add_argument("--cache", required=True, help="preprocessed cache")
    p.add_argument("--age-model", required=True, help="age-model run folder or exported age.onnx")
    p.add_argument("--out", required=True, help="run folder for the model")
    p.add_argument("--gains", default=None, help="colour,detail,shape multipliers (default: training/prototype.py SETTINGS)")
    p = sub.add_parser("strengths", help="learn how strongly the prototype model ages each face (training/strengths.py)")
    p.add_argument("--teacher", required=True, help="the prototype run folder")
    p.add_argument("--cache", required=True, help="preprocessed cache")
    p.add_argument("--out", required=True, help="run folder: the prototype model with the controller in it")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting (StrengthConfig)")
    p = sub.add_parser("showcase", help="pictures of a shipped model for docs/")
    p.add_argument("--models", required=True, help="models folder (aging.onnx, age.onnx, manifest.json)")
    p.add_argument("--cache", required=True, help="preprocessed cache (its test split)")
    p.add_argument("--photos", nargs="*", default=[], help="real photos to age in place (NAME=PATH: album_NAME.jpg)")
    p.add_argument("--out", required=True, help="output folder, e.g. docs/")
    p.add_argument("--compare", metavar="NAME=FOLDER", help="instead: --models and this models folder side by side "
                   "(compare_test.jpg, compare_<photo>.jpg), e.g. network=runs/aging2/onnx")
    p = sub.add_parser("export", help="export a run to ONNX")
    p.add_argument("run", help="run folder (age, judge or aging)")
    p.add_argument("--out", required=True, help="models folder, e.g. resources/models")
    p.add_argument("--metrics", default=None, help="evaluation JSON to embed")
    p.add_argument("--weights", default="ema", choices=("ema", "model"), help="moving-average (default) or last weights")
    p = sub.add_parser("evaluate", help="the evaluation protocol on the held-out test split")
    p.add_argument("target", help="run folder or .onnx model")
    p.add_argument("--cache", required=True, help="preprocessed cache of the dataset")
    p.add_argument("--age-model", default=None, help="age.onnx used to judge an aging model")
    p.add_argument("--limit", type=int, default=0, help="use at most this many test faces (0: all)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--split", default="test", choices=("test", "val"),
                   help="test (the reported figures, default) or val (for choosing settings)")
    p.add_argument("--judge", default=None,
                   help="independent age judge (.onnx; default: training/judges/age_judge.onnx if present; 'none' to skip)")
    p.add_argument("--identity", default="torch", choices=("torch", "dlib"),
                   help="dlib's face descriptor through its PyTorch port (batched, default) or dlib itself")
    p.add_argument("--gallery", default=None, help="folder for the worst-16 pictures per slice (default: beside --json)")
    p = sub.add_parser("ceiling", help="how far the age judge moves when only the face's interior changes "
                                       "(real older and younger faces' interiors pasted onto other heads)")
    p.add_argument("--cache", required=True, help="preprocessed cache of the dataset")
    p.add_argument("--split", default="val", choices=("test", "val"))
    p.add_argument("--faces", type=int, default=80, help="source faces (aged 20-49)")
    p.add_argument("--judge", default=None, help="age judge (.onnx; default: training/judges/age_judge.onnx)")
    p.add_argument("--model", default=None, help="an aging.onnx whose outputs for the same faces are judged too")
    p.add_argument("--parts", action="store_true",
                   help="instead: each part of a real 70+ interior alone (detail bands, broad shading, shape), judged and verified")
    p.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from .data import DatasetError

    try:
        if args.cmd == "preprocess":
            from .data import load_dataset
            from .preprocess import preprocess

            samples, problems = load_dataset(Path(args.data), args.format)
            for line in problems:
                logging.warning("skipped %s", line)
            chip = 200.0 if _looks_utk(samples) else None
            preprocess(samples, Path(args.out), size=args.size, workers=args.workers, chip_frame=chip)
            return 0
        if args.cmd in ("age", "aging", "judge", "aging2"):
            from . import config
            from .gan.config import Aging2Config

            cls = {"age": config.AgeConfig, "aging": config.AgingConfig, "judge": config.JudgeConfig,
                   "aging2": Aging2Config}[args.cmd]
            saved_path = Path(args.out) / "config.json"
            if args.resume and saved_path.is_file():
                # a resumed run keeps its own config; --set may still change a value (e.g. steps)
                saved = json.loads(saved_path.read_text())
                cfg = config.resolve(cls, args.config, args.set, **saved)
                if args.set:
                    saved_path.write_text(json.dumps(config.to_dict(cfg), indent=2))
            else:
                cfg = config.resolve(cls, args.config, args.set, data=args.data, format=args.format)
            if args.show_config:
                print(json.dumps(config.to_dict(cfg), indent=2))
                return 0
            cache = _cache_for(args, cfg)
            if args.cmd == "age":
                from .train_age import train
            elif args.cmd == "judge":
                from .judges.train import train
            elif args.cmd == "aging2":
                from .gan.loop import RESUME_POINT, train as train2

                keep = [kv.split("=", 1)[0].strip() for kv in args.set]
                train2(cfg, cache, Path(args.out), resume=args.resume, start_from=Path(args.start_from or RESUME_POINT),
                       keep=keep)
                return 0
            else:
                from .train_aging import train
            train(cfg, cache, Path(args.out), resume=args.resume)
            return 0
        if args.cmd == "reteach":
            from .gan.loop import reteach_run

            changed = reteach_run(Path(args.run), Path(args.teacher))
            for name, (old, new) in changed.items():
                print(f"{name}: {old} -> {new}")
            print(f"{args.run}: {len(changed)} teacher settings changed" if changed else f"{args.run}: the teacher was already this one")
            return 0
        if args.cmd == "baseline":
            from .baseline import build
            from .config import DECADES

            build(Path(args.cache), Path(args.age_model), Path(args.out), DECADES)
            return 0
        if args.cmd == "prototype":
            from .config import DECADES
            from .prototype import build as build_prototype

            extra = {"gains": tuple(float(v) for v in args.gains.split(","))} if args.gains else {}
            build_prototype(Path(args.cache), Path(args.age_model), Path(args.out), DECADES, **extra)
            return 0
        if args.cmd == "strengths":
            from .config import resolve
            from .strengths import StrengthConfig, train as train_strengths

            print(train_strengths(Path(args.teacher), Path(args.cache), Path(args.out), resolve(StrengthConfig, None, args.set)))
            return 0
        if args.cmd == "showcase":
            from .showcase import write_compare, write_showcase

            if args.compare:
                name, sep, folder = args.compare.partition("=")
                models = {"shipped": Path(args.models), (name if sep else "other"): Path(folder if sep else name)}
                paths = write_compare(models, Path(args.cache), list(args.photos), Path(args.out))
            else:
                paths = write_showcase(Path(args.models), Path(args.cache), list(args.photos), Path(args.out))
            for path in paths:
                print(path)
            return 0
        if args.cmd == "export":
            from .export import export_run

            metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else None
            path = export_run(Path(args.run), Path(args.out), metrics=metrics, weights=args.weights)
            print(path)
            return 0
        if args.cmd == "ceiling":
            from core.models import AgeModel, AgingModel
            from . import ceiling
            from .judges import judge_path
            from .preprocess import FaceCache

            judge = AgeModel.load(Path(args.judge) if args.judge else judge_path(), verify=False)
            aging = AgingModel.load(Path(args.model), verify=False) if args.model else None
            if args.parts:
                from .evaluate import identity_model

                result = ceiling.parts(FaceCache(Path(args.cache)), judge, identity_model(), split=args.split, faces=args.faces,
                                       aging=aging)
                print(ceiling.format_parts(result))
            else:
                result = ceiling.run(FaceCache(Path(args.cache)), judge, split=args.split, faces=args.faces, aging=aging)
                print(ceiling.format_table(result))
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=2))
            return 0
        if args.cmd == "evaluate":
            from .evaluate import evaluate

            evaluate(Path(args.target), Path(args.cache), age_model=args.age_model, limit=args.limit, json_out=args.json,
                     split=args.split, judge=args.judge, identity=args.identity, gallery=args.gallery)
            return 0
    except (DatasetError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


def leave(code: int) -> None:
    """Exit. A torchrun worker (WORLD_SIZE > 1) leaves by ``os._exit`` once its output is flushed:
    its work is done (checkpoint written and fsynced, process group destroyed), and torch's C++
    teardown at interpreter exit aborted one worker in about fifteen here ("terminate called
    without an active exception", SIGABRT after the last step), failing a finished run."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    leave(main())
