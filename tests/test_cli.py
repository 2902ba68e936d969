"""agelapse-cli end to end on a temporary folder: the astronaut portrait and the contract models."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.cli import EXIT_MODEL, EXIT_NO_FACE, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from core.photos import load_photo

ROOT = Path(__file__).resolve().parents[1]
MAKE = 0x010F  # EXIF camera maker


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def photos(tmp_path, astronaut) -> Path:
    """tmp/photos: astro.jpg (with EXIF), blank.png (no face), corrupt.jpg (not an image)."""
    d = tmp_path / "photos"
    d.mkdir()
    exif = Image.Exif()
    exif[MAKE] = "TestCam"
    Image.fromarray(astronaut).save(d / "astro.jpg", quality=95, exif=exif.tobytes())
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(d / "blank.png")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 20)
    return d


@pytest.fixture
def originals(photos):
    """Every photo's sha256 before the test, checked unchanged after it."""
    before = {p.name: sha(p) for p in photos.iterdir()}
    yield before
    assert {p.name: sha(p) for p in photos.iterdir() if p.name in before} == before


def run(capsys, *argv) -> tuple[int, list[str], str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, [line for line in out.splitlines() if line], err


def test_age_all_groups(capsys, photos, originals, contract_models_dir, tmp_path):
    out_dir = tmp_path / "out"
    code, lines, err = run(capsys, "--models", contract_models_dir, "age", photos / "astro.jpg",
                           "--all-groups", "--out", out_dir)
    assert code == EXIT_OK, err
    records = [line.split("\t") for line in lines]
    assert [label for label, _ in records] == ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]
    paths = [Path(p) for _, p in records]
    assert paths[6] == out_dir / "astro_60-69.jpg"
    assert sorted(out_dir.iterdir()) == sorted(paths)
    young, old = (load_photo(p).rgb.astype(int) for p in (paths[0], paths[-1]))
    assert young.shape == old.shape == (512, 512, 3)
    assert old.mean() > young.mean() + 1  # the contract model brightens the old groups' faces
    with Image.open(paths[-1]) as im:
        assert im.getexif()[MAKE] == "TestCam"  # EXIF kept


def test_age_groups_png_strengths_zero_and_overwrite(capsys, photos, originals, contract_models_dir, tmp_path):
    out_dir = tmp_path / "out"
    zeros = [x for name in ("forehead", "eyes", "nose", "mouth", "cheeks", "hair") for x in ("--strength", f"{name}=0")]
    args = ["--models", contract_models_dir, "age", photos / "astro.jpg", "--group", "60-69", "--group", "70+",
            "--out", out_dir, "--format", "png", *zeros]
    code, lines, err = run(capsys, *args)
    assert code == EXIT_OK, err
    assert [line.split("\t")[0] for line in lines] == ["60-69", "70+"]
    original = load_photo(photos / "astro.jpg").rgb
    for line in lines:
        # every strength 0: the pixels are exactly the decoded original's
        assert np.array_equal(load_photo(line.split("\t")[1]).rgb, original)

    code, lines, err = run(capsys, *args)  # again: the files exist
    assert code == EXIT_PARTIAL and lines == []
    assert "astro_60-69.png" in err and "astro_70+.png" in err
    code, lines, err = run(capsys, *args, "--overwrite")
    assert code == EXIT_OK and len(lines) == 2


def test_age_bad_group_and_strength_are_usage_errors(capsys, photos, contract_models_dir, tmp_path):
    code, _, err = run(capsys, "--models", contract_models_dir, "age", photos / "astro.jpg",
                       "--group", "65-74", "--out", tmp_path / "o")
    assert code == EXIT_USAGE and "65-74" in err
    code, _, err = run(capsys, "--models", contract_models_dir, "age", photos / "astro.jpg",
                       "--group", "70+", "--strength", "eyes=2", "--out", tmp_path / "o")
    assert code == EXIT_USAGE and "strength" in err
    code, _, _ = run(capsys, "age", photos / "astro.jpg", "--out", tmp_path / "o")  # no group chosen
    assert code == EXIT_USAGE
    assert not (tmp_path / "o").exists()


def test_estimate(capsys, photos, originals, contract_models_dir):
    code, lines, err = run(capsys, "--models", contract_models_dir, "estimate", photos / "astro.jpg")
    assert code == EXIT_OK, err
    assert lines
    index, age, box = lines[0].split("\t")
    assert index == "0" and 0 < float(age) < 100
    left, top, right, bottom = map(int, box.split(","))
    assert 150 < (left + right) / 2 < 300 and 50 < (top + bottom) / 2 < 200  # the astronaut's face
    assert [line.split("\t")[0] for line in lines] == [str(i) for i in range(len(lines))]


def test_scan(capsys, photos, originals, tmp_path):
    db = tmp_path / "catalog.db"
    code, lines, err = run(capsys, "scan", photos, "--catalog", db)
    assert code == EXIT_PARTIAL  # corrupt.jpg
    counts = {Path(p).name: int(n) for p, n in (line.split("\t") for line in lines)}
    assert counts["blank.png"] == 0 and counts["astro.jpg"] >= 1 and "corrupt.jpg" not in counts
    assert "corrupt.jpg" in err
    assert db.is_file()
    # a second scan finds everything unchanged in the catalog and reports the same
    code, lines2, err2 = run(capsys, "scan", photos, "--catalog", db)
    assert code == EXIT_PARTIAL and sorted(lines2) == sorted(lines) and "corrupt.jpg" in err2

    (photos / "corrupt.jpg").unlink()
    originals.pop("corrupt.jpg")
    code, lines, _ = run(capsys, "scan", photos)
    assert code == EXIT_OK and len(lines) == 2


def test_export_strip_gif_mp4(capsys, photos, originals, contract_models_dir, tmp_path):
    models = ["--models", contract_models_dir]
    strip = tmp_path / "strip.png"
    code, lines, err = run(capsys, *models, "export", photos / "astro.jpg", "--out", strip, "--strip", "--max-side", 100)
    assert code == EXIT_OK, err
    assert lines == [str(strip)]
    with Image.open(strip) as im:
        assert im.width > 8 * 90 and im.height < 200  # 8 cells of at most 100 px side by side

    gif = tmp_path / "t.gif"
    code, lines, err = run(capsys, *models, "export", photos / "astro.jpg", "--out", gif, "--gif",
                           "--steps", 2, "--max-side", 96)
    assert code == EXIT_OK, err
    with Image.open(gif) as im:
        assert im.n_frames == 7 * 2 + 1

    mp4 = tmp_path / "t.mp4"
    code, lines, err = run(capsys, *models, "export", photos / "astro.jpg", "--out", mp4, "--mp4", "--steps", 1)
    assert code == EXIT_OK, err
    assert mp4.read_bytes()[4:8] == b"ftyp"

    code, _, err = run(capsys, *models, "export", photos / "astro.jpg", "--out", mp4, "--mp4")
    assert code == EXIT_PARTIAL and str(mp4) in err  # exists, no --overwrite
    code, _, err = run(capsys, *models, "export", photos / "astro.jpg", "--out", tmp_path / "x.png", "--gif")
    assert code == EXIT_USAGE and ".gif" in err


@pytest.mark.parametrize("command", ["age", "estimate", "export"])
def test_missing_corrupt_and_faceless_photos(capsys, photos, originals, contract_models_dir, tmp_path, command):
    extra = {"age": ["--all-groups", "--out", tmp_path / "o"], "estimate": [],
             "export": ["--strip", "--out", tmp_path / "s.png"]}[command]
    for name, expected in (("missing.jpg", EXIT_USAGE), ("corrupt.jpg", EXIT_USAGE), ("blank.png", EXIT_NO_FACE)):
        code, lines, err = run(capsys, "--models", contract_models_dir, command, photos / name, *extra)
        assert code == expected, (name, err)
        assert str(photos / name) in err and lines == []
    assert not (tmp_path / "o").exists() and not (tmp_path / "s.png").exists()


def test_face_number_out_of_range(capsys, photos, contract_models_dir, tmp_path):
    code, _, err = run(capsys, "--models", contract_models_dir, "age", photos / "astro.jpg", "--all-groups",
                       "--face", 9, "--out", tmp_path / "o")
    assert code == EXIT_NO_FACE and "no face 9" in err


def test_damaged_and_missing_models(capsys, photos, originals, contract_models_dir, tmp_path):
    broken = tmp_path / "models"
    shutil.copytree(contract_models_dir, broken)
    data = bytearray((broken / "aging.onnx").read_bytes())
    data[100] ^= 0x55
    (broken / "aging.onnx").write_bytes(bytes(data))
    code, lines, err = run(capsys, "--models", broken, "age", photos / "astro.jpg", "--all-groups", "--out", tmp_path / "o")
    assert code == EXIT_MODEL and "aging.onnx" in err and "damaged" in err and lines == []
    code, _, err = run(capsys, "--models", broken, "export", photos / "astro.jpg", "--strip", "--out", tmp_path / "s.png")
    assert code == EXIT_MODEL and "aging.onnx" in err
    # the age model is intact: estimate still works
    code, lines, _ = run(capsys, "--models", broken, "estimate", photos / "astro.jpg")
    assert code == EXIT_OK and lines
    (broken / "age.onnx").unlink()
    code, _, err = run(capsys, "--models", broken, "estimate", photos / "astro.jpg")
    assert code == EXIT_MODEL and "age.onnx" in err and "missing" in err


def test_python_dash_m_core(photos, contract_models_dir):
    env = {**os.environ, "AGELAPSE_MODELS_DIR": str(contract_models_dir), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "core", "estimate", str(photos / "astro.jpg")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.splitlines()[0].startswith("0\t")
    done = subprocess.run([sys.executable, "-m", "core", "estimate", str(photos / "nope.jpg")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_USAGE and "nope.jpg" in done.stderr and done.stdout == ""
