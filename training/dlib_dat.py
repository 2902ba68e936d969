"""A reader of dlib's binary serialisation, for the face-recognition network's ``.dat`` file.

Written from dlib's sources (dlib 20.0.1 sdist: ``dlib/serialize.h``, ``dlib/float_details.h``,
``dlib/cuda/tensor.h``, ``dlib/dnn/{core,layers,input,loss}.h``); no dlib code is used.

The encoding, as dlib writes it:

- integers: a control byte (bit 0x80: negative; low 4 bits: how many bytes follow), then that
  many bytes of the magnitude, least significant first;
- floats/doubles: the mantissa (a signed integer) then the exponent (a signed integer), value
  ``mantissa * 2**exponent`` (exponent 32000/32001/32002: +inf/-inf/nan);
- bool: the ASCII byte ``'1'`` or ``'0'``; string: its length (integer) then its bytes;
- tensor: version 2, then num_samples, k, nr, nc (integers), then n*k*nr*nc little-endian
  float32 (row-major NCHW); alias_tensor (a shape only): version 1, then the four sizes.

A network is serialised from the loss layer inward: ``add_loss_layer`` writes its version, the
loss details, then the outermost layer. Each ``add_layer`` writes its version, *then its whole
subnetwork*, then its own details and bookkeeping (three bools and two or three tensors), so
the layers' details come back innermost first, after every wrapper's version. ``tag`` and
``skip`` layers write only a version and their subnetwork. The innermost ``add_layer`` (the one
over the input layer) writes the input layer's details before its own.

The network's shape is not in the file; :func:`face_recognition_spec` writes down dlib's type
(``anet_type`` of ``tools/python/src/face_recognition.cpp``) and :func:`read_network` checks
every layer's name and hyper-parameters against it, so a different network is refused instead
of being loaded into the wrong places.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DatFormatError(ValueError):
    """The file is not (a complete copy of) the dlib network that was expected."""


class Reader:
    """Sequential decoding of dlib's primitives from a byte buffer."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0
        self.where = "the file's start"

    def fail(self, what: str) -> DatFormatError:
        return DatFormatError(f"{what} at byte {self.pos} of {len(self.data)} (while reading {self.where})")

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise self.fail(f"file ends early: {n} bytes needed, {len(self.data) - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        ctrl = self.take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            self.pos -= 1
            raise self.fail(f"bad integer control byte 0x{ctrl:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        b = self.take(1)[0]
        if b not in (ord("0"), ord("1")):
            self.pos -= 1
            raise self.fail(f"bad bool byte 0x{b:02x}")
        return b == ord("1")

    def string(self, limit: int = 256) -> str:
        n = self.int()
        if not 0 <= n <= limit:
            raise self.fail(f"implausible string length {n}")
        return bytes(self.take(n)).decode("latin-1")

    def version(self, expected: tuple[int, ...]) -> int:
        v = self.int()
        if v not in expected:
            raise self.fail(f"version {v} found, expected one of {expected}")
        return v

    def shape(self) -> tuple[int, int, int, int]:
        dims = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in dims) or math.prod(dims) > 1 << 28:
            raise self.fail(f"implausible tensor shape {dims}")
        return dims  # type: ignore[return-value]

    def tensor(self) -> np.ndarray:
        self.version((2,))
        dims = self.shape()
        raw = self.take(4 * math.prod(dims))
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version((1,))
        return self.shape()


# ---------------------------------------------------------------------------------------------
# The network's type, outermost layer first (mirrors dlib's templates).


@dataclass
class Layer:
    """One node of the network: ``kind`` is a layer name (con, affine, relu, max_pool, avg_pool,
    add_prev, fc, input), or "tag"/"skip"; ``args`` its template arguments; after reading,
    ``params`` holds its weights as numpy arrays."""

    kind: str
    args: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


def con(n: int, k: int, stride: int) -> Layer:
    # dlib's default padding: 0 when strided, else half the kernel
    return Layer("con", {"num_filters": n, "nr": k, "nc": k, "stride": stride, "padding": 0 if stride != 1 else k // 2})


def pool(kind: str, k: int, stride: int) -> Layer:
    return Layer(kind, {"nr": k, "nc": k, "stride": stride, "padding": 0 if stride != 1 else k // 2})


def _block(n: int, stride: int, sub: list) -> list:
    # block = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>
    return [Layer("affine"), con(n, 3, 1), Layer("relu"), Layer("affine"), con(n, 3, stride)] + sub


def _ares(n: int, sub: list) -> list:
    # relu<add_prev1<block<N,1,tag1<SUBNET>>>>
    return [Layer("relu"), Layer("add_prev", {"tag": 1})] + _block(n, 1, [Layer("tag", {"id": 1})] + sub)


def _ares_down(n: int, sub: list) -> list:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,2,tag1<SUBNET>>>>>>>
    inner = [Layer("tag", {"id": 2})] + _block(n, 2, [Layer("tag", {"id": 1})] + sub)
    return [Layer("relu"), Layer("add_prev", {"tag": 2}), pool("avg_pool", 2, 2), Layer("skip", {"id": 1})] + inner


def face_recognition_spec() -> list[Layer]:
    """``anet_type`` of dlib's face_recognition_model_v1, outermost first (loss excluded)."""
    net = [con(32, 7, 2), Layer("input", {"size": 150})]
    net = [pool("max_pool", 3, 2), Layer("relu"), Layer("affine")] + net
    for n in (32, 32, 32):  # alevel4
        net = _ares(n, net)
    for n, reps in ((64, 3), (128, 2), (256, 2)):  # alevel3, alevel2, alevel1
        net = _ares_down(n, net)
        for _ in range(reps):
            net = _ares(n, net)
    net = _ares_down(256, net)  # alevel0
    return [Layer("fc", {"num_outputs": 128, "bias": False}), pool("avg_pool", 0, 1)] + net


# ---------------------------------------------------------------------------------------------
# Layer details


def _check(r: Reader, layer: Layer, found: dict):
    for key, value in found.items():
        if key in layer.args and layer.args[key] != value:
            raise r.fail(f"{layer.kind} layer has {key}={value}, the network needs {layer.args[key]}")


def _multipliers(r: Reader):
    for _ in range(4):  # learning-rate / weight-decay multipliers (weights, biases)
        r.float()


def _read_con(r: Reader, layer: Layer):
    name = r.string()
    if name not in ("con_4", "con_5", "con_6"):
        raise r.fail(f"expected a con_ layer, found {name!r}")
    params = r.tensor()
    n, nr, nc = r.int(), r.int(), r.int()
    sy, sx, py, px = r.int(), r.int(), r.int(), r.int()
    if sy != sx or py != px:
        raise r.fail("anisotropic convolution is not supported")
    _check(r, layer, {"num_filters": n, "nr": nr, "nc": nc, "stride": sy, "padding": py})
    fshape, bshape = r.alias_tensor(), r.alias_tensor()
    _multipliers(r)
    use_bias = r.bool() if name in ("con_5", "con_6") else True
    use_relu = r.bool() if name == "con_6" else False
    flat = params.reshape(-1)
    nf = math.prod(fshape)
    nb = math.prod(bshape) if use_bias else 0
    if flat.size != nf + nb or fshape[0] != n or (use_bias and nb != n):
        raise r.fail(f"con parameters ({flat.size}) do not match filters {fshape} and biases {bshape}")
    layer.params = {"weight": flat[:nf].reshape(fshape), "bias": flat[nf:].copy() if use_bias else np.zeros(n, np.float32)}
    layer.args["fused_relu"] = use_relu


def _read_affine(r: Reader, layer: Layer):
    name = r.string()
    if name in ("affine_", "affine_2"):
        params = r.tensor().reshape(-1)
        gshape, bshape = r.alias_tensor(), r.alias_tensor()
        r.int()  # mode: CONV_MODE (per channel) or FC_MODE; per channel is what the network has
        disabled = r.bool() if name == "affine_2" else False
        ng = math.prod(gshape)
        if disabled:
            layer.params = {}
            return
        if params.size != ng + math.prod(bshape):
            raise r.fail(f"affine parameters ({params.size}) do not match gamma {gshape} and beta {bshape}")
        layer.params = {"scale": params[:ng].copy(), "shift": params[ng:].copy()}
    elif name == "bn_con2":  # a batch-norm layer saved while training: dlib folds it the same way
        params = r.tensor().reshape(-1)
        gshape, bshape = r.alias_tensor(), r.alias_tensor()
        for _ in range(2):
            r.tensor()  # batch means / inverse std-devs
        mean, var = r.tensor().reshape(-1), r.tensor().reshape(-1)
        r.int(), r.int()  # num_updates, running_stats_window_size
        _multipliers(r)
        eps = r.float()
        ng = math.prod(gshape)
        if params.size != ng + math.prod(bshape) or mean.size != ng or var.size != ng:
            raise r.fail("bn_con parameters do not match their shapes")
        scale = params[:ng] / np.sqrt(var + np.float32(eps))
        layer.params = {"scale": scale.astype(np.float32), "shift": (params[ng:] - scale * mean).astype(np.float32)}
    else:
        raise r.fail(f"expected an affine_ (or bn_con2) layer, found {name!r}")


def _read_relu(r: Reader, layer: Layer):
    name = r.string()
    if name not in ("relu_", "relu_2"):
        raise r.fail(f"expected a relu_ layer, found {name!r}")
    layer.args["disabled"] = r.bool() if name == "relu_2" else False


def _read_pool(r: Reader, layer: Layer):
    name = r.string()
    if name != layer.kind + "_2":
        raise r.fail(f"expected a {layer.kind}_2 layer, found {name!r}")
    nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
    if nr != nc or sy != sx or py != px:
        raise r.fail("anisotropic pooling is not supported")
    _check(r, layer, {"nr": nr, "nc": nc, "stride": sy, "padding": py})


def _read_add_prev(r: Reader, layer: Layer):
    name = r.string()
    if name != "add_prev_":
        raise r.fail(f"expected an add_prev_ layer, found {name!r}")


def _read_fc(r: Reader, layer: Layer):
    name = r.string()
    if name not in ("fc_2", "fc_3"):
        raise r.fail(f"expected an fc_ layer, found {name!r}")
    n_out, n_in = r.int(), r.int()
    params = r.tensor().reshape(-1)
    wshape, _ = r.alias_tensor(), r.alias_tensor()
    bias_mode = r.int()  # 0: FC_HAS_BIAS, 1: FC_NO_BIAS
    _multipliers(r)
    use_bias = r.bool() if name == "fc_3" else True
    _check(r, layer, {"num_outputs": n_out, "bias": bias_mode == 0 and use_bias})
    if wshape[:2] != (n_in, n_out) or params.size != n_in * n_out:
        raise r.fail(f"fc weights {wshape} do not match {n_in} inputs and {n_out} outputs")
    layer.params = {"weight": params.reshape(n_in, n_out).T.copy()}  # dlib computes x @ W


def _read_input(r: Reader, layer: Layer):
    name = r.string()
    if name != "input_rgb_image_sized":
        raise r.fail(f"expected input_rgb_image_sized, found {name!r}")
    mean = [r.float() for _ in range(3)]
    nr, nc = r.int(), r.int()
    if nr != nc or nr != layer.args["size"]:
        raise r.fail(f"input is {nr}x{nc}, the network needs {layer.args['size']}")
    layer.params = {"mean": np.array(mean, np.float32)}


_DETAILS = {"con": _read_con, "affine": _read_affine, "relu": _read_relu, "max_pool": _read_pool,
            "avg_pool": _read_pool, "add_prev": _read_add_prev, "fc": _read_fc, "input": _read_input}


# ---------------------------------------------------------------------------------------------


def read_network(path: str | Path, spec: list[Layer] | None = None) -> tuple[list[Layer], dict]:
    """Read a dlib ``loss_metric`` network from ``path`` against ``spec`` (outermost first;
    default: :func:`face_recognition_spec`). Returns the layers *innermost first* with their
    ``params`` filled in, and the loss's settings. Raises :class:`DatFormatError` on anything
    unexpected, including a truncated file or bytes left over."""
    data = Path(path).read_bytes()
    layers = face_recognition_spec() if spec is None else spec
    if layers[-1].kind != "input" or any(l.kind == "input" for l in layers[:-1]):
        raise ValueError("a spec ends with its one input layer")
    r = Reader(data)
    r.where = "the loss layer"
    r.version((1,))
    name = r.string()
    if name == "loss_metric_2":
        loss = {"margin": r.float(), "distance_threshold": r.float()}
    elif name == "loss_metric_":
        loss = {"margin": 0.1, "distance_threshold": 0.75}
    else:
        raise r.fail(f"expected a loss_metric_ network, found {name!r}")
    top = len(layers) - 2  # the add_layer over the input layer (a different class in dlib)
    if layers[top].kind in ("tag", "skip"):
        raise ValueError("a tag or skip directly over the input is not supported")
    versions = []
    for i, layer in enumerate(layers[:-1]):  # the wrappers' versions, outermost first
        r.where = f"the header of layer {i} ({layer.kind})"
        expected = (1,) if layer.kind in ("tag", "skip") else (2, 3) if i == top else (1, 2)
        versions.append(r.version(expected))
    for i in range(top, -1, -1):  # details, innermost first
        layer = layers[i]
        r.where = f"layer {i} ({layer.kind})"
        if layer.kind in ("tag", "skip"):
            continue
        if i == top:
            _DETAILS["input"](r, layers[-1])
        _DETAILS[layer.kind](r, layer)
        for _ in range(3):  # setup called, gradient stale, output disabled
            r.bool()
        r.tensor(), r.tensor()  # x_grad, cached output
        if i == top:
            r.tensor()  # grad_final
            if versions[i] >= 3:
                r.int()  # sample expansion factor
        elif versions[i] >= 2:
            r.tensor()  # params_grad
    if r.pos != len(data):
        r.where = "the end of the network"
        raise r.fail(f"{len(data) - r.pos} unexpected bytes after the network")
    return layers[::-1], loss
