"""The learned strength controller of the prototype model (training/strengths.py)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.test_training import _fixed_ager, _flat_protos, _gate_everywhere, _run
from training.strengths import COMPONENTS, RANGES, StrengthNet, age_gap_loss, multiplier_penalty


def _aged_protos(k: int = 8, s: int = 32) -> dict:
    protos = _flat_protos(k, s)
    protos["textures"][7] = torch.tensor([0.3, 0.1, -0.1])[:, None, None]  # the oldest group: warmer skin
    protos["textures"][7, :, :, ::4] -= 0.2  # and a fine pattern (folds) on it
    protos["log_energy"][7] = math.log(2.0)  # twice the fine detail
    protos["flows"][7, 0] = 2.0  # features 2 px to the right
    protos["wrinkles"] = torch.randn(1, 1, s, s, generator=torch.Generator().manual_seed(1)) * 0.2
    return protos


def _face(s: int = 32) -> torch.Tensor:
    """A smooth ramp from left to right (a shift of the features changes it in proportion) with grain."""
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-0.6, 0.6, s).view(1, 1, 1, s).expand(1, 3, s, s)
    return (ramp + 0.05 * torch.randn(1, 3, s, s, generator=g)).clamp(-1, 1)


def _controller(bias: dict, ranges=RANGES) -> StrengthNet:
    """A controller whose output does not depend on the face: each component's head bias set."""
    net = StrengthNet(8, width=4, ranges=ranges)
    with torch.no_grad():
        for name, value in bias.items():
            net.head[-1].bias[COMPONENTS.index(name)] = value
    return net.eval()


def test_an_untrained_controller_leaves_the_prototype_model_as_it_was():
    protos, x, regions = _aged_protos(), _face(), _gate_everywhere()
    target = torch.eye(8)[7:8]
    plain = _fixed_ager(protos, (1.0, 1.0, 1.0), source=2)
    with_net = _fixed_ager(protos, (1.0, 1.0, 1.0), source=2)
    with_net.strengths = StrengthNet(8, width=4).eval()
    a, _ = _run(plain, x, target, regions)
    b, _ = _run(with_net, x, target, regions)
    assert (a - x).abs().mean() > 0.01  # the face is changed at all
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_multiplier_scales_its_own_part_of_the_change(component):
    protos, x, regions = _aged_protos(), _face(), _gate_everywhere()
    target = torch.eye(8)[7:8]
    ager = _fixed_ager(protos, (1.0, 1.0, 1.0), source=2)
    changes = {}
    for name, bias in (("low", -5.0), ("one", 0.0), ("high", 5.0)):
        # (ranges that go both ways for every part: the shipped texture's ends at 1, the wiring is the point)
        ager.strengths = _controller({component: bias}, ranges=((0.5, 1.5),) * len(COMPONENTS))
        with torch.no_grad():
            out, _ = _run(ager, x, target, regions)
            changes[name] = float((out - x).abs().mean())
    assert changes["low"] < changes["one"] < changes["high"]


def test_multipliers_reach_their_ranges_ends_and_are_one_at_zero():
    lo, hi = torch.tensor([r[0] for r in RANGES]), torch.tensor([r[1] for r in RANGES])
    face, target, source = torch.randn(2, 3, 32, 32), torch.eye(8)[[7, 7]], torch.eye(8)[[4, 4]]
    for bias, expected in ((-50.0, lo), (0.0, torch.ones(4)), (50.0, hi)):
        net = _controller({c: bias for c in COMPONENTS})
        with torch.no_grad():
            m = net(face, target, source)
        torch.testing.assert_close(m, expected.expand(2, -1))
    torch.manual_seed(0)
    net = StrengthNet(8, width=4)
    with torch.no_grad():
        net.head[-1].weight.normal_(0, 10.0)  # a wild controller still stays inside
        m = net(torch.randn(64, 3, 32, 32), torch.eye(8)[torch.arange(64) % 8], torch.eye(8)[3:4].expand(64, -1))
    assert torch.all(m >= lo - 1e-6) and torch.all(m <= hi + 1e-6) and float(m.std()) > 0.1


def test_controller_weights_survive_the_checkpoint_round_trip():
    net = StrengthNet(8, width=4, ranges=((0.5, 1.5),) * 4)
    with torch.no_grad():
        net.head[-1].bias.copy_(torch.tensor([0.3, -0.2, 0.9, -0.7]))
    state = {"config": net.config(), "weights": net.state_dict()}
    back = StrengthNet.from_state(state)
    args = (torch.randn(2, 3, 32, 32), torch.eye(8)[:2], torch.eye(8)[5:7])
    torch.testing.assert_close(back(*args), net.eval()(*args))


def test_age_gap_loss_is_zero_at_the_groups_reference_and_grows_with_the_gap():
    reference = torch.tensor([5.0, 15, 25, 35, 45, 55, 65, 75])
    target = torch.eye(8)[[7, 7]]
    at = age_gap_loss(torch.tensor([75.0, 75.0]), target, reference)
    near = age_gap_loss(torch.tensor([70.0, 70.0]), target, reference)
    far = age_gap_loss(torch.tensor([50.0, 50.0]), target, reference)
    assert float(at) == 0.0 and 0 < float(near) < float(far)
    blend = torch.zeros(1, 8)
    blend[0, 6:8] = 0.5  # halfway between 60-69 and 70+: the reference between theirs
    assert float(age_gap_loss(torch.tensor([70.0]), blend, reference)) == 0.0


def test_multiplier_penalty_is_zero_at_one_and_symmetric_in_the_ratio():
    assert float(multiplier_penalty(torch.ones(4, 4))) == 0.0
    assert float(multiplier_penalty(torch.full((1, 4), 2.0))) == pytest.approx(float(multiplier_penalty(torch.full((1, 4), 0.5))))


def test_a_childs_face_is_aged_by_the_model_unaided():
    young = [1.0, 1.0] + [0.0] * 6
    net = StrengthNet(8, width=4, young=young)
    with torch.no_grad():
        net.head[-1].bias.copy_(torch.tensor([5.0, 5.0, 5.0, -5.0]))  # everything up, the shape down
    face, target = torch.randn(3, 3, 32, 32), torch.eye(8)[[7, 7, 7]]
    source = torch.eye(8)[[0, 4, 4]]
    source[2] = 0.0
    source[2, 1], source[2, 4] = 0.5, 0.5  # half a child
    with torch.no_grad():
        m = net(face, target, source)
    lo, hi = torch.tensor([r[0] for r in RANGES]), torch.tensor([r[1] for r in RANGES])
    adult = torch.cat([hi[:3], lo[3:]])
    torch.testing.assert_close(m[0], torch.ones(4))  # the child: the model's own gains
    torch.testing.assert_close(m[1], adult, atol=1e-3, rtol=0)  # the adult: to the ranges' ends
    torch.testing.assert_close(m[2], 1 + (adult - 1) / 2, atol=1e-3, rtol=0)


def test_a_trained_controller_ships_inside_the_exported_model(tiny_cache, age_run, tmp_path):
    import numpy as np

    from core.models import AgingModel
    from testkit.training_fixtures import SIZE
    from training import export as texport
    from training.config import DECADES
    from training.preprocess import FaceCache
    from training.prototype import build
    from training.runtime import load_checkpoint
    from training.strengths import StrengthConfig, train

    proto = build(tiny_cache, age_run, tmp_path / "prototype", DECADES)
    run = train(proto, tiny_cache, tmp_path / "strengths",
                StrengthConfig(steps=3, batch=4, reference_faces=16, lr=0.05, log_every=1))
    state = load_checkpoint(run)
    assert state["kind"] == "prototype" and "strengths" in state
    assert len((run / "stats.jsonl").read_text().splitlines()) == 3
    texport.export_run(run, tmp_path / "models")
    model = AgingModel.load(tmp_path / "models", providers="cpu")
    cache = FaceCache(tiny_cache)
    idx = cache.indices("test")[:3]
    module, _ = texport.build_module(state)
    assert module.strengths is not None
    m = module.margin
    x = torch.from_numpy(np.asarray(cache.images[idx])).permute(0, 3, 1, 2).float() / 127.5 - 1
    x = torch.nn.functional.pad(x, (m,) * 4, mode="reflect")
    lm = torch.from_numpy(np.asarray(cache.landmarks[idx], dtype=np.float32)) + m
    r = torch.nn.functional.pad(torch.from_numpy(np.asarray(cache.masks[idx])).float() / 255, (m,) * 4)
    t, hair = torch.eye(8)[[7, 0, 4]], torch.ones(3)
    feed = {"image": x.numpy(), "target": t.numpy(), "regions": r.numpy(), "landmarks": lm.numpy(), "hair": hair.numpy()}
    with torch.no_grad():
        ref, _ = module(x, t, r, lm, hair)
        mult = module.seen["multipliers"]
        same, _ = module(x, module.source(x, lm), r, lm, hair)  # the face's own age: nothing to change
    assert x.shape[-1] == model.image_size == SIZE + 2 * m
    assert not torch.allclose(mult, torch.ones_like(mult))  # it learned something in three steps
    np.testing.assert_allclose(model.session.run(feed)["aged"], ref.numpy(), atol=1e-4)
    np.testing.assert_allclose(same.numpy(), x.numpy(), atol=5e-5)


def test_a_turned_face_is_aged_by_the_model_unaided():
    import numpy as np

    from testkit.contract_model import AGING_TEMPLATE
    from training.eval_slices import yaw_degrees
    from training.strengths import TURNED, turn

    pts = np.array(AGING_TEMPLATE, np.float64) * 128
    half = (pts[16, 0] - pts[0, 0]) / 2
    faces = []
    for shift in (0.0, 0.45, 0.7):  # frontal, turned some 30 degrees, turned past 40 degrees
        f = pts.copy()
        f[27:36, 0] += shift * half
        faces.append(f)
    lm = torch.tensor(np.stack(faces), dtype=torch.float32)
    expected = np.abs(np.sin(np.radians(yaw_degrees(lm.numpy()))))
    torch.testing.assert_close(turn(lm), torch.tensor(expected, dtype=torch.float32), atol=1e-4, rtol=0)
    t = turn(lm)
    assert float(t[0]) < TURNED[0] < float(t[1]) < TURNED[1] < float(t[2])
    net = _controller({"colour": 5.0, "detail": 5.0, "lines": 5.0, "shape": -5.0}, ranges=((0.5, 1.5),) * 4)  # three up, the shape down
    face, target, source = torch.randn(1, 3, 32, 32).expand(3, -1, -1, -1), torch.eye(8)[[7, 7, 7]], torch.eye(8)[[3, 3, 3]]
    with torch.no_grad():
        m = net(face, target, source, t)
        plain = net(face, target, source)
    torch.testing.assert_close(m[0], plain[0])  # frontal: as learned
    torch.testing.assert_close(m[2, :3], torch.ones(3))  # turned past 40 degrees: nothing added ...
    torch.testing.assert_close(m[:, 3], plain[:, 3])  # ... and what it takes away, kept
    assert torch.all(m[1, :3] > 1.05) and torch.all(m[1, :3] < m[0, :3] - 0.05)  # between
