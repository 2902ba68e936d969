"""The learned aging network (training/gan, issue 14): each loss's behaviour, the network's gates
and geometry, a tiny run that trains, resumes exactly, starts from a resume point, exports to
contract /2 and loads in the engine; the committed resume point; the restructure (one groups
module, one age-network rebuild, export by a registry of kinds). Tiny sizes, one thread, CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from core.models import AgingModel  # noqa: E402
from training import export as texport  # noqa: E402
from training.config import DECADES  # noqa: E402
from training.gan import losses as L  # noqa: E402
from training.gan.config import Aging2Config  # noqa: E402
from training.runtime import load_checkpoint  # noqa: E402

from testkit.training_fixtures import assert_same_state  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "training" / "gan" / "resume" / "aging_net.pt"


pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ------------------------------------------------------------------------------------- losses

def test_teacher_losses_are_zero_on_the_teacher_and_grow_with_the_difference():
    g = torch.Generator().manual_seed(0)
    t = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    assert L.teacher_l1(t, t) == 0 and L.teacher_multiscale_l1(t, t) == 0
    assert L.teacher_l1(t + 0.2, t) > L.teacher_l1(t + 0.1, t) > 0
    # a fine zero-mean pattern is a full-resolution difference, not a coarse one
    checker = 0.1 * (torch.arange(16).view(1, 16) + torch.arange(16).view(16, 1)).remainder(2).float() * 2 - 0.1
    assert float(L.teacher_multiscale_l1(t + checker, t)) < 1e-6 < float(L.teacher_l1(t + checker, t))
    assert float(L.teacher_multiscale_l1(t + 0.1, t)) == pytest.approx(0.1, abs=1e-5)


def test_chroma_l1_sees_colour_but_not_lightness():
    g = torch.Generator().manual_seed(4)
    teacher = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    assert float(L.chroma_l1(teacher + 0.3, teacher)) < 1e-6  # lighter or darker alike: no colour change
    redder = teacher + torch.tensor([0.3, 0.0, 0.0]).view(1, 3, 1, 1)
    assert float(L.chroma_l1(redder, teacher)) > 0.05


def test_local_l1_weighs_every_region_alike_and_ignores_outside():
    out, ref = torch.zeros(1, 3, 20, 20), torch.zeros(1, 3, 20, 20)
    masks = torch.zeros(1, 5, 20, 20)
    masks[0, 0, :10] = 1  # a large region (200 px)
    masks[0, 2, 15:17, 15:17] = 1  # a small one (4 px)
    big, small = out.clone(), out.clone()
    big[..., :10, :] = 0.5
    small[..., 15:17, 15:17] = 0.5
    assert float(L.local_l1(big, ref, masks)) == pytest.approx(float(L.local_l1(small, ref, masks)))
    outside = out.clone()
    outside[..., 18:, :2] = 1.0
    assert float(L.local_l1(outside, ref, masks)) == 0


def test_total_variation_and_attention_loss():
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert float(L.total_variation(flat)) == 0
    ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    noise = (torch.arange(64).view(1, 1, 8, 8) % 2).float()
    assert float(L.total_variation(noise)) > float(L.total_variation(ramp)) > 0
    tv, norm = L.attention_loss(torch.ones(1, 1, 8, 8))
    assert float(tv) == 0 and float(norm) == 0  # keeping the whole input costs nothing
    tv, norm = L.attention_loss(torch.zeros(1, 1, 8, 8))
    assert float(norm) == 1  # changing everything costs most


def test_critic_and_adversarial_losses():
    assert float(L.critic_loss(torch.tensor([1.5, 2.0]), torch.tensor([-1.0, -3.0]))) == 0
    assert float(L.critic_loss(torch.tensor([0.0]), torch.tensor([0.0]))) == 2
    assert float(L.adversarial_loss(torch.tensor([2.0]))) < float(L.adversarial_loss(torch.tensor([0.0])))
    # a real face judged as another group counts as a fake: nothing to learn once it scores below -1
    assert float(L.mismatch_loss(torch.tensor([-1.5, -2.0]))) == 0
    assert float(L.mismatch_loss(torch.tensor([1.0]))) == 2



def test_the_detail_view_shows_texture_not_colour():
    """critic_input=detail: a critic that sees only the luminance's fine detail over its local
    brightness cannot be answered by make-up or a skin tone (the residual run drew pink lips and dark
    lash lines for the colour critic)."""
    g = torch.Generator().manual_seed(2)
    skin = torch.tensor([0.8, 0.6, 0.5]).view(1, 3, 1, 1).expand(1, 3, 32, 32).clone()
    lined = skin.clone()
    lined[..., 15:17, 4:28] *= 0.7  # a line across
    to_pm = lambda x01: x01 * 2 - 1
    flat = L.detail_view(to_pm(skin))
    assert float(flat.abs().max()) < 1e-5  # a flat skin has no texture
    line = L.detail_view(to_pm(lined))
    assert float(line[..., 15:17, 8:24].mean()) < -0.3  # the line is there, dark
    dark = L.detail_view(to_pm(lined * 0.4))  # a darker skin: the same relative detail
    torch.testing.assert_close(dark, line, atol=1e-4, rtol=0)
    tinted = lined * torch.tensor([1.1, 0.9, 0.9]).view(1, 3, 1, 1)  # make-up: a colour over the area
    assert float((L.detail_view(to_pm(tinted)) - line).abs().max()) < 0.05
    noisy = to_pm(skin + 0.02 * torch.randn(1, 1, 32, 32, generator=g))
    assert float(L.detail_view(noisy).abs().mean()) > 0.01  # grain is texture too


def test_translated_moves_each_view_by_whole_pixels_and_passes_gradients():
    """critic_shift: each view moved by its own offset, the content kept (reflected at the border),
    so a band at a fixed row of the frame is no longer at a fixed row for the critic."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(6, 3, 40, 40)
    x[:, :, 10:12, :] = 1.0  # a band across every view at rows 10-11
    x.requires_grad_(True)
    y = L.translated(x, 0.125, g)
    rows = [int(y[i, 0].mean(1).argmax()) for i in range(6)]
    assert len(set(rows)) > 1 and all(5 <= r <= 16 for r in rows)  # moved, by at most 5 px, not the same for all
    for i in range(6):  # whole pixels: the band stays two rows of 1, nothing blurred
        assert torch.allclose(y[i, 0].sum(0), torch.full((40,), 2.0), atol=1e-4)
    y.sum().backward()
    assert float(x.grad.abs().sum()) > 0
    assert L.translated(x, 0.0, g) is x


def test_guide_view_blurs_noises_and_shifts_yet_passes_gradients():
    x = (torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1).requires_grad_(True)
    a = L.guide_view(x, torch.Generator().manual_seed(5))
    b = L.guide_view(x, torch.Generator().manual_seed(5))
    c = L.guide_view(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert float((a - x).detach().abs().mean()) > 0.01 and float(a.abs().max()) <= 1
    levels = torch.unique(torch.round((a.detach() + 1) * 31 / 2, decimals=3))
    assert len(levels) <= 32  # quantised to 32 levels
    a.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # grey: the guide sees no colour, so a change of chroma alone earns no gradient
    g = L.guide_view(x, torch.Generator().manual_seed(5), grey=True)
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    x.grad = None
    (g * torch.randn(g.shape, generator=torch.Generator().manual_seed(2))).sum().backward()
    chroma_dir = torch.tensor([1.0, -0.299 / 0.587, 0.0]).view(1, 3, 1, 1)  # no change of luminance
    assert abs(float((x.grad * chroma_dir).sum())) < 1e-4 * float(x.grad.abs().sum())


def test_age_loss_prefers_the_target_group():
    t = torch.tensor([[0, 0, 1.0, 0]])
    right, wrong = torch.tensor([[0.05, 0.05, 0.85, 0.05]]), torch.tensor([[0.85, 0.05, 0.05, 0.05]])
    assert float(L.age_loss(right, t)) < float(L.age_loss(wrong, t))
    blend = torch.tensor([[0, 0.5, 0.5, 0]])
    between = torch.tensor([[0.0, 0.5, 0.5, 0.0]])
    assert float(L.age_loss(between, blend)) < float(L.age_loss(right, blend))


def test_identity_loss_is_the_descriptor_distance_and_holds_the_input_fixed():
    d_in = torch.zeros(2, 128, requires_grad=True)
    d_out = torch.zeros(2, 128)
    d_out[:, 0] = 0.3
    d_out.requires_grad_(True)
    loss = L.identity_loss(d_out, d_in)
    assert float(loss) == pytest.approx(0.3)
    loss.backward()
    assert d_in.grad is None and float(d_out.grad.abs().sum()) > 0
    assert float(L.identity_loss(d_in.detach(), d_in.detach())) == 0
    # with a margin, a face within it is not pulled back at all; one past it by the excess only
    near = d_out.detach().clone().requires_grad_(True)
    held = L.identity_loss(near, d_in, margin=0.45)
    assert float(held) == 0
    held.backward()
    assert float(near.grad.abs().sum()) == 0
    far = torch.zeros(2, 128)
    far[:, 0] = 0.7
    assert float(L.identity_loss(far, d_in.detach(), margin=0.45)) == pytest.approx(0.25)


# --------------------------------------------------------------------------- the tiny teacher

@pytest.fixture(scope="module")
def teacher_run(tiny_cache, age_run, tmp_path_factory) -> Path:
    from training.prototype import build

    return build(tiny_cache, age_run, tmp_path_factory.mktemp("gan") / "teacher", DECADES)


def gan_cfg(age_run, teacher_run, **kw) -> Aging2Config:
    base = dict(age_model=str(age_run), teacher=str(teacher_run), global_size=16, g_width=8, l_full=4, l_width=8,
                g_feat=4, d_width=8, batch=2, steps=4, threads=1, log_every=1, eval_every=2, eval_faces=4,
                sample_every=1000, checkpoint_every=1000, gan_start=2, anneal_start=1, anneal_end=3, id_faces=1)
    return Aging2Config(**{**base, **kw})


@pytest.fixture(scope="module")
def net_and_teacher(teacher_run, age_run):
    from training.gan.loop import build_net
    from training.gan.pairs import build_teacher, teacher_state

    teacher, _ = build_teacher(teacher_state(teacher_run))
    cfg = gan_cfg(age_run, teacher_run)
    net = build_net(teacher, cfg).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # an untrained-looking but not neutral network: random last layers
        for m in [net.glob.head, net.mix] + [lo.head for lo in net.locals]:
            m.weight.normal_(0, 0.3)
            m.bias.normal_(0, 0.3)
        for name, m in net.named_modules():  # a condition that visibly matters
            if isinstance(m, torch.nn.Linear) and not name.startswith("fixed."):
                m.weight.normal_(0, 0.5)
    return net, teacher


def _inputs(tiny_cache, margin, n=2, k=8):
    from training.gan.pairs import load_faces
    from training.preprocess import FaceCache

    cache = FaceCache(tiny_cache)
    x, lm, masks = load_faces(cache, np.arange(n), margin)
    t = torch.eye(k)[torch.tensor([7, 0])[:n]]
    return x, t, masks, lm, torch.ones(n)


def test_mirrored_faces_keep_their_landmarks_on_their_features():
    from core.regions import FLIP
    from training.gan.pairs import mirror

    s = 40
    g = torch.Generator().manual_seed(0)
    lm = torch.rand(2, 68, 2, generator=g) * (s - 1)
    lm = lm.round()  # whole pixels, to read the image there
    x = torch.zeros(2, 3, s, s)
    masks = torch.zeros(2, 5, s, s)
    for n in range(2):
        x[n, :, int(lm[n, 36, 1]), int(lm[n, 36, 0])] = 1.0  # a mark on the image's left eye corner
        masks[n, 1, :, : s // 4] = 1.0  # an "eyes" mask on the image's left quarter
    fx, flm, fm = mirror(x, lm, masks, np.array([True, False]))
    # the mirrored face: the mark lies at the point now numbered as the other eye's corner (45)
    assert float(fx[0, 0, int(flm[0, 45, 1]), int(flm[0, 45, 0])]) == 1.0
    assert torch.allclose(flm[0, :, 0], (s - 1) - lm[0, torch.from_numpy(FLIP), 0])
    assert float(fm[0, 1, :, -(s // 4):].min()) == 1.0 and float(fm[0, 1, :, : s // 4].max()) == 0.0
    assert torch.equal(fx[1], x[1]) and torch.equal(flm[1], lm[1]) and torch.equal(fm[1], masks[1])  # not flagged
    twice = mirror(*mirror(x, lm, masks, np.array([True, True])), np.array([True, True]))
    assert all(torch.equal(a, b) for a, b in zip(twice, (x, lm, masks)))


def test_untrained_network_is_the_teachers_warp(tiny_cache, teacher_run, age_run):
    from training.gan.loop import build_net
    from training.gan.pairs import build_teacher, teacher_state

    state = teacher_state(teacher_run)
    # the teacher's shape change alone (no colour, detail, tone or lines), on a visible displacement field
    state["config"] = {**state["config"], "gains": (0.0, 0.0, 1.7), "tone_gain": 0.0, "wrinkle_gain": 0.0}
    teacher, _ = build_teacher(state)
    g = torch.Generator().manual_seed(3)
    low = torch.randn(8, 2, 4, 4, generator=g) * 3
    teacher.flows += torch.nn.functional.interpolate(low, size=teacher.flows.shape[-2:], mode="bicubic", align_corners=True)
    net = build_net(teacher, gan_cfg(age_run, teacher_run)).eval()
    x, t, masks, lm, hair = _inputs(tiny_cache, teacher.margin)
    with torch.no_grad():
        p = net.parts(x, t, masks, lm, hair * 0)
        assert float(p["change"].abs().max()) == 0  # the last layers start at zero
        assert torch.allclose(p["source"], teacher.source(x, lm))
        ref, _ = teacher(x, t, masks, lm, hair * 0)
        off, _ = net(x, t, masks * 0, lm, hair * 0)
    assert float((p["aged"] - x).abs().mean()) > 1e-2  # the shape change moved the face
    assert float((p["aged"] - ref).abs().max()) < 1e-4  # exactly as the teacher moves it
    assert float((off - x).abs().max()) < 5e-5  # every strength 0: the input comes back (to grid_sample's rounding)


def test_a_residual_network_starts_at_the_teacher_and_adds_to_its_output(tiny_cache, teacher_run, age_run):
    from training.gan.loop import build_net
    from training.gan.pairs import build_teacher, teacher_state

    teacher, _ = build_teacher(teacher_state(teacher_run))
    net = build_net(teacher, gan_cfg(age_run, teacher_run, residual=True)).eval()
    x, t, masks, lm, hair = _inputs(tiny_cache, teacher.margin)
    with torch.no_grad():
        ref, _ = teacher(x, t, masks, lm, hair)
        out, _ = net(x, t, masks, lm, hair)
        assert float((ref - x).abs().mean()) > 2e-3  # the teacher changes the face
        assert float((out - ref).abs().max()) < 1e-5  # an untrained residual network is the teacher
        torch.manual_seed(0)
        for m in [net.glob.head] + [lo.head for lo in net.locals]:
            m.weight.normal_(0, 0.3)
            m.bias.normal_(0, 0.3)
        p = net.parts(x, t, masks, lm, hair)
        given = net.parts(x, t, masks, lm, hair, base=ref)
    assert float(p["change"].abs().mean()) > 1e-3
    # its change is added to the teacher's output, with no second shape warp
    assert torch.allclose(p["aged"], (ref + p["change"]).clamp(-1, 1), atol=1e-5)
    assert torch.allclose(given["aged"], p["aged"], atol=1e-6)  # the teacher's output handed in: the same
    assert not any(k.startswith("fixed.") for k in net.learned_state())  # the teacher stays out of its weights


def test_the_generator_listens_only_to_the_critics_chosen_views(tiny_cache, teacher_run, age_run):
    """adv_views: the generator's adversarial loss takes only the chosen critic scores (the residual
    run drew make-up on eyes and lips when it listened to the whole face; the skin patches alone
    leave the lips with no gradient)."""
    from training.gan.loop import Trainer
    from training.gan.pairs import teacher_state
    from training.preprocess import FaceCache

    grads = {}
    for views in (("forehead",), ("face", "forehead", "eyes", "nose", "mouth", "cheeks")):
        tr = Trainer(gan_cfg(age_run, teacher_run, adv_views=views), FaceCache(tiny_cache), teacher_state(teacher_run))
        x, t, masks, lm, hair = _inputs(tiny_cache, tr.margin)
        out = x.clone().requires_grad_(True)
        tr.adversarial(out, t, lm).backward()
        grads[views] = out.grad.abs().sum(1)
        assert not any(p.grad is not None for p in tr.critic.parameters())  # the critic is not trained by it
    below_mouth = int(lm[:, 57, 1].max()) + 3  # rows below the lower lip: far from the forehead's crop
    only, every = grads[("forehead",)], grads[("face", "forehead", "eyes", "nose", "mouth", "cheeks")]
    assert float(only.sum()) > 0 and float(only[:, below_mouth:].sum()) == 0
    assert float(every[:, below_mouth:].sum()) > 0
    with pytest.raises(ValueError, match="adv_views"):
        Trainer(gan_cfg(age_run, teacher_run, adv_views=("chin",)), FaceCache(tiny_cache), teacher_state(teacher_run))


def test_the_generator_listens_to_the_critic_only_for_old_targets_when_told(tiny_cache, teacher_run, age_run):
    """adv_from_age: made 0-9 by the texture critic, the network wiped every detail off the face;
    from 40 on, a face made a child gets no adversarial gradient, a face made old does."""
    from training.gan.loop import Trainer
    from training.gan.pairs import teacher_state
    from training.preprocess import FaceCache

    tr = Trainer(gan_cfg(age_run, teacher_run, adv_from_age=40), FaceCache(tiny_cache), teacher_state(teacher_run))
    x, t, masks, lm, hair = _inputs(tiny_cache, tr.margin)
    n, k = x.shape[0], t.shape[1]
    for group, moves in ((0, False), (k - 1, True)):
        out = x.clone().requires_grad_(True)
        target = torch.zeros(n, k)
        target[:, group] = 1.0
        tr.adversarial(out, target, lm).backward()
        assert (float(out.grad.abs().sum()) > 0) == moves
    assert float(L.adversarial_loss(torch.tensor([[1.0], [5.0]]), torch.tensor([1.0, 0.0]))) == -1.0  # the second face not counted
    with pytest.raises(ValueError, match="adv_from_age"):
        Trainer(gan_cfg(age_run, teacher_run, adv_from_age=200), FaceCache(tiny_cache), teacher_state(teacher_run))



def test_the_identity_loss_can_leave_the_teachers_own_change_alone(tiny_cache, teacher_run, age_run):
    """id_over_teacher: against the input alone, the identity loss pulled a network's old faces
    back towards the input and undid the aging; counted past the teacher's own distance for the
    face, the teacher's change costs nothing and only what the network loses beyond it is pulled."""
    from training.gan.loop import Trainer
    from training.gan.pairs import teacher_state
    from training.preprocess import FaceCache

    tr = Trainer(gan_cfg(age_run, teacher_run, id_faces=2, id_margin=0.0), FaceCache(tiny_cache), teacher_state(teacher_run))
    x, t, masks, lm, hair = _inputs(tiny_cache, tr.margin)
    older = (x * 0.6 - 0.2).clamp(-1, 1)  # a teacher's face that moved far from the input (darker, flatter)
    assert float(tr._identity(x, older, lm)) > 0.05  # against the input: pulled back
    assert float(tr._identity(x, older, lm, teacher=older)) == 0  # the teacher's own change: left alone
    further = (x * 0.3 - 0.5).clamp(-1, 1)
    beyond = float(tr._identity(x, further, lm, teacher=older))
    assert 0 < beyond < float(tr._identity(x, further, lm))  # past the teacher: only the excess

def test_the_critic_can_see_the_patches_at_full_resolution(tiny_cache, teacher_run, age_run):
    """critic_patch_scale: at half resolution (sampled) a fine stripe pattern of the network's
    (3 px period) reaches the critic aliased into a coarser one; at 1.0 it sees it as drawn."""
    from training.gan.loop import Trainer
    from training.gan.pairs import teacher_state
    from training.preprocess import FaceCache

    x, lm = None, None
    period = {}
    for scale in (0.5, 1.0):
        tr = Trainer(gan_cfg(age_run, teacher_run, critic_patch_scale=scale), FaceCache(tiny_cache), teacher_state(teacher_run))
        if x is None:
            x, t, masks, lm, hair = _inputs(tiny_cache, tr.margin)
            s = x.shape[-1]
            stripes = torch.where(torch.arange(s) % 3 == 0, 0.4, -0.2).view(1, 1, 1, s)  # vertical, 3 px period
            x = (x * 0.1 + stripes).clamp(-1, 1)
        full = tr.net.crops(x, tr.net.similarity(lm))
        _, patches = tr._critic_view(x, lm)
        assert [p.shape[-1] for p in patches] == [max(4, round(f.shape[-1] * scale)) for f in full]
        row = patches[1][0, 0].mean(0) - patches[1][0, 0].mean()  # the eyes' patch, across its columns
        spectrum = torch.fft.rfft(row).abs()
        period[scale] = row.shape[0] / max(1, int(spectrum[1:].argmax()) + 1) / scale  # in full-resolution pixels
    assert period[1.0] == pytest.approx(3.0, rel=0.1)
    assert abs(period[0.5] - 3.0) > 1.0  # aliased
    with pytest.raises(ValueError, match="critic_patch_scale"):
        Trainer(gan_cfg(age_run, teacher_run, critic_patch_scale=1.5), FaceCache(tiny_cache), teacher_state(teacher_run))

def test_a_critic_trained_on_other_inputs_starts_anew(tiny_cache, teacher_run, age_run, gan_run):
    from training.gan.loop import Trainer
    from training.gan.pairs import teacher_state
    from training.preprocess import FaceCache
    from training.runtime import load_checkpoint

    state = load_checkpoint(gan_run)  # its critic saw the views in colour
    same = Trainer(gan_cfg(age_run, teacher_run), FaceCache(tiny_cache), teacher_state(teacher_run))
    same.load(state, exact=True)
    assert_same_state(same.critic.state_dict(), state["critic"])
    other = Trainer(gan_cfg(age_run, teacher_run, critic_input="detail"), FaceCache(tiny_cache), teacher_state(teacher_run))
    fresh = {k: v.clone() for k, v in other.critic.state_dict().items()}
    other.load(state, exact=True)
    assert_same_state(other.critic.state_dict(), fresh)  # not the colour critic's weights
    assert_same_state(other.net.learned_state(), state["gen"])  # the network is the run's
    x, t, masks, lm, hair = _inputs(tiny_cache, other.margin)
    face, patches = other._critic_view(x, lm)
    assert torch.allclose(face[:, 0], face[:, 1]) and float(face.abs().max()) <= 1.0  # grey detail, in range
    other.cfg.critic_shift = 0.125  # moved where a generator of offsets is given, as they are without one
    moved, _ = other._critic_view(x, lm, torch.Generator().manual_seed(1))
    assert moved.shape == face.shape and not torch.allclose(moved, face)
    assert torch.equal(other._critic_view(x, lm)[0], face)
    with pytest.raises(ValueError, match="critic_input"):
        Trainer(gan_cfg(age_run, teacher_run, critic_input="hsv"), FaceCache(tiny_cache), teacher_state(teacher_run))


def test_a_residual_network_always_learns_its_change(tiny_cache, teacher_run, age_run):
    """The first residual run's generator never moved: the attention's norm term had pushed A to 1
    while the change was zero, and (1 - A) C then got no gradient. A residual network has no
    attention: whatever its attention logits hold, any loss on its output reaches its change."""
    from training.gan.loop import build_net
    from training.gan.pairs import build_teacher, teacher_state

    teacher, _ = build_teacher(teacher_state(teacher_run))
    x, t, masks, lm, hair = _inputs(tiny_cache, teacher.margin)
    grads = {}
    for residual in (True, False):
        net = build_net(teacher, gan_cfg(age_run, teacher_run, residual=residual)).train()
        with torch.no_grad():  # the saturated state that run reached: attention logits far positive
            for head in [net.glob.head] + [lo.head for lo in net.locals]:
                head.bias[3] = 40.0
        p = net.parts(x, t, masks, lm, hair)
        assert p["attention"] == [] if residual else len(p["attention"]) == 6
        p["aged"].mean().backward()  # any loss that wants the output to change
        grads[residual] = sum(float(lo.head.weight.grad[:3].abs().sum()) for lo in net.locals) + float(net.glob.head.weight.grad[:3].abs().sum())
    assert grads[True] > 1e-4  # the residual network's change moves
    assert grads[False] < 1e-9  # (an attention composite in that state would not: what went wrong)


def test_region_strengths_and_hair_gate_the_change(net_and_teacher, tiny_cache):
    net, teacher = net_and_teacher
    x, t, masks, lm, hair = _inputs(tiny_cache, teacher.margin)
    with torch.no_grad():
        full = net.parts(x, t, masks, lm, hair)["change"]
        only_eyes = masks.clone()
        only_eyes[:, [0, 2, 3, 4]] = 0
        eyes = net.parts(x, t, only_eyes, lm, hair * 0)["change"]
        none = net.parts(x, t, masks * 0, lm, hair * 0)["change"]
    assert float(full.abs().mean()) > 1e-3
    assert float(none.abs().max()) == 0
    outside = (masks[:, 1:2] < 1e-3).expand_as(eyes)
    assert float(eyes[outside].abs().max()) == 0  # nothing outside the one region left on
    assert float(eyes.abs().mean()) > 0


def test_a_blend_of_two_groups_moves_continuously_between_them(net_and_teacher, tiny_cache):
    net, teacher = net_and_teacher
    x, _, masks, lm, hair = _inputs(tiny_cache, teacher.margin, n=1)
    n = 11
    alphas = torch.linspace(0, 1, n)
    t = torch.zeros(n, 8)
    t[:, 5], t[:, 6] = 1 - alphas, alphas
    with torch.no_grad():
        change = net.parts(x.expand(n, -1, -1, -1), t, masks.expand(n, -1, -1, -1), lm.expand(n, -1, -1), hair.expand(n))["change"]
    ends = float((change[-1] - change[0]).abs().mean())
    assert ends > 1e-3  # the two groups differ
    mid = change[n // 2]
    assert float((mid - change[0]).abs().mean()) > 0.1 * ends and float((mid - change[-1]).abs().mean()) > 0.1 * ends
    steps = [float((b - a).abs().mean()) for a, b in zip(change, change[1:])]
    assert max(steps) < 0.35 * sum(steps)  # no jump: the way from one group to the next is gradual


# ------------------------------------------------------------------------ runs and resume points

@pytest.fixture(scope="module")
def gan_run(tiny_cache, age_run, teacher_run, tmp_path_factory) -> Path:
    from training.gan.loop import train

    return train(gan_cfg(age_run, teacher_run), tiny_cache, tmp_path_factory.mktemp("gan") / "run")


def test_tiny_run_trains_every_loss(gan_run):
    import json

    rows = [json.loads(s) for s in (gan_run / "stats.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "teacher" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(k not in steps[0] for k in ("adv", "age", "id"))  # before gan_start: the teacher alone
    assert all(k in steps[-1] for k in ("adv", "age", "id", "d_loss"))
    assert all(np.isfinite(v) for r in rows for v in r.values())
    assert any("val_teacher_l1" in r for r in rows)
    state = load_checkpoint(gan_run)
    assert state["kind"] == "aging2" and state["step"] == 4 and len(state["val"]) == 2
    assert (gan_run / "samples" / "step_0000004.jpg").is_file() and (gan_run / "resume_point.pt").is_file()


def test_the_critic_can_learn_before_the_generator_listens(tiny_cache, age_run, teacher_run, tmp_path):
    import json

    from training.gan.loop import schedule, train

    cfg = gan_cfg(age_run, teacher_run, critic_start=1, gan_start=3)
    assert [schedule(cfg, s)["critic"] for s in range(4)] == [False, True, True, True]
    assert [schedule(cfg, s)["adv"] > 0 for s in range(4)] == [False, False, False, True]
    assert not schedule(gan_cfg(age_run, teacher_run, gan_start=3), 2)["critic"]  # by default: with the generator
    run = train(cfg, tiny_cache, tmp_path / "run")
    rows = [r for r in map(json.loads, (run / "stats.jsonl").read_text().splitlines()) if "teacher" in r]
    assert "d_loss" not in rows[0] and "d_loss" in rows[1] and "adv" not in rows[1] and "adv" in rows[3]
    assert 0.0 <= rows[1]["d_real_above_fake"] <= 1.0
    assert "d_group_right" not in rows[1]  # the mismatch term is off by default


def test_the_critic_learns_the_groups_with_the_mismatch_term(tiny_cache, age_run, teacher_run, tmp_path):
    """With ``w_mismatch`` the critic's loss also takes real faces judged as another group (at
    least two away) as fakes, and the stats say how often it scores the right group higher."""
    import json

    from training.gan.loop import other_groups, train

    cfg = gan_cfg(age_run, teacher_run, critic_start=1, gan_start=50, w_mismatch=1.0)
    run = train(cfg, tiny_cache, tmp_path / "run")
    rows = [r for r in map(json.loads, (run / "stats.jsonl").read_text().splitlines()) if "d_loss" in r]
    assert rows and all(0.0 <= r["d_group_right"] <= 1.0 for r in rows)
    # the wrong groups are at least two away from the right ones (in age, not around a circle), and
    # every other group comes up
    k, groups = 8, np.arange(8).repeat(200)
    wrong = other_groups(np.random.default_rng(0), groups, k)
    assert np.abs(wrong - groups).min() >= 2
    for g in range(k):
        assert set(wrong[groups == g]) == {w for w in range(k) if abs(w - g) >= 2}


def test_resume_is_exact(tiny_cache, age_run, teacher_run, gan_run, tmp_path):
    from training.gan.loop import train

    cfg = gan_cfg(age_run, teacher_run)
    train(cfg, tiny_cache, tmp_path / "r", stop_after=2)
    assert load_checkpoint(tmp_path / "r")["step"] == 2
    train(cfg, tiny_cache, tmp_path / "r", resume=True)
    a, b = load_checkpoint(gan_run), load_checkpoint(tmp_path / "r")
    for key in ("gen", "ema", "critic", "opt_g", "opt_d"):
        assert_same_state(a[key], b[key])


def test_a_fresh_machine_continues_from_the_resume_point(tiny_cache, age_run, teacher_run, gan_run, tmp_path):
    from training.gan.loop import resume_point, train

    point = torch.load(gan_run / "resume_point.pt", weights_only=True)
    assert point["kind"] == "aging2-resume" and "opt_g" not in point and "age" not in point["teacher"]
    assert all(v.dtype == torch.float16 for v in point["gen"].values() if v.is_floating_point())
    assert point.keys() == resume_point(load_checkpoint(gan_run)).keys()
    # a fresh machine's command line: default sizes and schedule (the point's own are adopted), the
    # teacher from the resume point, its age model from --set age_model
    cfg = Aging2Config(age_model=str(age_run), steps=5, threads=1, eval_faces=4)
    with pytest.raises(FileNotFoundError):
        train(cfg, tiny_cache, tmp_path / "none", resume=True, start_from=tmp_path / "missing.pt")
    run = train(cfg, tiny_cache, tmp_path / "fresh", resume=True, start_from=gan_run / "resume_point.pt", stop_after=0)
    state = load_checkpoint(run)
    assert state["step"] == 5  # continued from step 4 with one more step
    assert not (run / "teacher").exists()  # nothing rebuilt: the teacher came with the point
    assert state["config"]["g_width"] == 8 and state["config"]["gan_start"] == 2  # the run's own settings
    # the fresh optimiser started from the point's weights: the first step moved them only a little
    first = {k: v.float() for k, v in point["gen"].items()}
    moved = max(float((state["gen"][k] - first[k]).abs().max()) for k in first if first[k].is_floating_point())
    assert 0 < moved < 0.05


def test_a_stopped_run_takes_a_newer_teachers_settings_and_lines(tiny_cache, age_run, teacher_run, gan_run, tmp_path):
    import shutil

    from training.gan.loop import reteach_run, train

    run = tmp_path / "run"
    shutil.copytree(gan_run, run)
    newer = torch.load(teacher_run / "checkpoint.pt", weights_only=True)
    newer["config"] = {**newer["config"], "tone_gain": 0.4, "margin": 40}
    newer["protos"]["wrinkles"] = torch.rand_like(newer["protos"]["textures"][:1, :1])
    (tmp_path / "newer").mkdir()
    torch.save(newer, tmp_path / "newer" / "checkpoint.pt")
    before = load_checkpoint(run)
    assert set(reteach_run(run, tmp_path / "newer")) == {"tone_gain", "wrinkle map"}
    # a newer run with a learned controller of the gains: the controller comes too
    from training.strengths import StrengthNet

    net = StrengthNet(len(newer["config"]["age_groups"]))
    newer["strengths"] = {"config": net.config(), "weights": {k: v + 0.1 for k, v in net.state_dict().items()}}
    torch.save(newer, tmp_path / "newer" / "checkpoint.pt")
    assert set(reteach_run(run, tmp_path / "newer")) == {"controller"}
    assert set(reteach_run(run, tmp_path / "newer")) == set()  # the same again: nothing changes
    torch.testing.assert_close(load_checkpoint(run)["teacher"]["strengths"]["weights"]["head.2.bias"], newer["strengths"]["weights"]["head.2.bias"])
    after = load_checkpoint(run)
    teacher = after["teacher"]
    assert teacher["config"]["tone_gain"] == 0.4 and teacher["config"]["margin"] == before["teacher"]["config"]["margin"]
    torch.testing.assert_close(teacher["protos"]["wrinkles"].float(), newer["protos"]["wrinkles"])
    torch.testing.assert_close(teacher["protos"]["textures"], before["teacher"]["protos"]["textures"])  # its own prototypes
    assert after["step"] == before["step"]
    assert_same_state(after["gen"], before["gen"])
    assert torch.load(run / "resume_point.pt", weights_only=True)["teacher"]["config"]["tone_gain"] == 0.4
    train(gan_cfg(age_run, teacher_run, steps=5), tiny_cache, run, resume=True)  # the run goes on with it
    assert load_checkpoint(run)["step"] == 5 and load_checkpoint(run)["teacher"]["config"]["tone_gain"] == 0.4
    # a prototype run on another mean shape drew its map for another face: refused, the run untouched
    newer["protos"]["mean_shape"] = newer["protos"]["mean_shape"] + 2.0
    torch.save(newer, tmp_path / "newer" / "checkpoint.pt")
    with pytest.raises(ValueError, match="mean shape"):
        reteach_run(run, tmp_path / "newer")
    assert load_checkpoint(run)["teacher"]["config"]["tone_gain"] == 0.4


def test_export_to_contract_2_and_the_engine_runs_it(gan_run, tiny_cache, tmp_path):
    out = texport.export_run(gan_run, tmp_path / "models")
    model = AgingModel.load(tmp_path / "models", providers="cpu")
    assert model.format == "agelapse-aging/2" and model.takes_landmarks and model.num_groups == 8
    state = load_checkpoint(gan_run)
    margin = int(state["teacher"]["config"]["margin"])  # the teacher's frame: the 64 px faces and its margin
    assert model.image_size == state["image_size"] == 64 + 2 * margin
    x, t, masks, lm, hair = _inputs(tiny_cache, margin)
    images = ((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
    aged, attention = model.run(images, t.numpy(), masks.numpy(), landmarks=lm.numpy(), hair=hair.numpy())
    assert aged.shape[0] == 2 and np.isfinite(np.asarray(aged, dtype=np.float64)).all()
    assert out.name == "aging.onnx"


def test_a_residual_run_trains_resumes_and_exports(tiny_cache, age_run, teacher_run, tmp_path):
    from training.gan.loop import train

    run = train(gan_cfg(age_run, teacher_run, residual=True), tiny_cache, tmp_path / "run")
    state = load_checkpoint(run)
    assert state["config"]["residual"] is True and state["step"] == 4
    assert not any(k.startswith("fixed.") for k in state["gen"])
    out = texport.export_run(run, tmp_path / "models")
    model = AgingModel.load(out.parent, providers="cpu")
    margin = int(state["teacher"]["config"]["margin"])
    x, t, masks, lm, hair = _inputs(tiny_cache, margin)
    images = ((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
    aged, _ = model.run(images, t.numpy(), masks.numpy(), landmarks=lm.numpy(), hair=hair.numpy())
    assert np.isfinite(np.asarray(aged, dtype=np.float64)).all()
    # a fresh machine continues it from its resume point, a residual network again
    train(gan_cfg(age_run, teacher_run, steps=5), tiny_cache, tmp_path / "fresh", resume=True, start_from=run / "resume_point.pt")
    assert load_checkpoint(tmp_path / "fresh")["config"]["residual"] is True


# ------------------------------------------------------------------------- the committed point

@pytest.mark.parametrize("name", ["aging_net.pt", "residual_net.pt"])
def test_the_committed_resume_point_is_compact_and_loads(name):
    from training.gan.export import network_of

    path = COMMITTED.parent / name
    if not path.is_file():
        pytest.skip(f"no committed {name} yet")
    assert path.stat().st_size < 20 * 2**20
    point = torch.load(path, weights_only=True)
    assert point["kind"] == "aging2-resume" and point["step"] > 0
    net, teacher = network_of(point)  # its teacher from the point, the age model from resources/models
    s = net.size
    lm = torch.tensor(teacher.template_json()).view(1, 68, 2) * s
    x = torch.zeros(1, 3, s, s)
    with torch.no_grad():
        aged, keep = net(x, torch.eye(8)[7:], torch.ones(1, 5, s, s) * 0.2, lm, torch.ones(1))
    assert aged.shape == (1, 3, s, s) and torch.isfinite(aged).all()


def test_the_resume_point_stays_out_of_the_bundle():
    import sys

    sys.path.insert(0, str(ROOT / "packaging"))
    import bundle_rules

    assert "training" in bundle_rules.EXCLUDES
    assert not any("gan" in src for src, _ in bundle_rules.other_resources(ROOT))
    spec = (ROOT / "packaging" / "agelapse.spec").read_text()
    assert "training/gan" not in spec and "resume" not in spec


# ------------------------------------------------------------------------------- the restructure

def test_one_groups_module():
    from training import baseline, evaluate, groups, nets, showcase, train_aging

    assert train_aging.group_index is groups.group_index and nets.group_probs is groups.group_probs
    assert showcase.group_index is groups.group_index
    g = [list(x) for x in DECADES]
    assert [groups.group_index(a, g) for a in (0, 9, 10, 69, 70, 116)] == [0, 0, 1, 6, 7, 7]
    assert groups.group_indices(np.array([5, 45]), g).tolist() == [0, 4]
    del baseline, evaluate


def test_one_age_network_rebuild(age_run):
    from training.age_source import age_net_from, load_age_state, rebuild_age_net

    state = load_age_state(age_run)
    net = rebuild_age_net(state["ema"], state["config"])
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    again, config = age_net_from(age_run)
    x = torch.rand(2, 3, config["input_size"], config["input_size"])
    with torch.no_grad():
        assert torch.equal(net(x), again(x))


def test_export_goes_through_a_registry_of_kinds():
    assert {"age", "judge", "aging", "baseline", "prototype"} <= set(texport.KINDS)
    assert "aging2" in texport.KIND_MODULES
    with pytest.raises(ValueError, match="aging2"):
        texport.build_module({"kind": "nonsense"})
    calls = []

    @texport.register_kind("test-kind")
    def _build(state, weights):
        calls.append(weights)
        return torch.nn.Identity(), {"format": "x"}

    try:
        module, meta = texport.build_module({"kind": "test-kind"}, "model")
        assert calls == ["model"] and meta == {"format": "x"}
    finally:
        texport.KINDS.pop("test-kind")


def test_a_resume_point_keeps_its_settings_but_for_what_the_command_line_sets():
    from training.gan.loop import adopt

    point = {"gan_start": 30000, "w_age": 0.2, "g_width": 20, "threads": 1}
    cfg = adopt(Aging2Config(gan_start=3000, w_age=0.5, threads=2), point, keep=["gan_start"])
    assert cfg.gan_start == 3000  # set on purpose: kept
    assert cfg.w_age == 0.2  # not set: the run's own
    assert cfg.threads == 2  # the machine's choice
    with pytest.raises(ValueError, match="g_width"):
        adopt(Aging2Config(g_width=32), point, keep=["g_width"])
