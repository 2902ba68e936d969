"""Training the learned aging network from the prototype teacher (``python -m training aging2``).

Each step: a batch of training faces in the teacher's crop, random targets/strengths/hair, the
teacher's output for them (no gradient, ~0.1 s per 16 faces), the network's output, the losses
of losses.py weighted by the schedule (the teacher's L1 first; critic, age guide and identity from
``gan_start``), one optimiser step, the EMA. Randomness comes from generators seeded by
(seed, step), so ``--resume`` from the run's checkpoint.pt continues exactly.

Across machines: ``resume_point.pt`` (written beside checkpoint.pt; copied into the repository at
the end of a session as training/gan/resume/aging_net.pt) keeps the generator, EMA and critic
weights in fp16 and the teacher's prototypes, no optimiser state; ``--resume`` on a run folder
without a checkpoint starts from it (fresh optimisers, the same step count and schedule).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from core.regions import REGION_NAMES

from ..config import to_dict
from ..groups import group_indices
from ..preprocess import FaceCache
from ..runtime import EMA, RunLog, load_checkpoint, prepare_run, rng, save_checkpoint, to_uint8, torch_gen
from . import losses as L
from .config import Aging2Config
from .nets import AgingNet, Critic
from .pairs import build_teacher, compact_teacher, conditions, load_faces, mirror, reteach, resolve_path, teacher_state

log = logging.getLogger(__name__)

RESUME_POINT = Path(__file__).resolve().parent / "resume" / "aging_net.pt"
ARCH = ("global_size", "g_width", "l_full", "l_width", "g_feat", "change_limit", "residual")
# what a machine chooses for itself when it continues a run from a resume point; every other
# setting (sizes, losses and their schedule, seed, batch, learning rates) is the run's own
MACHINE_KEYS = ("data", "format", "cache", "size", "workers", "threads", "steps", "log_every", "sample_every",
                "checkpoint_every", "eval_every", "eval_faces", "device", "amp", "teacher", "age_model")


def adopt(cfg: Aging2Config, run_config: dict, keep=()) -> Aging2Config:
    """``cfg`` with the run's own settings of ``run_config`` (a resume point's) in place, but for
    the keys in ``keep`` (what the command line set on purpose, e.g. an earlier ``gan_start``).
    The network's sizes are always the point's: its weights fit no other."""
    bad = sorted(k for k in keep if k in ARCH and k in run_config and run_config[k] != getattr(cfg, k))
    if bad:
        raise ValueError(f"the resume point's network has its own {', '.join(bad)}; start a new run to change them")
    for k, v in run_config.items():
        if k not in MACHINE_KEYS and k not in keep and hasattr(cfg, k):
            setattr(cfg, k, tuple(v) if isinstance(getattr(cfg, k), tuple) else v)
    return cfg


def other_groups(r: np.random.Generator, groups: np.ndarray, k: int) -> np.ndarray:
    """For each group index, a random other one at least two groups away (a neighbour is too
    near to call wrong: a 29- and a 31-year-old look alike)."""
    far = [np.array([w for w in range(k) if abs(w - g) >= 2]) for g in range(k)]
    return np.array([far[g][r.integers(len(far[g]))] for g in groups], dtype=np.int64)


def build_net(teacher, cfg: Aging2Config) -> AgingNet:
    return AgingNet(teacher, len(cfg.age_groups), **{k: getattr(cfg, k) for k in ARCH})


def schedule(cfg: Aging2Config, step: int) -> dict:
    """The loss weights at ``step``: the teacher's annealed from anneal_start to anneal_end down to
    teacher_floor; the adversarial, age and identity terms off before gan_start; "critic": whether
    the critic learns (from critic_start, so it judges well before the generator listens to it)."""
    a = min(1.0, max(0.0, (step - cfg.anneal_start) / max(1, cfg.anneal_end - cfg.anneal_start)))
    t = 1 - a * (1 - cfg.teacher_floor)
    gan = step >= cfg.gan_start
    critic = step >= (cfg.gan_start if cfg.critic_start < 0 else min(cfg.critic_start, cfg.gan_start))
    return {"critic": critic, "teacher": cfg.w_teacher * t, "teacher_ms": cfg.w_teacher_ms * t, "local": cfg.w_local * t, "tv": cfg.w_tv,
            "chroma": cfg.w_chroma, "att_tv": cfg.w_att_tv, "att_norm": cfg.w_att_norm, "adv": cfg.w_adv if gan else 0.0,
            "age": cfg.w_age if gan else 0.0, "id": cfg.w_id if gan else 0.0}


def half(state: dict) -> dict:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def resume_point(state: dict) -> dict:
    """A checkpoint cut to what continues the run on another machine (fp16, no optimisers)."""
    return {"kind": "aging2-resume", "step": state["step"], "config": state["config"], "gen": half(state["gen"]),
            "ema": half(state["ema"]), "critic": half(state["critic"]), "teacher": compact_teacher(state["teacher"]),
            "template": state["template"], "image_size": state["image_size"], "val": state.get("val", [])}


def write_resume_point(state: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(resume_point(state), tmp)
    tmp.replace(path)
    return path


class Trainer:
    """The network, the critic, the teacher and their optimisers; ``step()`` trains one batch."""

    def __init__(self, cfg: Aging2Config, cache: FaceCache, teacher_st: dict):
        self.cfg, self.cache = cfg, cache
        self.k = len(cfg.age_groups)
        torch.manual_seed(cfg.seed)
        self.teacher, self.teacher_state = build_teacher(teacher_st, cfg.age_model)
        self.margin = self.teacher.margin
        self.net = build_net(self.teacher, cfg)
        self.critic = Critic(self.k, cfg.d_width)
        self.ema = EMA(self.net, cfg.ema)
        self.params = [p for n, p in self.net.named_parameters() if not n.startswith("fixed.")]
        self.opt_g = torch.optim.Adam(self.params, lr=cfg.lr_g, betas=tuple(cfg.betas))
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_d, betas=tuple(cfg.betas))
        self.step_n = 0
        self.train_idx = cache.indices("train")
        gi = group_indices(cache.ages, cfg.age_groups)
        self.by_group = [self.train_idx[gi[self.train_idx] == g] for g in range(self.k)]
        self.by_group = [b if len(b) else self.train_idx for b in self.by_group]
        self.descriptor = None
        self.val = []
        views = ("face",) + tuple(REGION_NAMES)  # the critic's scores, in its order
        unknown = sorted(set(cfg.adv_views) - set(views))
        if unknown or not cfg.adv_views:
            raise ValueError(f"adv_views: {unknown or 'none given'} (the critic's views: {', '.join(views)})")
        self.adv_columns = [views.index(v) for v in cfg.adv_views]
        # the targets whose faces the generator's adversarial loss counts (by the target weights)
        self.adv_share = torch.tensor([1.0 if g[0] >= cfg.adv_from_age else 0.0 for g in cfg.age_groups])
        if not float(self.adv_share.sum()):
            raise ValueError(f"adv_from_age {cfg.adv_from_age}: no age group starts there or later")
        if not 0 < cfg.critic_patch_scale <= 1:
            raise ValueError(f"critic_patch_scale {cfg.critic_patch_scale}: a share of the full resolution, in (0, 1]")
        if cfg.critic_input not in ("rgb", "detail"):
            raise ValueError(f"critic_input: {cfg.critic_input!r} (rgb or detail)")

    # --- state
    def state(self) -> dict:
        return {"kind": "aging2", "step": self.step_n, "config": json.loads(json.dumps(to_dict(self.cfg))),
                "gen": self.net.learned_state(), "ema": self.ema.model.learned_state(), "critic": self.critic.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "teacher": self.teacher_state,
                "template": self.teacher.template_json(), "image_size": self.net.size, "val": self.val}

    def load(self, state: dict, exact: bool):
        f = lambda d: {k: v.float() if v.is_floating_point() else v for k, v in d.items()}
        self.net.load_learned(f(state["gen"]))
        self.ema.model.load_learned(f(state["ema"]))
        seen = state.get("config", {}).get("critic_input", "rgb")
        if seen == self.cfg.critic_input:
            self.critic.load_state_dict(f(state["critic"]))
        else:  # a critic of other inputs judges nothing here: it starts anew, and both optimisers too
            log.info("the critic saw %s, this run shows it %s: a new critic", seen, self.cfg.critic_input)
            exact = False
        if exact:
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        self.step_n = int(state["step"])
        self.val = list(state.get("val", []))

    # --- one step
    def batch(self, r: np.random.Generator, b: int):
        idx = np.sort(r.choice(self.train_idx, b, replace=False))
        x, lm, masks = load_faces(self.cache, idx, self.margin)
        t, s, hair = conditions(r, b, self.k, self.cfg.blend, self.cfg.strength_jitter, self.cfg.hair_jitter)
        x, lm, masks = mirror(x, lm, masks, r.random(b) < self.cfg.flip)
        return x, lm, masks, t, masks * s[:, :, None, None], hair

    def step(self) -> dict:
        cfg, step = self.cfg, self.step_n
        times = {}
        t0 = time.perf_counter()
        r = rng(cfg.seed, step)
        gen = torch_gen(cfg.seed, step)
        torch.manual_seed(int(r.integers(2**31)))
        x, lm, masks, t, regions, hair = self.batch(r, cfg.batch)
        t1 = time.perf_counter()
        with torch.no_grad():
            t_aged, _ = self.teacher(x, t, regions, lm, hair)
        t2 = time.perf_counter()
        self.net.train()
        p = self.net.parts(x, t, regions, lm, hair, base=t_aged)
        out = p["aged"]
        w = schedule(cfg, step)
        losses = {"teacher": L.teacher_l1(out, t_aged), "teacher_ms": L.teacher_multiscale_l1(out, t_aged),
                  "local": L.local_l1(out, t_aged, masks), "tv": L.total_variation(p["change"])}
        if w["chroma"] > 0:
            losses["chroma"] = L.chroma_l1(out, t_aged)
        att = [L.attention_loss(a) for a in p["attention"]]  # none for a residual network
        if att:
            losses["att_tv"] = sum(a for a, _ in att) / len(att)
            losses["att_norm"] = sum(b for _, b in att) / len(att)
        t3 = time.perf_counter()
        extra = {}
        if w["critic"]:
            extra.update(self._critic_step(r, out, t, lm, gen))
        if w["adv"] > 0:
            losses["adv"] = self.adversarial(out, t, lm, gen)
        if w["age"] > 0:
            probs = self.net.fixed.source(L.guide_view(out, gen, grey=cfg.guide_grey), lm)
            losses["age"] = L.age_loss(probs, t)
            extra["age_acc"] = float((probs.argmax(1) == t.argmax(1)).float().mean())
        if w["id"] > 0:
            losses["id"] = self._identity(x, out, lm, t_aged if cfg.id_over_teacher else None)
        t4 = time.perf_counter()
        total = sum(w[n] * v for n, v in losses.items())
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        self.ema.update(self.net, step)
        t5 = time.perf_counter()
        self.step_n += 1
        times = {"t_data": t1 - t0, "t_teacher": t2 - t1, "t_forward": t3 - t2, "t_gan": t4 - t3, "t_backward": t5 - t4}
        change = float((t_aged - x).abs().mean())
        return {**{n: float(v.detach()) for n, v in losses.items()}, **extra, "teacher_change": change, **times}

    def adversarial(self, out, t, lm, gen=None):
        """The generator's adversarial loss on ``out`` for targets ``t``: the critic's scores of the
        views in ``cfg.adv_views`` only (the critic itself is not changed by it)."""
        face, patches = self._critic_view(out, lm, gen)
        self.critic.requires_grad_(False)
        d_face, d_patch = self.critic(face, patches, t)
        self.critic.requires_grad_(True)
        return L.adversarial_loss(torch.cat([d_face[:, None], d_patch], 1)[:, self.adv_columns], t @ self.adv_share)

    def _critic_view(self, img, lm, gen=None):
        """The whole face at 80 px and the five region patches, as the critic sees them (their
        detail for ``critic_input=detail``; moved by ``critic_shift`` where ``gen`` is given)."""
        face = F.interpolate(img, size=(80, 80), mode="bilinear", align_corners=False, antialias=True)
        patches = self.net.crops(img, self.net.similarity(lm), size_scale=self.cfg.critic_patch_scale)
        if self.cfg.critic_input == "detail":
            face, patches = L.detail_view(face), [L.detail_view(p) for p in patches]
        if gen is not None and self.cfg.critic_shift > 0:
            face, patches = L.translated(face, self.cfg.critic_shift, gen), [L.translated(p, self.cfg.critic_shift, gen) for p in patches]
        return face, patches

    def _critic_step(self, r, fake, t, lm, gen=None) -> dict:
        """Critic steps: real faces of the batch's target groups, judged with their group."""
        groups = t.argmax(1).numpy()
        for _ in range(self.cfg.n_critic):
            real_idx = np.array([r.choice(self.by_group[g]) for g in groups])
            order = np.argsort(real_idx)
            real, rlm, _ = load_faces(self.cache, real_idx[order], self.margin)
            inv = np.argsort(order)
            real, rlm = real[inv], rlm[inv]
            t_real = F.one_hot(torch.from_numpy(groups), self.k).float()
            rf, rp = self._critic_view(real, rlm, gen)
            ff, fp = self._critic_view(fake.detach(), lm, gen)
            dr, drp = self.critic(rf, rp, t_real)
            df, dfp = self.critic(ff, fp, t)
            loss = L.critic_loss(torch.cat([dr[:, None], drp], 1), torch.cat([df[:, None], dfp], 1))
            stats = {}
            if self.cfg.w_mismatch > 0:
                # the same real faces judged as a group at least two away
                wrong = other_groups(r, groups, self.k)
                dw, dwp = self.critic(rf, rp, F.one_hot(torch.from_numpy(wrong), self.k).float())
                loss = loss + self.cfg.w_mismatch * L.mismatch_loss(torch.cat([dw[:, None], dwp], 1))
                stats["d_group_right"] = float((dr > dw).float().mean())
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_d.step()
        # how often the critic tells them apart: a real face of group t scored above the network's face
        # for t; and (d_group_right) above the same face judged as another group
        return {"d_loss": float(loss.detach()), "d_real_above_fake": float((dr > df).float().mean()), **stats}

    def _identity(self, x, out, lm, teacher=None):
        """The identity loss on the batch's first id_faces faces; with ``teacher`` (its outputs),
        only the distance past the teacher's own for that face (and past id_margin) counts."""
        from ..face_descriptor import FaceDescriptor, face_chips

        if self.descriptor is None:
            self.descriptor = FaceDescriptor.from_dat()
        n = min(self.cfg.id_faces, x.shape[0])
        to255 = lambda im: (im[:n] + 1) * 127.5
        lmn = lm[:n].round()
        margin = self.cfg.id_margin
        with torch.no_grad():
            d_in = self.descriptor(face_chips(to255(x), lmn, quantize=False))
            if teacher is not None:
                d_teacher = self.descriptor(face_chips(to255(teacher), lmn, quantize=False))
                margin = (d_teacher - d_in).norm(dim=1).clamp_min(margin)
        d_out = self.descriptor(face_chips(to255(out), lmn, quantize=False))
        return L.identity_loss(d_out, d_in, margin)

    # --- validation and pictures
    @torch.no_grad()
    def validate(self, faces: int) -> dict:
        """The EMA network against the teacher on fixed validation faces and conditions: L1 to the
        teacher, and that L1 over the teacher's own change (1 = no better than returning the input)."""
        idx = self.cache.indices("val")[:faces]
        r = rng(self.cfg.seed, 0, 0, stream=7)
        x, lm, masks = load_faces(self.cache, idx, self.margin)
        t, s, hair = conditions(r, len(idx), self.k, 0.25, 0.0, 0.0)
        regions = masks * s[:, :, None, None]
        l1 = ch = 0.0
        for i in range(0, len(idx), 16):
            sl = slice(i, i + 16)
            ref, _ = self.teacher(x[sl], t[sl], regions[sl], lm[sl], hair[sl])
            out, _ = self.ema.model(x[sl], t[sl], regions[sl], lm[sl], hair[sl])
            l1 += float((out - ref).abs().mean()) * len(x[sl])
            ch += float((ref - x[sl]).abs().mean()) * len(x[sl])
        row = {"step": self.step_n, "val_teacher_l1": l1 / len(idx), "val_teacher_change": ch / len(idx)}
        row["val_ratio"] = row["val_teacher_l1"] / max(row["val_teacher_change"], 1e-9)
        self.val.append(row)
        return row

    @torch.no_grad()
    def grid(self, per_group: int = 1) -> np.ndarray:
        """Rows in pairs for fixed validation faces (one per source group): the input and the network
        (EMA) at every target group, then the input and the teacher."""
        val = self.cache.indices("val")
        gi = group_indices(self.cache.ages[val], self.cfg.age_groups)
        chosen = np.sort(np.array([val[gi == g][len(val[gi == g]) // 2] for g in range(self.k) if (gi == g).any()]))
        x, lm, masks = load_faces(self.cache, chosen, self.margin)
        eye = torch.eye(self.k)
        rows = []
        for i in range(len(chosen)):
            args = (x[i : i + 1].expand(self.k, -1, -1, -1), eye, masks[i : i + 1].expand(self.k, -1, -1, -1),
                    lm[i : i + 1].expand(self.k, -1, -1), torch.ones(self.k))
            for model in (self.ema.model, self.teacher):
                out, _ = model(*args)
                rows.append(np.concatenate([to_uint8(x[i : i + 1])[0]] + list(to_uint8(out)), 1))
        return np.concatenate(rows, 0)


def _teacher_for(cfg: Aging2Config, cache_dir: Path, run: Path) -> dict:
    if cfg.teacher:
        return teacher_state(resolve_path(cfg.teacher))
    if (run / "teacher" / "checkpoint.pt").is_file():
        return teacher_state(run / "teacher")
    from ..prototype import build

    log.info("no teacher given: building the prototype model into %s (minutes)", run / "teacher")
    build(cache_dir, resolve_path(cfg.age_model), run / "teacher", cfg.age_groups)
    return teacher_state(run / "teacher")


def train(cfg: Aging2Config, cache_dir: Path, out: Path, resume: bool = False, stop_after: int | None = None,
          start_from: Path | None = RESUME_POINT, keep=()) -> Path:
    """Train (or continue) the run in ``out``. With ``resume`` and no checkpoint.pt there, the run
    starts from the resume point ``start_from`` (default: the one committed in the repository),
    with the point's settings but for the keys in ``keep`` (set on the command line)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cache = FaceCache(cache_dir)
    run = prepare_run(out, cfg, resume)
    saved = load_checkpoint(run) if resume else None
    point = None
    if resume and saved is None:
        if start_from is None or not Path(start_from).is_file():
            raise FileNotFoundError(f"{run}: no checkpoint.pt to resume and no resume point at {start_from}")
        point = torch.load(start_from, map_location="cpu", weights_only=True)
        if point.get("kind") != "aging2-resume":
            raise ValueError(f"{start_from} is not a resume point of this network")
        log.info("starting %s from the resume point %s (step %d)", run, start_from, int(point["step"]))
        cfg = adopt(cfg, point["config"], keep)
        (run / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    source = saved or point
    tr = Trainer(cfg, cache, source["teacher"] if source else _teacher_for(cfg, cache_dir, run))
    if source:
        tr.load(source, exact=saved is not None)
        log.info("resumed %s at step %d", run, tr.step_n)
    logger = RunLog(run)
    done = 0
    acc: dict = {}
    while tr.step_n < cfg.steps:
        vals = tr.step()
        done += 1
        for k, v in vals.items():
            acc.setdefault(k, []).append(v)
        step = tr.step_n
        last = step == cfg.steps or (stop_after is not None and done >= stop_after)
        if step % cfg.log_every == 0 or last:
            means = {k: float(np.mean(v)) for k, v in acc.items()}
            means["images_per_s"] = cfg.batch / max(1e-9, sum(means[k] for k in means if k.startswith("t_")))
            logger.scalars(step, means)
            log.info("step %d teacher %.4f (change %.4f) %.1f img/s", step, means["teacher"], means["teacher_change"],
                     means["images_per_s"])
            acc = {}
        if step % cfg.eval_every == 0 or last:
            row = tr.validate(cfg.eval_faces)
            logger.scalars(step, {k: v for k, v in row.items() if k != "step"})
            log.info("step %d validation: L1 to the teacher %.4f = %.3f of its change", step, row["val_teacher_l1"], row["val_ratio"])
        if step % cfg.sample_every == 0 or last:
            cv2.imwrite(str(run / "samples" / f"step_{step:07d}.jpg"), tr.grid()[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
        if step % cfg.checkpoint_every == 0 or last:
            state = tr.state()
            save_checkpoint(run, state)
            write_resume_point(state, run / "resume_point.pt")
        if last:
            break
    logger.close()
    return run


def reteach_run(run: Path, prototype_run: Path) -> dict:
    """Give the (stopped) run in ``run`` the settings and wrinkle map of ``prototype_run`` as its
    teacher from its next step on (see pairs.reteach); its checkpoint and resume point are
    rewritten atomically. Returns the settings that changed, {name: (old, new)}. A run still
    training would write its old teacher back at its next checkpoint: stop it first."""
    state = load_checkpoint(run)
    if state is None or state.get("kind") != "aging2":
        raise FileNotFoundError(f"{run}: no checkpoint.pt of a learned aging network")
    old = state["teacher"]
    state["teacher"] = reteach(old, teacher_state(Path(prototype_run)))
    changed = {k: (old["config"].get(k), v) for k, v in state["teacher"]["config"].items() if old["config"].get(k) != v}
    if "wrinkles" in state["teacher"]["protos"] and not torch.equal(state["teacher"]["protos"]["wrinkles"], old["protos"].get("wrinkles", torch.zeros(0))):
        changed["wrinkle map"] = ("old" if "wrinkles" in old["protos"] else "none", str(prototype_run))
    new_ctl, old_ctl = state["teacher"].get("strengths"), old.get("strengths")
    if new_ctl is not None and (old_ctl is None or new_ctl["config"] != old_ctl["config"] or any(
            k not in old_ctl["weights"] or not torch.equal(v.float(), old_ctl["weights"][k].float())
            for k, v in new_ctl["weights"].items())):
        changed["controller"] = ("old" if old_ctl is not None else "none", str(prototype_run))
    save_checkpoint(run, state)
    write_resume_point(state, Path(run) / "resume_point.pt")
    log.info("%s: teacher from %s at step %d, changed: %s", run, prototype_run, state["step"], ", ".join(changed) or "nothing")
    return changed
