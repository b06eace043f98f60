"""ONNX export: the graph is the PyTorch sampler, onnxruntime reproduces it (export.TOLERANCE) at the training size and
at another aspect, pixforge-run draws samples from it (API and CLI), and an unfinished run is refused."""

import os
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from pixforge.core.datagen import single_thread
from pixforge.core.steps import sample_noise
from pixforge.export.command import invoke
from pixforge.singleimage.cli import SingleImage
from pixforge.singleimage.export import TOLERANCE, export, graph, noise_inputs
from pixforge.singleimage.sample import load_model
from pixforge.singleimage.train import train

PETSGAN_SIZE = (30, 60)  # exported at another aspect than its 30x40 training size


@pytest.fixture(scope="module")
def petsgan_run(tmp_path_factory, image_file):
    with single_thread():
        return train(str(image_file), str(tmp_path_factory.mktemp("runs") / "petsgan"), method="petsgan",
                     downscale=2, warmup_g=2, warmup_f=2, joint=2, batch_g=4, augment=8, g_dim=8, ir_dim=8, d_dim=8,
                     device="cpu", quiet=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, singan_run, petsgan_run):
    """{method: (run, model.onnx)}: SinGAN at its training size with the export's own parity check (two sizes),
    PetsGAN with --size 30x60 without it (the tests below check both)."""
    folder = tmp_path_factory.mktemp("onnx")
    with single_thread():
        return {"singan": (singan_run, export(str(singan_run), str(folder / "singan.onnx"), quiet=True)),
                "petsgan": (petsgan_run, export(str(petsgan_run), str(folder / "petsgan.onnx"), check=False,
                                                size=f"{PETSGAN_SIZE[0]}x{PETSGAN_SIZE[1]}", quiet=True))}


def _sample_noise(model, size, n, seed):
    """The noise `model.sample(n, size, seed)` draws, as the graph's inputs."""
    idx = range(n)
    if hasattr(model, "factor"):
        return [sample_noise((1, -(-size[0] // model.factor), -(-size[1] // model.factor)), idx, seed, 0)]
    sizes = model.scaled_sizes(size)
    return [sample_noise((1, *sizes[0]), idx, seed, 0)] + [sample_noise((3, *s), idx, seed, k)
                                                           for k, s in enumerate(sizes[1:], start=1)]


@pytest.mark.parametrize("method", ["singan", "petsgan"])
def test_graph_is_the_pytorch_sampler(method, singan_run, petsgan_run):
    model = load_model(singan_run if method == "singan" else petsgan_run)
    module = graph(model).module
    for size in (tuple(model.sizes[-1]), (24, 64)):
        noise = _sample_noise(model, size, 2, seed=3)
        with torch.no_grad():  # one image at a time, as PetsGAN's sample: PT at tau 1e-5 magnifies batch rounding
            got = torch.cat([module(*[z[i:i + 1] for z in noise]) for i in range(2)])
        torch.testing.assert_close(got, model.sample(2, size, seed=3), atol=1e-5, rtol=0)  # float32 rounding


@pytest.mark.parametrize("method", ["singan", "petsgan"])
def test_onnx_equals_pytorch_at_two_sizes(method, exported):
    run, path = exported[method]
    model = load_model(run)
    module = graph(model).module
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for size in (tuple(model.sizes[-1]), (32, 24)):  # the training size, then a portrait one
        noise = _sample_noise(model, size, 2, seed=0)
        got = session.run(None, {name: z.numpy() for name, z in zip(names, noise, strict=True)})[0]
        with torch.no_grad():
            expected = module(*noise).numpy()
        assert got.shape == expected.shape and got.shape[-2:] == size
        np.testing.assert_allclose(got, expected, atol=TOLERANCE[method], rtol=TOLERANCE[method])


def test_metadata_names_the_noise_per_scale(exported):
    import json

    import onnx

    _, path = exported["singan"]
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    inputs = json.loads(props["pixforge.inputs"])
    assert props["pixforge.task"] == "generate"
    assert [s["shape"] for s in inputs] == [["N", 1, 15, 20], ["N", 3, 18, 24], ["N", 3, 22, 29],
                                            ["N", 3, 26, 34], ["N", 3, 30, 40]]


@pytest.mark.parametrize("method", ["singan", "petsgan"])
def test_pixforge_run_api(method, exported, tmp_path):
    from pixforge.export.cli import Runtime

    _, path = exported[method]
    Runtime().run(str(path), out=str(tmp_path / "out"), count=3, device="cpu", seed=1)
    files = sorted((tmp_path / "out").glob("*.png"))
    size = PETSGAN_SIZE if method == "petsgan" else (30, 40)
    assert len(files) == 3 and all(Image.open(f).size == (size[1], size[0]) for f in files)
    first, second = (np.asarray(Image.open(f), dtype=float) for f in files[:2])
    assert np.abs(first - second).mean() > 0  # different noise per item


def test_pixforge_run_cli(exported, tmp_path):
    _, path = exported["singan"]
    result = subprocess.run([sys.executable, "-m", "pixforge.export.cli", "run", str(path), "--count", "2", "--out",
                             str(tmp_path / "cli"), "--device", "cpu"], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "cli").glob("*.png"))) == 2


def _one_error_line(capsys, args, *needles):
    capsys.readouterr()
    code = invoke(SingleImage, [str(a) for a in args], "pixforge-singleimage")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("pixforge-singleimage: error: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unfinished_run_is_refused(capsys, tmp_path, singan_run):
    run = tmp_path / "unfinished"
    shutil.copytree(singan_run, run, ignore=shutil.ignore_patterns("model.*"))
    _one_error_line(capsys, ["export", "--run", run, "--out", tmp_path / "m.onnx"], "not a finished run", "--resume")
    assert not (tmp_path / "m.onnx").exists()


def test_bad_sizes_are_refused(capsys, tmp_path, petsgan_run, singan_run):
    _one_error_line(capsys, ["export", "--run", petsgan_run, "--out", tmp_path / "m.onnx", "--size", "31x40"],
                    "multiples of 2")
    _one_error_line(capsys, ["export", "--run", singan_run, "--out", tmp_path / "m.onnx", "--size", "8x8"], "minimum")
    _one_error_line(capsys, ["export", "--run", singan_run, "--out", tmp_path / "m.txt"], ".onnx")
    assert not list(tmp_path.iterdir())


def test_noise_inputs_are_standard_normal():
    z = noise_inputs([(3, 64, 64)], 4)[0]
    assert z.shape == (4, 3, 64, 64) and abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05
