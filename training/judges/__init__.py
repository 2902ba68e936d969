"""Independent judges for the evaluation: models that referee, never trained against.

``age_judge.onnx`` estimates age like ``resources/models/age.onnx`` (same ``agelapse-age/1``
contract, so every tool that reads an age model reads it) but shares nothing with it beyond the
training split: another network, input size, loss, augmentation and seed (README.md here). The
aging models carry ``age.onnx`` and settings were chosen with it, so it flatters them; the judge
is used only to measure. It must never guide training, choose settings or select checkpoints:
``training.age_source`` refuses it as an age model.

Importing this package needs neither torch nor onnx; ``judges.train`` and ``judges.net`` do.
"""

from __future__ import annotations

from pathlib import Path

JUDGE_FILE = "age_judge.onnx"
ROLE = "judge"  # the ``role`` metadata of a judge's ONNX file


def judge_path() -> Path:
    """The committed age judge (``training/judges/age_judge.onnx``); it may be absent in a checkout
    that has not trained one: check ``.is_file()``."""
    return Path(__file__).resolve().parent / JUDGE_FILE


def load_judge(path=None, *, providers="auto", threads: int | None = None, verify: bool = True):
    """The judge as a ``core.models.AgeModel`` (``estimate(aligned uint8 N,S,S,3) -> (ages, probs)``),
    checked against the sha256 of this folder's manifest.json unless ``verify`` is False.
    ``path``: another judge file (default :func:`judge_path`)."""
    from core.models import AgeModel

    return AgeModel.load(Path(path) if path is not None else judge_path(), providers=providers, verify=verify,
                         threads=threads)
