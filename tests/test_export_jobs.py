"""Exports (core.export_jobs), the one path the command line and the app share: the planned file names,
every kind of export (portrait at one age, every group, strip/grid, GIF, MP4), format/quality/size options,
progress, one failed photo not stopping the others, and never overwriting without asking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.export_jobs import ExportOptions, ExportSource, existing, make_unique, plan, run_export
from testkit.gui import write_jpeg

LABELS = ["0\u20139", "10\u201319", "20\u201329", "30\u201339", "40\u201349", "50\u201359", "60\u201369", "70+"]
DECADES = [(0, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, None)]


def test_plan_names_files_per_kind_and_keeps_them_unique(tmp_path):
    srcs = [ExportSource(Path("/a/x.jpg")), ExportSource(Path("/b/x.jpg")), ExportSource(Path("/a/y.png"), face_index=1)]
    one = plan(srcs[:1], ExportOptions(tmp_path, "single", position=6.0), LABELS, DECADES)
    assert one == [[tmp_path / "x_60-69.jpg"]]
    between = plan(srcs[:1], ExportOptions(tmp_path, "single", position=4.5, fmt="png"), LABELS, DECADES)
    assert between == [[tmp_path / "x_about-50.png"]]
    groups = plan(srcs[:1], ExportOptions(tmp_path, "groups", fmt="webp"), LABELS)
    assert [p.name for p in groups[0]] == [f"x_{lb.replace(chr(0x2013), '-')}.webp" for lb in LABELS]
    strips = plan(srcs, ExportOptions(tmp_path, "strip"), LABELS)
    assert [p[0].name for p in strips] == ["x_ages.jpg", "x_ages (2).jpg", "y_face2_ages.jpg"]  # same stem twice
    assert plan(srcs[:1], ExportOptions(tmp_path, "gif"), LABELS) == [[tmp_path / "x_timeline.gif"]]
    (tmp_path / "x_ages.jpg").write_bytes(b"taken")
    assert existing(strips) == [tmp_path / "x_ages.jpg"]
    unique = make_unique(strips)
    assert unique[0][0].name == "x_ages (2).jpg" and unique[1][0].name == "x_ages (3).jpg"


@pytest.fixture(scope="module")
def pipeline(contract_models_dir):
    from core.models import AgingModel
    from core.pipeline import AgingPipeline

    return AgingPipeline(AgingModel.load(contract_models_dir, providers="cpu"))


@pytest.fixture
def source(tmp_path, astronaut):
    from core.faces import FaceFinder

    path = write_jpeg(astronaut, tmp_path / "in" / "portrait.jpg")
    face = FaceFinder().detect(astronaut)[0]
    return ExportSource(path, face, {"eyes": 1.5})


def test_every_kind_writes_what_it_should(tmp_path, pipeline, source, astronaut):
    out = tmp_path / "out"
    out.mkdir()
    progress = []

    def run(**kw):
        folder = out / f"run{len(list(out.iterdir()))}"  # a folder per export: names may repeat
        folder.mkdir()
        o = ExportOptions(folder, **kw)
        targets = plan([source], o, pipeline.labels, list(pipeline.aging.age_groups))
        rep = run_export([source], o, pipeline, targets, progress=lambda d, t: progress.append((d, t)))
        assert not rep.errors, rep.errors
        return rep.written

    single = run(kind="single", position=7.0, fmt="png")
    assert [p.name for p in single] == ["portrait_70+.png"]
    from core.photos import load_photo

    original = load_photo(source.path).rgb.astype(int)
    with Image.open(single[0]) as im:
        assert im.size == (512, 512)
        assert "Agelapse" in im.info.get("Software", "")  # an altered image says so
        aged = np.asarray(im.convert("RGB")).astype(int)
    changed = np.abs(aged - original).max(axis=2) > 0
    assert changed.sum() > 2000  # the face changed...
    ys, xs = np.nonzero(changed)
    box = source.face.box
    assert xs.min() > box[0] - 0.6 * (box[2] - box[0]) and ys.max() < box[3] + 0.6 * (box[3] - box[1])  # ...only there
    assert progress[-1][0] == progress[-1][1]
    small, large = run(kind="single", position=3.0, quality=30), run(kind="single", position=4.0, quality=95)
    assert small[0].name == "portrait_30-39.jpg" and large[0].name == "portrait_40-49.jpg"
    assert small[0].stat().st_size < 0.7 * large[0].stat().st_size  # the quality option is honoured

    groups = run(kind="groups", fmt="png", max_side=200, area="face")
    assert len(groups) == 8 and all(p.suffix == ".png" for p in groups)
    sizes = {Image.open(p).size for p in groups}
    assert len(sizes) == 1 and max(next(iter(sizes))) == 200
    means = [np.asarray(Image.open(p).convert("RGB")).mean() for p in groups]
    assert means[-1] > means[0]  # older is brighter with the contract model

    strip = run(kind="strip", area="face", max_side=120, columns=4)
    with Image.open(strip[0]) as im:
        w, h = im.size
    assert w > 4 * 120 and h > 2 * 120 and w < 5 * 130  # a 4 x 2 grid with labels

    gif = run(kind="gif", area="face", max_side=96, steps=2, fps=10)
    with Image.open(gif[0]) as im:
        assert im.n_frames == 15 and max(im.size) <= 96 + 40  # 7 steps x 2 + 1, label band below
    mp4 = run(kind="mp4", area="face", max_side=96, steps=1)
    assert mp4[0].stat().st_size > 1000 and mp4[0].read_bytes()[4:8] == b"ftyp"


def test_existing_files_are_reported_not_overwritten(tmp_path, pipeline, source):
    out = tmp_path / "out"
    out.mkdir()
    (out / "portrait_70+.jpg").write_bytes(b"the person's own file")
    o = ExportOptions(out, "single", position=7.0)
    targets = plan([source], o, pipeline.labels, list(pipeline.aging.age_groups))
    rep = run_export([source], o, pipeline, targets)  # a file that appeared after planning
    assert rep.written == [] and "already exists" in rep.errors[0][1]
    assert (out / "portrait_70+.jpg").read_bytes() == b"the person's own file"


def test_a_photo_whose_name_is_not_utf8_exports_under_the_same_bytes(tmp_path, pipeline, source):
    import os
    import shutil

    odd = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path / "in"), b"latin1_\xe9t\xe9.jpg")))
    shutil.copy(source.path, odd)
    src = ExportSource(odd, source.face, {"hair": 0.0})
    o = ExportOptions(tmp_path / "out", "single", position=7.0)
    o.folder.mkdir()
    report = run_export([src], o, pipeline, plan([src], o, pipeline.labels, list(pipeline.aging.age_groups)))
    assert not report.errors and [os.fsencode(p.name) for p in report.written] == [b"latin1_\xe9t\xe9_70+.jpg"]
    assert os.listdir(os.fsencode(o.folder)) == [b"latin1_\xe9t\xe9_70+.jpg"]


def test_groups_writes_only_the_chosen_groups_and_a_failed_photo_is_reported(tmp_path, pipeline, source):
    out = tmp_path / "out"
    out.mkdir()
    o = ExportOptions(out, "groups", groups=[6, 0], fmt="png")
    targets = plan([source], o, pipeline.labels)
    assert [p.name for p in targets[0]] == ["portrait_60-69.png", "portrait_0-9.png"]
    missing = ExportSource(tmp_path / "in" / "gone.jpg", source.face)
    rep = run_export([missing, source], o, pipeline, plan([missing, source], o, pipeline.labels))
    assert rep.written == targets[0]  # the second photo is written although the first failed
    assert [type(e).__name__ for e in rep.failures] == ["PhotoError"] and "gone.jpg" in rep.errors[0][0]
    means = [np.asarray(Image.open(p).convert("RGB")).mean() for p in rep.written]
    assert means[0] > means[1]  # 60-69 first, then 0-9: older is brighter with the contract model
