"""Export a run to ONNX with the contract's inputs, outputs and metadata (docs/DESIGN.md; the table of contracts is core/contracts.py).

The EMA weights are traced with torch's dynamo exporter (opset 18: antialiased Resize), with a
dynamic batch axis and the weights inside the file. Then: ``onnx.checker``, a parity check of
onnxruntime against PyTorch on real inputs, an atomic write, and the manifest's sha256 entry.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from core.contracts import AGE, AGING, AGING_V1, contract_of
from core.regions import REGION_NAMES
from .age_source import rebuild_age_net
from .nets import AgeExport, AgingExport

log = logging.getLogger(__name__)

OPSET = 18
TRAINED_ON = "UTKFace (aligned & cropped, 23,707 faces; train split of training/data.py)"
LICENSE = ("Non-commercial research use only: trained on UTKFace (non-commercial research license; image "
           "copyright stays with the original owners). Landmarks by dlib's 68-point model (iBUG 300-W data, "
           "non-commercial). Code: MIT.")
PARITY_TOLERANCE = 2e-3


class ParityError(RuntimeError):
    pass


def portable(value):
    """``value`` (the evaluation's JSON) with every absolute path of this machine cut to its last name
    ("/home/me/runs/stage/aging.onnx" -> "aging.onnx"): a shipped model carries no local paths."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str) and _is_local_path(value):
        return value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return value


def _is_local_path(text: str) -> bool:
    return ((text.startswith("/") and len(text) > 1) or text.startswith(("~/", "\\\\"))
            or (len(text) > 2 and text[1] == ":" and text[2] in "\\/" and text[0].isalpha()))


def _created() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def load_run(run: Path) -> dict:
    path = Path(run) / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no checkpoint.pt")
    return torch.load(path, map_location="cpu", weights_only=True)


# checkpoint kind -> builder(state, weights) -> (exportable module, metadata): the registry that
# export_run, evaluate and the tests go through. A training package registers its own kind with
# @register_kind (training/gan registers "aging2" when imported; KIND_MODULES imports it on demand).
KINDS: dict = {}
KIND_MODULES = {"aging2": "training.gan.export"}


def register_kind(kind: str):
    def add(builder):
        KINDS[kind] = builder
        return builder

    return add


def build_module(state: dict, weights: str = "ema") -> tuple[torch.nn.Module, dict]:
    """The exportable module of a checkpoint and the metadata that describes it.
    ``weights``: "ema" (the moving average, default) or "model" (the last trained weights)."""
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', not {weights!r}")
    kind = state.get("kind")
    if kind not in KINDS and kind in KIND_MODULES:
        import importlib

        importlib.import_module(KIND_MODULES[kind])
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r} (expected one of {', '.join(sorted(set(KINDS) | set(KIND_MODULES)))})")
    return KINDS[kind](state, weights)


@register_kind("judge")
def _judge(state: dict, weights: str):
    """The independent age judge (training/judges): an age model that only referees."""
    from .judges import ROLE
    from .judges.net import JudgeNet

    cfg = state["config"]
    net = JudgeNet.from_config(cfg)
    net.load_state_dict(state["ema"] if weights == "ema" else state["model"])
    return AgeExport(net).eval(), {"format": AGE.format, "image_size": cfg["input_size"], "role": ROLE}


@register_kind("age")
def _age(state: dict, weights: str):
    cfg = state["config"]
    net = rebuild_age_net(state["ema"] if weights == "ema" else state["model"], cfg)
    return AgeExport(net).eval(), {"format": AGE.format, "image_size": cfg["input_size"]}


def _aging_meta(state: dict, fmt: str) -> dict:
    return {"format": fmt, "image_size": state["image_size"], "age_groups": state["config"]["age_groups"],
            "regions": list(REGION_NAMES)}


@register_kind("aging")
def _aging(state: dict, weights: str):
    from .config import AgingConfig, resolve
    from .train_aging import build_generator

    if "age_net" not in state:
        raise ValueError("this aging run was trained without an age model, which the exported model needs to "
                         "estimate the source age: resume it with --set age_model=AGE_RUN, then export")
    acfg = resolve(AgingConfig, None, None, **state["config"])
    gen = build_generator(acfg, int(state["image_size"]))
    gen.load_state_dict(state["ema"] if weights == "ema" else state["gen"])
    ac = state["age_config"]
    module = AgingExport(gen, rebuild_age_net(state["age_net"], ac), int(ac["input_size"]), acfg.age_groups)
    return module.eval(), _aging_meta(state, AGING_V1)


@register_kind("baseline")
def _baseline(state: dict, weights: str):
    from .baseline import MeanFaceAger

    return MeanFaceAger.from_state(state).eval(), _aging_meta(state, AGING_V1)


@register_kind("prototype")
def _prototype(state: dict, weights: str):
    from .prototype import PrototypeAger

    module = PrototypeAger.from_state(state)
    # the prototype model takes the face's landmarks and the hair strength (contract /2), on its
    # crop: the training faces' square with a margin around it
    meta = _aging_meta(state, AGING.format)
    meta.update(image_size=module.out_size, template=module.template_json())
    return module.eval(), meta


def example_inputs(kind_format: str, size: int, groups: int, batch: int = 2, seed: int = 0, template=None):
    """Inputs to trace and to check parity with; ``template`` (68 [x, y] in [0, 1]) places the
    landmarks of a ``/2`` model (moved a little per face, as a person's would be)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    if kind_format == AGE.format:
        return (image,)
    target = torch.eye(groups)[torch.arange(batch) % groups]
    regions = torch.rand(batch, 5, size, size, generator=g)
    if kind_format == AGING_V1:
        return image, target, regions
    points = torch.tensor(template, dtype=torch.float32) * size
    landmarks = points + torch.randn(batch, 68, 2, generator=g) * (size / 128)
    hair = torch.rand(batch, generator=g) * 1.5
    return image, target, regions, landmarks, hair


def export_run(run: Path, out_dir: Path, metrics: dict | None = None, name: str | None = None, weights: str = "ema") -> Path:
    import onnx

    from core.models import Manifest

    state = load_run(run)
    module, meta = build_module(state, weights)
    fmt = meta["format"]
    size = int(meta["image_size"])
    groups = len(meta.get("age_groups", [])) or 1
    if name is None and meta.get("role") == "judge":
        from .judges import JUDGE_FILE

        name = JUDGE_FILE
    name = name or contract_of(fmt).file
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    tmp = out_dir / (name + ".tmp")
    template = meta.pop("template", state["template"])
    inputs = example_inputs(fmt, size, groups, template=template)
    n = torch.export.Dim("batch", min=1, max=1024)
    in_names, out_names = list(contract_of(fmt).inputs_of(fmt)), list(contract_of(fmt).outputs)
    dyn = {name: {0: n} for name in in_names}
    with torch.no_grad():
        program = torch.onnx.export(module, inputs, input_names=in_names, output_names=out_names, dynamic_shapes=dyn,
                                    opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
    model = program.model_proto
    props = {
        **{k: (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()},
        "template": json.dumps(template),
        "trained_on": TRAINED_ON,
        "license": LICENSE,
        "metrics": json.dumps(portable(metrics or {})),
        "created": _created(),
        "training_steps": str(state.get("step", 0)),
        "weights": weights,
        "producer": "agelapse training",
    }
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(tmp), save_as_external_data=False)
    try:
        check_parity(module, tmp, inputs, in_names)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    Manifest.update(out_dir, name, format=fmt)
    log.info("exported %s (%d bytes) from %s", target, target.stat().st_size, run)
    return target


def check_parity(module: torch.nn.Module, path: Path, inputs: tuple, in_names: list[str], batch: int = 3) -> float:
    """Largest |onnxruntime - PyTorch| over every output, on a batch size other than the traced one."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    bigger = tuple(torch.cat([t, t[:1]], 0) for t in inputs)  # batch 3: proves the axis is dynamic
    with torch.no_grad():
        ref = module(*bigger)
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = sess.run(None, {k: v.numpy() for k, v in zip(in_names, bigger)})
    worst = 0.0
    for out, g, r in zip(sess.get_outputs(), got, ref):
        diff = float(np.abs(g - r.numpy()).max())
        tol = PARITY_TOLERANCE * (100 if out.name == "age" else 1)  # the age output is in years, the rest in [-1, 1] / [0, 1]
        if not diff <= tol:
            raise ParityError(f"{path.name}: output {out.name!r} of onnxruntime differs from PyTorch by {diff:g} (tolerance {tol:g})")
        worst = max(worst, diff)
    log.info("parity %s: max |ORT - torch| = %.2e", path.name, worst)
    return worst
