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


def test_preview_has_a_row_per_model_and_shows_progress(tmp_path, capsys):
    path = Spectra().preview(out=str(tmp_path / "grid.png"), size=32, per_model=2, texture_pool=2)
    rows = len(NAMES) - 1  # featurevis-deadleaves: no --encoder
    assert next(read_images(path)).shape[0] == rows * (32 + 4)
    assert f"{rows}/{rows}" in capsys.readouterr().err  # the progress bar, on stderr


def test_analyze_and_compare(tmp_path):
    photos = tmp_path / "photos"
    for i, img in enumerate(embedded_images(["astronaut", "coffee", "chelsea", "rocket"])):
        write_image(photos / f"{i}.png", img)
    cli = Spectra()
    stats = json.loads(cli.analyze(str(photos), out=str(tmp_path / "a"), size=64))
    assert stats["images"] == 4 and stats["available"] == 4 and 0.5 < stats["slope_of_mean_spectrum"] < 2.5
    kurtosis = stats["statistics"]["wavelet_kurtosis"]
    assert kurtosis["mean"] > 3  # natural images: heavy-tailed wavelet marginals
    assert kurtosis["std"] > 0 and kurtosis["mean_ci95"][0] <= kurtosis["mean"] <= kurtosis["mean_ci95"][1]
    saved = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert len(saved["radial_spectrum"]) == 32 and (tmp_path / "a" / "stats.png").is_file()
    assert all(len(values) == 4 for values in saved["per_image"].values())
    model = json.loads(cli.analyze("spectrum", n=4, size=64))
    assert model["images"] == 4
    same = json.loads(cli.compare(str(photos), str(photos / "."), size=64))
    assert same["lab_symmetric_kl"]["between"] == pytest.approx(0.0, abs=1e-6)
    assert same["statistics"]["sparsity"]["ks_p_value"] == pytest.approx(1.0)
    other = json.loads(cli.compare(str(photos), "dead-leaves-squares", n=4, size=64, out=str(tmp_path / "c")))
    assert other["lab_symmetric_kl"]["between"] > 0.1 and (tmp_path / "c" / "compare.png").is_file()
    assert len(json.loads((tmp_path / "c" / "compare.json").read_text())["stats"]) == 2


def test_demo_runs(tmp_path):
    report = Spectra().demo(out=str(tmp_path), n=12, size=32, workers=1)
    assert "spectrum slope" in report and (tmp_path / "compare" / "compare.json").is_file()


def run_cli(*args):
    """The CLI in this process: (exit code, stderr)."""
    import contextlib
    import io

    from pixforge.export.command import invoke

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = invoke(Spectra, args, "pixforge-spectra")
    return code, err.getvalue()


def test_plots_without_matplotlib_fail_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    out = tmp_path / "out"
    code, err = run_cli("analyze", "spectrum", "--n", 2, "--size", 32, "--out", out)
    assert code == 2 and "pixforge-spectra[plots]" in err and "--no-plots" in err and not out.exists()
    assert run_cli("analyze", "spectrum", "--n", 2, "--size", 32, "--out", out, "--no-plots")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["stats.json"]


@pytest.mark.parametrize("content, message", [
    ({"images": np.random.default_rng(0).random((2, 8, 8, 3))}, "holds a float64 array"),
    ({"images": np.full((2, 8, 8, 3), np.nan, np.float32)}, "holds a float32 array"),
    ({"images": np.zeros((0, 8, 8, 3), np.uint8)}, "holds no images"),
    ({"labels": np.zeros(3)}, "holds no 'images' array"),
    (None, "is not a readable npz shard"),
])
def test_bad_npz_shards_are_one_error_naming_the_file(tmp_path, content, message):
    shards = tmp_path / "shards"
    shards.mkdir()
    good = shards / "shard-000000.npz"
    np.savez(good, images=np.zeros((2, 8, 8, 3), np.uint8))
    bad = shards / "shard-000001.npz"
    if content is None:
        bad.write_bytes(b"")
    else:
        np.savez(bad, **content)
    for verb in (["analyze", shards], ["compare", good, shards]):
        code, err = run_cli(*verb, "--size", 16, "--out", tmp_path / "out")
        assert code == 2 and message in err and str(bad) in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["generate", "dead-leaves-textured", "--texture-pool", 0], "--texture-pool must be a whole number"),
    (["generate", "spectrum", "--iterations", -1], "--iterations must be a whole number"),
    (["generate", "spectrum", "--seed", -1], "--seed must be"),
    (["generate", "spectrum", "--quality", 500], "--quality must be"),
    (["generate", "stylegan-random", "--channel-max", 0], "--channel-max must be"),
    (["analyze", "spectrum", "--n", 0], "--n must be"),
    (["compare", "spectrum", "wmm", "--size", 8], "--size must be"),
    (["preview", "--per-model", 0], "--per-model must be"),
    (["preview", "--size", 96], "wmm needs a power-of-two size"),
    (["demo", "--size", 0], "--size must be"),
])
def test_bad_values_exit_2_before_any_work(tmp_path, args, message):
    out = tmp_path / ("out.png" if args[0] == "preview" else "out")
    code, err = run_cli(*args, "--out", out)
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("verb", [["generate", "spectrum"], ["analyze", "spectrum"], ["compare", "spectrum", "wmm"],
                                  ["preview"], ["demo"]])
def test_out_naming_an_existing_file_is_refused(tmp_path, verb):
    out = tmp_path / "taken.png"
    out.write_bytes(b"keep")
    code, err = run_cli(*verb, "--out", out)
    assert code == 2 and str(out) in err and out.read_bytes() == b"keep", err


@pytest.mark.parametrize("args, message", [
    (["generate", "dead-leaves-triangles"], "unknown model"),
    (["generate", "wmm", "--size", "96"], "power-of-two size"),
    (["generate", "spectrum", "--n", "0"], "--n must be a whole number at least 1, got 0"),
    (["generate", "spectrum", "--shard", "3/2"], "K must be between 1 and N"),
    (["analyze", "/nonexistent/folder"], "does not exist"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "pixforge.spectra.cli", *args, "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
