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


def test_link_faces_are_found_by_the_loaders(sbi, tmp_path):
    from pixforge.forensics.data import scan

    dirs = {}
    for name in CATALOGUE:
        d = tmp_path / "all" / Path(name).stem
        d.mkdir(parents=True)
        (d / "0000.png").write_bytes(b"not really a png")
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
    assert linked.read_bytes() == b"not really a png" and not linked.is_symlink()


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
