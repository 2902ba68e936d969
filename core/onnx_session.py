"""The one ONNX Runtime session class of the engine.

Every model the app runs goes through :class:`OnnxSession`: it picks execution providers
explicitly (never onnxruntime's silent default), logs what it actually got, reads the input and
output names and shapes from the model, and turns every load failure into a
:class:`~core.errors.ModelError` that names the model.

Providers
    ``"auto"``  CUDA, then DirectML / CoreML, each only where this onnxruntime build has it, then CPU.
    ``"gpu"``   the same list; logs a warning when no GPU provider exists and runs on the CPU.
    ``"cpu"``   the CPU only.
    a list      those providers in that order (names not in this build are dropped with a warning;
                the CPU is always appended as the last resort).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from core.errors import ModelError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
GPU_ORDER = ("CUDAExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider")

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def resolve_providers(providers: str | Sequence[str] = "auto") -> list[str]:
    """The provider list to ask onnxruntime for, best first, always ending with the CPU."""
    available = ort.get_available_providers()
    if isinstance(providers, str):
        choice = providers.lower()
        if choice == "cpu":
            return [CPU]
        if choice not in ("auto", "gpu"):
            raise ValueError(f"providers must be 'auto', 'gpu', 'cpu' or a list, not {providers!r}")
        wanted = [p for p in GPU_ORDER if p in available]
        if choice == "gpu" and not wanted:
            log.warning("no GPU execution provider in this onnxruntime build (%s); using the CPU",
                        ", ".join(available))
        return wanted + [CPU]
    wanted = []
    for p in providers:
        if p not in available:
            log.warning("execution provider %s is not available in this onnxruntime build", p)
        elif p not in wanted:
            wanted.append(p)
    if CPU not in wanted:
        wanted.append(CPU)
    return wanted


def default_session_options(threads: int | None = None) -> ort.SessionOptions:
    """Options for a desktop machine that also runs a GUI: all graph optimisations, sequential
    execution, ``threads`` intra-op threads (None = onnxruntime's default: one per physical core),
    and worker threads that sleep rather than spin between runs (the GUI shares the cores)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = int(threads)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only; provider fallbacks are logged by us
    return so


class OnnxSession:
    """An onnxruntime session with explicit providers.

    ``inputs`` / ``outputs``: ``{name: shape}`` in the model's order, dynamic dims as ``None``.
    ``input_types`` / ``output_types``: ``{name: onnx type string}`` such as ``"tensor(float)"``.
    ``metadata``: the model's ``metadata_props`` (custom metadata map) as a dict of strings.
    ``providers``: the providers the session actually uses, best first.
    """

    def __init__(self, path: str | os.PathLike, *, providers: str | Sequence[str] = "auto",
                 name: str | None = None, threads: int | None = None):
        self.path = Path(path)
        self.name = name or self.path.name
        if not self.path.is_file():
            raise ModelError(self.name, f"file not found: {self.path}")
        wanted = resolve_providers(providers)
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=default_session_options(threads), providers=wanted)
            meta = self._session.get_modelmeta()
        except Exception as exc:  # onnxruntime raises several unrelated types (InvalidProtobuf, Fail, ...)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(self.name, f"cannot load {self.path}: {reason}") from exc
        self.providers: list[str] = list(self._session.get_providers())
        self.metadata: dict[str, str] = dict(meta.custom_metadata_map or {})
        self.inputs = {a.name: _shape(a.shape) for a in self._session.get_inputs()}
        self.outputs = {a.name: _shape(a.shape) for a in self._session.get_outputs()}
        self.input_types = {a.name: a.type for a in self._session.get_inputs()}
        self.output_types = {a.name: a.type for a in self._session.get_outputs()}
        if wanted[0] != CPU and self.providers[0] != wanted[0]:
            log.warning("%s: asked for %s, got %s", self.name, wanted[0], self.providers[0])
        log.info("%s: loaded with providers %s", self.name, ", ".join(self.providers))

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` (``{input name: array}``); returns ``{output name: array}``.

        Arrays are converted to the dtype the model declares (and made contiguous); a missing or
        unknown input is a ``ValueError`` (a caller bug); a failure inside onnxruntime is a
        ``ModelError`` naming the model.
        """
        missing = set(self.inputs) - set(feeds)
        extra = set(feeds) - set(self.inputs)
        if missing or extra:
            raise ValueError(f"{self.name}: inputs are {list(self.inputs)}; "
                             f"missing {sorted(missing)}, unknown {sorted(extra)}")
        arrays = {}
        for key, value in feeds.items():
            dtype = _NUMPY_TYPES.get(self.input_types[key])
            arrays[key] = np.ascontiguousarray(value, dtype=dtype)
        try:
            values = self._session.run(list(self.outputs), arrays)
        except Exception as exc:
            raise ModelError(self.name, f"inference failed: {exc}") from exc
        return dict(zip(self.outputs, values))

    def __repr__(self) -> str:
        return f"OnnxSession({self.name!r}, providers={self.providers})"


def _shape(shape) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in (shape or ()))
