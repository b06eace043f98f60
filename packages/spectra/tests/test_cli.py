"""pixforge-spectra CLI: generate (workers, shards, resume), preview, analyze, compare, demo, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pixforge.core.datagen import read_images
from pixforge.core.io import embedded_images, write_image
from pixforge.spectra import NAMES
from pixforge.spectra.cli import Spectra


def tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_list_names_every_model():
    listing = Spectra().list()
    for name in ("dead-leaves-squares", "dead-leaves-textured", "spectrum", "wmm", "spectrum-color-wmm"):
        assert name in listing


@pytest.mark.parametrize("name", ["spectrum-color", "dead-leaves-oriented"])
def test_workers_and_shards_give_the_same_dataset(tmp_path, name):
    cli = Spectra()
    cli.generate(name, n=12, size=32, out=str(tmp_path / "one"), quiet=True)
    cli.generate(name, n=12, size=32, out=str(tmp_path / "two"), workers=2, quiet=True)
    for k in (3, 1, 2):
        cli.generate(name, n=12, size=32, out=str(tmp_path / "split"), shard=f"{k}/3", quiet=True)
    assert tree(tmp_path / "one") == tree(tmp_path / "two") == tree(tmp_path / "split")


def test_resume_and_webdataset(tmp_path):
    cli = Spectra()
    first = json.loads(cli.generate("spectrum", n=5, size=32, out=str(tmp_path), format="webdataset-tar",
                                    per_shard=2, quiet=True))
    assert first["generated"] == 5
    (tmp_path / "shard-000001.tar").unlink()
    again = json.loads(cli.generate("spectrum", n=5, size=32, out=str(tmp_path), format="webdataset-tar",
                                    per_shard=2, quiet=True))
    assert again["generated"] == 2 and again["skipped"] == 3
    assert len(list(read_images(tmp_path))) == 5


def test_model_options_reach_the_manifest_and_change_images(tmp_path):
    cli = Spectra()
    cli.generate("spectrum", n=2, size=32, out=str(tmp_path / "code"), quiet=True)
    cli.generate("spectrum", n=2, size=32, out=str(tmp_path / "paper"), paper_spectrum=True, quiet=True)
    manifest = json.loads((tmp_path / "paper" / "manifest.json").read_text())
    assert manifest["params"]["paper_spectrum"] is True and manifest["package"] == "pixforge-spectra"
    a, b = (np.stack(list(read_images(tmp_path / d))) for d in ("code", "paper"))
    assert not np.array_equal(a, b)


def test_preview_has_a_row_per_model(tmp_path):
    path = Spectra().preview(out=str(tmp_path / "grid.png"), size=32, per_model=2, texture_pool=2)
    assert next(read_images(path)).shape[0] == (len(NAMES) - 1) * (32 + 4)  # featurevis-deadleaves: no --encoder


def test_analyze_and_compare(tmp_path):
    photos = tmp_path / "photos"
    for i, img in enumerate(embedded_images(["astronaut", "coffee", "chelsea", "rocket"])):
        write_image(photos / f"{i}.png", img)
    cli = Spectra()
    stats = json.loads(cli.analyze(str(photos), out=str(tmp_path / "a"), size=64))
    assert stats["images"] == 4 and 0.5 < stats["spectrum_slope"]["of_mean_spectrum"] < 2.5
    assert stats["wavelet_kurtosis"]["mean"] > 3  # natural images: heavy-tailed wavelet marginals
    saved = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert len(saved["radial_spectrum"]) == 32 and (tmp_path / "a" / "stats.png").is_file()
    model = json.loads(cli.analyze("spectrum", n=4, size=64))
    assert model["images"] == 4
    same = json.loads(cli.compare(str(photos), str(photos / "."), size=64))
    assert same["lab_symmetric_kl"] == pytest.approx(0.0, abs=1e-6)
    other = json.loads(cli.compare(str(photos), "dead-leaves-squares", n=4, size=64, out=str(tmp_path / "c")))
    assert other["lab_symmetric_kl"] > 0.1 and (tmp_path / "c" / "compare.png").is_file()


def test_demo_runs(tmp_path):
    report = Spectra().demo(out=str(tmp_path), n=12, size=32, workers=1)
    assert "spectrum slope" in report and (tmp_path / "compare" / "compare.json").is_file()


@pytest.mark.parametrize("args, message", [
    (["generate", "dead-leaves-triangles"], "unknown model"),
    (["generate", "wmm", "--size", "96"], "power-of-two size"),
    (["generate", "--n", "0"], "--n must be a positive"),
    (["generate", "--shard", "3/2"], "K must be between 1 and N"),
    (["analyze", "/nonexistent/folder"], "does not exist"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "pixforge.spectra.cli", *args, "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
