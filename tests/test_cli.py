"""agelapse-cli end to end on a temporary folder: the astronaut portrait and the contract models."""

from __future__ import annotations

import base64
import hashlib
import json
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


# ------------------------------------------------------------------------------------ issue 12

LATIN1 = b"latin1_\xe9t\xe9.jpg"  # a name in latin-1 bytes: not UTF-8


def test_a_name_that_is_not_utf8_is_scanned_stored_shown_and_aged(capsys, photos, contract_models_dir, tmp_path):
    odd = photos / os.fsdecode(LATIN1)
    shutil.copy(photos / "astro.jpg", odd)
    db = tmp_path / "catalog.db"
    for _ in range(2):  # the second scan finds it unchanged in the catalog
        code, lines, err = run(capsys, "scan", photos, "--catalog", db)
        assert code == EXIT_PARTIAL and "Traceback" not in err  # corrupt.jpg only
        records = dict(line.split("\t") for line in lines)
        assert int(records[str(photos / "latin1_\ufffdt\ufffd.jpg")]) >= 1  # shown with U+FFFD
    code, lines, err = run(capsys, "scan", photos, "--catalog", db, "--json")
    by_name = {}
    for line in lines:
        record = json.loads(line)
        raw = base64.b64decode(record["path_bytes"]) if "path_bytes" in record else os.fsencode(record["path"])
        by_name[os.path.basename(raw)] = record
    assert by_name[LATIN1]["faces"] >= 1 and by_name[LATIN1]["path"].endswith("latin1_\ufffdt\ufffd.jpg")
    assert "error" in by_name[b"corrupt.jpg"] and by_name[b"astro.jpg"]["faces"] >= 1

    out = tmp_path / "aged"
    code, lines, err = run(capsys, "--models", contract_models_dir, "age", odd, "--group", "70+", "--out", out, "--json")
    assert code == EXIT_OK, err
    record = json.loads(lines[0])
    written = base64.b64decode(record["output_bytes"])
    assert written == os.fsencode(out) + b"/latin1_\xe9t\xe9_70+.jpg" and os.path.isfile(written)  # the same bytes


def test_control_characters_never_split_a_record(capsys, photos, tmp_path):
    odd = photos / "two\nlines\t\x1b[31m.jpg"
    shutil.copy(photos / "astro.jpg", odd)
    code, lines, err = run(capsys, "scan", photos)
    assert code == EXIT_PARTIAL
    assert len(lines) == 3 and all(line.count("\t") == 1 for line in lines)
    assert f"{photos}/two\\nlines\\t\\x1b[31m.jpg\t1" in lines
    assert "\x1b" not in err and "\x1b" not in "".join(lines)
    code, lines, _ = run(capsys, "scan", photos, "--json")
    paths = [json.loads(line)["path"] for line in lines]
    assert str(odd) in paths and len(lines) == 4  # corrupt.jpg is a record too, with its error


def test_estimate_and_age_write_json_lines(capsys, photos, contract_models_dir, tmp_path):
    code, lines, err = run(capsys, "--models", contract_models_dir, "estimate", photos / "astro.jpg", "--json")
    assert code == EXIT_OK, err
    faces = [json.loads(line) for line in lines]
    assert [f["face"] for f in faces] == list(range(len(faces)))
    assert faces[0]["path"] == str(photos / "astro.jpg") and 0 < faces[0]["age"] < 100 and len(faces[0]["box"]) == 4
    code, lines, err = run(capsys, "--models", contract_models_dir, "age", photos / "astro.jpg", "--all-groups",
                           "--out", tmp_path / "o", "--json")
    assert code == EXIT_OK, err
    records = [json.loads(line) for line in lines]
    assert [r["group"] for r in records][-2:] == ["60-69", "70+"] and all(Path(r["output"]).is_file() for r in records)


def test_an_extreme_panorama_is_one_clear_line_not_a_traceback(capsys, photos, contract_models_dir, tmp_path):
    Image.fromarray(np.full((8, 20000, 3), 90, np.uint8)).save(photos / "strip.png")
    models = ["--models", contract_models_dir]
    for argv in (["estimate", photos / "strip.png"],
                 ["age", photos / "strip.png", "--all-groups", "--out", tmp_path / "o"],
                 ["export", photos / "strip.png", "--strip", "--out", tmp_path / "s.png"]):
        code, lines, err = run(capsys, *models, *argv)
        assert code == EXIT_NO_FACE and lines == [], err
        assert err.strip() == f"agelapse-cli: {photos / 'strip.png'}: no face found"
    code, lines, err = run(capsys, "scan", photos)
    assert f"{photos / 'strip.png'}\t0" in lines and "Traceback" not in err


def test_a_failure_inside_a_library_names_the_photo_and_hides_the_traceback(capsys, photos, contract_models_dir,
                                                                            monkeypatch):
    import cv2

    from core.faces import FaceFinder

    def broken(self, rgb):
        raise cv2.error("OpenCV(5.0.0) resize.cpp:4220: error: (-215:Assertion failed)\n inv_scale_x > 0")

    monkeypatch.setattr(FaceFinder, "detect", broken)
    code, lines, err = run(capsys, "--models", contract_models_dir, "estimate", photos / "astro.jpg")
    assert code == EXIT_USAGE and lines == []
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"agelapse-cli: {photos / 'astro.jpg'}: cannot process this photo (error: OpenCV")
    code, lines, err = run(capsys, "scan", photos)
    assert code == EXIT_PARTIAL and "Traceback" not in err
    assert f"{photos / 'astro.jpg'}: face finding failed (error: OpenCV(5.0.0) resize.cpp:4220:" in err
    with pytest.raises(cv2.error):  # --debug: the traceback, as Python prints it
        main(["--debug", "--models", str(contract_models_dir), "estimate", str(photos / "astro.jpg")])
    capsys.readouterr()
    code, _, err = run(capsys, "-vv", "scan", photos)
    assert "face finding failed on" in err and "Traceback" not in err  # -vv: more log, still no traceback
    code, _, err = run(capsys, "--debug", "scan", photos)
    assert "Traceback" in err and "broken" in err  # --debug logs where the photo failed


def test_an_unexpected_error_is_one_line_with_its_own_exit_code(capsys, photos, monkeypatch):
    import core.cli as cli

    def bug(args):
        raise KeyError("oops")

    monkeypatch.setitem(cli.COMMANDS, "scan", bug)
    code, _, err = run(capsys, "scan", photos)
    assert code == cli.EXIT_BUG and "KeyError" in err and "--debug" in err and "Traceback" not in err


def test_progress_is_a_plain_line_every_few_seconds_when_stderr_is_not_a_terminal(capsys, photos, monkeypatch):
    import io

    from core.cli import Progress

    now = [100.0]
    stream = io.StringIO()
    bar = Progress("scanning", "photo", stream=stream, every=5.0, tty=False, clock=lambda: now[0])
    for done, t in ((1, 101.0), (2, 104.0), (3, 106.0), (4, 108.0), (10, 112.0), (40, 140.0)):
        now[0] = t
        bar.update(done, 40)
    bar.close()
    assert stream.getvalue().splitlines() == [
        "scanning: 3/40 photos (7 %), 0.50 photos/s, about 1 min 14 s left",  # 6 s in: the first line
        "scanning: 10/40 photos (25 %), 0.83 photos/s, about 36 s left",  # 6 s later; none at 8 s
    ]  # and none at the end: the summary follows

    import core.cli as cli

    monkeypatch.setattr(cli, "PROGRESS_EVERY", 0.0)
    code, _, err = run(capsys, "scan", photos)  # capsys: stderr is not a terminal
    assert "scanning: 1/3 photos (33 %)" in err and "scanning: 2/3 photos (66 %)" in err
    assert "\r" not in err  # no bar


def test_output_folder_that_cannot_be_written_is_said_in_words(capsys, photos, contract_models_dir, tmp_path,
                                                               monkeypatch):
    import errno

    import core.export as export

    out = tmp_path / "card"
    out.mkdir()
    real_open = os.open

    def read_only(path, flags, *a, **k):
        if os.fspath(path).startswith(str(out)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(export.os, "open", read_only)
    for argv in (["age", photos / "astro.jpg", "--all-groups", "--out", out],
                 ["export", photos / "astro.jpg", "--strip", "--out", out / "s.png"]):
        code, lines, err = run(capsys, "--models", contract_models_dir, *argv)
        assert code == EXIT_PARTIAL and lines == []
        assert err == f"agelapse-cli: cannot write to {out}: the folder is on a read-only disk\n"
    assert list(out.iterdir()) == []


def test_a_run_writes_nothing_outside_the_data_and_cache_folders(photos, contract_models_dir, tmp_path):
    """onnxruntime's telemetry would write ~/.cache/Microsoft/DeveloperTools/... on its first import."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AGELAPSE_", "ORT_"))}
    env.update(HOME=str(home), OMP_NUM_THREADS="1")
    for argv in (["estimate", photos / "astro.jpg"], ["age", photos / "astro.jpg", "--group", "70+", "--out", tmp_path / "o"],
                 ["scan", photos, "--catalog", home / ".local" / "share" / "agelapse" / "c.db"]):
        done = subprocess.run([sys.executable, "-m", "core", "--models", str(contract_models_dir), *map(str, argv)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode in (EXIT_OK, EXIT_PARTIAL), done.stderr
    written = [p.relative_to(home) for p in home.rglob("*") if p.is_file()]
    ours = [Path(".local/share/agelapse"), Path(".cache/agelapse")]
    assert written and all(any(p.is_relative_to(d) for d in ours) for p in written), written
