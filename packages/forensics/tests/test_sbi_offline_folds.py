"""The leave-one-identity-out folds of experiments/sbi_offline.py (no training: split, face links, table)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "sbi_offline.py"

CATALOGUE = {
    "wolfgang.mp4": {"identity": "wolfgang"},
    "face_noface.mov": {"identity": "pyfeat-man"},
    "noface_face.mov": {"identity": "pyfeat-man"},
    "single_face.mp4": {"identity": "pyfeat-man"},
    "carphone.mp4": {"identity": "carphone"},
}


@pytest.fixture(scope="module")
def sbi():
    spec = importlib.util.spec_from_file_location("sbi_offline_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_holdouts(sbi):
    assert sbi.holdouts("all", CATALOGUE) == ["carphone", "pyfeat-man", "wolfgang"]
    assert sbi.holdouts("wolfgang", CATALOGUE) == ["wolfgang"]
    assert sbi.holdouts("carphone, wolfgang,carphone", CATALOGUE) == ["carphone", "wolfgang"]
    with pytest.raises(SystemExit, match="nobody"):
        sbi.holdouts("nobody", CATALOGUE)
    with pytest.raises(SystemExit):
        sbi.holdouts("all", {"a.mp4": {"identity": "only"}})


def test_each_identity_on_one_side_of_every_fold(sbi):
    for holdout in sbi.holdouts("all", CATALOGUE):
        parts = sbi.fold_split(CATALOGUE, holdout)
        assert sorted(parts["train"] + parts["test"]) == sorted(CATALOGUE)
        assert {CATALOGUE[n]["identity"] for n in parts["test"]} == {holdout}
        assert holdout not in {CATALOGUE[n]["identity"] for n in parts["train"]}
    assert sbi.fold_split(CATALOGUE, "pyfeat-man")["test"] == ["face_noface.mov", "noface_face.mov",
                                                                "single_face.mp4"]


def _png(path: Path, value: int) -> None:
    """A 16 px grey crop (the loaders read every crop's header)."""
    from PIL import Image

    Image.new("RGB", (16, 16), (value, value, value)).save(path)


def test_link_faces_are_found_by_the_loaders(sbi, tmp_path):
    from pixforge.forensics.data import scan

    dirs = {}
    for name in CATALOGUE:
        d = tmp_path / "all" / Path(name).stem
        d.mkdir(parents=True)
        _png(d / "0000.png", 7)
        (d / "track.json").write_text(json.dumps({"files": ["0000.png"]}))
        dirs[name] = d
    parts = sbi.fold_split(CATALOGUE, "carphone")
    for part, names in parts.items():
        sbi.link_faces(dirs, names, tmp_path / "fold" / part)
        sbi.link_faces(dirs, names, tmp_path / "fold" / part)  # again: a resumed run leaves them as they are
    assert [v.key for v in scan(tmp_path / "fold" / "test")] == ["carphone"]
    assert [v.key for v in scan(tmp_path / "fold" / "train")] == ["face_noface", "noface_face", "single_face",
                                                                   "wolfgang"]
    linked = tmp_path / "fold" / "train" / "wolfgang" / "0000.png"
    assert linked.read_bytes() == (dirs["wolfgang.mp4"] / "0000.png").read_bytes() and not linked.is_symlink()


def _entry(train_ids: float, std: float, distorted: list[float]) -> dict:
    def ev(auc):
        return {"sets": {"fake": {"frame": {"auc": auc, "acc": 0.5}}}}

    evals = {"train-ids": ev(train_ids), "std": ev(std)}
    evals.update({f"{t}:5": ev(a) for t, a in zip(("CS", "CC", "BW"), distorted, strict=True)})
    return {"eval": evals}


def test_loio_table_rows_and_mean(sbi):
    folds = {
        "carphone": {"runs": {"xception/clean": _entry(0.9, 0.4, [0.5, 0.6, 0.7])},
                     "faces_test": {"videos": {"carphone.mp4": 47}}},
        "wolfgang": {"runs": {"xception/clean": _entry(0.8, 0.6, [0.3, 0.3, 0.3])},
                     "faces_test": {"videos": {"wolfgang.mp4": 48}}},
    }
    assert sbi.auc_summary(folds["carphone"]["runs"]["xception/clean"]) == pytest.approx(
        {"train-ids": 0.9, "std": 0.4, "distorted": 0.6})
    lines = sbi.loio_table(folds).splitlines()
    assert lines[2] == "| xception | clean | carphone (47) | 0.90 | 0.40 | 0.60 |"
    assert lines[3] == "| xception | clean | wolfgang (48) | 0.80 | 0.60 | 0.30 |"
    assert lines[4] == ("| xception | clean | **mean of 2** | **0.85** (0.80-0.90) | **0.50** (0.40-0.60) | "
                        "**0.45** (0.30-0.60) |")


@pytest.mark.parametrize("n", [3, 7, 20, 21, 47, 48, 200])
def test_time_split_keeps_a_gap_between_train_and_test(sbi, n):
    train, test = sbi.time_split(n, 1 / 3, 0.1)
    assert train and test and not set(train) & set(test)
    assert train == list(range(len(train))) and test == list(range(n - len(test), n))  # train first, test last
    gap = test[0] - train[-1] - 1
    assert gap >= max(1, round(n * 0.1))
    assert len(test) == max(1, round(n / 3)) and len(train) + gap + len(test) == n
    with pytest.raises(SystemExit):
        sbi.time_split(2, 1 / 3, 0.1)


def test_link_frames_splits_each_video_in_time(sbi, tmp_path):
    from pixforge.forensics.data import scan

    n = 12
    src = tmp_path / "all" / "clip"
    src.mkdir(parents=True)
    files = [f"{10 * i:04d}.png" for i in range(n)]
    for i, name in enumerate(files):
        _png(src / name, i)
    track = {"files": files, "frames": [10 * i for i in range(n)], "crop_landmarks": [[[i, i]] * 68 for i in range(n)],
             "boxes": [[i, i, i, i] for i in range(n)], "size": 128, "frame_count": 10 * n}
    (src / "track.json").write_text(json.dumps(track))
    train, test = sbi.time_split(n, 1 / 3, 0.1)
    for part, idx in (("train", train), ("test", test)):
        sbi.link_frames(src, tmp_path / part / "clip", idx)
        sbi.link_frames(src, tmp_path / part / "clip", idx)  # again: a resumed run leaves it as it is
    sides = {}
    for part in ("train", "test"):
        (video,) = scan(tmp_path / part, landmarks=True)
        sub = json.loads((tmp_path / part / "clip" / "track.json").read_text())
        assert video.files == sub["files"] == [files[i] for i in sub["time_split"]["indices"]]
        assert sub["frames"] == [10 * i for i in sub["time_split"]["indices"]]
        assert sub["crop_landmarks"] == [track["crop_landmarks"][i] for i in sub["time_split"]["indices"]]
        assert sub["size"] == 128 and sub["frame_count"] == 10 * n
        assert sorted(f.name for f in (tmp_path / part / "clip").glob("*.png")) == sub["files"]
        assert all((tmp_path / part / "clip" / f).read_bytes() == (src / f).read_bytes() for f in sub["files"])
        sides[part] = sub["frames"]
    assert not set(sides["train"]) & set(sides["test"])
    assert min(sides["test"]) - max(sides["train"]) >= 10 * (1 + max(1, round(n * 0.1)))  # the gap is dropped


def test_robustness_table(sbi):
    auc = {"std": 0.9, **{f"{t}:5": 0.6 for t in sbi.TYPES}, **{f"{t}:3": 0.8 for t in sbi.TYPES}}
    results = {"runs": {"xception/clean": {"eval": {k: {"sets": {"fake": {"frame": {"auc": v}}}}
                                                     for k, v in auc.items()}}}}
    lines = sbi.robustness_table(results, [5, 3]).splitlines()
    assert lines[0] == "| model | training | clean | mean of the 7 at 5 (drop) | mean of the 7 at 3 (drop) |"
    assert lines[2] == "| xception | clean | 0.90 | 0.60 (+0.30) | 0.80 (+0.10) |"


@pytest.mark.parametrize("fake_only", [False, True])
def test_distort_fake_only_reaches_train_and_evaluate(sbi, tmp_path, monkeypatch, fake_only):
    """`--distort-fake-only`: the `distort` condition trains on distorted fakes only and every distorted evaluation
    distorts the fakes only; clean training and undistorted evaluations take the defaults."""
    import pixforge.forensics.evaluate as fevaluate
    import pixforge.forensics.train as ftrain

    calls = []
    monkeypatch.setattr(ftrain, "train", lambda **kw: calls.append(("train", kw)))
    monkeypatch.setattr(fevaluate, "evaluate", lambda **kw: calls.append(("evaluate", kw)) or {})
    argv = ["--work", str(tmp_path)] + (["--distort-fake-only"] if fake_only else [])
    parser_args = {}
    monkeypatch.setattr(sbi.argparse.ArgumentParser, "parse_args",
                        lambda self, argv=None: parser_args.setdefault("a", self.parse_known_args(argv)[0]))
    monkeypatch.setattr(sbi, "fetch_videos", lambda videos: (_ for _ in ()).throw(SystemExit("stop")))
    with pytest.raises(SystemExit, match="stop"):
        sbi.main(argv)
    args = parser_args["a"]
    assert args.distort_fake_only is fake_only
    for name, p in (("clean", 0.0), ("distort", 0.5)):
        (tmp_path / name).mkdir()
        sbi.train_run(tmp_path / name, tmp_path, "xception", args, p)
    sbi.evaluate_run(tmp_path / "run", tmp_path, "sbi", tmp_path / "std", None, args)
    sbi.evaluate_run(tmp_path / "run", tmp_path, "sbi", tmp_path / "gb", "GB:5", args)
    assert [kw["distort_fake_only"] for _, kw in calls] == [False, fake_only, False, fake_only]
    assert [kw["distort_p"] for what, kw in calls if what == "train"] == [0.0, 0.5]
