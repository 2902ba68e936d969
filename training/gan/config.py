"""The configuration of the learned aging network's training (``python -m training aging2``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import DECADES, CommonConfig


@dataclass
class Aging2Config(CommonConfig):
    age_groups: list = field(default_factory=lambda: [list(g) for g in DECADES])
    age_model: str = "resources/models/age.onnx"  # the frozen guide the network carries (relative: to the repository)
    teacher: str = ""  # prototype run folder (checkpoint.pt); empty: the resume point's, else built into <out>/teacher
    # the generator (sizes chosen with bench/train_speed.py --aging2; see nets.py)
    global_size: int = 64
    g_width: int = 20  # the global U-Net's 64 px width; 2x at 32 px, 4x at 16 px
    l_full: int = 8  # the local generators' full-resolution width (thin)
    l_width: int = 24  # their half-resolution width (the capacity)
    g_feat: int = 8  # global features handed to the local generators
    change_limit: float = 0.6  # |change| bound of the colour output ([-1, 1] units)
    residual: bool = False  # the network adds to the teacher's output (nets.py) instead of learning it
    d_width: int = 32
    # optimisation
    batch: int = 16
    threads: int = 1
    workers: int = 0
    steps: int = 200000
    lr_g: float = 5e-4
    lr_d: float = 2e-4
    betas: tuple = (0.5, 0.99)
    ema: float = 0.999
    # losses and their schedule: the teacher carries the signal first, annealed from anneal_start
    # to anneal_end down to teacher_floor; the critic, age guide and identity start at gan_start
    w_teacher: float = 1.0
    w_teacher_ms: float = 1.0  # multi-scale L1 (1/2, 1/4) to the teacher
    w_chroma: float = 0.0  # L1 to the teacher's colour alone (losses.chroma_l1), never annealed
    w_local: float = 0.5  # LGIN's local L1, region by region (small regions count as much as large)
    w_tv: float = 0.02  # total variation of the change
    w_att_tv: float = 0.01
    w_att_norm: float = 0.01
    w_adv: float = 0.05
    w_age: float = 0.2
    guide_grey: bool = True  # the age guide sees the luminance only (losses.guide_view)
    w_id: float = 0.5
    id_margin: float = 0.0  # descriptor distance the identity loss leaves alone (losses.identity_loss)
    # the identity loss counts only what a face loses past the teacher's own output for it (or
    # id_margin, the larger): against the input alone, w_id 2 at margin 0.45 undid the aging (the
    # critic's fork made 70+: judged 51.7 -> 39.6 years in 2,250 steps, children made 70+ 45 -> 16)
    id_over_teacher: bool = False
    anneal_start: int = 40000
    anneal_end: int = 100000
    teacher_floor: float = 0.2
    gan_start: int = 30000
    critic_start: int = -1  # the critic learns from here on, before the generator listens to it (-1: at gan_start)
    n_critic: int = 1
    w_mismatch: float = 0.0  # the critic also scores real faces judged as another group as fakes (losses.mismatch_loss)
    # which of the critic's views the generator's adversarial loss listens to: "face" (the whole face
    # at 80 px) and the five region patches; the critic learns on all of them either way
    adv_views: tuple = ("face", "forehead", "eyes", "nose", "mouth", "cheeks")
    # what the critic sees: "rgb" (the views as they are) or "detail" (each view's luminance detail
    # between two scales over its local brightness, losses.detail_view: texture without colour, so
    # neither make-up nor a skin tone can answer it; a critic trained on the other input starts anew)
    critic_input: str = "rgb"
    # the critic's views (real and generated alike) moved by a random whole-pixel offset of up to
    # this share of their size (losses.translated; 0: as they are): no fixed row of the frame pays
    critic_shift: float = 0.0
    # the scale of the region patches the critic sees (of the local generators' full-resolution
    # crops). At 0.5 (sampled, not filtered) the network's fine stripes (a 3 px period, above the
    # half-resolution limit) reached the critic aliased into coarse line-like patterns: the detail
    # critic's fork drew dense parallel hatching over the lower cheeks and mouth at 60+
    # (`showcase --compare`), which the critic read as lines. 1.0: the patches as the network drew them
    critic_patch_scale: float = 0.5
    # the generator listens to the critic only for targets whose group starts at this age or later
    # (0: all); made 0-9 by a texture critic, the network wiped every detail off the face, the eyes
    # and brows included: judged 8 years old, verified 82 %
    adv_from_age: int = 0
    id_faces: int = 4  # faces of the batch the identity loss sees (dlib's network is the dearest part)
    strength_jitter: float = 0.3
    hair_jitter: float = 0.3
    blend: float = 0.25
    flip: float = 0.5  # share of the batch seen mirrored (faces, landmarks, regions): a turned face both ways
    # logging
    log_every: int = 25
    sample_every: int = 500
    checkpoint_every: int = 250
    eval_every: int = 500
    eval_faces: int = 64
