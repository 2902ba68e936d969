"""The training package end to end on a tiny dataset made from a real portrait (no ../shared):
preprocessing through core, a few steps of both models, exact kill-and-resume, ONNX export
that the engine's contract checks accept, the mean-face baseline, the prototype model and the
evaluation protocol.

Everything is tiny (64 px cache, 8-channel networks, 4 steps) and runs on the CPU.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from core import align  # noqa: E402
from core.models import AgeModel, AgingModel, Manifest, sha256_of  # noqa: E402
from core.regions import REGION_NAMES  # noqa: E402
from training import export as texport  # noqa: E402
from training import train_age, train_aging  # noqa: E402
from training.config import DECADES, AgeConfig, AgingConfig, resolve, to_dict  # noqa: E402
from training.data import Sample, load_dataset, split_of  # noqa: E402
from training.nets import AgeNet  # noqa: E402
from training.preprocess import FaceCache, preprocess  # noqa: E402
from training.runtime import load_checkpoint, save_checkpoint  # noqa: E402
from testkit.training_fixtures import (  # noqa: E402
    NOFACE, PLAN, SIZE, UNREADABLE, hash_split, age_cfg, assert_same_state,
)

def aging_cfg(age_run: Path, **kw) -> AgingConfig:
    base = dict(g_width=8, l_width=8, d_width=8, global_size=32, batch=2, n_critic=2, steps=4, age_model=str(age_run),
                workers=0, device="cpu", log_every=1, sample_every=1000, checkpoint_every=1000)
    return AgingConfig(**{**base, **kw})


# ------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def aging_run(tiny_cache, age_run, tmp_path_factory) -> Path:
    return train_aging.train(aging_cfg(age_run), tiny_cache, tmp_path_factory.mktemp("runs") / "aging")


METRICS = {"age": {"mae": 12.5}, "aging": {"age_accuracy": 0.25}}


@pytest.fixture(scope="session")
def models_dir(age_run, aging_run, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    texport.export_run(age_run, d, metrics=METRICS)
    texport.export_run(aging_run, d, metrics=METRICS)
    return d


def stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------ preprocessing

def test_cache_contents(tiny_cache, tiny_dataset):
    cache = FaceCache(tiny_cache)
    n = len(PLAN)
    report = cache.meta["report"]
    assert report["unreadable"] == [UNREADABLE] and report["noface"] == [NOFACE]
    assert cache.meta["counts"] == {"ok": report["ok"], "fallback": report["fallback"], "unreadable": 1, "noface": 1}
    assert report["ok"] + report["fallback"] == n
    assert report["ok"] >= n - 2  # HOG finds the astronaut in (nearly) every chip
    assert cache.size == SIZE
    assert cache.images.shape == (n, SIZE, SIZE, 3) and cache.images.dtype == np.uint8
    assert cache.masks.shape == (n, 5, SIZE, SIZE) and cache.masks.dtype == np.uint8
    assert cache.landmarks.shape == (n, 68, 2) and cache.landmarks.dtype == np.float32
    # samples: labels from the names, the split recorded is the fixed split
    names = [Path(s["path"]).name for s in cache.samples]
    assert sorted(names) == sorted(p.name for p in tiny_dataset.iterdir() if p.name not in (UNREADABLE, NOFACE))
    for s in cache.samples:
        assert s["age"] == int(Path(s["path"]).name.split("_")[0])
        assert s["split"] == split_of(Sample(Path(s["path"]), s["age"])) == hash_split(Path(s["path"]).name)
    assert [len(cache.indices(k)) for k in ("train", "val", "test")] == [16, 4, 4]
    # the template: 68 points inside the unit square, the same one FaceCache exposes
    tpl = np.array(cache.meta["template"], dtype=np.float32)
    assert tpl.shape == (68, 2) and (tpl > 0).all() and (tpl < 1).all()
    np.testing.assert_allclose(cache.template.points, tpl)
    # aligned landmarks lie inside the crop and on the template (that is what alignment means)
    lm = cache.landmarks
    assert (lm >= 0).all() and (lm <= SIZE).all()
    err = np.linalg.norm(lm[:, align.ALIGN_POINTS] - cache.template.at_size(SIZE)[align.ALIGN_POINTS], axis=2)
    assert err.mean() < 1.0 and err.max() < 3.0, (err.mean(), err.max())
    # region masks: every region present on every face, each where its landmarks are, nothing in the corners
    m = np.asarray(cache.masks)
    assert (m.reshape(n, 5, -1).max(2) >= 200).all()
    for i in range(n):
        for region, points in (("eyes", range(36, 42)), ("eyes", range(42, 48)), ("nose", range(27, 36)),
                               ("mouth", range(48, 68)), ("cheeks", [2, 3, 31]), ("cheeks", [13, 14, 35])):
            x, y = np.round(lm[i, list(points)].mean(0)).astype(int)
            assert m[i, REGION_NAMES.index(region), y, x] > 128, (i, region)
        brows_y = lm[i, 17:27, 1].min()
        fy, fx = np.unravel_index(m[i, REGION_NAMES.index("forehead")].argmax(), (SIZE, SIZE))
        assert fy < brows_y  # the forehead is above the brows
    assert m[:, :, :3, :3].max() == 0 and m[:, :, -3:, -3:].max() == 0 and m[:, :, :3, -3:].max() == 0
    # the faces differ (the jitter reached the cache) yet are the same aligned face
    means = cache.images.reshape(n, -1).mean(1)
    assert means.max() - means.min() > 15


def test_cache_is_reused_and_checked(tiny_cache, tiny_dataset, tmp_path):
    before = (tiny_cache / "images.npy").stat().st_mtime_ns
    samples, _ = load_dataset(tiny_dataset)
    assert preprocess(samples, tiny_cache, size=SIZE, workers=1, chip_frame=200.0) == tiny_cache
    assert (tiny_cache / "images.npy").stat().st_mtime_ns == before  # complete cache: not rebuilt
    assert not list(tiny_cache.glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="meta.json"):
        FaceCache(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / UNREADABLE).write_bytes(b"junk")
    bad, _ = load_dataset(tmp_path / "bad")
    with pytest.raises(ValueError, match="no face could be landmarked"):
        preprocess(bad, tmp_path / "bad_cache", size=SIZE, workers=1)


def test_a_rebuild_killed_halfway_never_reads_as_complete(tiny_cache, tiny_dataset, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "cache"
    shutil.copytree(tiny_cache, copy)
    samples, _ = load_dataset(tiny_dataset)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", killed)  # dies after the new images.npy replaced the old one
    with pytest.raises(KeyboardInterrupt):
        preprocess(samples[:3], copy, size=SIZE, workers=1, chip_frame=200.0)
    monkeypatch.undo()
    assert len(np.load(copy / "images.npy", mmap_mode="r")) != len(PLAN)  # the arrays are the new build's...
    with pytest.raises(FileNotFoundError):  # ...so the old meta.json must not vouch for them
        FaceCache(copy)


# ----------------------------------------------------------------------------------- training

def test_age_training_run(age_run, tiny_cache):
    cfg = resolve(AgeConfig, age_run / "config.json")
    assert to_dict(cfg) == to_dict(age_cfg())  # the run's config round-trips through its JSON
    rows = stats(age_run)
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    assert all(math.isfinite(r[k]) for r in train_rows for k in ("loss", "kl", "train_mae", "lr"))
    val = [r for r in rows if "val_mae" in r]
    assert [r["step"] for r in val] == [4] and 0 <= val[0]["val_mae"] < 100
    state = load_checkpoint(age_run)
    assert state["kind"] == "age" and state["step"] == 4
    assert state["template"] == FaceCache(tiny_cache).meta["template"]
    assert {"model", "ema", "opt", "config", "template", "val_mae"} <= set(state)
    assert not list(age_run.glob("*.tmp"))
    # the weights moved, and the EMA lags behind them
    torch.manual_seed(0)  # the run's seed: the weights it started from
    init = AgeNet(8, 100).state_dict()
    assert not torch.equal(init["fc.weight"], state["model"]["fc.weight"])
    assert not torch.equal(state["ema"]["fc.weight"], state["model"]["fc.weight"])


def test_aging_training_run(aging_run, age_run, tiny_cache):
    rows = stats(aging_run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        for k in ("adv", "age", "att_tv", "att_norm", "local", "tv", "id", "d_loss", "gp", "wdist", "age_acc"):
            assert math.isfinite(r[k]), (k, r)
    state = load_checkpoint(aging_run)
    assert state["kind"] == "aging" and state["step"] == 4 and state["image_size"] == SIZE
    assert {"gen", "critic", "ema", "opt_g", "opt_d", "scaler", "config", "template"} <= set(state)
    assert state["template"] == FaceCache(tiny_cache).meta["template"]
    assert state["config"] == json.loads(json.dumps(to_dict(aging_cfg(age_run))))
    assert json.loads((aging_run / "config.json").read_text()) == state["config"]
    (grid_path,) = (aging_run / "samples").glob("*.jpg")  # sample_every is large: the final step's grid only
    assert grid_path.name == "step_0000004.jpg"
    grid = cv2.imread(str(grid_path))
    # one row per fixed validation face (4 here), the input then one column per age group
    assert grid.shape == (4 * SIZE, (1 + len(DECADES)) * SIZE, 3)


def test_a_run_folder_is_never_overwritten(age_run, tiny_cache):
    before = (age_run / "checkpoint.pt").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        train_age.train(age_cfg(), tiny_cache, age_run)
    assert (age_run / "checkpoint.pt").read_bytes() == before


def test_aging_needs_an_age_run(aging_run, tiny_cache, tmp_path):
    with pytest.raises(ValueError, match="not an age-model run"):
        train_aging.train(aging_cfg(aging_run), tiny_cache, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# ------------------------------------------------------------------------------ kill and resume

def test_age_resume_is_exact(tiny_cache, age_run, tmp_path):
    run = tmp_path / "age"
    train_age.train(age_cfg(), tiny_cache, run, stop_after=2)  # "killed" after 2 of 4 steps
    killed = load_checkpoint(run)
    assert killed["step"] == 2
    train_age.train(age_cfg(), tiny_cache, run, resume=True)
    resumed = load_checkpoint(run)
    assert resumed["step"] == 4
    assert_same_state(resumed, load_checkpoint(age_run))  # model, EMA, optimizer, config, val MAE
    assert [r["step"] for r in stats(run) if "loss" in r] == [1, 2, 3, 4]  # each step logged once


def test_aging_resume_is_exact(tiny_cache, age_run, aging_run, tmp_path):
    run = tmp_path / "aging"
    train_aging.train(aging_cfg(age_run), tiny_cache, run, stop_after=1)
    assert load_checkpoint(run)["step"] == 1
    train_aging.train(aging_cfg(age_run), tiny_cache, run, resume=True, stop_after=2)  # killed twice
    assert load_checkpoint(run)["step"] == 3
    train_aging.train(aging_cfg(age_run), tiny_cache, run, resume=True)
    resumed = load_checkpoint(run)
    assert resumed["step"] == 4
    # generator, critic, EMA, both optimizers, scaler, config
    assert_same_state(resumed, load_checkpoint(aging_run))
    assert [r["step"] for r in stats(run)] == [1, 2, 3, 4]
    assert (run / "samples" / "step_0000004.jpg").read_bytes() == (aging_run / "samples" / "step_0000004.jpg").read_bytes()


def test_cli_trains_and_resumes(tiny_cache, tmp_path):
    from training.__main__ import main

    run = tmp_path / "cli_age"
    common = ["--cache", str(tiny_cache), "--out", str(run)]
    sets = ["--set", "width=8", "--set", "input_size=32", "--set", "batch=4", "--set", "steps=2", "--set", "workers=0",
            "--set", "device=cpu"]
    assert main(["age", *common, *sets]) == 0
    assert load_checkpoint(run)["step"] == 2
    assert main(["age", *common, *sets]) == 2  # the folder holds a run and --resume was not given
    assert main(["age", *common, "--resume", "--set", "steps=3"]) == 0  # the run keeps its config, but for steps
    state = load_checkpoint(run)
    assert state["step"] == 3 and state["config"]["width"] == 8 and state["config"]["input_size"] == 32
    assert json.loads((run / "config.json").read_text())["steps"] == 3


# --------------------------------------------------------------------------------------- export

def _real_inputs(tiny_cache, n: int, groups: int):
    cache = FaceCache(tiny_cache)
    idx = cache.indices("test")[:n] if n <= 4 else np.arange(n)
    x = torch.from_numpy(np.asarray(cache.images[idx])).permute(0, 3, 1, 2).float() / 127.5 - 1
    t = torch.eye(groups)[torch.arange(n) % groups]
    t[-1] = 0
    t[-1, 2], t[-1, 3] = 0.3, 0.7  # a position between two groups on the timeline
    r = torch.from_numpy(np.asarray(cache.masks[idx])).float() / 255 * torch.tensor([1.0, 0.5, 0.0, 1.5, 1.0])[:, None, None]
    return x, t, r


def test_exported_models_honour_the_contract(models_dir, tiny_cache):
    aging = AgingModel.load(models_dir, providers="cpu")  # verify=True: checked against the manifest
    age = AgeModel.load(models_dir, providers="cpu")
    manifest = Manifest.load(models_dir)
    for name, fmt in (("aging.onnx", "agelapse-aging/1"), ("age.onnx", "agelapse-age/1")):
        entry = manifest.entries[name]
        assert entry == {"sha256": sha256_of(models_dir / name), "bytes": (models_dir / name).stat().st_size, "format": fmt}
    assert sorted(p.name for p in models_dir.iterdir()) == ["age.onnx", "aging.onnx", "manifest.json"]
    template = FaceCache(tiny_cache).template.points
    for model, size in ((aging, SIZE), (age, 32)):
        meta = model.metadata
        assert {"format", "image_size", "template", "trained_on", "license", "metrics", "created"} <= set(meta)
        assert model.image_size == size
        np.testing.assert_allclose(model.template.points, template, atol=1e-5)
        assert "UTKFace" in model.trained_on and "non-commercial" in model.license.lower()
        assert model.metrics == METRICS
        created = dt.datetime.fromisoformat(meta["created"])
        assert created.tzinfo is not None and abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 3600
        assert meta["training_steps"] == "4"
    assert aging.metadata["format"] == "agelapse-aging/1" and age.metadata["format"] == "agelapse-age/1"
    assert [list(g) for g in aging.age_groups] == DECADES and json.loads(aging.metadata["age_groups"]) == DECADES
    assert aging.regions == REGION_NAMES and json.loads(aging.metadata["regions"]) == list(REGION_NAMES)
    # the declared shapes: dynamic batch, the contract's other axes
    s = aging.session
    assert s.inputs == {"image": (None, 3, SIZE, SIZE), "target": (None, 8), "regions": (None, 5, SIZE, SIZE)}
    assert s.outputs == {"aged": (None, 3, SIZE, SIZE), "attention": (None, 1, SIZE, SIZE)}
    assert age.session.outputs["age"] == (None,) and age.session.outputs["probs"] == (None, 101)


@pytest.mark.parametrize("batch", [1, 3])
def test_exported_models_match_pytorch(models_dir, age_run, aging_run, tiny_cache, batch):
    aging = AgingModel.load(models_dir, providers="cpu")
    age = AgeModel.load(models_dir, providers="cpu")
    x, t, r = _real_inputs(tiny_cache, batch, 8)
    gen, _ = texport.build_module(texport.load_run(aging_run))
    with torch.no_grad():
        ref_aged, ref_att = gen(x, t, r)
    got = aging.session.run({"image": x.numpy(), "target": t.numpy(), "regions": r.numpy()})
    assert got["aged"].shape == (batch, 3, SIZE, SIZE) and got["attention"].shape == (batch, 1, SIZE, SIZE)
    np.testing.assert_allclose(got["aged"], ref_aged.numpy(), atol=1e-4)
    np.testing.assert_allclose(got["attention"], ref_att.numpy(), atol=1e-4)
    eps = 1e-6  # float32 rounding (e.g. 1 - 1.0000001); how many threads trained the run changes it
    assert got["aged"].min() >= -1 - eps and got["aged"].max() <= 1 + eps
    assert got["attention"].min() >= -eps and got["attention"].max() <= 1 + eps
    # the engine's uint8 path agrees too
    images = ((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
    aged_u8, att = aging.run(images, t.numpy(), r.numpy())
    assert aged_u8.shape == (batch, SIZE, SIZE, 3) and att.shape == (batch, SIZE, SIZE)
    ref_u8 = np.clip(np.rint((ref_aged.permute(0, 2, 3, 1).numpy() + 1) * 127.5), 0, 255)
    assert np.abs(aged_u8.astype(int) - ref_u8).max() <= 1

    net, _ = texport.build_module(texport.load_run(age_run))
    small = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        ref_years, ref_probs = net(small)
    got = age.session.run({"image": small.numpy()})
    assert got["age"].shape == (batch,) and got["probs"].shape == (batch, 101)
    np.testing.assert_allclose(got["probs"], ref_probs.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["age"], ref_years.numpy(), atol=1e-3)
    np.testing.assert_allclose(got["probs"].sum(1), 1, atol=1e-4)


def test_export_errors_are_clear(tmp_path, age_run, monkeypatch):
    out = tmp_path / "models"
    with pytest.raises(FileNotFoundError, match="no checkpoint.pt"):
        texport.export_run(tmp_path / "no_such_run", out)
    odd = tmp_path / "odd"
    odd.mkdir()
    save_checkpoint(odd, {"kind": "gan", "step": 3})
    with pytest.raises(ValueError, match="unknown checkpoint kind 'gan'"):
        texport.export_run(odd, out)
    save_checkpoint(odd, {"step": 3, "config": {}})
    with pytest.raises(ValueError, match="unknown checkpoint kind None"):
        texport.export_run(odd, out)
    assert not out.exists() or not any(out.iterdir())
    # a parity failure leaves neither the file nor a manifest entry behind
    monkeypatch.setattr(texport, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(texport.ParityError, match="differs from PyTorch"):
        texport.export_run(age_run, out)
    assert not (out / "age.onnx").exists() and not list(out.glob("*.tmp"))
    assert "age.onnx" not in Manifest.load(out).entries


def test_baseline_builds_and_exports(tiny_cache, age_run, tmp_path):
    from training.baseline import build

    run = build(tiny_cache, age_run, tmp_path / "baseline", DECADES)
    state = load_checkpoint(run)
    assert state["kind"] == "baseline" and state["image_size"] == SIZE
    cache = FaceCache(tiny_cache)
    means = state["means"].numpy()
    assert means.shape == (8, 3, SIZE, SIZE)
    train = cache.indices("train")
    youngest = train[cache.ages[train] < 10]
    expect = np.asarray(cache.images[youngest]).astype(np.float64).mean(0).transpose(2, 0, 1) / 127.5 - 1
    np.testing.assert_allclose(means[0], expect, atol=1e-5)  # group 0's mean face is the mean of its train faces
    means_png = cv2.imread(str(run / "group_means.png"))
    assert means_png.shape == (SIZE, 8 * SIZE, 3)
    path = texport.export_run(run, tmp_path / "models")
    model = AgingModel.load(tmp_path / "models", providers="cpu")
    assert path.name == "aging.onnx" and model.image_size == SIZE and [list(g) for g in model.age_groups] == DECADES
    x, t, r = _real_inputs(tiny_cache, 3, 8)
    module, _ = texport.build_module(state)
    with torch.no_grad():
        ref, _ = module(x, t, r)
    got = model.session.run({"image": x.numpy(), "target": t.numpy(), "regions": r.numpy()})
    np.testing.assert_allclose(got["aged"], ref.numpy(), atol=1e-4)
    # with every region at strength 0, the far corners of the crop (outside face and hair) stay as they were
    zero = model.session.run({"image": x.numpy(), "target": t.numpy(), "regions": np.zeros_like(r.numpy())})
    assert np.abs(zero["aged"] - x.numpy())[:, :, :4, :4].max() < 1e-3


def test_prototype_model_builds_and_exports(tiny_cache, age_run, tmp_path):
    from training.prototype import build

    run = build(tiny_cache, age_run, tmp_path / "prototype", DECADES)
    state = load_checkpoint(run)
    assert state["kind"] == "prototype" and state["image_size"] == SIZE
    protos = state["protos"]
    assert protos["textures"].shape == (8, 3, SIZE, SIZE) and protos["flows"].shape == (8, 2, SIZE, SIZE)
    assert protos["log_energy"].shape == (8, 3, SIZE, SIZE) and torch.isfinite(protos["log_energy"]).all()
    assert cv2.imread(str(run / "prototypes.png")).shape == (2 * SIZE, 8 * SIZE, 3)
    texport.export_run(run, tmp_path / "models")
    model = AgingModel.load(tmp_path / "models", providers="cpu")
    assert model.format == "agelapse-aging/2" and model.image_size > SIZE  # the faces' square and a margin
    from training.evaluate import Reframe

    cache = FaceCache(tiny_cache)
    frame = Reframe(cache, model)
    x, t, r = _real_inputs(tiny_cache, 3, 8)
    to_model = lambda a: torch.from_numpy(frame.images(((a.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)))
    x = to_model(x).permute(0, 3, 1, 2).float() / 127.5 - 1
    r = torch.from_numpy(frame.masks((r.numpy() * 255).astype(np.uint8))).float() / 255
    lm = torch.from_numpy(frame.points(np.asarray(cache.landmarks[cache.indices("test")[:3]]))).float()
    hair = torch.tensor([1.0, 0.0, 1.5])
    module, _ = texport.build_module(state)
    feed = {"image": x.numpy(), "target": t.numpy(), "regions": r.numpy(), "landmarks": lm.numpy(), "hair": hair.numpy()}
    with torch.no_grad():
        ref, _ = module(x, t, r, lm, hair)
        source = module.source(x, lm)
        same, keep = module(x, source, r, lm, hair)  # target = the face's own age: nothing to change
    np.testing.assert_allclose(model.session.run(feed)["aged"], ref.numpy(), atol=1e-4)
    np.testing.assert_allclose(same.numpy(), x.numpy(), atol=5e-5)  # to grid_sample's rounding of the identity warp
    assert keep.min() > 0.999
    zero = model.session.run({**feed, "regions": np.zeros_like(feed["regions"]), "hair": np.zeros(3, np.float32)})
    assert np.abs(zero["aged"] - x.numpy())[:, :, :4, :4].max() < 1e-3


def test_mesh_warps_a_face_onto_the_mean_shape(tiny_cache):
    from training.prototype import Mesh

    mean = FaceCache(tiny_cache).template.at_size(SIZE).astype(np.float64)
    mesh = Mesh(mean, SIZE)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    ramp = np.stack([xx * 3, yy * 3, np.zeros_like(xx)], -1)  # a pixel's value says where it came from
    shift = np.array([2.0, -1.5])
    warped = mesh.to_mean(ramp, mean + shift)  # this face sits 2 px right of and 1.5 px above the mean shape
    inner = np.arange(17, 68)  # brows, nose, eyes, mouth: surrounded by landmarks, away from the frame
    px = np.round(mean[inner]).astype(int)
    got = warped[px[:, 1], px[:, 0], :2] / 3
    np.testing.assert_allclose(got, px + shift, atol=0.05)
    np.testing.assert_allclose(mesh.to_mean(ramp, mean)[..., :2], ramp[..., :2], atol=1e-3)  # the mean shape: unchanged


def _mean_shape(s: int) -> torch.Tensor:
    from testkit.contract_model import AGING_TEMPLATE

    return torch.tensor(AGING_TEMPLATE, dtype=torch.float32) * s


def _flat_protos(k: int = 8, s: int = 32) -> dict:
    return {"textures": torch.zeros(k, 3, s, s), "log_energy": torch.zeros(k, 3, s, s), "flows": torch.zeros(k, 2, s, s),
            "mean_shape": _mean_shape(s)}


def _fixed_ager(protos: dict, gains, source: int, coring: float = 0.0, tone_gain: float = 1.0, margin: int = 0,
                texture_cap: float = 0.0, pattern_shading: float = 0.0, pattern_chroma: float = 1.0):
    """A PrototypeAger on hand-made prototypes with plain settings (no blur, no saturation, no
    group scaling, no hair, no cap on texture) that takes every face for a member of group ``source``."""
    from training.prototype import PrototypeAger

    k, s = protos["textures"].shape[0], protos["textures"].shape[-1]
    ones = torch.ones(s, s)
    m = PrototypeAger(protos, AgeNet(8), 32, DECADES, ones, ones, gains=gains, colour_sigma=0.0, detail_limit=1.0,
                      group_scale=(1.0,) * k, detail_coring=coring, tone_gain=tone_gain, shape_scale=(1.0,) * k,
                      hair_levels=(0.0,) * k, brow_levels=(0.0,) * k, margin=margin, texture_cap=texture_cap,
                      pattern_shading=pattern_shading, pattern_chroma=pattern_chroma)
    m.source = lambda image, landmarks: torch.eye(k)[[source] * len(image)]
    return m.eval()


def _run(ager, image, target, regions, landmarks=None):
    """One call of the /2 contract: the face at the mean shape unless ``landmarks`` says otherwise."""
    n = image.shape[0]
    lm = (_mean_shape(ager.out_size - 2 * ager.margin) + ager.margin if landmarks is None else landmarks).expand(n, -1, -1)
    return ager(image, target.expand(n, -1), regions.expand(n, -1, -1, -1), lm, torch.ones(n))


def _gate_everywhere(s: int = 32) -> torch.Tensor:
    """Region inputs that open the gate fully at every pixel (with cover and head all ones)."""
    regions = torch.zeros(1, 5, s, s)
    regions[:, 1] = 1.0
    return regions


def test_prototype_transform_follows_its_prototypes():
    from training.face_masks import top_fade
    from training.filters import LUMA

    s, k = 32, 8
    protos = _flat_protos(k, s)
    warm = torch.tensor([0.3, 0.1, -0.1])
    protos["textures"][7] = warm[:, None, None]  # the oldest group: warmer skin, twice the fine detail, features 2 px right
    protos["log_energy"][7] = math.log(2.0)
    protos["flows"][7, 0] = 2.0
    ager = lambda gains, source: _fixed_ager(protos, gains, source)
    regions = _gate_everywhere(s)
    young, old = torch.eye(k)[[0]], torch.eye(k)[[7]]
    tone = torch.log(1 + warm)  # the old group's skin relative to the young group's, as a log ratio
    g = torch.Generator().manual_seed(0)
    noise = (torch.rand(1, 1, s, s, generator=g) * 0.4 - 0.2).expand(-1, 3, -1, -1)
    to01 = lambda x: (x + 1) / 2
    # the colour and detail change is whole below the forehead's upper part, which fades it out
    whole = int(np.argmax(top_fade(protos["mean_shape"].numpy(), s)[:, 0] >= 1.0))
    low = lambda img: img[..., whole:, :]
    with torch.no_grad():
        aged, _ = _run(ager((1, 0, 0), 0), noise, old, regions)  # a black-and-white photo: the change's grey part only
        assert torch.allclose(aged[:, 0], aged[:, 1], atol=1e-6) and torch.allclose(aged[:, 1], aged[:, 2], atol=1e-6)
        np.testing.assert_allclose(low(to01(aged) / to01(noise)).numpy(), math.exp(float(tone @ torch.tensor(LUMA))), rtol=1e-4)
        colourful = noise * torch.tensor([1.0, 0.3, 0.2])[:, None, None] + torch.tensor([0.2, -0.3, -0.5])[:, None, None]
        aged, _ = _run(ager((1, 0, 0), 0), colourful, old, regions)  # a colour photo: the whole change, chroma included
        np.testing.assert_allclose(low(to01(aged) / to01(colourful)).mean((0, 2, 3)).numpy(), torch.exp(tone).numpy(), rtol=1e-4)
        fine = lambda img: (lambda x: (x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, 1)).std().item())(low(img))
        older, _ = _run(ager((0, 1, 0), 0), noise, old, regions)
        younger, _ = _run(ager((0, 1, 0), 7), noise, young, regions)
        assert fine(older) > 1.4 * fine(noise) and fine(younger) < 0.75 * fine(noise)
        ys, xs = torch.meshgrid(torch.arange(s).float(), torch.arange(s).float(), indexing="ij")
        ramp = (xs / (s - 1) * 2 - 1)[None, None].expand(1, 3, -1, -1)
        moved, _ = _run(_fixed_ager(protos, (0, 0, 1), 0, tone_gain=0.0), ramp, old, regions)
    np.testing.assert_allclose(moved[0, 0, :, 4:].numpy(), ramp[0, 0, :, 2:-2].numpy(), atol=1e-5)  # 2 px right


def test_skin_tone_changes_by_the_same_fraction_for_every_skin():
    """A dark and a light face aged alike: the tone changes both by the same ratio, and the
    prototypes' pattern (a fold) shades a skin darker than the prototypes' in proportion to its
    brightness, a lighter one (a flushed or over-exposed face) no more than theirs."""
    s, k = 32, 8
    protos = _flat_protos(k, s)
    protos["textures"][7] = -0.1  # the oldest group: a little darker skin ...
    protos["textures"][7, :, 10:20, 4:8] = -0.5  # ... and a fold on the left cheek
    regions = _gate_everywhere(s)
    old = torch.eye(k)[[7]]
    dark = torch.full((1, 3, s, s), -0.6)  # 0.2 of the range
    light = torch.full((1, 3, s, s), 0.4)  # 0.7 of the range
    with torch.no_grad():
        tone_only = _fixed_ager(protos, (0, 0, 0), 0)
        a, b = (_run(tone_only, x, old, regions)[0] for x in (dark, light))
        ra, rb = (a + 1) / (dark + 1), (b + 1) / (light + 1)
        assert torch.allclose(ra, rb, atol=1e-5) and ra.mean() < 0.99  # the same fraction darker
        pattern_only = _fixed_ager(protos, (1, 0, 0), 0, tone_gain=0.0)
        fold = lambda x: (lambda y: (y[..., 10:20, 4:8].mean() - y[..., 10:20, 20:28].mean()).item())(_run(pattern_only, x, old, regions)[0])
        assert fold(dark) < 0 and fold(light) < 0
        mid = torch.zeros(1, 3, s, s)  # 0.5 of the range: the prototypes' own skin
        assert fold(dark) / fold(mid) == pytest.approx(0.2 / 0.5, rel=0.05)
        assert fold(light) == pytest.approx(fold(mid), rel=0.05)


def test_a_fold_shades_a_flushed_cheek_in_its_own_colour_not_grey():
    """The groups' average fold is darker and less red than a child's flushed cheek; added as it
    is, it drew a grey streak across the cheek of a child made 60+. As a shade of the skin's own
    colour (pattern_shading) it darkens the cheek by the same luminance and keeps its hue; its
    colour is kept by pattern_chroma."""
    from training.filters import LUMA

    s, k = 32, 8
    protos = _flat_protos(k, s)
    protos["textures"][7, :, 10:20, 4:10] = torch.tensor([-0.7, -0.2, -0.2]).view(3, 1, 1)  # darker, less red
    pink = torch.tensor([0.8, 0.1, 0.0]).view(1, 3, 1, 1).expand(1, 3, s, s).clone()  # 0.9, 0.55, 0.5
    luma = torch.tensor(LUMA)
    with torch.no_grad():
        def fold(**kw):
            aged, _ = _run(_fixed_ager(protos, (1, 0, 0), 0, tone_gain=0.0, **kw), pink, torch.eye(k)[[7]], _gate_everywhere(s))
            return ((aged + 1) / 2)[0, :, 12:18, 5:7].mean((1, 2))
        skin = (pink[0, :, 0, 0] + 1) / 2
        added, shaded, plain = fold(), fold(pattern_shading=1.0, pattern_chroma=0.0), fold(pattern_chroma=0.0)
    hue = lambda c: (c[0] - c[2]) / (c[0] - c[1])  # the direction of its colour
    sat = lambda c: float((c.max() - c.min()) / c.max())
    assert float(added @ luma) < float(skin @ luma) - 0.03  # the fold is there, and added as it is it is greyer
    assert sat(added) < sat(skin) - 0.02
    assert float(shaded @ luma) == pytest.approx(float(plain @ luma), abs=1e-4)  # shaded: as dark, in the skin's colour
    assert sat(shaded) == pytest.approx(sat(skin), abs=0.005) and float(hue(shaded)) == pytest.approx(float(hue(skin)), abs=0.01)


def test_colours_pushed_out_of_range_keep_their_hue():
    """A change that brightens a red, over-exposed skin whose red is already at 1 raises its green
    and blue; clamped channel by channel the skin turns green-grey. Cut to the share of the change
    that stays in range, it keeps its direction."""
    from training.filters import within_range

    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.8 + 0.1
    small = x + 0.05 * torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3)).clamp(-1, 1)
    assert torch.allclose(within_range(x, small), small)  # changes that stay in range are left alone
    x = torch.tensor([0.9, 0.6, 0.3]).view(1, 3, 1, 1)
    for d in (torch.tensor([0.2, 0.1, 0.02]), torch.tensor([-0.1, -0.3, -0.6]), torch.tensor([0.3, -0.1, 0.05])):
        y = within_range(x, x + d.view(1, 3, 1, 1))
        assert y.min() >= 0 and y.max() <= 1 and (y.amax() == 1 or y.amin() == 0)  # as far as the range allows
        share = (y - x).flatten() / d
        assert torch.allclose(share, share[0].expand(3), atol=1e-5) and 0 < share[0] < 1  # in the change's direction
    s, k = 32, 8
    protos = _flat_protos(k, s)
    protos["textures"][7, :, 10:20, 4:8] = 0.5  # the oldest group: a grey highlight on the left cheek
    red = torch.tensor([1.0, 0.1, -0.1]).view(1, 3, 1, 1).expand(1, 3, s, s).clone()  # red 1.0, green 0.55, blue 0.45
    with torch.no_grad():
        aged, _ = _run(_fixed_ager(protos, (1, 0, 0), 0, tone_gain=0.0), red, torch.eye(k)[[7]], _gate_everywhere(s))
    spot = ((aged + 1) / 2)[0, :, 12:18, 5:7].mean((1, 2))
    assert float(spot[0] - spot[1]) == pytest.approx(0.45, abs=0.02) and float(spot[1] - spot[2]) == pytest.approx(0.1, abs=0.02)



def test_a_shade_on_a_clipped_highlight_takes_the_skins_colour():
    """A flushed, flash-lit cheek whose red and green are both clipped at 1 reads as a pale yellow;
    a fold's shading darkened it into a grey-green patch on a pink face (a ruddy 17-year-old made
    50+). Darkened, a clipped pixel takes the colour of the face's unclipped skin at its new
    lightness; the rest of the change, and clipped pixels that are not darkened, are left alone."""
    from training.filters import LUMA, shade_clipped

    luma = torch.tensor(LUMA).view(1, 3, 1, 1)
    pink = torch.tensor([0.9, 0.6, 0.5]).view(1, 3, 1, 1)
    x = pink.expand(1, 3, 16, 16).clone()
    x[..., 2:8, 2:8] = torch.tensor([0.99, 0.97, 0.9]).view(1, 3, 1, 1)  # clipped: darkened below
    x[..., 10:14, 10:14] = torch.tensor([0.99, 0.97, 0.9]).view(1, 3, 1, 1)  # clipped: left as it is
    y = x * 0.95
    y[..., 2:8, 2:8] = x[..., 2:8, 2:8] - 0.15  # the shade added alike to every channel: grey-yellow
    y[..., 10:14, 10:14] = x[..., 10:14, 10:14]
    out = shade_clipped(x, y, torch.ones(1, 1, 16, 16))
    patch = out[..., 4:6, 4:6].mean((2, 3), keepdim=True)
    warmth = lambda c: float(((c[:, 0] - c[:, 1]) / (c * luma).sum(1)).mean())  # red over green, for its lightness
    hue = lambda c: float(((c[:, 0] - c[:, 1]) / (c[:, 1] - c[:, 2])).mean())
    # grey-yellow as the change had it; pink after, as saturated as a pink that light can be
    assert warmth(y[..., 4:6, 4:6]) < 0.05 and warmth(patch) > 0.25 and hue(patch) == pytest.approx(hue(pink), rel=0.02)
    assert float(patch.max()) == pytest.approx(1.0, abs=0.005)
    assert float((patch * luma).sum()) == pytest.approx(float((y[..., 4:6, 4:6] * luma).sum(1).mean()), abs=0.005)
    assert torch.allclose(out[..., 10:14, 10:14], y[..., 10:14, 10:14])  # clipped, not darkened: kept
    assert torch.allclose(out[..., 8:10, :], y[..., 8:10, :], atol=2e-3)  # unclipped skin: the change as it was

def test_the_far_side_of_a_turned_face_takes_less_of_the_change():
    """A face turned away has its far side squeezed: the template's whole cheek lands in a narrow
    strip, where its folds and lines would read as bands. The change fades there by how much the
    map squeezes, and nowhere on a face at the mean shape."""
    s, k = 64, 8
    protos = _flat_protos(k, s)
    protos["textures"][7] = -0.4  # the oldest group: darker skin, a change everywhere the gate is open
    ager = _fixed_ager(protos, (1, 0, 0), 0)
    frontal = _mean_shape(s)[None]
    turned = frontal.clone()
    cx = float(frontal[0, :, 0].mean())
    right = turned[..., 0] > cx
    turned[..., 0] = torch.where(right, cx + (turned[..., 0] - cx) * 0.4, turned[..., 0])  # the right half at 40 % of its width
    with torch.no_grad():
        cover = torch.ones(1, 1, s, s)
        fade = lambda lm: ager.foreshortened(ager.map(lm), cover)[0, 0]
        assert torch.allclose(fade(frontal), torch.ones(s, s), atol=1e-4)
        f = fade(turned)
        near, far = f[20:44, 12:24].mean(), f[20:44, int(cx) + 3:int(cx) + 9].mean()
        assert near > 0.97 and far < 0.8
        flat = torch.zeros(1, 3, s, s)
        change = lambda m: (_run(m, flat, torch.eye(k)[[7]], _gate_everywhere(s), landmarks=turned)[0] - flat).abs()[0].mean(0)
        with_fade = change(ager)
        ager.foreshortening = 0.0
        without = change(ager)
    assert torch.allclose(with_fade[20:44, 12:24], without[20:44, 12:24], rtol=0.05)
    assert with_fade[20:44, int(cx) + 3:int(cx) + 9].mean() < 0.85 * without[20:44, int(cx) + 3:int(cx) + 9].mean()


def test_a_margin_around_the_face_changes_nothing_but_the_framing():
    """The model's crop may hold the training faces' square with a margin: a face framed so
    (landmarks moved by the margin) gets the same change, moved by the margin, and the margin's
    pixels change only as far as the face's own change reaches them."""
    s, k, margin = 32, 8, 6
    protos = _flat_protos(k, s)
    protos["textures"][7, :, 12:20, 8:24] = -0.5  # an old group's fold
    protos["flows"][7, 1] = 1.0
    g = torch.Generator().manual_seed(0)
    face = torch.rand(1, 3, s, s, generator=g) * 0.6 - 0.3
    framed = F.pad(face, (margin,) * 4, mode="replicate")
    old = torch.eye(k)[[7]]
    tight = _fixed_ager(protos, (1, 0, 1), 0, tone_gain=0.0)
    loose = _fixed_ager(protos, (1, 0, 1), 0, tone_gain=0.0, margin=margin)
    assert loose.out_size == s + 2 * margin
    with torch.no_grad():
        a, _ = _run(tight, face, old, _gate_everywhere(s))
        b, _ = _run(loose, framed, old, F.pad(_gate_everywhere(s), (margin,) * 4))
    inner = b[..., margin:-margin, margin:-margin]
    np.testing.assert_allclose(inner[..., 6:-6, 6:-6].numpy(), a[..., 6:-6, 6:-6].numpy(), atol=2e-3)  # the head ends at the square
    assert (b - framed)[..., :margin - 2, :].abs().max() < 1e-4  # the top of the margin: no change reaches it


def test_the_change_fades_out_over_the_upper_forehead_without_a_line():
    """Regions that end at the template's top edge (a bald head, a high forehead): the colour
    change fades to nothing over the forehead's upper part instead of stopping in a line."""
    from training.face_masks import top_fade

    s, k, margin = 32, 8, 6
    protos = _flat_protos(k, s)
    protos["textures"][7] = -0.3  # the oldest group: darker skin everywhere
    ager = _fixed_ager(protos, (1, 0, 0), 0, tone_gain=1.0, margin=margin)
    face = torch.zeros(1, 3, s + 2 * margin, s + 2 * margin)
    with torch.no_grad():
        aged, _ = _run(ager, face, torch.eye(k)[[7]], F.pad(_gate_everywhere(s), (margin,) * 4))
    rows = (aged - face).abs().mean((0, 1, 3))[margin : margin + s // 2]  # the template's top half
    whole = float(rows[-1])
    assert whole > 0.05
    assert float(rows[0]) < 0.1 * whole  # nothing left at the top edge
    assert float((rows[1:] - rows[:-1]).abs().max()) < 0.25 * whole  # and no step on the way
    fade = top_fade(protos["mean_shape"].numpy(), s)[:, 0]
    assert fade[0] == 0 and fade[-1] == 1 and np.all(np.diff(fade) >= 0)


def test_prototypes_land_on_the_persons_own_features():
    """A template-space feature (a dark fold below the left eye of the mean face) is applied
    where this face's left eye is: a face shifted and turned in the crop gets it there, not at
    the template's place."""
    s, k = 64, 8
    protos = _flat_protos(k, s)
    mean = protos["mean_shape"]
    cx, cy = mean[36:42].mean(0).round().int().tolist()
    protos["textures"][7, :, cy + 4 : cy + 8, cx - 3 : cx + 4] = -0.6
    ager = _fixed_ager(protos, (1, 0, 0), 0, tone_gain=0.0)
    regions = _gate_everywhere(s)
    moved = mean.clone()
    moved[:, 0] += 6  # 6 px to the right ...
    moved[36:48, 0] += 2 * (moved[36:48, 0] - moved[27, 0]).sign()  # ... and the far side's features squeezed
    moved[36:42, 0] += 3  # the left eye nearer the nose, as on a turned face
    flat = torch.zeros(1, 3, s, s)
    with torch.no_grad():
        at_mean, _ = _run(ager, flat, torch.eye(k)[[7]], regions)
        at_person, _ = _run(ager, flat, torch.eye(k)[[7]], regions, moved)
    def darkest(img):  # the centre of the fold: where the image is darker than half its darkest
        dark = (img[0, 0] < 0.5 * img[0, 0].min()).float()
        ys, xs = torch.meshgrid(torch.arange(s).float(), torch.arange(s).float(), indexing="ij")
        return float((ys * dark).sum() / dark.sum()), float((xs * dark).sum() / dark.sum())

    ey, ex = moved[36:42].mean(0).tolist()[::-1]
    (y0, x0), (y1, x1) = darkest(at_mean), darkest(at_person)
    assert abs(x0 - (cx + 0.5)) <= 1 and abs(y0 - (cy + 5.5)) <= 1
    assert abs(x1 - (ex + 0.5)) <= 2 and abs(y1 - (ey + 5.5)) <= 2  # the eye and cheek triangles deform unevenly
    assert x1 - x0 >= 6


def test_evaluate_on_exported_models(models_dir, tiny_cache, tmp_path, capsys):
    from training.evaluate import evaluate

    # the same age model as guide and as judge: both tables are made, and they agree
    result = evaluate(models_dir / "aging.onnx", tiny_cache, age_model=str(models_dir / "age.onnx"), limit=2,
                      json_out=str(tmp_path / "eval.json"), judge=str(models_dir / "age.onnx"))
    assert json.loads((tmp_path / "eval.json").read_text()) == json.loads(json.dumps(result))
    assert result["age"]["n"] == 4 and math.isfinite(result["age"]["mae"])  # the whole test split
    assert result["judge_age"] == result["age"]
    ages = FaceCache(tiny_cache).ages[FaceCache(tiny_cache).indices("test")]
    assert sum(v["n"] for v in result["age"]["per_decade"].values()) == len(ages)
    g = result["aging"]
    labels = AgingModel.load(models_dir, providers="cpu").group_labels
    assert g["n"] == 2 and list(g["per_group"]) == labels and g["referee"] == "judge"
    assert g["ages"]["guide"] == g["ages"]["judge"] and list(g["ages"]["judge"]["per_group"]) == labels
    for v in g["ages"]["judge"]["per_group"].values():
        assert 0 <= v["age_accuracy"] <= 1
    for v in g["per_group"].values():
        assert 0 <= v["verification_rate"] <= 1 and v["mean_identity_distance"] >= 0 and v["artefact"] >= 0
    assert set(g["slices"]) == {"race", "source age", "yaw"}
    assert sum(v["n"] for v in g["slices"]["yaw"].values()) == 2
    assert "/" not in result["model"]  # no local paths in what may be embedded in a model file
    for name in g["galleries"].values():
        picture = cv2.imread(str(tmp_path / "eval_galleries" / name))
        assert picture is not None and picture.shape[1] == 9 * SIZE  # the input and every group
    out = capsys.readouterr().out
    assert "Aging model on 2 test faces" in out and "Age model: MAE" in out and "Age judge: MAE" in out


def test_evaluate_can_choose_on_the_validation_split(models_dir, tiny_cache):
    from training.evaluate import evaluate

    cache = FaceCache(tiny_cache)
    result = evaluate(models_dir / "aging.onnx", tiny_cache, age_model=str(models_dir / "age.onnx"), limit=1, split="val")
    assert result["split"] == "val" and result["aging"]["split"] == "val"
    assert result["age"]["n"] == len(cache.indices("val")) and result["aging"]["n"] == 1
    with pytest.raises(ValueError, match="split"):
        evaluate(models_dir / "aging.onnx", tiny_cache, age_model=str(models_dir / "age.onnx"), split="train")


def test_export_can_take_the_last_weights_instead_of_the_average(age_run, tmp_path):
    import onnxruntime as ort

    from training.export import export_run

    ema = export_run(age_run, tmp_path / "ema")
    last = export_run(age_run, tmp_path / "last", weights="model")
    meta = ort.InferenceSession(str(last)).get_modelmeta().custom_metadata_map
    assert meta["weights"] == "model"
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, int(meta["image_size"]), int(meta["image_size"]))).astype(np.float32)
    a = ort.InferenceSession(str(ema)).run(None, {"image": x})[0]
    b = ort.InferenceSession(str(last)).run(None, {"image": x})[0]
    assert not np.allclose(a, b)  # a different set of weights went into the file
    with pytest.raises(ValueError):
        export_run(age_run, tmp_path / "bad", weights="best")


def test_torchrun_with_two_processes_trains_both_models(tiny_cache, age_run, tmp_path):
    """The same command under torchrun (DistributedDataParallel, gloo on the CPU)."""
    import json
    import subprocess
    import sys

    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    tiny_age = ["--set", "width=8", "--set", "input_size=32", "--set", "batch=4", "--set", "steps=2", "--set", "workers=0", "--set", "log_every=1"]
    tiny_aging = ["--set", "g_width=8", "--set", "l_width=8", "--set", "d_width=8", "--set", "global_size=32",
                  "--set", "batch=2", "--set", "n_critic=1", "--set", "steps=2", "--set", "log_every=1", "--set", f"age_model={age_run}"]
    for kind, extra in (("age", tiny_age), ("aging", tiny_aging)):
        out = tmp_path / kind
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "training", kind,
               "--cache", str(tiny_cache), "--out", str(out), *extra]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert (out / "checkpoint.pt").is_file()
        rows = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
        assert rows and rows[-1]["step"] == 2  # only rank 0 writes the log


def test_the_age_model_is_rebuilt_exactly_from_its_onnx_file(models_dir, age_run, tiny_cache, tmp_path):
    """A fresh clone has no age run, only the shipped age.onnx (BatchNorms folded by the exporter):
    the aging models that carry it are built from that file and compute what it computes."""
    from training.age_source import load_age_state
    from training.prototype import build

    rebuilt = load_age_state(models_dir / "age.onnx")
    trained = load_age_state(age_run)
    assert rebuilt["config"] == {k: trained["config"][k] for k in ("width", "max_age", "input_size")}
    nets = []
    for state in (rebuilt, trained):
        net = AgeNet(state["config"]["width"], state["config"]["max_age"])
        net.load_state_dict(state["ema"])
        nets.append(net.eval())
    size = rebuilt["config"]["input_size"]
    x = torch.from_numpy(np.array(FaceCache(tiny_cache).images[:4])).permute(0, 3, 1, 2).float() / 127.5 - 1
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    with torch.no_grad():
        np.testing.assert_allclose(nets[0](x).numpy(), nets[1](x).numpy(), atol=1e-4)
    run = build(tiny_cache, models_dir / "age.onnx", tmp_path / "prototype", DECADES)
    assert load_checkpoint(run)["age_config"]["input_size"] == size
    with pytest.raises(ValueError, match="not an age model"):
        load_age_state(models_dir / "aging.onnx")
    with pytest.raises(FileNotFoundError):
        load_age_state(tmp_path / "nothing-here")


def test_coring_deepens_lines_but_not_noise():
    """With ``detail_coring`` the detail gain leaves faint noise (a young face's sensor and JPEG
    grain) nearly as it was and still deepens strong lines; smoothing towards a young target is
    unchanged by it."""
    s, k = 32, 8
    protos = _flat_protos(k, s)
    protos["log_energy"][7] = math.log(2.0)  # the oldest group: twice the detail
    ager = lambda coring, source: _fixed_ager(protos, (0, 1, 0), source, coring)
    regions = _gate_everywhere(s)

    g = torch.Generator().manual_seed(0)
    pattern = (torch.rand(1, 1, s, s, generator=g) * 2 - 1).expand(-1, 3, -1, -1)
    faint, strong = 0.004 * pattern, 0.4 * pattern  # in [-1, 1]: 0.2 % and 20 % of the luminance range
    old, young = torch.eye(k)[[7]], torch.eye(k)[[0]]
    gain = lambda out, x: ((out - x).abs().mean() / x.abs().mean()).item()
    with torch.no_grad():
        plain, cored = ager(0.0, 0), ager(0.02, 0)
        assert gain(_run(cored, faint, old, regions)[0], faint) < 0.2 * gain(_run(plain, faint, old, regions)[0], faint)
        assert gain(_run(cored, strong, old, regions)[0], strong) > 0.7 * gain(_run(plain, strong, old, regions)[0], strong) > 0.2
        np.testing.assert_allclose(_run(ager(0.02, 7), faint, young, regions)[0].numpy(),
                                   _run(ager(0.0, 7), faint, young, regions)[0].numpy(), atol=1e-6)


def test_a_texture_already_denser_than_the_target_groups_is_not_deepened():
    """The detail gain assumes a face as soft as its group's prototypes: a face that is (its
    detail energy at its group's) deepens in full, cap or none; a sharp photo's texture, already
    far above what the target group has, is not deepened (its dots became dark blotches);
    smoothing towards a young target is left alone."""
    from training.prototype import ENERGY_SIGMA
    from training.filters import Blur

    s, k = 32, 8
    g = torch.Generator().manual_seed(0)
    pattern = (torch.rand(1, 1, s, s, generator=g) * 2 - 1).expand(-1, 3, -1, -1)
    soft, sharp = 0.02 * pattern, 0.6 * pattern  # in [-1, 1]
    protos = _flat_protos(k, s)
    probe = _fixed_ager(protos, (0, 1, 0), 0)
    y = (soft[:, :1] + 1) * 0.5
    levels = [y] + [b(y) for b in probe.blurs]
    for b in range(3):  # the soft face's energy is its group's; the oldest group has twice it
        e = Blur(ENERGY_SIGMA)((levels[b] - levels[b + 1]).abs()).mean()
        protos["log_energy"][:, b] = math.log(float(e))
        protos["log_energy"][7, b] = math.log(2 * float(e))
    ager = lambda cap, source: _fixed_ager(protos, (0, 1, 0), source, texture_cap=cap)
    regions = _gate_everywhere(s)
    old, young = torch.eye(k)[[7]], torch.eye(k)[[0]]
    change = lambda a, x, t: (_run(a, x, t, regions)[0] - x).abs().mean().item()
    with torch.no_grad():
        assert change(ager(2.0, 0), soft, old) == pytest.approx(change(ager(0.0, 0), soft, old), rel=1e-3)
        assert change(ager(0.0, 0), soft, old) > 0.3 * soft.abs().mean().item()  # it did deepen
        assert change(ager(2.0, 0), sharp, old) < 0.05 * change(ager(0.0, 0), sharp, old)
        np.testing.assert_allclose(_run(ager(2.0, 7), sharp, young, regions)[0].numpy(),
                                   _run(ager(0.0, 7), sharp, young, regions)[0].numpy(), atol=1e-6)


def test_exported_metadata_carries_no_local_paths(age_run, tmp_path):
    """The evaluation names its model and cache by absolute path; the exported file keeps their names only."""
    import onnx

    metrics = {"model": str(tmp_path / "runs" / "stage" / "aging.onnx"), "cache": str(tmp_path / "cache") + "/",
               "split": "test", "age": {"mae": 5.4, "per_decade": {"70-79": {"n": 87}}},
               "sources": ["C:\\Users\\me\\runs\\age.onnx", "~/cache/utk128", "70+"]}
    out = texport.export_run(age_run, tmp_path / "models", metrics=metrics)
    props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert json.loads(props["metrics"]) == {
        "model": "aging.onnx", "cache": "cache", "split": "test", "age": {"mae": 5.4, "per_decade": {"70-79": {"n": 87}}},
        "sources": ["age.onnx", "utk128", "70+"]}
    for key, value in props.items():
        assert str(tmp_path) not in value and str(age_run) not in value and "\\Users" not in value, key
