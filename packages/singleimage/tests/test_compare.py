"""compare: both methods on one tiny image with tiny settings -> compare.json, compare.md, compare.png."""

import json
from pathlib import Path

from PIL import Image

from pixforge.export.command import invoke
from pixforge.singleimage.cli import SingleImage
from pixforge.singleimage.compare import SCORES, compare

TINY = {"iters": 2, "warmup_g": 2, "warmup_f": 2, "joint": 2, "max_size": 40, "min_size": 15, "downscale": 2,
        "batch_g": 4, "n": 3, "device": "cpu", "quiet": True}


def test_compare_writes_the_report_table_and_grid(tmp_path, image_file):
    report = compare(str(image_file), str(tmp_path / "cmp"), **TINY)
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert saved == report and set(report["methods"]) == {"singan", "petsgan"}
    singan, petsgan = report["methods"]["singan"], report["methods"]["petsgan"]
    assert singan["iterations"] == 2 * 5 and petsgan["iterations"] == 6  # 5 scales at 30x40 / min 15
    for r in (singan, petsgan):
        assert r["train_s"] > 0 and r["sample_s"] > 0
        scored = json.loads((Path(r["run"]) / "metrics.json").read_text())  # `metrics` on that run, n 3, seed 0
        assert scored["num_samples"] == 3 and all(r[k] == scored[k] and r[k] > 0 for k in SCORES), (r, scored)
    assert report["petsgan_over_singan_wall"] == round(petsgan["train_s"] / singan["train_s"], 4)
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| singan |" in table and "| petsgan |" in table and "PetsGAN / SinGAN" in table
    # two rows (one per method) of the image and 3 samples, each 30x40, 2 px padding
    assert Image.open(tmp_path / "cmp" / "compare.png").size == (4 * 40 + 5 * 2, 2 * 30 + 3 * 2)


def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, image_file):
    for args, needle in ((["--n", "1"], "--n"), (["--iters", "0"], "--iters")):
        capsys.readouterr()
        code = invoke(SingleImage, ["compare", str(image_file), "--out", str(tmp_path / "c"), *args],
                      "pixforge-singleimage")
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and needle in lines[0], lines
    capsys.readouterr()
    code = invoke(SingleImage, ["compare", str(tmp_path / "missing.png"), "--out", str(tmp_path / "c")],
                  "pixforge-singleimage")
    assert code == 2 and "missing.png" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
