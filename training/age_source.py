"""The trained age model as a PyTorch module, from an age run or from an exported age.onnx.

The aging models carry the age model (to estimate the source face's group). A run folder holds
its EMA weights; a fresh clone holds only the shipped ``resources/models/age.onnx``, whose
exporter folded every BatchNorm into the convolution before it. Unfolding is exact: the
convolution keeps the folded weight and the BatchNorm becomes the identity plus the folded bias
(mean 0, variance 1 - eps, scale 1), so the rebuilt AgeNet computes what the ONNX file computes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.contracts import AGE

from .nets import AgeNet

# ONNX convolution name prefix -> the BatchNorm that follows it in AgeNet
_BN_OF = {"stem.0": "stem.1", "c1": "b1", "c2": "b2", "skip.0": "skip.1"}


def rebuild_age_net(weights: dict, config: dict) -> AgeNet:
    """The age network of ``config`` (width, max_age) with ``weights`` loaded, frozen in eval mode:
    the one function every user of a trained age model rebuilds it with."""
    net = AgeNet(int(config["width"]), int(config["max_age"]))
    net.load_state_dict(weights)
    return net.eval().requires_grad_(False)


def age_net_from(path: str | Path) -> tuple[AgeNet, dict]:
    """The frozen age network of an age run folder or an exported age.onnx, and its config."""
    state = load_age_state(path)
    return rebuild_age_net(state["ema"], state["config"]), state["config"]


def load_age_state(path: str | Path) -> dict:
    """``{"kind": "age", "ema": state_dict, "config": {...}}`` of an age run folder (its
    checkpoint.pt) or of an exported age model (``*.onnx``, format agelapse-age/1)."""
    path = Path(path)
    if path.suffix == ".onnx":
        return _from_onnx(path)
    ckpt = path / "checkpoint.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{path}: neither an age.onnx nor a run folder with checkpoint.pt")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    if state.get("kind") != "age":
        raise ValueError(f"{path} is not an age-model run")
    return state


def _from_onnx(path: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such age model")
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("format") != AGE.format:
        raise ValueError(f"{path} is not an age model (format {meta.get('format')!r})")
    if meta.get("role") == "judge":
        raise ValueError(f"{path} is an age judge: it only measures, it never guides training (training/judges)")
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    width = int(weights["net.stem.0.weight"].shape[0])
    max_age = int(weights["net.fc.bias"].shape[0]) - 1
    net = AgeNet(width, max_age)
    state = net.state_dict()
    loaded = set()
    for name, value in weights.items():
        if not name.startswith("net.") or name == "net.years":
            continue
        key = name[len("net."):]
        if key.endswith(".weight_bias"):  # the folded BatchNorm's bias
            conv = key[: -len(".weight_bias")]
            bn = next((conv[: -len(s)] + b for s, b in _BN_OF.items() if ("." + conv).endswith("." + s)), None)
            if bn is None:
                raise ValueError(f"{path}: no BatchNorm follows {conv}")
            eps = dict(net.named_modules())[bn].eps
            for field, v in (("bias", value), ("weight", torch.ones_like(value)),
                             ("running_mean", torch.zeros_like(value)), ("running_var", torch.full_like(value, 1 - eps))):
                state[f"{bn}.{field}"] = v
                loaded.add(f"{bn}.{field}")
        elif key in state:
            state[key] = value
            loaded.add(key)
    missing = {k for k in state if not k.endswith("num_batches_tracked")} - loaded
    if missing:
        raise ValueError(f"{path}: the file lacks weights for {sorted(missing)[:4]}")
    config = {"width": width, "max_age": max_age, "input_size": int(meta["image_size"])}
    return {"kind": "age", "ema": state, "config": config, "step": int(meta.get("training_steps", 0))}
