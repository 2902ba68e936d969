"""Small ONNX models that honour the model contracts (core/contracts.py, docs/DESIGN.md) exactly, built without torch.

They stand in for the trained models in tests (engine, CLI and GUI) and benchmarks:

- aging model (``agelapse-aging/2``; ``version=1`` for the older contract without ``landmarks``
  and ``hair``), S = ``size``, K = 8 decade groups, dynamic batch, opset 17::

      r         = sum of the 5 region masks (each already multiplied by its strength)
      shift     = tanh(target @ GROUP_SHIFT)          # (N, 3): darker for young groups, lighter for old
      above     = sigmoid((mean y of the brow landmarks 17-26 - 0.15 S - y) / 2)   # (/2 only)
      aged      = clip(image + shift * r + HAIR_LIGHTEN * hair * above, -1, 1)
      attention = 1 - clip(r, 0, 1)

  so where every region mask is 0 (strength 0) the output equals the input exactly, and with
  ``hair`` 0 nothing above the brows changes; the hair band follows the ``landmarks`` input.
  ``realistic=True`` builds instead a small conv net of realistic cost (about 1.5 GFLOP per 128 px
  image: conv encoder, one stride-2 level, upsample-then-convolve decoder, colour + attention
  heads composited as (1 - A) * C + A * x) with random weights, for benchmarks.

- age model (``agelapse-age/1``), its own size and template (tighter crop than the aging model's),
  A = 101 years: mu = 50 + 40 * mean(image in [-1, 1]); probs = softmax(-(a - mu)^2 / (2 * 8^2));
  age = sum(probs * a). A brighter face reads older.

``write_contract_models(folder)`` writes both plus ``manifest.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
DECADES = [[0, 9], [10, 19], [20, 29], [30, 39], [40, 49], [50, 59], [60, 69], [70, None]]
REGIONS = ["forehead", "eyes", "nose", "mouth", "cheeks"]

# Mean face of OpenFace (Apache-2.0, openface/align_dlib.py), 68 iBUG points, roughly [0, 1].
_MEAN_FACE = np.array([
    (0.0792396913815, 0.339223741112), (0.0829219487236, 0.456955367943),
    (0.0967927109165, 0.575648016728), (0.122141515615, 0.691921601066),
    (0.168687863544, 0.800341263616), (0.239789390707, 0.895732504778),
    (0.325662452515, 0.977068762493), (0.422318282013, 1.04329000149),
    (0.531777802068, 1.06080371126), (0.641296298053, 1.03981924107),
    (0.738105872266, 0.972268833998), (0.824444363295, 0.889624082279),
    (0.894792677532, 0.792494155836), (0.939395486253, 0.681546643421),
    (0.96111933829, 0.562238253072), (0.970579841181, 0.441758925744),
    (0.971193274221, 0.322118743967), (0.163846223133, 0.249151738053),
    (0.21780354657, 0.204255863861), (0.291299351124, 0.192367318323),
    (0.367460241458, 0.203582210627), (0.4392945113, 0.233135599851),
    (0.586445962425, 0.228141644834), (0.660152671635, 0.195923841854),
    (0.737466449096, 0.182360984545), (0.813236546239, 0.192828009114),
    (0.8707571886, 0.235293377042), (0.51534533827, 0.31863546193),
    (0.516221448289, 0.396200446263), (0.517118861835, 0.473797687758),
    (0.51816430343, 0.553157797772), (0.433701156035, 0.604054457668),
    (0.475501237769, 0.62076344024), (0.520712933176, 0.634268222208),
    (0.565874114041, 0.618796581487), (0.607054002672, 0.60157671656),
    (0.252418718401, 0.331052263829), (0.298663015648, 0.302646354002),
    (0.355749724218, 0.303020650651), (0.403718978315, 0.33867711083),
    (0.352507175597, 0.349987615384), (0.296791759886, 0.350478978225),
    (0.631326076346, 0.334136672344), (0.679073381078, 0.29645404267),
    (0.73597236153, 0.294721285802), (0.782865376271, 0.321305281656),
    (0.740312274764, 0.341849376713), (0.68499850091, 0.343734332172),
    (0.353167761422, 0.746189164237), (0.414587777921, 0.719053835073),
    (0.477677654595, 0.706835892494), (0.522732900812, 0.717092275768),
    (0.569832064287, 0.705414478982), (0.635195811927, 0.71565572516),
    (0.69951672331, 0.739419187253), (0.639447159575, 0.805236879972),
    (0.576410514055, 0.835436670169), (0.525398405766, 0.841706377792),
    (0.47641545769, 0.837505914975), (0.41379548902, 0.810045601727),
    (0.380084785646, 0.749979603086), (0.477955996282, 0.74513234612),
    (0.523389793327, 0.748924302636), (0.571057789237, 0.74332894691),
    (0.672409137852, 0.744177032192), (0.572539621444, 0.776609286626),
    (0.5240106503, 0.783370783245), (0.477561227414, 0.778476346951)], dtype=np.float64)


def contract_template(scale: float = 0.52, centre_y: float = 0.58) -> list[list[float]]:
    """The mean face scaled into the aligned square, lower than centre to leave room for the
    forehead and hair. A smaller ``scale`` = a looser crop."""
    pts = _MEAN_FACE
    c = (pts.min(0) + pts.max(0)) / 2
    out = (pts - c) * scale + np.array([0.5, centre_y])
    return [[round(float(x), 5), round(float(y), 5)] for x, y in out]


AGING_TEMPLATE = contract_template(0.52, 0.58)
AGE_TEMPLATE = contract_template(0.78, 0.52)

# Per-group colour shift in [-1, 1] units before tanh: young groups darker/warmer, old lighter/greyer.
GROUP_SHIFT = (np.linspace(-1.0, 1.0, len(DECADES))[:, None] * np.array([0.8, 0.9, 1.0])).astype(np.float32)


def _metadata(fmt: str, size: int, template, extra: dict | None, drop: tuple = ()) -> dict[str, str]:
    meta = {
        "format": fmt,
        "image_size": str(size),
        "template": json.dumps(template),
        "trained_on": "nothing: synthetic contract model (testkit/contract_model.py)",
        "license": "MIT (test fixture)",
        "metrics": json.dumps({}),
        "created": _dt.date(2025, 1, 1).isoformat(),
    }
    if fmt.startswith("agelapse-aging"):
        meta["age_groups"] = json.dumps(DECADES)
        meta["regions"] = json.dumps(REGIONS)
    meta.update(extra or {})
    for key in drop:
        meta.pop(key, None)
    return meta


def _save(graph, path: Path, meta: dict[str, str]) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="agelapse-contract")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _c(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


HAIR_LIGHTEN = 0.3


def _io(size: int, k: int, version: int = 2):
    inputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size]),
        helper.make_tensor_value_info("target", TensorProto.FLOAT, ["N", k]),
        helper.make_tensor_value_info("regions", TensorProto.FLOAT, ["N", len(REGIONS), size, size]),
    ]
    if version >= 2:
        inputs += [helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, ["N", 68, 2]),
                   helper.make_tensor_value_info("hair", TensorProto.FLOAT, ["N"])]
    outputs = [
        helper.make_tensor_value_info("aged", TensorProto.FLOAT, ["N", 3, size, size]),
        helper.make_tensor_value_info("attention", TensorProto.FLOAT, ["N", 1, size, size]),
    ]
    return inputs, outputs


def _hair_nodes(size: int, out: str) -> tuple[list, list]:
    """Nodes computing ``out`` (N, 1, S, S) = hair * HAIR_LIGHTEN * the band above the brows."""
    nodes = [
        helper.make_node("Slice", ["landmarks", "brow_lo", "brow_hi", "axis1"], ["brows"]),
        helper.make_node("Slice", ["brows", "y_lo", "y_hi", "axis2"], ["brow_y"]),  # (N, 10, 1)
        helper.make_node("ReduceMean", ["brow_y"], ["by"], axes=[1, 2], keepdims=1),  # (N, 1, 1)
        helper.make_node("Unsqueeze", ["by", "axis1"], ["by4"]),  # (N, 1, 1, 1)
        helper.make_node("Sub", ["by4", "rows"], ["dy"]),
        helper.make_node("Sub", ["dy", "margin"], ["dym"]),
        helper.make_node("Mul", ["dym", "half"], ["dyh"]),
        helper.make_node("Sigmoid", ["dyh"], ["above"]),
        helper.make_node("Mul", ["hair", "hair_gain"], ["hg"]),
        helper.make_node("Unsqueeze", ["hg", "axes123"], ["hg4"]),
        helper.make_node("Mul", ["above", "hg4"], [out]),
    ]
    rows = np.arange(size, dtype=np.float32).reshape(1, 1, size, 1) + np.float32(0.5)
    inits = [_c("brow_lo", np.array([17], np.int64)), _c("brow_hi", np.array([27], np.int64)),
             _c("y_lo", np.array([1], np.int64)), _c("y_hi", np.array([2], np.int64)),
             _c("axis2", np.array([2], np.int64)), _c("axes123", np.array([1, 2, 3], np.int64)),
             _c("rows", rows), _c("margin", np.float32(0.15 * size)), _c("half", np.float32(0.5)),
             _c("hair_gain", np.float32(HAIR_LIGHTEN))]
    return nodes, inits


def build_aging_model(path, *, size: int = 64, realistic: bool = False, width: int = 32,
                      metadata: dict | None = None, drop_metadata: tuple = (), version: int = 2) -> Path:
    """Write an aging model honouring ``agelapse-aging/2`` (``version=1``: ``/1``). ``metadata``
    overrides keys, ``drop_metadata`` removes keys (to test validation)."""
    if realistic:
        return _build_realistic_aging(path, size=size, width=width, metadata=metadata, drop=drop_metadata, version=version)
    k = len(DECADES)
    inputs, outputs = _io(size, k, version)
    nodes = [
        helper.make_node("ReduceSum", ["regions", "axis1"], ["r"], keepdims=1),
        helper.make_node("Clip", ["r", "zero", "one"], ["rc"]),
        helper.make_node("MatMul", ["target", "group_shift"], ["t"]),
        helper.make_node("Tanh", ["t"], ["tt"]),
        helper.make_node("Unsqueeze", ["tt", "axes23"], ["shift"]),
        helper.make_node("Mul", ["shift", "r"], ["delta"]),
        helper.make_node("Add", ["image", "delta"], ["sum" if version >= 2 else "total"]),
        helper.make_node("Clip", ["total", "minus_one", "one"], ["aged"]),
        helper.make_node("Sub", ["one", "rc"], ["attention"]),
    ]
    inits = [
        _c("axis1", np.array([1], np.int64)), _c("axes23", np.array([2, 3], np.int64)),
        _c("zero", np.float32(0)), _c("one", np.float32(1)), _c("minus_one", np.float32(-1)),
        _c("group_shift", GROUP_SHIFT),
    ]
    if version >= 2:
        hn, hi = _hair_nodes(size, "lighten")
        nodes = nodes[:-2] + hn + [helper.make_node("Add", ["sum", "lighten"], ["total"])] + nodes[-2:]
        inits += hi
    graph = helper.make_graph(nodes, "agelapse_contract_aging", inputs, outputs, inits)
    return _save(graph, path, _metadata(f"agelapse-aging/{version}", size, AGING_TEMPLATE, metadata, drop_metadata))


def _build_realistic_aging(path, *, size: int, width: int, metadata, drop, version: int = 2) -> Path:
    rng = np.random.default_rng(0)
    k = len(DECADES)
    inputs, outputs = _io(size, k, version)
    nodes, inits = [], [_c("axes23", np.array([2, 3], np.int64)), _c("ones_map", np.ones((1, 1, size, size), np.float32)),
                        _c("one", np.float32(1)), _c("scales", np.array([1, 1, 2, 2], np.float32))]

    def conv(x, cin, cout, stride=1, act="Relu"):
        i = len(nodes)
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (9 * cin))).astype(np.float32)
        inits.extend([_c(f"w{i}", w), _c(f"b{i}", np.zeros(cout, np.float32))])
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1], strides=[stride, stride]))
        if act is None:
            return f"c{i}"
        nodes.append(helper.make_node(act, [f"c{i}"], [f"a{i}"]))
        return f"a{i}"

    nodes.append(helper.make_node("Unsqueeze", ["target", "axes23"], ["t4"]))
    nodes.append(helper.make_node("Mul", ["t4", "ones_map"], ["tmap"]))
    nodes.append(helper.make_node("Concat", ["image", "tmap", "regions"], ["x0"], axis=1))
    h = conv("x0", 3 + k + len(REGIONS), width)
    h = conv(h, width, 2 * width, stride=2)
    h = conv(h, 2 * width, 2 * width)
    h = conv(h, 2 * width, 2 * width)
    nodes.append(helper.make_node("Resize", [h, "", "scales"], ["up"], mode="nearest"))
    h = conv("up", 2 * width, width)
    colour = conv(h, width, 3, act="Tanh")
    att = conv(h, width, 1, act="Sigmoid")
    nodes += [
        helper.make_node("Sub", ["one", att], ["inv"]),
        helper.make_node("Mul", ["inv", colour], ["p1"]),
        helper.make_node("Mul", [att, "image"], ["p2"]),
        helper.make_node("Add", ["p1", "p2"], ["mixed" if version >= 2 else "aged"]),
        helper.make_node("Identity", [att], ["attention"]),
    ]
    if version >= 2:
        hn, hi = _hair_nodes(size, "lighten")
        nodes += hn + [helper.make_node("Add", ["mixed", "lighten"], ["aged"])]
        inits += hi + [_c("axis1", np.array([1], np.int64))]
    graph = helper.make_graph(nodes, "agelapse_contract_aging_conv", inputs, outputs, inits)
    meta = _metadata(f"agelapse-aging/{version}", size, AGING_TEMPLATE, metadata, drop)
    return _save(graph, path, meta)


def build_age_model(path, *, size: int = 48, num_ages: int = 101, metadata: dict | None = None,
                    drop_metadata: tuple = ()) -> Path:
    """Write an age model honouring ``agelapse-age/1`` (see the module docstring)."""
    ages = np.arange(num_ages, dtype=np.float32)[None]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])]
    outputs = [helper.make_tensor_value_info("age", TensorProto.FLOAT, ["N"]),
               helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", num_ages])]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),  # (N,)
        helper.make_node("Mul", ["m", "forty"], ["m40"]),
        helper.make_node("Add", ["m40", "fifty"], ["mu"]),
        helper.make_node("Unsqueeze", ["mu", "axis1"], ["mu2"]),  # (N, 1)
        helper.make_node("Sub", ["ages", "mu2"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("Mul", ["d2", "neg_inv_2var"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        helper.make_node("Mul", ["probs", "ages"], ["pa"]),
        helper.make_node("ReduceSum", ["pa", "axis1"], ["age"], keepdims=0),
    ]
    inits = [_c("forty", np.float32(40)), _c("fifty", np.float32(50)), _c("axis1", np.array([1], np.int64)),
             _c("ages", ages), _c("neg_inv_2var", np.float32(-1 / (2 * 8.0 ** 2)))]
    graph = helper.make_graph(nodes, "agelapse_contract_age", inputs, outputs, inits)
    return _save(graph, path, _metadata("agelapse-age/1", size, AGE_TEMPLATE, metadata, drop_metadata))


def write_contract_models(folder, *, aging_size: int = 64, age_size: int = 48, realistic: bool = False) -> Path:
    """Write ``aging.onnx``, ``age.onnx`` and ``manifest.json`` into ``folder``; returns it."""
    from core.models import Manifest

    folder = Path(folder)
    build_aging_model(folder / "aging.onnx", size=aging_size, realistic=realistic)
    build_age_model(folder / "age.onnx", size=age_size)
    Manifest.update(folder, "aging.onnx")
    Manifest.update(folder, "age.onnx")
    return folder
