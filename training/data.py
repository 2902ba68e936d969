"""Labelled face datasets: UTKFace, a folder + CSV, and the file-name conventions of FG-NET, CACD, MORPH.

Every loader returns ``(samples, problems)``: malformed names are reported, never silently dropped.

The split is fixed and documented: a sample goes to train / val / test by the SHA-1 of its
*group key* (the identity where the dataset has one, otherwise the file name), so the same person
never straddles two splits and every run, evaluation and later session sees the same split.
  hash % 100 < 80 -> train, < 90 -> val, else test.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")
MAX_AGE = 120


@dataclass(frozen=True)
class Sample:
    path: Path
    age: int
    identity: str | None = None
    gender: int | None = None  # 0 male, 1 female
    race: int | None = None

    @property
    def group_key(self) -> str:
        return self.identity if self.identity is not None else self.path.name


def split_of(sample: Sample) -> str:
    h = int(hashlib.sha1(sample.group_key.encode("utf-8")).hexdigest(), 16) % 100
    return "train" if h < 80 else "val" if h < 90 else "test"


class DatasetError(ValueError):
    """A dataset path or file is unusable (missing, empty, malformed)."""


def _images(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _by_name(folder: Path, pattern: re.Pattern, expected: str, make, stem: bool = True) -> tuple[list[Sample], list[str]]:
    """Samples from the file names in ``folder`` that ``pattern`` matches and ``make`` accepts."""
    samples, problems = [], []
    for p in _images(folder):
        m = pattern.match(p.stem if stem else p.name)
        sample = make(p, m) if m else None
        if sample is None:
            problems.append(f"{p.name}: name does not follow {expected}")
        else:
            samples.append(sample)
    return samples, problems


_UTK = re.compile(r"^(\d{1,3})_([01])_(?:([0-4])_)?\d+")


def _utk_sample(p: Path, m: re.Match) -> Sample | None:
    age = int(m.group(1))
    if not 0 < age <= MAX_AGE:
        return None
    return Sample(p, age, None, int(m.group(2)), int(m.group(3)) if m.group(3) is not None else None)


def load_utkface(folder: Path) -> tuple[list[Sample], list[str]]:
    """UTKFace: AGE_GENDER_RACE_TIMESTAMP.jpg[.chip.jpg]; the race field may be missing."""
    return _by_name(folder, _UTK, "AGE_GENDER_RACE_TIMESTAMP", _utk_sample, stem=False)


_FGNET = re.compile(r"^(\d{3})A(\d{2})[a-z]?$", re.IGNORECASE)


def load_fgnet(folder: Path) -> tuple[list[Sample], list[str]]:
    """FG-NET: 001A02.JPG (person 001 at age 2), variants like 001A43a.JPG."""
    return _by_name(folder, _FGNET, "PPPAaa", lambda p, m: Sample(p, int(m.group(2)), m.group(1)))


_CACD = re.compile(r"^(\d{1,3})_(.+)_(\d{4})$")


def load_cacd(folder: Path) -> tuple[list[Sample], list[str]]:
    """CACD2000: AGE_First_Last_NNNN.jpg."""
    return _by_name(folder, _CACD, "AGE_Name_NNNN", lambda p, m: Sample(p, int(m.group(1)), m.group(2)))


_MORPH = re.compile(r"^(\d+)_(\d+)([MF])(\d{2})$", re.IGNORECASE)


def load_morph(folder: Path) -> tuple[list[Sample], list[str]]:
    """MORPH album 2: ID_NNGAA.JPG, e.g. 000123_00M28.JPG (person 000123, male, 28)."""
    return _by_name(folder, _MORPH, "ID_NNGAA",
                    lambda p, m: Sample(p, int(m.group(4)), m.group(1), 0 if m.group(3).upper() == "M" else 1))


def load_csv(csv_path: Path) -> tuple[list[Sample], list[str]]:
    """A CSV with columns path, age[, identity]; paths relative to the CSV's folder."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: no such file")
    samples, problems = [], []
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "age"} <= set(reader.fieldnames):
            raise DatasetError(f"{csv_path}: needs the columns path and age (has {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            rel = (row.get("path") or "").strip()
            if not rel:
                problems.append(f"{csv_path.name}:{line}: no path")
                continue
            try:
                years = float(row["age"])
            except (TypeError, ValueError):
                years = math.nan
            if not 0 <= years <= MAX_AGE:  # also rejects nan and inf (int(inf) would raise)
                problems.append(f"{csv_path.name}:{line}: age {row.get('age')!r} is not a number of years in 0..{MAX_AGE}")
                continue
            p = (csv_path.parent / rel).resolve()
            if not p.is_file():
                problems.append(f"{csv_path.name}:{line}: {rel} not found")
                continue
            samples.append(Sample(p, int(years), row.get("identity") or None))
    return samples, problems


LOADERS = {"utkface": load_utkface, "fgnet": load_fgnet, "cacd": load_cacd, "morph": load_morph}


def detect_format(path: Path) -> str:
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return "csv"
    images = _images(path)
    if not images:
        raise DatasetError(f"{path}: holds no images ({' '.join(sorted(IMAGE_SUFFIXES))})")
    names = [p.name for p in images[:50]]
    for fmt, pattern in (("utkface", _UTK), ("cacd", _CACD), ("morph", _MORPH), ("fgnet", _FGNET)):
        target = [n if fmt == "utkface" else Path(n).stem for n in names]
        if names and sum(bool(pattern.match(t)) for t in target) >= 0.8 * len(names):
            return fmt
    raise DatasetError(f"{path}: cannot tell the dataset format; pass --format or use a CSV")


def load_dataset(path: Path, fmt: str | None = None) -> tuple[list[Sample], list[str]]:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    fmt = fmt or detect_format(path)
    if fmt != "csv" and fmt not in LOADERS:
        raise DatasetError(f"unknown dataset format {fmt!r}: use one of csv, {', '.join(LOADERS)}")
    samples, problems = load_csv(path) if fmt == "csv" else LOADERS[fmt](path)
    if not samples:
        raise DatasetError(f"{path}: no usable labelled images ({len(problems)} malformed)")
    return samples, problems
