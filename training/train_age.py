"""Train the age model: label-distribution learning (DLDL-v2) over 0..max_age years.

SADAL's point that neighbouring ages look alike is honoured by the target: a Gaussian over
years around the true age (``sigma``), learned with KL divergence, plus an L1 term on the
expected age. The validation MAE of the EMA weights is logged at every checkpoint.

The loop trains any age model of the ``agelapse-age/1`` contract: a :class:`ModelKind` names its
network, loss and augmentation (``AGE`` here; the independent judge of training/judges is another).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import augment
from .config import AgeConfig
from .nets import AgeNet
from .preprocess import FaceCache
from .runtime import EMA, RunLog, finish, load_checkpoint, prepare_run, rng, save_checkpoint, setup, to_tensor, unwrap

log = logging.getLogger(__name__)


def target_distribution(ages: torch.Tensor, max_age: int, sigma: float) -> torch.Tensor:
    years = torch.arange(max_age + 1, dtype=torch.float32, device=ages.device)
    d = torch.exp(-((years[None] - ages[:, None].float().clamp(0, max_age)) ** 2) / (2 * sigma**2))
    return d / d.sum(1, keepdim=True)


def age_augment(images: torch.Tensor, r: np.random.Generator) -> torch.Tensor:
    images = augment.flip(images, r.random(len(images)) < 0.5)
    images = augment.affine(images, r)
    images = augment.colour(images, r)
    return augment.blur_noise(images, r)


def dldl_loss(net: AgeNet, logits: torch.Tensor, ages: torch.Tensor, cfg: AgeConfig) -> tuple[torch.Tensor, dict]:
    """KL to the Gaussian label distribution plus ``l1_weight`` x L1 of the expected age."""
    logp = F.log_softmax(logits, 1)
    kl = F.kl_div(logp, target_distribution(ages, cfg.max_age, cfg.sigma), reduction="batchmean")
    l1 = (((logp.exp() * net.years).sum(1)) - ages.float()).abs().mean()
    return kl + cfg.l1_weight * l1, {"kl": kl.item(), "train_mae": l1.item()}


@dataclass(frozen=True)
class ModelKind:
    """What one age model trained by this loop is: ``name`` (the checkpoint's kind, export.py's
    switch), ``build(cfg)`` -> a module whose forward gives the loss's input and whose
    ``predict(x)`` gives (age, probs), ``loss(net, output, ages, cfg)`` -> (loss, logged values,
    "train_mae" among them) and ``augment(images, rng)`` for training batches."""

    name: str
    build: Callable
    loss: Callable
    augment: Callable


AGE = ModelKind("age", lambda cfg: AgeNet(cfg.width, cfg.max_age), dldl_loss, age_augment)


def prepare_batch(cache: FaceCache, idx: np.ndarray, r: np.random.Generator, size: int, device, train: bool,
                  augment_fn: Callable = age_augment):
    images = to_tensor(cache.images[np.sort(idx)], device)
    ages = torch.from_numpy(cache.ages[np.sort(idx)]).to(device)
    if train:
        images = augment_fn(images, r)
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return images, ages


@torch.no_grad()
def evaluate_mae(net: torch.nn.Module, cache: FaceCache, split: str, size: int, device, batch: int = 256) -> tuple[float, np.ndarray, np.ndarray]:
    net.eval()
    idx = cache.indices(split)
    preds = []
    for i in range(0, len(idx), batch):
        x, _ = prepare_batch(cache, idx[i : i + batch], None, size, device, train=False)
        preds.append(net.predict(x)[0].cpu().numpy())
    pred = np.concatenate(preds) if preds else np.zeros(0)
    true = cache.ages[idx]
    return float(np.abs(pred - true).mean()) if len(idx) else float("nan"), pred, true


def lr_at(cfg: AgeConfig, step: int) -> float:
    warm = max(1, cfg.steps // 50)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, cfg.steps - warm))))


def train(cfg: AgeConfig, cache_dir: Path, out: Path, resume: bool = False, stop_after: int | None = None,
          kind: ModelKind = AGE) -> Path:
    """Train (or resume) an age model run in ``out``. ``stop_after``: leave after this many steps
    of this call (tests use it to simulate a killed run). At every checkpoint the validation MAE
    of the EMA (``val_mae``) and of the last weights (``val_mae_last``) is logged, for choosing
    which to export on the validation split."""
    rt = setup(cfg)
    cache = FaceCache(cache_dir)
    run = prepare_run(out, cfg, resume, rt)
    torch.manual_seed(cfg.seed)
    net = kind.build(cfg).to(rt.device)
    ema = EMA(net, cfg.ema)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    state = load_checkpoint(run) if resume else None
    if state:
        net.load_state_dict(state["model"])
        ema.model.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        log.info("resumed %s at step %d", run, step)
    if rt.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net)
    logger = RunLog(run, rt.main)
    train_idx = cache.indices("train")
    if len(train_idx) == 0:
        raise ValueError(f"{cache_dir}: the training split is empty")
    done_here = 0
    while step < cfg.steps:
        r = rng(cfg.seed, step, rt.rank)
        torch.manual_seed(int(r.integers(2**31)))
        idx = r.choice(train_idx, size=min(cfg.batch, len(train_idx)), replace=False)
        x, ages = prepare_batch(cache, idx, r, cfg.input_size, rt.device, train=True, augment_fn=kind.augment)
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        net.train()
        with torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=cfg.amp and rt.device.type == "cuda"):
            logits = net(x)
        loss, parts = kind.loss(unwrap(net), logits.float(), ages, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(net, step)
        step += 1
        done_here += 1
        if step % cfg.log_every == 0:
            logger.scalars(step, {"loss": loss.item(), **parts, "lr": lr_at(cfg, step)})
            log.info("step %d loss %.4f mae %.2f", step, loss.item(), parts["train_mae"])
        last = step == cfg.steps or (stop_after is not None and done_here >= stop_after)
        if rt.main and (step % cfg.checkpoint_every == 0 or last):
            mae, _, _ = evaluate_mae(ema.model, cache, "val", cfg.input_size, rt.device)
            mae_last, _, _ = evaluate_mae(unwrap(net), cache, "val", cfg.input_size, rt.device)
            logger.scalars(step, {"val_mae": mae, "val_mae_last": mae_last})
            log.info("step %d val MAE %.2f (EMA), %.2f (last weights)", step, mae, mae_last)
            save_checkpoint(run, {"model": unwrap(net).state_dict(), "ema": ema.model.state_dict(), "opt": opt.state_dict(),
                                  "step": step, "config": _cfg_dict(cfg), "kind": kind.name,
                                  "template": cache.meta["template"], "val_mae": mae, "val_mae_last": mae_last})
        if last and step < cfg.steps:
            break
    logger.close()
    finish(rt)
    return run


def _cfg_dict(cfg) -> dict:
    from .config import to_dict
    import json

    return json.loads(json.dumps(to_dict(cfg)))
