"""Train the aging generator: WGAN-GP with a projection critic, frozen age guidance, AcGAN
attention losses and LGIN's local / total-variation / multi-scale identity terms.

What the CPU-bound design does against the failures recorded in DESIGN.md:
- the age signal comes from the critic's projection on the target group ("a real face of group
  t", several cheap critic steps per generator step) and from a separately trained, frozen age
  model (robust: trained with blur/noise augmentation) seen through an antialiased resize;
- the generator's output space is limited (low-resolution colour and attention, bounded
  luminance-only local detail; nets.Generator), so dot grids and coloured blobs are out of reach;
- a sample grid (input + every group for fixed validation faces) every ``sample_every`` steps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import augment
from .age_source import load_age_state, rebuild_age_net
from .baseline import cover_and_head, group_means
from .config import AgingConfig, to_dict
from .groups import group_index, random_targets  # noqa: F401 (group_index: also imported from here by older code)
from .nets import AgeNet, Critic, Generator, group_probs
from .preprocess import FaceCache
from .runtime import EMA, RunLog, finish, load_checkpoint, prepare_run, rng, save_checkpoint, setup, to_tensor, to_uint8, unwrap

log = logging.getLogger(__name__)


def build_generator(cfg: AgingConfig, size: int, cache: FaceCache | None = None) -> Generator:
    """The generator; its constants (region cover, head area, group means) come from ``cache``,
    or are zeros to be filled by load_state_dict."""
    k = len(cfg.age_groups)
    if cache is not None:
        cover, head = cover_and_head(cache)
        means = group_means(cache, cfg.age_groups)
    else:
        cover, head, means = torch.zeros(size, size), torch.zeros(size, size), torch.zeros(k, 3, size, size)
    w = 2 if cfg.large else 1
    return Generator(k, cover, head, means, cfg.global_size, cfg.g_width * w, cfg.l_width * w, cfg.color_limit, cfg.detail_limit)


def source_weights(age_net: AgeNet | None, age_size: int, x: torch.Tensor, ages: np.ndarray, groups: list) -> torch.Tensor:
    """The source faces' distribution over the groups: the frozen age model's when there is one
    (what the exported model does), else the labels."""
    if age_net is None:
        gi = torch.tensor([group_index(int(a), groups) for a in ages], device=x.device)
        return F.one_hot(gi, len(groups)).float()
    with torch.no_grad():
        small = F.interpolate(x, size=(age_size, age_size), mode="bilinear", align_corners=False, antialias=True)
        return group_probs(torch.softmax(age_net(small), 1), groups)


def load_age_net(path: str, device) -> tuple[AgeNet | None, int, dict | None]:
    """The frozen age model of an age run (its EMA weights) or of an exported age.onnx, its input
    size and its config."""
    if not path:
        return None, 0, None
    state = load_age_state(path)
    c = state["config"]
    return rebuild_age_net(state["ema"], c).to(device), int(c["input_size"]), c


def tv(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()



def _strengths(r: np.random.Generator, n: int, share: float) -> np.ndarray:
    s = np.ones((n, 5), dtype=np.float32)
    pick = r.random(n) < share
    s[pick] = r.uniform(0, 1.5, (pick.sum(), 5)) * (r.random((pick.sum(), 5)) > 0.25)
    return s


def _load(cache: FaceCache, idx: np.ndarray, r: np.random.Generator, device):
    order = np.argsort(idx)
    idx = idx[order]
    x = to_tensor(cache.images[idx], device)
    m = torch.from_numpy(np.ascontiguousarray(cache.masks[idx])).to(device).float() / 255
    flags = r.random(len(idx)) < 0.5
    x, m = augment.flip(x, flags, m)
    return x, m, idx


def sample_faces(cache: FaceCache, groups: list, per_row: int = 8) -> np.ndarray:
    """Fixed validation faces for the sample grids: one or more per source group."""
    val = cache.indices("val")
    gi = np.array([group_index(a, groups) for a in cache.ages[val]])
    chosen = []
    for k in range(len(groups)):
        members = val[gi == k]
        if len(members):
            chosen.append(members[len(members) // 2])
    rest = [i for i in val if i not in chosen]
    return np.array((chosen + rest)[:per_row])


@torch.no_grad()
def sample_grid(gen: Generator, cache: FaceCache, faces: np.ndarray, groups: list, device, age_net=None, age_size=0) -> np.ndarray:
    gen.eval()
    k = len(groups)
    x = to_tensor(cache.images[faces], device)
    m = torch.from_numpy(np.ascontiguousarray(cache.masks[faces])).to(device).float() / 255
    src = source_weights(age_net, age_size, x, cache.ages[faces], groups)
    rows = []
    for i in range(len(faces)):
        xi = x[i : i + 1].expand(k, -1, -1, -1)
        out, _, _ = gen(xi, torch.eye(k, device=device), m[i : i + 1].expand(k, -1, -1, -1), src[i : i + 1].expand(k, -1))
        rows.append(np.concatenate([to_uint8(x[i : i + 1])[0]] + list(to_uint8(out)), axis=1))
    return np.concatenate(rows, axis=0)


def train(cfg: AgingConfig, cache_dir: Path, out: Path, resume: bool = False, stop_after: int | None = None) -> Path:
    rt = setup(cfg)
    dev = rt.device
    cache = FaceCache(cache_dir)
    run = prepare_run(out, cfg, resume, rt)
    groups = cfg.age_groups
    k = len(groups)
    torch.manual_seed(cfg.seed)
    gen = build_generator(cfg, cache.size, cache).to(dev)
    critic = Critic(k, cfg.d_width * (2 if cfg.large else 1)).to(dev)
    age_net, age_size, age_cfg = load_age_net(cfg.age_model, dev)
    saved = load_checkpoint(run) if resume else None
    if saved and "age_net" in saved:
        # a resumed run keeps the age model it trained against, even if that age run went on
        age_cfg = saved["age_config"]
        age_net = rebuild_age_net(saved["age_net"], age_cfg).to(dev)
        age_size = int(age_cfg["input_size"])
    ema = EMA(gen, cfg.ema)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr_g, betas=tuple(cfg.betas))
    opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.lr_d, betas=tuple(cfg.betas))
    scaler = torch.amp.GradScaler(enabled=cfg.amp and dev.type == "cuda")
    step = 0
    state = saved
    if state:
        gen.load_state_dict(state["gen"])
        critic.load_state_dict(state["critic"])
        ema.model.load_state_dict(state["ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
        log.info("resumed %s at step %d", run, step)
    if rt.world > 1:
        gen = torch.nn.parallel.DistributedDataParallel(gen)
        critic = torch.nn.parallel.DistributedDataParallel(critic)
    logger = RunLog(run, rt.main)
    train_idx = cache.indices("train")
    if len(train_idx) == 0:
        raise ValueError(f"{cache_dir}: the training split is empty")
    gi = np.array([group_index(a, groups) for a in cache.ages])
    by_group = [train_idx[gi[train_idx] == g] for g in range(k)]
    by_group = [b if len(b) else train_idx for b in by_group]
    faces = sample_faces(cache, groups)
    amp = dict(device_type=dev.type, dtype=rt.amp_dtype, enabled=cfg.amp and dev.type == "cuda")
    b = cfg.batch
    done_here = 0
    while step < cfg.steps:
        r = rng(cfg.seed, step, rt.rank)
        torch.manual_seed(int(r.integers(2**31)))
        x, masks, idx = _load(cache, r.choice(train_idx, b), r, dev)
        source = source_weights(age_net, age_size, x, cache.ages[idx], groups)
        t = torch.from_numpy(random_targets(r, b, k)).to(dev)
        regions = masks * torch.from_numpy(_strengths(r, b, cfg.strength_jitter)).to(dev)[:, :, None, None]
        gen.train()
        critic.train()
        # one generator forward per step: the critic steps judge its (detached) output, then the
        # generator's loss is taken against the updated critic through the same graph
        with torch.autocast(**amp):
            fake, keep, attention = gen(x, t, regions, source)
        # critic steps: real faces drawn group-balanced, judged with their own group
        gp = torch.zeros((), device=dev)
        for j in range(cfg.n_critic):
            rg = r.integers(0, k, b)
            real_idx = np.array([r.choice(by_group[g]) for g in rg])
            real, _, _ = _load(cache, real_idx, r, dev)
            real = augment.colour(real, r, 0.05)
            t_real = F.one_hot(torch.from_numpy(rg), k).float().to(dev)
            with torch.autocast(**amp):
                d_real = critic(real, t_real)
                d_fake = critic(fake.detach(), t)
            d_loss = d_fake.float().mean() - d_real.float().mean() + 1e-3 * (d_real.float() ** 2).mean()
            if (step * cfg.n_critic + j) % cfg.gp_every == 0:
                # gradient penalty on interpolates, judged with the interpolated condition; "lazy"
                # (every gp_every-th critic step, weighted up to match) when gp_every > 1
                eps = torch.rand(b, 1, 1, 1, device=dev)
                mix = (eps * real + (1 - eps) * fake.detach().float()).requires_grad_(True)
                tm = eps.view(b, 1) * t_real + (1 - eps.view(b, 1)) * t
                grad = torch.autograd.grad(critic(mix, tm).sum(), mix, create_graph=True)[0]
                gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
                d_loss = d_loss + cfg.gp_weight * cfg.gp_every * gp
            opt_d.zero_grad(set_to_none=True)
            scaler.scale(d_loss).backward()
            scaler.step(opt_d)
            scaler.update()
        # generator step
        critic.requires_grad_(False)
        with torch.autocast(**amp):
            # the unwrapped critic: its weights are frozen here, so DistributedDataParallel must not
            # expect their gradients in this backward
            adv = -unwrap(critic)(fake, t).float().mean()
        fake, attention = fake.float(), attention.float()
        # the refinement: what the generator adds beyond the mean-face prior (its regularisers
        # keep it close to the prior unless the critic and the age model ask for more)
        base = (x + unwrap(gen).gate(regions) * unwrap(gen).prior(t, source)).clamp(-1, 1)
        change = fake - base
        losses = {"adv": adv}
        if age_net is not None:
            small = F.interpolate(fake, size=(age_size, age_size), mode="bilinear", align_corners=False, antialias=True)
            p = group_probs(torch.softmax(age_net(small), 1), groups).clamp_min(1e-6)
            losses["age"] = -(t * p.log()).sum(1).mean()
        losses["att_tv"] = tv(attention)
        losses["att_norm"] = (1 - attention).mean()
        losses["local"] = sum((change.abs() * masks[:, i : i + 1]).mean() for i in range(5))
        losses["tv"] = tv(change)
        losses["id"] = sum(
            (F.interpolate(fake, size=(s, s), mode="area") - F.interpolate(base, size=(s, s), mode="area")).abs().mean() for s in (32, 16)
        )
        w = {"adv": cfg.w_adv, "age": cfg.w_age, "att_tv": cfg.w_att_tv, "att_norm": cfg.w_att_norm, "local": cfg.w_local,
             "tv": cfg.w_tv, "id": cfg.w_id}
        g_loss = sum(w[n] * v for n, v in losses.items())
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(g_loss).backward()
        scaler.step(opt_g)
        scaler.update()
        critic.requires_grad_(True)
        ema.update(gen, step)
        step += 1
        done_here += 1
        if step % cfg.log_every == 0:
            vals = {n: v.item() for n, v in losses.items()}
            vals.update(d_loss=d_loss.item(), gp=gp.item(), wdist=(d_real.float().mean() - d_fake.float().mean()).item())
            if age_net is not None:
                vals["age_acc"] = (p.argmax(1) == t.argmax(1)).float().mean().item()
            logger.scalars(step, vals)
            log.info("step %d " + " ".join(f"{n} %.4f" for n in vals), step, *vals.values())
        last = step == cfg.steps or (stop_after is not None and done_here >= stop_after)
        if rt.main and (step % cfg.sample_every == 0 or last):
            grid = sample_grid(ema.model, cache, faces, groups, dev, age_net, age_size)
            cv2.imwrite(str(run / "samples" / f"step_{step:07d}.jpg"), grid[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            logger.image(step, "samples", grid)
        if rt.main and (step % cfg.checkpoint_every == 0 or last):
            save_checkpoint(run, {"gen": unwrap(gen).state_dict(), "critic": unwrap(critic).state_dict(), "ema": ema.model.state_dict(),
                                  "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "scaler": scaler.state_dict(),
                                  "step": step, "config": _plain(to_dict(cfg)), "kind": "aging",
                                  "template": cache.meta["template"], "image_size": cache.size,
                                  **({"age_net": age_net.state_dict(), "age_config": age_cfg} if age_net is not None else {})})
        if last and step < cfg.steps:
            break
    logger.close()
    finish(rt)
    return run


def _plain(d):
    import json

    return json.loads(json.dumps(d))
