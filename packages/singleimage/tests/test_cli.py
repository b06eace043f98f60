"""Bad input through the command line: one line on stderr, exit code 2, nothing written; metrics."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pixforge.core.io import write_image
from pixforge.export.command import invoke
from pixforge.export.errors import PixforgeError
from pixforge.singleimage.cli import SingleImage


@pytest.fixture
def cli(capsys):
    def call(*args):
        capsys.readouterr()
        code = invoke(SingleImage, [str(a) for a in args], "pixforge-singleimage")
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return call


def _one_error_line(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("pixforge-singleimage: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unreadable_image(cli, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    _one_error_line(cli("train", bad, "--out", tmp_path / "run"))
    _one_error_line(cli("train", tmp_path / "missing.png", "--out", tmp_path / "run"), "missing.png")
    assert not (tmp_path / "run").exists()


def test_too_small_image_states_the_minimum(cli, tmp_path):
    small = tmp_path / "small.png"
    write_image(small, np.zeros((12, 20, 3), np.uint8))
    _one_error_line(cli("train", small, "--out", tmp_path / "run"), "at least 25 px")
    _one_error_line(cli("train", small, "--out", tmp_path / "run", "--method", "petsgan"), "at least 80 px")
    assert not (tmp_path / "run").exists()


def test_bad_options(cli, tmp_path, image_file):
    for args, needle in ((["--method", "gan"], "--method"), (["--iters", "0"], "--iters"),
                         (["--scale-factor", "1.5"], "--scale-factor"), (["--prior", "stylegan2"], "--prior"),
                         (["--min-size", "5"], "--min-size")):
        _one_error_line(cli("train", image_file, "--out", tmp_path / "run", *args), needle)
    assert not (tmp_path / "run").exists()


def test_size_below_minimum_writes_nothing(cli, singan_run):
    before = {p.name for p in singan_run.iterdir()}
    _one_error_line(cli("sample", "--run", singan_run, "--size", "8x8"), "minimum 10x10")
    _one_error_line(cli("sample", "--run", singan_run, "--size", "axb"), "--size")
    assert {p.name for p in singan_run.iterdir()} == before


def test_size_over_the_pixel_limit_writes_nothing(cli, tmp_path, singan_run):
    """`sample` / `export` --size and `upscale`'s result are bounded by pixforge.export.sizing.MAX_PIXELS (4096 x 4096
    in area): one line before anything is allocated or written (100000x100000 started allocating 40 GB)."""
    from pixforge.singleimage.data import parse_size

    before = {p.name for p in singan_run.iterdir()}
    for verb, out in (("sample", tmp_path / "s"), ("export", tmp_path / "m.onnx")):
        _one_error_line(cli(verb, "--run", singan_run, "--size", "100000x100000", "--out", out),
                        "--size 100000x100000: too large", "at most 16,777,216 pixels (4096x4096)")
    _one_error_line(cli("upscale", "--run", singan_run, "--factor", 1000, "--out", tmp_path / "u.png"),
                    "enlarged x1000 gives 30000x40000: too large")
    assert not any(tmp_path.iterdir()) and {p.name for p in singan_run.iterdir()} == before
    assert parse_size("4096x4096") == (4096, 4096) and parse_size("1x16777216") == (1, 16777216)
    with pytest.raises(PixforgeError, match="--size 4097x4096: too large"):
        parse_size("4097x4096")


@pytest.mark.parametrize("record, tool", [({"tool": "pixforge-dfvae"}, "pixforge-dfvae"),
                                          ({"arch": {"tool": "pixforge-tsit", "format": 1}}, "pixforge-tsit")])
def test_a_run_of_another_tool_is_named(cli, tmp_path, image_file, record, tool):
    """Every verb that reads a run refuses one whose config.json names another tool (as dfvae and tsit record
    themselves) in those words; it said the run was unfinished, or named an unknown method None."""
    run = tmp_path / "other"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(record))
    for args in (["sample"], ["metrics"], ["harmonize", image_file, image_file], ["edit", image_file, image_file],
                 ["paint2image", image_file], ["upscale"], ["export", "--out", tmp_path / "m.onnx"]):
        _one_error_line(cli(args[0], "--run", run, *args[1:]), f"{run} is a {tool} run, not a pixforge-singleimage run")
    assert [p.name for p in tmp_path.iterdir()] == ["other"] and [p.name for p in run.iterdir()] == ["config.json"]


def test_sample_draws_in_chunks(cli, tmp_path, singan_run, monkeypatch):
    """Samples are drawn CHUNK at a time (memory bounded whatever --n): the same images as one batch, within one
    grey level (batch size may change the float kernels), and grid.png holds the first GRID."""
    import importlib

    from PIL import Image

    sample = importlib.import_module("pixforge.singleimage.sample")
    assert cli("sample", "--run", singan_run, "--n", 5, "--out", tmp_path / "one").returncode == 0
    monkeypatch.setattr(sample, "CHUNK", 2)
    monkeypatch.setattr(sample, "GRID", 3)
    assert cli("sample", "--run", singan_run, "--n", 5, "--out", tmp_path / "chunks").returncode == 0
    for i in range(5):
        one, chunked = (np.asarray(Image.open(tmp_path / d / f"sample-{i:04d}.png"), np.int16)
                        for d in ("one", "chunks"))
        assert np.abs(one - chunked).max() <= 1
    h, w = np.asarray(Image.open(tmp_path / "one" / "sample-0000.png")).shape[:2]
    grid = Image.open(tmp_path / "chunks" / "grid.png")
    assert grid.size[0] < 4 * w and grid.size[1] < 2 * h  # 3 images in one row, not 5



def test_metrics_and_compare_draw_their_samples_in_chunks(singan_run, monkeypatch):
    """`draw` (metrics, compare) runs the networks on CHUNK samples at a time and returns samples 0..n-1 as one batch
    would (within float kernels' batch-size noise)."""
    import importlib

    sample = importlib.import_module("pixforge.singleimage.sample")
    model = sample.load_model(singan_run)
    whole = model.sample(5, seed=3)
    calls = []
    original = type(model).sample

    def recording(self, n, *args, **kwargs):
        calls.append(n)
        return original(self, n, *args, **kwargs)

    monkeypatch.setattr(sample, "CHUNK", 2)
    monkeypatch.setattr(type(model), "sample", recording)
    drawn = sample.draw(model, 5, seed=3)
    assert calls == [2, 2, 1]
    torch.testing.assert_close(drawn, whole, atol=1e-5, rtol=0)

def test_sample_and_metrics(cli, tmp_path, singan_run):
    result = cli("sample", "--run", singan_run, "--n", 3, "--size", "20x50", "--out", tmp_path / "s")
    assert result.returncode == 0, result.stderr
    from PIL import Image

    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["grid.png", "sample-0000.png", "sample-0001.png", "sample-0002.png"]
    assert Image.open(tmp_path / "s" / "sample-0001.png").size == (50, 20)
    result = cli("metrics", "--run", singan_run, "--n", 4, "--out", tmp_path / "m.json")
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "m.json").read_text())
    assert scores["diversity_pixel_std"] > 0 and scores["diversity_pairwise_l1"] > 0
    assert scores["swd_patches"] > 0 and scores["sifid"] is None


def test_sifid_with_a_weights_file(tmp_path, singan_run):
    """SIFID runs with any InceptionV3 FID-format weights file (here random weights: the number means nothing)."""
    import torch

    from pixforge.core.nets.inception import InceptionV3
    from pixforge.singleimage.metrics import metrics

    torch.manual_seed(0)
    weights = tmp_path / "inception.pth"
    torch.save(InceptionV3("fid").state_dict(), weights)
    scores = metrics(str(singan_run), n=2, inception=str(weights), out=str(tmp_path / "m.json"))
    assert json.loads((tmp_path / "m.json").read_text()) == scores
    # the same numbers from the parts: the run's samples at its training size, its training image, that network
    from pixforge.singleimage import metrics as m
    from pixforge.singleimage.data import load_image, resize
    from pixforge.singleimage.sample import load_model

    model = load_model(singan_run)
    config = json.loads((singan_run / "config.json").read_text())
    samples, real = model.sample(2, None, seed=0), resize(load_image(config["image"]), tuple(model.sizes[-1]))
    assert scores["sifid"] == pytest.approx(m.sifid(samples, real, m.sifid_network(str(weights))), rel=1e-6)
    assert scores["sifid"] > 0 and scores["sifid_weights"] == "inception-v3-fid"
    assert scores["diversity_pixel_std"] == pytest.approx(m.diversity(samples, real)["diversity_pixel_std"], rel=1e-6)


def test_outputs_never_replace_the_inputs_or_the_runs_files(cli, tmp_path, singan_run, image_file):
    """--overwrite replaces earlier results only: never the run's weights, its config or an input image."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(singan_run, run)
    image = tmp_path / "cat.png"
    shutil.copy(image_file, image)
    kept = {p: p.read_bytes() for p in (run / "model.safetensors", run / "config.json", image)}
    _one_error_line(cli("metrics", "--run", run, "--n", 2, "--out", run / "config.json", "--overwrite"),
                    "would replace config.json, a record of the input folder")
    _one_error_line(cli("metrics", "--run", run, "--n", 2, "--out", image, "--overwrite"), "must end in .json")
    _one_error_line(cli("metrics", "--run", run, "--n", 2, "--out", tmp_path), "must end in .json")
    (tmp_path / "old.json").write_text("{}")
    _one_error_line(cli("metrics", "--run", run, "--n", 2, "--out", tmp_path / "old.json"), "already exists")
    _one_error_line(cli("paint2image", "--run", run, image, "--out", image, "--overwrite"), "is the input")
    assert all(p.read_bytes() == data for p, data in kept.items())


def test_resume_refuses_other_networks_and_keeps_the_config(cli, tmp_path, singan_run, image_file):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(singan_run, run)
    config = (run / "config.json").read_bytes()
    _one_error_line(cli("train", image_file, "--out", run, "--method", "petsgan", "--downscale", 2, "--resume"),
                    "was started with method 'singan' (now 'petsgan')")
    _one_error_line(cli("train", image_file, "--out", run, "--nfc", 16, "--resume"), "nfc")
    assert (run / "config.json").read_bytes() == config
    _one_error_line(cli("train", image_file, "--out", tmp_path / "new", "--vgg", image_file), "a PetsGAN option")
    _one_error_line(cli("train", image_file, "--out", tmp_path / "new", "--threads", -1), "--threads")
    assert not (tmp_path / "new").exists()


def test_demo_checks_its_numbers_before_writing(cli, tmp_path):
    _one_error_line(cli("demo", "--out", tmp_path / "d", "--steps", 0), "--steps")
    _one_error_line(cli("demo", "--out", tmp_path / "d", "--n", 1), "--n")
    assert not (tmp_path / "d").exists()
