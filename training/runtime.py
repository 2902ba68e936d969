"""What both training loops share: the device, distributed setup, run folders, checkpoints, logs.

One command runs on a CPU, one GPU (mixed precision) or several GPUs: started under ``torchrun``
(WORLD_SIZE set) it joins the process group and wraps the models in DistributedDataParallel.
Randomness is drawn from generators seeded by (seed, step, rank), so a resumed run continues
exactly where a killed one stopped.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import to_dict

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def amp_dtype(self):
        return torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16


def setup(cfg) -> Runtime:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if world > 1:
        backend = "nccl" if want == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
        if want == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
    else:
        device = torch.device(want)
    log.info("training on %s (rank %d of %d)", device, rank, world)
    return Runtime(device, rank, world)


def finish(rt: Runtime) -> None:
    """End a torchrun process's training cleanly: wait for every rank (rank 0 still evaluates and
    writes the checkpoint when the others are done), then destroy the process group. This alone
    did not stop torch's teardown at interpreter exit from aborting a worker now and then (3 in
    80 runs here): the CLI's workers also leave by ``os._exit`` (training/__main__.leave)."""
    if rt.world > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def rng(seed: int, step: int, rank: int = 0, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, step, rank, stream])


def torch_gen(seed: int, step: int, rank: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng(seed, step, rank, 99).integers(2**62)))


def unwrap(model):
    return model.module if hasattr(model, "module") else model


class EMA:
    """Exponential moving average of a model's parameters (buffers copied)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model, step: int | None = None):
        """Blend in the model's weights; with ``step``, the decay warms up as (1 + step) / (10 + step)
        so early sample grids show what the model learned rather than its initialisation."""
        src = unwrap(model)
        decay = self.decay if step is None else min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.model.parameters(), src.parameters()):
            e.lerp_(p.detach(), 1 - decay)
        for e, b in zip(self.model.buffers(), src.buffers()):
            e.copy_(b)


def save_checkpoint(run: Path, state: dict) -> Path:
    """Write ``checkpoint.pt`` atomically (temporary file, fsync, rename)."""
    path = Path(run) / "checkpoint.pt"
    tmp = path.with_suffix(".pt.tmp")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(run: Path) -> dict | None:
    path = Path(run) / "checkpoint.pt"
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


class RunLog:
    """stats.jsonl (one JSON object per log step) and TensorBoard scalars/images."""

    def __init__(self, run: Path, enabled: bool = True):
        self.run = Path(run)
        self.enabled = enabled
        self.tb = None
        self.t0 = time.time()
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run / "tb"))
            except Exception as exc:  # tensorboard is optional
                log.warning("TensorBoard unavailable (%s); stats.jsonl only", exc)

    def scalars(self, step: int, values: dict):
        if not self.enabled:
            return
        row = {"step": step, "time": round(time.time() - self.t0, 1), **{k: round(float(v), 5) for k, v in values.items()}}
        with open(self.run / "stats.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb:
            for k, v in values.items():
                self.tb.add_scalar(k, float(v), step)

    def image(self, step: int, name: str, rgb: np.ndarray):
        if self.enabled and self.tb:
            self.tb.add_image(name, rgb, step, dataformats="HWC")

    def close(self):
        if self.tb:
            self.tb.close()


def prepare_run(out: Path, cfg, resume: bool, rt: Runtime | None = None) -> Path:
    """The run folder: ``out`` itself when resuming or when it holds no other run, with config.json.
    Under torchrun only rank 0 creates it; the others wait for it."""
    run = Path(out)
    if rt is not None and rt.world > 1:
        if rt.main:
            prepare_run(out, cfg, resume)
        torch.distributed.barrier()
        return run
    if (run / "config.json").is_file() and not resume:
        raise FileExistsError(f"{run} already holds a run: pass --resume to continue it, or choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    (run / "samples").mkdir(exist_ok=True)
    if not (run / "config.json").is_file():
        (run / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    return run


def to_tensor(images: np.ndarray, device) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1


def to_uint8(t: torch.Tensor) -> np.ndarray:
    return ((t.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()
