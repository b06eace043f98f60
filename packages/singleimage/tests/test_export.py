"""ONNX export: the graph is the PyTorch sampler, onnxruntime reproduces it (export.TOLERANCE) at the training size and
at another aspect, pixforge-run draws samples from it (API and CLI) at the export size or at any --size by the
metadata's size rule (its noise shapes are the PyTorch sampler's), --fp16 halves the weights within FP16_TOLERANCE,
and an unfinished run is refused."""

import json
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
from pixforge.singleimage.export import FP16_TOLERANCE, TOLERANCE, export, graph, noise_inputs
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
    import onnx

    _, path = exported["singan"]
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    inputs = json.loads(props["pixforge.inputs"])
    assert props["pixforge.task"] == "generate"
    assert [s["shape"] for s in inputs] == [["N", 1, 15, 20], ["N", 3, 18, 24], ["N", 3, 22, 29],
                                            ["N", 3, 26, 34], ["N", 3, 30, 40]]
    assert json.loads(props["pixforge.extra"])["size_rule"] == {
        "rule": "pyramid", "sizes": [[15, 20], [18, 24], [22, 29], [26, 34], [30, 40]], "rounding": "half-even",
        "min": [10, 10], "default": [30, 40]}


def _rule(path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return json.loads(session.get_modelmeta().custom_metadata_map["pixforge.extra"])["size_rule"]


def test_runtime_shapes_are_the_samplers(exported):
    """The torch-free rule gives the noise sizes `scaled_sizes` (SinGAN) and `sample` (PetsGAN) draw."""
    from pixforge.export.sizing import noise_sizes

    model = load_model(exported["singan"][0])
    rule = _rule(exported["singan"][1])
    sizes = [(30, 40), (10, 10), (31, 40), (45, 40), (30, 100), (64, 48), (33, 41), (37, 19), (101, 203)]
    sizes += [(h, w) for h in range(10, 70, 7) for w in range(10, 90, 11)]  # ties at x.5 included (e.g. 31 -> 15.5)
    for size in sizes:
        assert noise_sizes(rule, size, 5) == model.scaled_sizes(size), size
    pets = load_model(exported["petsgan"][0])
    rule = _rule(exported["petsgan"][1])
    assert rule == {"rule": "divide", "factor": 2, "min": [8, 8], "default": list(PETSGAN_SIZE)}
    for size in [(8, 8), (30, 40), (24, 64), (50, 12)]:
        assert noise_sizes(rule, size, 1) == [s[1:] for s in graph(pets, size).shapes]
        assert [tuple(z.shape[-2:]) for z in _sample_noise(pets, size, 1, 0)] == noise_sizes(rule, size, 1)


@pytest.mark.parametrize("method", ["singan", "petsgan"])
def test_pixforge_run_at_a_size_is_pytorch_sample(method, exported, monkeypatch):
    """`pixforge-run run --size HxW`'s noise through the ONNX graph equals `model.sample(n, (H, W))` drawing the
    same noise (its `sample_noise` replaced by the runtime's arrays)."""
    from pixforge.export.pipeline import Pipeline
    from pixforge.export.session import open_session

    run, path = exported[method]
    model = load_model(run)
    for size in [(24, 64), (40, 30)]:
        pipe = Pipeline(open_session(path, "cpu"), seed=5, size=size)
        feeds = pipe.feeds(None, [0, 1])
        got = pipe.session.run(feeds)["image"]
        names = [s.name for s in pipe.meta.inputs]

        def fake(shape, indices, seed, salt=0, *args, feeds=feeds, names=names):
            z = feeds[names[salt]]
            assert tuple(shape) == z.shape[1:] and list(indices) == [0, 1]
            return torch.from_numpy(z)

        module = {"singan": "singan", "petsgan": "petsgan_model"}[method]  # where the sampler draws its noise
        monkeypatch.setattr(f"pixforge.singleimage.{module}.sample_noise", fake)
        expected = model.sample(2, size).numpy()
        assert got.shape == expected.shape == (2, 3, *size)
        np.testing.assert_allclose(got, expected, atol=TOLERANCE[method], rtol=TOLERANCE[method])


def test_pixforge_run_size_cli(exported, tmp_path, capsys):
    from pixforge.export.cli import Runtime

    _, path = exported["singan"]
    Runtime().run(str(path), out=str(tmp_path / "big"), count=2, device="cpu", size="45x70")
    assert [Image.open(f).size for f in sorted((tmp_path / "big").glob("*.png"))] == [(70, 45)] * 2
    for model, size, needle in [(exported["singan"][1], "8x30", "below the minimum 10x10"),
                                (exported["petsgan"][1], "31x40", "multiples of 2"),
                                (exported["petsgan"][1], "6x6", "below the minimum 8x8")]:
        capsys.readouterr()
        code = invoke(Runtime, ["run", model, "--count", 2, "--size", size, "--out", tmp_path / "bad",
                                "--device", "cpu"], "pixforge-run")
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and needle in lines[0], lines
        assert not (tmp_path / "bad").exists()


def test_model_without_a_size_rule(exported, tmp_path, capsys):
    """A model exported before size rules still draws at its fixed size; --size on it is one clear error."""
    import onnx

    from pixforge.export.cli import Runtime

    model = onnx.load(str(exported["singan"][1]))
    for prop in model.metadata_props:
        if prop.key == "pixforge.extra":
            extra = json.loads(prop.value)
            del extra["size_rule"]
            prop.value = json.dumps(extra)
    onnx.save(model, str(tmp_path / "old.onnx"))
    Runtime().run(str(tmp_path / "old.onnx"), out=str(tmp_path / "fixed"), count=1, device="cpu")
    assert Image.open(tmp_path / "fixed" / "000000.png").size == (40, 30)
    capsys.readouterr()
    code = invoke(Runtime, ["run", tmp_path / "old.onnx", "--count", 1, "--size", "40x40", "--out", tmp_path / "x",
                            "--device", "cpu"], "pixforge-run")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "export-time size (30x40) only" in err and "\n" not in err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("method", ["singan", "petsgan"])
def test_fp16_export(method, exported, tmp_path):
    """--fp16: float16 weights (PetsGAN's PT stays float32), checked against float32 PyTorch inside `export`, and
    pixforge-run draws the float32 model's samples within FP16_TOLERANCE at a new size."""
    import onnx
    from onnx import numpy_helper

    from pixforge.export.pipeline import Pipeline
    from pixforge.export.session import open_session

    run, path32 = exported[method]
    size = None if method == "singan" else f"{PETSGAN_SIZE[0]}x{PETSGAN_SIZE[1]}"
    path16 = export(str(run), str(tmp_path / "m16.onnx"), size=size, fp16=True, quiet=True)  # checks parity

    def weights(path):
        return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
                if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)}

    w32, w16 = weights(path32), weights(path16)
    nets = ("gens.",) if method == "singan" else ("G.", "IR.")
    assert {k for k in w32 if k.startswith(nets)} == {k for k in w16 if k.startswith(nets)}
    assert all(v.dtype == np.float16 for k, v in w16.items() if k.startswith(nets))
    assert all(v.dtype == np.float32 for k, v in w16.items() if k.startswith("PT."))
    if method == "singan":  # every weight halves, and so does the file, nearly
        assert sum(v.nbytes for v in w16.values()) * 2 == sum(v.nbytes for v in w32.values())
        assert os.path.getsize(path16) < 0.6 * os.path.getsize(path32)
    sessions = [open_session(p, "cpu") for p in (path32, path16)]
    assert sessions[1].inputs[sessions[1].meta.inputs[0].name].type == "tensor(float16)"
    (a, b) = [Pipeline(s, seed=2, size=(24, 64)) for s in sessions]
    feeds = a.feeds(None, [0, 1])
    got16, got32 = b.session.run(feeds)["image"], a.session.run(feeds)["image"]
    assert got16.dtype == np.float32 and got16.shape == (2, 3, 24, 64)
    tol = FP16_TOLERANCE[method]
    np.testing.assert_allclose(got16, got32, atol=tol + TOLERANCE[method], rtol=tol)


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


def test_pt_passes_are_exported_and_their_single_pass_checked(petsgan_run, tmp_path):
    """A release with --pt-passes 3 (the official lpm_iter form) samples with three transfers. Over several passes
    at tau 1e-5 onnxruntime's and PyTorch's rounding pick other patches (up to ~0.03 here), so the exporter checks
    the one-pass graph at its tolerance; the file holds the three passes: nearer PyTorch's three-pass samples than
    its one-pass ones."""
    run = shutil.copytree(petsgan_run, tmp_path / "passes")
    config = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**config, "pt_passes": 3}))
    model, once = load_model(run), load_model(petsgan_run)
    assert (model.PT.passes, once.PT.passes) == (3, 1)
    with single_thread():
        path = export(str(run), str(tmp_path / "m.onnx"), quiet=True)  # raises when the one-pass graphs differ
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "passes"]  # the one-pass check file is gone
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    to_three, to_one = [], []
    for seed in range(4):
        noise = _sample_noise(model, tuple(model.sizes[-1]), 1, seed=seed)
        got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: noise[0].numpy()})[0])
        to_three.append((got - model.sample(1, seed=seed)).abs().mean())  # measured 3e-4 ... 4e-3
        to_one.append((got - once.sample(1, seed=seed)).abs().mean())  # ~0.06
    assert sum(to_three) < 0.5 * sum(to_one)
