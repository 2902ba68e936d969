"""The app's ONNX models: where they live, the manifest that vouches for them, and the two
model wrappers that check each file against its contract (``core.contracts``; docs/DESIGN.md, "Model
contracts").

Files: ``aging.onnx`` (format ``agelapse-aging/2``; ``/1`` files still load) and ``age.onnx`` (``agelapse-age/1``) in
:func:`models_dir`, listed in ``manifest.json`` there::

    {"models": {"aging.onnx": {"sha256": "...", "bytes": 123, "format": "agelapse-aging/1"}, ...}}

Metadata every model carries (``metadata_props``, all strings): ``format``, ``image_size``,
``template`` (JSON: 68 [x, y] in [0, 1] of the aligned square), ``trained_on``, ``license``,
``metrics`` (JSON object), ``created``; the aging model also ``age_groups`` (JSON [[lo, hi], ...],
hi null for the open-ended last group) and ``regions`` (JSON list, must equal
``core.regions.REGION_NAMES``). The app hard-codes none of these values: sizes, groups and
templates come from the file.

A missing or damaged model never stops a person from browsing: :func:`load_models` returns
whatever loaded plus the errors, each naming its file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.align import Template
from core.contracts import AGE, AGING, LANDMARK_COUNT, Contract, sha256_of
from core.errors import ModelError
from core.onnx_session import OnnxSession
from core.regions import REGION_NAMES

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"


def models_dir() -> Path:
    """``$AGELAPSE_MODELS_DIR`` if set; in a PyInstaller bundle ``<_MEIPASS>/resources/models``;
    otherwise the checkout's ``resources/models``."""
    env = os.environ.get("AGELAPSE_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources" / "models"
    return Path(__file__).resolve().parents[1] / "resources" / "models"


# --------------------------------------------------------------------------------------- manifest

@dataclass
class Manifest:
    """``manifest.json`` of a models folder: ``entries[file] = {"sha256", "bytes", "format"}``."""

    directory: Path
    entries: dict[str, dict] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.directory / MANIFEST_FILE

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Manifest":
        """The folder's manifest; an absent manifest is an empty one (every verify then fails)."""
        directory = Path(directory)
        path = directory / MANIFEST_FILE
        if not path.is_file():
            return cls(directory, {})
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = data["models"]
            if not isinstance(entries, dict):
                raise TypeError("'models' is not an object")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(MANIFEST_FILE, f"unreadable manifest {path}: {exc}") from exc
        return cls(directory, {str(k): dict(v) for k, v in entries.items()})

    def verify(self, name: str) -> Path:
        """Check ``name`` against its entry; returns its path. ModelError if the file is missing,
        unlisted, or its size or sha256 differ ("damaged")."""
        path = self.directory / name
        if not path.is_file():
            raise ModelError(name, f"missing: {path} does not exist")
        entry = self.entries.get(name)
        if entry is None:
            where = self.path if self.path.is_file() else f"{self.directory} (it has no {MANIFEST_FILE})"
            raise ModelError(name, f"not listed in the manifest of {where}")
        size = path.stat().st_size
        if "bytes" in entry and int(entry["bytes"]) != size:
            raise ModelError(name, f"damaged: {path} has {size} bytes, the manifest says {entry['bytes']}")
        if sha256_of(path) != str(entry.get("sha256", "")).lower():
            raise ModelError(name, f"damaged: sha256 of {path} does not match the manifest")
        return path

    def save(self) -> None:
        """Write the manifest atomically (temporary file in the same folder, then rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"models": dict(sorted(self.entries.items()))}, indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; an installed app's users must read it
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def update(cls, directory: str | os.PathLike, file: str, *, format: str | None = None) -> dict:
        """Write or refresh ``file``'s entry (sha256, bytes, format) in ``directory``'s manifest.

        ``format`` defaults to the model's own ``format`` metadata. Used by the training exporter.
        """
        manifest = cls.load(directory)
        path = manifest.directory / file
        if not path.is_file():
            raise ModelError(file, f"missing: {path} does not exist")
        if format is None:
            format = OnnxSession(path, providers="cpu", name=file).metadata.get("format", "")
        entry = {"sha256": sha256_of(path), "bytes": path.stat().st_size, "format": format}
        manifest.entries[file] = entry
        manifest.save()
        return entry


# ---------------------------------------------------------------------------------- metadata parse

def _json(name: str, meta: dict, key: str):
    try:
        return json.loads(meta[key])
    except (TypeError, ValueError) as exc:
        raise ModelError(name, f"metadata {key!r} is not valid JSON: {exc}") from exc


def _require(name: str, meta: dict, keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in meta]
    if missing:
        raise ModelError(name, f"metadata lacks {', '.join(repr(k) for k in missing)}")


def _image_size(name: str, meta: dict) -> int:
    try:
        size = int(meta["image_size"])
    except ValueError:
        raise ModelError(name, f"metadata 'image_size' is not an integer: {meta['image_size']!r}") from None
    if not 8 <= size <= 4096:
        raise ModelError(name, f"metadata 'image_size' {size} is out of range")
    return size


def _template(name: str, meta: dict) -> Template:
    try:
        template = Template.from_json(meta["template"])
    except (TypeError, ValueError) as exc:
        raise ModelError(name, f"metadata 'template' is invalid: {exc}") from exc
    if template.points.min() < -0.5 or template.points.max() > 1.5:
        raise ModelError(name, "metadata 'template' is not normalised to the aligned square")
    return template


def _age_groups(name: str, meta: dict) -> list[tuple[int, int | None]]:
    raw = _json(name, meta, "age_groups")
    groups: list[tuple[int, int | None]] = []
    try:
        for i, (lo, hi) in enumerate(raw):
            lo = int(lo)
            hi = None if hi is None else int(hi)
            if hi is None and i != len(raw) - 1:
                raise ValueError("only the last group may be open-ended")
            if hi is not None and hi < lo:
                raise ValueError(f"group [{lo}, {hi}] is empty")
            if groups and lo <= (groups[-1][1] if groups[-1][1] is not None else lo):
                raise ValueError("groups must be in increasing order")
            groups.append((lo, hi))
    except (TypeError, ValueError) as exc:
        raise ModelError(name, f"metadata 'age_groups' is invalid: {exc}") from exc
    if len(groups) < 2:
        raise ModelError(name, "metadata 'age_groups' needs at least two groups")
    return groups


def group_label(lo: int, hi: int | None) -> str:
    """"0–9" (en dash) or "70+"."""
    return f"{lo}+" if hi is None else f"{lo}\u2013{hi}"


def _check_io(name: str, session: OnnxSession, inputs: dict, outputs: dict) -> None:
    """inputs/outputs: {name: expected shape}, None = any (the batch axis must be dynamic)."""
    for kind, declared, expected in (("input", session.inputs, inputs), ("output", session.outputs, outputs)):
        if set(declared) != set(expected):
            raise ModelError(name, f"{kind}s are {sorted(declared)}, the contract needs {sorted(expected)}")
        types = session.input_types if kind == "input" else session.output_types
        for key, want in expected.items():
            got = declared[key]
            if len(got) != len(want):
                raise ModelError(name, f"{kind} {key!r} has rank {len(got)}, the contract needs {len(want)}")
            if got[0] is not None:
                raise ModelError(name, f"{kind} {key!r} must have a dynamic batch axis, it is {got[0]}")
            for axis, (g, w) in enumerate(zip(got, want)):
                if w is not None and g is not None and g != w:
                    raise ModelError(name, f"{kind} {key!r} axis {axis} is {g}, the contract needs {w}")
            if types[key] != "tensor(float)":
                raise ModelError(name, f"{kind} {key!r} is {types[key]}, the contract needs float32")


@contextlib.contextmanager
def _kind(contract: Contract):
    """Every ModelError raised inside says which kind of model failed (``ModelError.kind``)."""
    try:
        yield
    except ModelError as exc:
        exc.kind = contract.kind
        raise


def _open(dir_or_path: str | os.PathLike | None, default_file: str, providers, verify: bool,
          threads: int | None) -> OnnxSession:
    path = Path(dir_or_path) if dir_or_path is not None else models_dir()
    if path.is_dir() or path.suffix.lower() != ".onnx":
        path = path / default_file
    if verify:
        Manifest.load(path.parent).verify(path.name)
    return OnnxSession(path, providers=providers, name=path.name, threads=threads)


def _to_nchw(images: np.ndarray, size: int, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise ValueError(f"{name}: images must be uint8 (N, {size}, {size}, 3), got {images.dtype} {images.shape}")
    x = images.transpose(0, 3, 1, 2).astype(np.float32)
    x *= np.float32(1 / 127.5)
    x -= np.float32(1.0)
    return x


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """[-1, 1] float NCHW -> uint8 NHWC."""
    y = (np.asarray(x, dtype=np.float32) + np.float32(1.0)) * np.float32(127.5)
    return np.ascontiguousarray(np.clip(np.rint(y), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1))


# ------------------------------------------------------------------------------------ the models

@dataclass(eq=False, repr=False)
class _Model:
    session: OnnxSession
    image_size: int
    template: Template
    trained_on: str
    license: str
    metrics: dict
    created: str

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, size={self.image_size}, providers={self.session.providers})"

    @property
    def name(self) -> str:
        return self.session.name

    @property
    def path(self) -> Path:
        return self.session.path

    @property
    def metadata(self) -> dict[str, str]:
        return self.session.metadata

    @classmethod
    def _common(cls, session: OnnxSession, contract: Contract) -> dict:
        name, meta = session.name, session.metadata
        _require(name, meta, contract.metadata)
        if meta["format"] not in contract.formats:
            raise ModelError(name, f"format is {meta['format']!r}, expected "
                                   f"{' or '.join(repr(f) for f in contract.formats)}")
        metrics = _json(name, meta, "metrics")
        if not isinstance(metrics, dict):
            raise ModelError(name, "metadata 'metrics' must be a JSON object")
        return dict(session=session, image_size=_image_size(name, meta), template=_template(name, meta),
                    trained_on=meta["trained_on"], license=meta["license"], metrics=metrics,
                    created=meta["created"])


@dataclass(eq=False, repr=False)
class AgingModel(_Model):
    """The aging model: K age groups, images aligned to ``template`` at ``image_size``."""

    age_groups: list[tuple[int, int | None]] = field(default_factory=list)
    regions: tuple[str, ...] = REGION_NAMES
    format: str = AGING.format

    @classmethod
    def load(cls, dir_or_path: str | os.PathLike | None = None, *, providers="auto",
             verify: bool = True, threads: int | None = None) -> "AgingModel":
        """Load ``aging.onnx`` from a folder (default :func:`models_dir`) or the given .onnx path,
        checked against the folder's manifest (``verify=False`` skips that, e.g. before the exporter
        writes the manifest) and against the contract. ``threads``: onnxruntime intra-op threads
        (None = its default). Every failure is a ModelError naming the file."""
        with _kind(AGING):
            session = _open(dir_or_path, AGING.file, providers, verify, threads)
            name, meta = session.name, session.metadata
            kw = cls._common(session, AGING)
            regions = _json(name, meta, "regions")
            if not isinstance(regions, list) or tuple(regions) != tuple(REGION_NAMES):
                raise ModelError(name, f"metadata 'regions' is {regions!r}, the app's regions are {list(REGION_NAMES)}")
            groups = _age_groups(name, meta)
            s, k, fmt = kw["image_size"], len(groups), meta["format"]
            shapes = {"image": (None, 3, s, s), "target": (None, k), "regions": (None, len(REGION_NAMES), s, s),
                      "landmarks": (None, LANDMARK_COUNT, 2), "hair": (None,)}
            _check_io(name, session, {n: shapes[n] for n in AGING.inputs_of(fmt)},
                      dict(zip(AGING.outputs, [(None, 3, s, s), (None, 1, s, s)])))
        return cls(**kw, age_groups=groups, regions=tuple(regions), format=fmt)

    @property
    def takes_landmarks(self) -> bool:
        """Whether the file takes the face's ``landmarks`` and the ``hair`` strength (``/2``)."""
        return "landmarks" in AGING.inputs_of(self.format)

    @property
    def num_groups(self) -> int:
        return len(self.age_groups)

    @property
    def group_labels(self) -> list[str]:
        return [group_label(lo, hi) for lo, hi in self.age_groups]

    def group_index(self, text: str | int) -> int:
        """The index of a group given as its label ("60–69", "60-69", "70+") or an age ("65")."""
        s = str(text).strip().replace("\u2013", "-").replace("\u2014", "-")
        for i, (lo, hi) in enumerate(self.age_groups):
            names = {f"{lo}-{hi}"} if hi is not None else {f"{lo}+", f"{lo}-"}
            if s in names:
                return i
        if s.isdigit():
            age = int(s)
            for i, (lo, hi) in enumerate(self.age_groups):
                if lo <= age and (hi is None or age <= hi):
                    return i
        raise ValueError(f"no age group {text!r}; the model's groups are {', '.join(self.group_labels)}")

    def run(self, images: np.ndarray, targets: np.ndarray, regions: np.ndarray, landmarks: np.ndarray | None = None,
            hair: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """images uint8 (N, S, S, 3) RGB, targets float32 (N, K), regions float32 (N, 5, S, S),
        landmarks float32 (N, 68, 2) in the aligned crop's pixels (required by a ``/2`` model,
        ignored by ``/1``), hair: the hair strength, one per face or one for all
        -> (aged uint8 (N, S, S, 3), attention float32 (N, S, S), 1 = input pixel kept)."""
        s, k = self.image_size, self.num_groups
        x = _to_nchw(images, s, self.name)
        n = len(x)
        targets = np.asarray(targets, dtype=np.float32)
        regions = np.asarray(regions, dtype=np.float32)
        if targets.shape != (n, k):
            raise ValueError(f"{self.name}: targets must be ({n}, {k}), got {targets.shape}")
        if regions.shape != (n, len(self.regions), s, s):
            raise ValueError(f"{self.name}: regions must be ({n}, {len(self.regions)}, {s}, {s}), got {regions.shape}")
        feeds = {"image": x, "target": targets, "regions": regions}
        if self.takes_landmarks:
            if landmarks is None:
                raise ValueError(f"{self.name}: a {self.format} model needs the faces' landmarks")
            landmarks = np.asarray(landmarks, dtype=np.float32)
            if landmarks.shape != (n, LANDMARK_COUNT, 2):
                raise ValueError(f"{self.name}: landmarks must be ({n}, {LANDMARK_COUNT}, 2), got {landmarks.shape}")
            hair = np.broadcast_to(np.asarray(hair, dtype=np.float32), (n,))
            feeds.update(landmarks=landmarks, hair=np.ascontiguousarray(hair))
        out = self.session.run(feeds)
        return _to_uint8(out["aged"]), np.ascontiguousarray(out["attention"][:, 0], dtype=np.float32)


@dataclass(eq=False, repr=False)
class AgeModel(_Model):
    """The age estimator: expected age and a distribution over 0..A-1 years."""

    @classmethod
    def load(cls, dir_or_path: str | os.PathLike | None = None, *, providers="auto",
             verify: bool = True, threads: int | None = None) -> "AgeModel":
        """Load ``age.onnx`` (see :meth:`AgingModel.load`)."""
        with _kind(AGE):
            session = _open(dir_or_path, AGE.file, providers, verify, threads)
            kw = cls._common(session, AGE)
            s = kw["image_size"]
            _check_io(session.name, session, {"image": (None, 3, s, s)},
                      dict(zip(AGE.outputs, [(None,), (None, None)])))
        return cls(**kw)

    def estimate(self, aligned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """aligned uint8 (N, S, S, 3) RGB -> (ages float32 (N,), probs float32 (N, A))."""
        out = self.session.run({"image": _to_nchw(aligned, self.image_size, self.name)})
        return out["age"].astype(np.float32).reshape(-1), out["probs"].astype(np.float32)


@dataclass
class LoadedModels:
    aging: AgingModel | None
    age: AgeModel | None
    errors: list[ModelError]


def load_models(directory: str | os.PathLike | None = None, *, providers="auto",
                threads: int | None = None) -> LoadedModels:
    """Both models from ``directory`` (default :func:`models_dir`); a model that fails is None and
    its ModelError (naming the file) is in ``errors``: the caller keeps working without it."""
    directory = Path(directory) if directory is not None else models_dir()
    errors: list[ModelError] = []
    loaded: dict[str, object] = {}
    for key, cls in (("aging", AgingModel), ("age", AgeModel)):
        try:
            loaded[key] = cls.load(directory, providers=providers, threads=threads)
        except ModelError as exc:
            log.warning("%s", exc)
            errors.append(exc)
            loaded[key] = None
    return LoadedModels(loaded["aging"], loaded["age"], errors)
