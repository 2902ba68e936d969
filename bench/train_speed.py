"""Training speed: images per second of the real training loops, with the models' sizes.

Usage (from the repository root):
    OMP_WAIT_POLICY=PASSIVE python bench/train_speed.py [--device cpu|cuda] [--threads N]
        [--aging-steps 4] [--age-steps 8] [--warmup 1] [--size 128] [--batch 16] [--n-critic 3]
        [--aging2 | --only-aging2] [--aging2-steps 4] [--gan] [--set g_width=16 ...]

What is measured is ``training.train_aging.train`` and ``training.train_age.train`` themselves (so the
figures follow the loops as they change), run on a synthetic preprocessed cache written to a temporary
folder (random smooth images, the real region masks of a template face; no ../shared needed):
- aging: one generator step = one generator forward, ``n_critic`` critic steps with gradient penalty
  on group-balanced real faces, the generator loss with the frozen age net, both optimisers and the
  EMA; the default AgingConfig (128 px cache, batch 16) unless overridden. Images/s = batch / step time
  (generated faces per second; the critic also reads n_critic x batch real faces per step).
- age: one step of AgeConfig's defaults (96 px input from the 128 px cache, batch 64, augmentation).
The frozen age net of the aging loop is a real age run of this benchmark (AgeConfig defaults).

- aging2 (``--aging2``; training/gan, issue 14): one step of the learned network's loop
  (training.gan.loop.Trainer.step) on the teacher's 160 px crop: batch loading, the prototype teacher
  making the pairs, the network's forward and losses, the critic/age-guide/identity terms when
  ``--gan`` turns them on, backward + optimiser + EMA; its own per-step time split is printed, with
  the network's parameters and MACs per face (the carried age model's counted apart). The teacher
  is built on the synthetic cache (prototype.build) with the benchmark's age run.

Step times come from the loops' own per-step log (log_every=1), the first ``--warmup`` steps
excluded (and the sample grid and checkpoint written after the final step's log row). Forward
times of the Generator, Critic and AgeNet modules are measured with forward hooks; the rest of a
step is backward passes (the gradient penalty's double backward included), optimisers, EMA, data. Parameters and MACs per image
(one forward at batch 1, counted by torch's FlopCounterMode, MACs = FLOPs / 2) are printed with them.
A busy machine (other training jobs) lowers every figure: say so when you report them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout: core, training and testkit (shared with the tests)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from testkit.contract_model import contract_template  # noqa: E402
from core import regions as core_regions  # noqa: E402
from core.align import Template  # noqa: E402
from training import nets, runtime, train_age, train_aging  # noqa: E402
from training.config import AgeConfig, AgingConfig  # noqa: E402

TIMED = ("Generator", "Critic", "AgeNet")


def synthetic_cache(folder: Path, size: int, n_train: int, n_val: int, seed: int = 0) -> Path:
    """A preprocessed cache (training/preprocess.py's layout) of smooth random faces."""
    folder.mkdir(parents=True, exist_ok=True)
    r = np.random.default_rng(seed)
    n = n_train + 2 * n_val
    template = Template(np.array(contract_template(), dtype=np.float32))
    lm = template.at_size(size)
    low = r.integers(0, 256, (n, 8, 8, 3)).astype(np.float32)
    images = torch.nn.functional.interpolate(torch.from_numpy(low).permute(0, 3, 1, 2), size=(size, size), mode="bicubic",
                                             align_corners=False).clamp(0, 255).permute(0, 2, 3, 1).round().byte().numpy()
    images = np.clip(images.astype(np.int16) + r.integers(-12, 13, images.shape), 0, 255).astype(np.uint8)
    masks = (core_regions.region_masks(lm, (size, size)) * 255 + 0.5).astype(np.uint8)
    np.save(folder / "images.npy", images)
    np.save(folder / "masks.npy", np.repeat(masks[None], n, 0))
    np.save(folder / "landmarks.npy", np.repeat(lm[None], n, 0).astype(np.float32))
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_val
    ages = r.integers(1, 91, n)
    rows = [{"path": f"synthetic/{i}.jpg", "age": int(a), "identity": None, "gender": 0, "race": 0, "split": s}
            for i, (a, s) in enumerate(zip(ages, splits))]
    (folder / "samples.json").write_text(json.dumps(rows))
    meta = {"key": {"synthetic": True}, "size": size, "template": json.loads(template.to_json()),
            "report": {"ok": n, "fallback": 0, "unreadable": [], "noface": []},
            "counts": {"ok": n, "fallback": 0, "unreadable": 0, "noface": 0}}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


class Probe:
    """Per-step wall times from the loop's log calls, forward times of the timed modules, and one
    instance (with its inputs) of each, for parameters and MACs."""

    def __init__(self, device: torch.device):
        self.device = device
        self.steps: list[tuple[int, float]] = []
        self.forwards: dict[str, list[tuple[float, float]]] = defaultdict(list)  # name -> [(start, end)]
        self.example: dict[str, tuple[torch.nn.Module, tuple]] = {}
        self._starts: dict[int, float] = {}
        self._handles = []
        self._orig = runtime.RunLog.scalars

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self):
        probe = self

        def scalars(log_self, step, values):
            if "val_mae" not in values:  # the age loop's validation row comes after its step's row
                probe._sync()
                probe.steps.append((int(step), time.perf_counter()))
            return probe._orig(log_self, step, values)

        runtime.RunLog.scalars = scalars
        for name in TIMED:
            cls = getattr(nets, name, None)
            if cls is None:
                continue

            def pre(module, args, cls=cls):
                if type(module) is cls:
                    probe._sync()
                    probe._starts[id(module)] = time.perf_counter()

            def post(module, args, out, cls=cls, name=name):
                if type(module) is cls and id(module) in probe._starts:
                    probe._sync()
                    probe.forwards[name].append((probe._starts.pop(id(module)), time.perf_counter()))
                    if name not in probe.example:
                        probe.example[name] = (module, tuple(a[:1].detach() if torch.is_tensor(a) else a for a in args))

            self._handles += [torch.nn.modules.module.register_module_forward_pre_hook(pre),
                              torch.nn.modules.module.register_module_forward_hook(post)]
        return self

    def __exit__(self, *exc):
        runtime.RunLog.scalars = self._orig
        for h in self._handles:
            h.remove()

    def window(self, warmup: int) -> tuple[float, int, float, float]:
        """(seconds per step, steps measured, window start, window end) over the steps after ``warmup``
        (a step ends at its log row: the final step's sample grid and checkpoint come after it)."""
        times = [t for _, t in self.steps]
        if len(times) < warmup + 1 + (warmup == 0):
            raise SystemExit(f"too few steps logged ({len(times)}) for warmup {warmup}: raise --*-steps")
        t0, t1 = times[warmup - 1] if warmup else times[0], times[-1]
        count = len(times) - warmup if warmup else len(times) - 1
        return (t1 - t0) / count, count, t0, t1

    def forward_seconds(self, name: str, t0: float, t1: float) -> tuple[float, int]:
        spans = [(a, b) for a, b in self.forwards.get(name, []) if a >= t0 and b <= t1]
        return sum(b - a for a, b in spans), len(spans)


def size_of(example) -> tuple[int, float | None]:
    module, args = example
    params = sum(p.numel() for p in module.parameters())
    try:
        from torch.utils.flop_counter import FlopCounterMode

        was_training = module.training
        module.eval()  # batch-norm statistics untouched
        try:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                module(*args)
        finally:
            module.train(was_training)
        macs = counter.get_total_flops() / 2
    except Exception:  # counting is a nicety; never fail the benchmark for it
        macs = None
    return params, macs


def fmt_size(params: int, macs: float | None) -> str:
    m = "?" if macs is None else f"{macs / 1e9:.3f} GMAC/image"
    return f"{params / 1e6:.3f} M parameters, {m}"


def report(title: str, probe: Probe, warmup: int, batch: int, names: tuple[str, ...], rest: str) -> dict:
    per_step, count, t0, t1 = probe.window(warmup)
    print(f"{title}: {per_step:.3f} s/step over {count} steps -> {batch / per_step:.1f} images/s")
    accounted = 0.0
    out = {"seconds_per_step": per_step, "images_per_second": batch / per_step, "steps": count}
    for name in names:
        secs, calls = probe.forward_seconds(name, t0, t1)
        accounted += secs
        line = f"  {name:<9} forwards {secs / count * 1000:8.1f} ms/step ({calls / count:.0f} per step)"
        if name in probe.example:
            params, macs = size_of(probe.example[name])
            line += f"   {fmt_size(params, macs)}"
            out[name] = {"parameters": params, "macs_per_image": macs, "forward_ms_per_step": secs / count * 1000}
        print(line)
    print(f"  the rest ({rest}) {(per_step - accounted / count) * 1000:.1f} ms/step")
    return out


def measure_aging2(args, cache: Path, tmp: Path) -> dict:
    """Steps of the learned network's loop, timed by the loop's own split; its size per face."""
    from torch.utils.flop_counter import FlopCounterMode

    from training.config import DECADES, resolve
    from training.gan.config import Aging2Config
    from training.gan.loop import Trainer
    from training.preprocess import FaceCache
    from training.prototype import build

    teacher_run = build(cache, tmp / "age", tmp / "teacher", [list(g) for g in DECADES])
    cfg = resolve(Aging2Config, None, args.set, age_model=str(tmp / "age"), teacher=str(teacher_run), batch=args.batch,
                  **({"gan_start": 0} if args.gan else {}))
    tr = Trainer(cfg, FaceCache(cache), torch.load(teacher_run / "checkpoint.pt", weights_only=True))
    rows = [tr.step() for _ in range(args.warmup + args.aging2_steps)][args.warmup:]
    split = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k.startswith("t_")}
    per_step = sum(split.values())
    net = tr.net.eval()
    s = net.size
    x = torch.zeros(1, 3, s, s)
    lm = torch.tensor(tr.teacher.template_json()).view(1, 68, 2) * s
    args1 = (x, torch.eye(len(cfg.age_groups))[:1], torch.ones(1, 5, s, s), lm, torch.ones(1))
    with torch.no_grad(), FlopCounterMode(display=False) as all_:
        net(*args1)
    with torch.no_grad(), FlopCounterMode(display=False) as age:
        net.fixed.source(x, lm)
    learned = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("fixed."))
    gmac, age_gmac = (all_.get_total_flops() - age.get_total_flops()) / 2e9, age.get_total_flops() / 2e9
    arch = ", ".join(f"{k} {getattr(cfg, k)}" for k in ("global_size", "g_width", "l_full", "l_width", "g_feat"))
    print(f"aging2 step ({s} px crop, batch {cfg.batch}, {arch}{', GAN terms on' if args.gan else ', teacher phase'}): "
          f"{per_step:.3f} s/step over {len(rows)} steps -> {cfg.batch / per_step:.1f} images/s")
    for k, v in split.items():
        print(f"  {k[2:]:<9} {v * 1000:8.1f} ms/step ({100 * v / per_step:4.1f} %)")
    print(f"  network: {learned / 1e6:.3f} M learned parameters, {gmac:.3f} GMAC/face (+ {age_gmac:.3f} the carried age model); "
          f"critic {sum(p.numel() for p in tr.critic.parameters()) / 1e6:.3f} M")
    return {"seconds_per_step": per_step, "images_per_second": cfg.batch / per_step, "split_seconds": split,
            "learned_parameters": learned, "gmac_per_face": gmac, "age_gmac_per_face": age_gmac, "config": {k: getattr(cfg, k) for k in ("global_size", "g_width", "l_full", "l_width", "g_feat", "batch")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--aging-steps", type=int, default=4, help="aging steps measured (after --warmup)")
    ap.add_argument("--age-steps", type=int, default=8, help="age-model steps measured (after --warmup)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--size", type=int, default=AgingConfig.size, help="cache (= aging model) size")
    ap.add_argument("--batch", type=int, default=16, help="aging batch (AgingConfig inherits batch 32; the runs use 16)")
    ap.add_argument("--n-critic", type=int, default=AgingConfig.n_critic)
    ap.add_argument("--gp-every", type=int, default=AgingConfig.gp_every, help="lazy gradient penalty (AgingConfig.gp_every)")
    ap.add_argument("--large", action="store_true", help="AgingConfig.large (the GPU-sized generator and critic)")
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--aging2", action="store_true", help="also measure the learned network of training/gan")
    ap.add_argument("--only-aging2", action="store_true", help="measure the learned network only (the age run is still made: the teacher needs it)")
    ap.add_argument("--aging2-steps", type=int, default=4)
    ap.add_argument("--gan", action="store_true", help="aging2 with the critic, age guide and identity losses on (after gan_start)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an Aging2Config value for aging2 (e.g. g_width=16)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench/train_speed.py: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__} on {args.device}"
          + (f" ({torch.cuda.get_device_name(0)}, amp)" if args.device == "cuda" else f", {torch.get_num_threads()} threads, "
             f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"))
    results = {"device": args.device, "threads": torch.get_num_threads()}
    common = dict(device=args.device, workers=0, log_every=1, checkpoint_every=10**9, sample_every=10**9, size=args.size)
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        tmp = Path(tmp)
        age_defaults = AgeConfig()
        cache = synthetic_cache(tmp / "cache", args.size, n_train=max(age_defaults.batch, args.batch) * 2, n_val=2)

        age_cfg = AgeConfig(steps=args.age_steps + args.warmup, **common)
        with Probe(device) as probe:
            train_age.train(age_cfg, cache, tmp / "age")
        results["age"] = report(f"age model step (AgeConfig defaults: {age_cfg.input_size} px, batch {age_cfg.batch}, "
                                f"width {age_cfg.width})", probe, args.warmup, age_cfg.batch, ("AgeNet",),
                                "backward, optimiser, EMA, batch loading and augmentation")

        if args.aging2 or args.only_aging2:
            results["aging2"] = measure_aging2(args, cache, tmp)
        if args.only_aging2:
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2))
            return 0
        aging_cfg = AgingConfig(steps=args.aging_steps + args.warmup, batch=args.batch, n_critic=args.n_critic, gp_every=args.gp_every,
                                large=args.large, age_model=str(tmp / "age"), **common)
        with Probe(device) as probe:
            train_aging.train(aging_cfg, cache, tmp / "aging")
        results["aging"] = report(f"aging step ({args.size} px, batch {args.batch}, n_critic {args.n_critic}, gp every {args.gp_every}, global "
                                  f"{aging_cfg.global_size} px, g/l/d width {aging_cfg.g_width}/{aging_cfg.l_width}/"
                                  f"{aging_cfg.d_width}{', large' if args.large else ''})",
                                  probe, args.warmup, args.batch, ("Generator", "Critic", "AgeNet"),
                                  "backward passes incl. the gradient penalty's double backward, optimisers, EMA, batch loading")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
