"""Train the age model: label-distribution learning (DLDL-v2) over 0..max_age years.

SADAL's point that neighbouring ages look alike is honoured by the target: a Gaussian over
years around the true age (``sigma``), learned with KL divergence, plus an L1 term on the
expected age. The validation MAE of the EMA weights is logged at every checkpoint.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import augment
from .config import AgeConfig
from .nets import AgeNet
from .preprocess import FaceCache
from .runtime import EMA, RunLog, load_checkpoint, prepare_run, rng, save_checkpoint, setup, to_tensor, unwrap

log = logging.getLogger(__name__)


def target_distribution(ages: torch.Tensor, max_age: int, sigma: float) -> torch.Tensor:
    years = torch.arange(max_age + 1, dtype=torch.float32, device=ages.device)
    d = torch.exp(-((years[None] - ages[:, None].float().clamp(0, max_age)) ** 2) / (2 * sigma**2))
    return d / d.sum(1, keepdim=True)


def prepare_batch(cache: FaceCache, idx: np.ndarray, r: np.random.Generator, size: int, device, train: bool):
    images = to_tensor(cache.images[np.sort(idx)], device)
    ages = torch.from_numpy(cache.ages[np.sort(idx)]).to(device)
    if train:
        images = augment.flip(images, r.random(len(idx)) < 0.5)
        images = augment.affine(images, r)
        images = augment.colour(images, r)
        images = augment.blur_noise(images, r)
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return images, ages


@torch.no_grad()
def evaluate_mae(net: AgeNet, cache: FaceCache, split: str, size: int, device, batch: int = 256) -> tuple[float, np.ndarray, np.ndarray]:
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


def train(cfg: AgeConfig, cache_dir: Path, out: Path, resume: bool = False, stop_after: int | None = None) -> Path:
    """Train (or resume) an age model run in ``out``. ``stop_after``: leave after this many steps
    of this call (tests use it to simulate a killed run)."""
    rt = setup(cfg)
    cache = FaceCache(cache_dir)
    run = prepare_run(out, cfg, resume, rt)
    torch.manual_seed(cfg.seed)
    net = AgeNet(cfg.width, cfg.max_age).to(rt.device)
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
        x, ages = prepare_batch(cache, idx, r, cfg.input_size, rt.device, train=True)
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        net.train()
        with torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=cfg.amp and rt.device.type == "cuda"):
            logits = net(x)
        logits = logits.float()
        logp = F.log_softmax(logits, 1)
        target = target_distribution(ages, cfg.max_age, cfg.sigma)
        kl = F.kl_div(logp, target, reduction="batchmean")
        expected = (logp.exp() * unwrap(net).years).sum(1)
        l1 = (expected - ages.float()).abs().mean()
        loss = kl + cfg.l1_weight * l1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(net, step)
        step += 1
        done_here += 1
        if step % cfg.log_every == 0:
            logger.scalars(step, {"loss": loss.item(), "kl": kl.item(), "train_mae": l1.item(), "lr": lr_at(cfg, step)})
            log.info("step %d loss %.4f mae %.2f", step, loss.item(), l1.item())
        last = step == cfg.steps or (stop_after is not None and done_here >= stop_after)
        if rt.main and (step % cfg.checkpoint_every == 0 or last):
            mae, _, _ = evaluate_mae(ema.model, cache, "val", cfg.input_size, rt.device)
            logger.scalars(step, {"val_mae": mae})
            log.info("step %d val MAE %.2f", step, mae)
            save_checkpoint(run, {"model": unwrap(net).state_dict(), "ema": ema.model.state_dict(), "opt": opt.state_dict(),
                                  "step": step, "config": _cfg_dict(cfg), "kind": "age",
                                  "template": cache.meta["template"], "val_mae": mae})
        if last and step < cfg.steps:
            break
    logger.close()
    return run


def _cfg_dict(cfg) -> dict:
    from .config import to_dict
    import json

    return json.loads(json.dumps(to_dict(cfg)))
