"""training/data.py: dataset file-name conventions, the CSV loader, format detection, the fixed
split, and the training command line's answer to an unusable dataset. No torch needed."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from training.data import (
    DatasetError,
    Sample,
    detect_format,
    load_cacd,
    load_csv,
    load_dataset,
    load_fgnet,
    load_morph,
    load_utkface,
    split_of,
)

ROOT = Path(__file__).resolve().parents[1]


def touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\xff\xd8 not decoded by the loaders")
    return folder


def by_name(samples) -> dict[str, Sample]:
    return {s.path.name: s for s in samples}


# ------------------------------------------------------------------------------------ file names

def test_utkface_names_with_and_without_race(tmp_path):
    d = touch(tmp_path / "utk",
              "25_0_2_20170116174525125.jpg.chip.jpg",   # age 25, male, race 2
              "61_1_20170109150557335.jpg.chip.jpg",     # a real UTKFace file that lacks the race field
              "1_1_4_20161221193016140.jpg",             # youngest, race 4
              "116_1_0_20170120134725990.jpg",           # oldest in UTKFace
              "sub/40_0_1_20170117193216395.jpg.chip.png")  # nested folders are walked
    samples, problems = load_utkface(d)
    assert problems == []
    s = by_name(samples)
    assert (s["25_0_2_20170116174525125.jpg.chip.jpg"].age, s["25_0_2_20170116174525125.jpg.chip.jpg"].gender,
            s["25_0_2_20170116174525125.jpg.chip.jpg"].race) == (25, 0, 2)
    no_race = s["61_1_20170109150557335.jpg.chip.jpg"]
    assert (no_race.age, no_race.gender, no_race.race) == (61, 1, None)
    assert s["1_1_4_20161221193016140.jpg"].race == 4
    assert s["116_1_0_20170120134725990.jpg"].age == 116
    assert s["40_0_1_20170117193216395.jpg.chip.png"].age == 40
    assert all(x.identity is None for x in samples)  # UTKFace has no identities: split by file name


def test_utkface_malformed_names_are_reported_and_skipped(tmp_path):
    good = "30_1_3_20170104230051690.jpg.chip.jpg"
    bad = ["photo.jpg",                            # no fields at all
           "30_2_0_20170104230051690.jpg",         # gender must be 0 or 1
           "0_0_0_20170104230051690.jpg",          # age 0 is not a UTKFace age
           "130_0_0_20170104230051690.jpg",        # implausible age
           "30_0.jpg"]                              # no timestamp
    d = touch(tmp_path / "utk", good, *bad, "notes.txt", ".hidden_30_0_0_1.jpg")
    samples, problems = load_utkface(d)
    assert [s.path.name for s in samples] == [good]
    assert len(problems) == len(bad)  # .txt and hidden files are not images, so not problems
    for name in bad:
        assert sum(p.startswith(name + ":") for p in problems) == 1, (name, problems)
    assert all("AGE_GENDER_RACE_TIMESTAMP" in p for p in problems)


def test_fgnet_names(tmp_path):
    d = touch(tmp_path / "fgnet", "001A02.JPG", "001A43a.JPG", "082a18.jpg", "001A.JPG", "A02.JPG")
    samples, problems = load_fgnet(d)
    s = by_name(samples)
    assert (s["001A02.JPG"].identity, s["001A02.JPG"].age) == ("001", 2)
    assert (s["001A43a.JPG"].identity, s["001A43a.JPG"].age) == ("001", 43)  # variant letter
    assert (s["082a18.jpg"].identity, s["082a18.jpg"].age) == ("082", 18)    # lower-case 'a'
    assert len(samples) == 3
    assert sorted(p.split(":")[0] for p in problems) == ["001A.JPG", "A02.JPG"]


def test_cacd_names(tmp_path):
    d = touch(tmp_path / "cacd", "14_Aaron_Johnson_0001.jpg", "53_Mary_Kate_Olsen_0012.jpg", "Aaron_Johnson_0001.jpg",
              "14_Aaron_Johnson.jpg")
    samples, problems = load_cacd(d)
    s = by_name(samples)
    assert (s["14_Aaron_Johnson_0001.jpg"].age, s["14_Aaron_Johnson_0001.jpg"].identity) == (14, "Aaron_Johnson")
    assert (s["53_Mary_Kate_Olsen_0012.jpg"].age, s["53_Mary_Kate_Olsen_0012.jpg"].identity) == (53, "Mary_Kate_Olsen")
    assert len(samples) == 2 and len(problems) == 2


def test_morph_names(tmp_path):
    d = touch(tmp_path / "morph", "000123_00M28.JPG", "245678_03F51.jpg", "000123_1m30.JPG", "000123_00X28.JPG",
              "000123M28.JPG")
    samples, problems = load_morph(d)
    s = by_name(samples)
    assert (s["000123_00M28.JPG"].identity, s["000123_00M28.JPG"].age, s["000123_00M28.JPG"].gender) == ("000123", 28, 0)
    assert (s["245678_03F51.jpg"].identity, s["245678_03F51.jpg"].age, s["245678_03F51.jpg"].gender) == ("245678", 51, 1)
    assert (s["000123_1m30.JPG"].age, s["000123_1m30.JPG"].gender) == (30, 0)
    assert len(samples) == 3 and len(problems) == 2


# ----------------------------------------------------------------------------------------- CSV

def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_loader_relative_paths_bad_rows(tmp_path):
    touch(tmp_path / "imgs", "a.jpg", "b.png", "c.jpg", "e.jpg", "f.jpg", "g.jpg")
    other = touch(tmp_path / "elsewhere", "abs.jpg")
    csv_path = write_csv(tmp_path / "labels.csv",
                         "path,age,identity\n"
                         "imgs/a.jpg,34,alice\n"
                         "imgs/b.png,7.6,\n"            # fractional age floors; empty identity -> None
                         "imgs/c.jpg,old,bob\n"          # not a number
                         "imgs/missing.jpg,40,carol\n"   # no such file
                         f"{other / 'abs.jpg'},51,dave\n"  # absolute paths work too
                         "imgs/e.jpg,-3,erin\n"          # negative age
                         "imgs/f.jpg,inf,fred\n"         # not a finite number
                         ",20,gina\n"                    # no path
                         "imgs/g.jpg,,hal\n")            # empty age
    samples, problems = load_csv(csv_path)
    got = {s.path.name: (s.age, s.identity) for s in samples}
    assert got == {"a.jpg": (34, "alice"), "b.png": (7, None), "abs.jpg": (51, "dave")}
    assert all(s.path.is_absolute() and s.path.is_file() for s in samples)
    assert samples[0].path == (tmp_path / "imgs" / "a.jpg").resolve()  # relative to the CSV's folder, not the cwd
    assert len(problems) == 6
    lines = sorted(int(p.split(":")[1]) for p in problems)
    assert lines == [4, 5, 7, 8, 9, 10]  # the CSV's line numbers (header = line 1)
    assert any("missing.jpg not found" in p for p in problems)
    assert any("'old'" in p for p in problems)


def test_csv_without_identity_column_and_bad_files(tmp_path):
    touch(tmp_path, "a.jpg")
    samples, problems = load_csv(write_csv(tmp_path / "ok.csv", "age,path\n22,a.jpg\n"))
    assert [(s.path.name, s.age, s.identity) for s in samples] == [("a.jpg", 22, None)] and problems == []
    with pytest.raises(DatasetError, match="path and age"):
        load_csv(write_csv(tmp_path / "cols.csv", "file,years\na.jpg,22\n"))
    with pytest.raises(DatasetError, match="path and age"):
        load_csv(write_csv(tmp_path / "empty.csv", ""))
    with pytest.raises(DatasetError, match="no such file"):
        load_csv(tmp_path / "absent.csv")


# ------------------------------------------------------------------------------ format detection

def test_detect_format(tmp_path):
    assert detect_format(tmp_path / "whatever.CSV") == "csv"
    assert detect_format(touch(tmp_path / "u", "25_0_2_20170116174525125.jpg.chip.jpg", "61_1_20170109150557335.jpg")) == "utkface"
    assert detect_format(touch(tmp_path / "c", "14_Aaron_Johnson_0001.jpg", "53_Mary_Kate_Olsen_0012.jpg")) == "cacd"
    assert detect_format(touch(tmp_path / "m", "000123_00M28.JPG", "245678_03F51.JPG")) == "morph"
    assert detect_format(touch(tmp_path / "f", "001A02.JPG", "001A43a.JPG", "002A10.JPG")) == "fgnet"
    # a mostly-UTKFace folder with one stray file is still UTKFace (the loader reports the stray)
    assert detect_format(touch(tmp_path / "u2", *[f"{20 + i}_0_0_2017011617452512{i}.jpg" for i in range(9)], "cover.jpg")) == "utkface"
    with pytest.raises(DatasetError, match="cannot tell the dataset format"):
        detect_format(touch(tmp_path / "x", "holiday.jpg", "beach.jpg"))


def test_load_dataset_errors_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_dataset(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_dataset(tmp_path / "empty")
    touch(tmp_path / "txt", "readme.txt")
    with pytest.raises(DatasetError, match="no images"):
        load_dataset(tmp_path / "txt")
    with pytest.raises(DatasetError, match="no usable labelled images"):
        load_dataset(tmp_path / "empty", "utkface")
    bad = touch(tmp_path / "bad", "holiday.jpg")
    with pytest.raises(DatasetError, match=r"no usable labelled images \(1 malformed\)"):
        load_dataset(bad, "utkface")
    with pytest.raises(DatasetError, match="unknown dataset format 'imdb'"):
        load_dataset(bad, "imdb")
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(tmp_path / "bad" / "holiday.jpg", "fgnet")


def test_load_dataset_detects_and_loads(tmp_path):
    d = touch(tmp_path / "u", "25_0_2_20170116174525125.jpg.chip.jpg", "61_1_20170109150557335.jpg", "junk_name.jpg",
              *[f"{30 + i}_1_1_2017011617452512{i}.jpg" for i in range(4)])
    samples, problems = load_dataset(d)
    assert len(samples) == 6 and len(problems) == 1 and problems[0].startswith("junk_name.jpg")
    touch(tmp_path, "x.jpg")
    samples, problems = load_dataset(write_csv(tmp_path / "l.csv", "path,age\nx.jpg,3\n"))
    assert [(s.path.name, s.age) for s in samples] == [("x.jpg", 3)]


# ----------------------------------------------------------------------------------------- split

def test_split_is_fixed_and_proportioned():
    # pinned: the split is part of the evaluation protocol, a change here silently moves test
    # faces into training (e.g. Python's salted hash() instead of SHA-1)
    pinned = {"25_0_2_20170116174525125.jpg.chip.jpg": "train", "4_0_0_x.jpg": "val", "23_0_0_x.jpg": "test"}
    for name, split in pinned.items():
        assert split_of(Sample(Path("/anywhere") / name, 30)) == split
    # the file name decides, not its folder, its age or its other labels
    assert split_of(Sample(Path("/a/23_0_0_x.jpg"), 1)) == split_of(Sample(Path("/b/c/23_0_0_x.jpg"), 90, None, 1, 4)) == "test"
    counts = Counter(split_of(Sample(Path(f"{20 + i % 60}_{i % 2}_{i % 5}_2017{i:013d}.jpg"), 20)) for i in range(5000))
    assert set(counts) == {"train", "val", "test"}
    assert abs(counts["train"] / 5000 - 0.8) < 0.03
    assert abs(counts["val"] / 5000 - 0.1) < 0.02 and abs(counts["test"] / 5000 - 0.1) < 0.02


def test_split_by_identity_never_straddles(tmp_path):
    names = [f"{p:03d}A{a:02d}.JPG" for p in range(1, 61) for a in (2, 15, 31, 47)]
    samples, problems = load_fgnet(touch(tmp_path / "fgnet", *names))
    assert problems == [] and len(samples) == 240
    splits: dict[str, set[str]] = {}
    for s in samples:
        splits.setdefault(s.identity, set()).add(split_of(s))
    assert all(len(v) == 1 for v in splits.values())  # every person in exactly one split
    assert {next(iter(v)) for v in splits.values()} == {"train", "val", "test"}  # and identities do spread
    # same identity across datasets/file names -> same split; a different identity may differ
    a = Sample(Path("14_Aaron_Johnson_0001.jpg"), 14, "Aaron_Johnson")
    b = Sample(Path("other_name.jpg"), 40, "Aaron_Johnson")
    assert split_of(a) == split_of(b)
    assert a.group_key == "Aaron_Johnson" and Sample(Path("x/y.jpg"), 3).group_key == "y.jpg"


# -------------------------------------------------------------------------------- command line

def test_cli_rejects_an_empty_dataset(tmp_path):
    (tmp_path / "EMPTY").mkdir()
    out = tmp_path / "X"
    r = subprocess.run([sys.executable, "-m", "training", "age", "--data", str(tmp_path / "EMPTY"), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "error:" in r.stderr and "EMPTY" in r.stderr and "no images" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()  # nothing written for a run that cannot start
    assert not any(p.name.startswith("cache_") for p in tmp_path.iterdir())


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    from training.__main__ import main

    (tmp_path / "d").mkdir()
    touch(tmp_path / "d", "25_0_2_20170116174525125.jpg")
    assert main(["aging", "--out", str(tmp_path / "run")]) == 2  # neither --data nor --cache
    assert "--data" in capsys.readouterr().err
    assert main(["age", "--cache", str(tmp_path / "nocache"), "--out", str(tmp_path / "run")]) == 2
    assert "no preprocessed cache" in capsys.readouterr().err
    assert main(["age", "--data", str(tmp_path / "d"), "--format", "imdb", "--out", str(tmp_path / "run")]) == 2
    assert "unknown dataset format" in capsys.readouterr().err
    assert main(["age", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run"), "--set", "nonsense=1"]) == 2
    assert "unknown config key 'nonsense'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_show_config_applies_overrides(tmp_path, capsys):
    import json

    from training.__main__ import main

    assert main(["aging", "--out", str(tmp_path / "run"), "--set", "steps=7", "--set", "betas=[0.0, 0.9]",
                 "--set", "large=true", "--show-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["steps"] == 7 and cfg["betas"] == [0.0, 0.9] and cfg["large"] is True
    assert cfg["age_groups"][0] == [0, 9] and cfg["age_groups"][-1] == [70, None]
    assert not (tmp_path / "run").exists()
