"""A model exported by pixforge-core runs under pixforge-run and gives PyTorch's output."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from integration_helpers import env

from pixforge.core import toy
from pixforge.core.checkpoint import save_release
from pixforge.core.io import image_to_tensor, read_image, tensor_to_image, write_image

RUN = [sys.executable, "-m", "pixforge.export.cli"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = toy.Denoiser(8).eval()
    save_release(root / "run", model, {"arch": "Denoiser", "width": 8, "sigma": 0.2, "step": 0})
    return model, toy.export(root / "run", root / "denoiser.onnx"), root


def test_pixforge_run_equals_pytorch(exported):
    model, path, root = exported
    rng = np.random.default_rng(0)
    inputs = root / "inputs"
    images = {"a.png": rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
              "sub/b.png": rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)}
    for name, img in images.items():
        write_image(inputs / name, img)
    out = root / "out"
    result = subprocess.run([*RUN, "run", str(path), str(inputs), "--out", str(out), "--device", "cpu"],
                            capture_output=True, text=True, env=env())
    assert result.returncode == 0, result.stderr
    for name, img in images.items():
        with torch.no_grad():
            expected = tensor_to_image(model(image_to_tensor(img)[None]).clamp(-1, 1))[0]
        produced = next(out.rglob(name.split("/")[-1]))
        got = read_image(produced)
        assert got.shape == img.shape
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_info_reads_the_metadata(exported):
    _, path, _ = exported
    result = subprocess.run([*RUN, "info", str(path)], capture_output=True, text=True, env=env())
    assert result.returncode == 0, result.stderr
    assert "pixforge-core" in result.stdout and "denoise" in result.stdout


def test_torch_session_runs_the_runtimes_code_path(exported):
    """The same jobs over a TorchSession (the module + the metadata its export wrote) give pixforge-run's files."""
    from pixforge.core.session import TorchSession
    from pixforge.export.jobs import execute, plan
    from pixforge.export.pipeline import Pipeline
    from pixforge.export.session import open_session

    model, path, root = exported
    rng = np.random.default_rng(1)
    inputs = root / "inputs-torch"
    write_image(inputs / "c.png", rng.integers(0, 256, (29, 41, 3), dtype=np.uint8))
    onnx_session = open_session(path, "cpu")
    session = TorchSession(model, onnx_session.meta, path, torch.device("cpu"))
    assert {k: v.shape for k, v in session.inputs.items()} == {"image": ["N", 3, "H", "W"]}
    for name, s in (("torch", session), ("onnx", onnx_session)):
        pipe = Pipeline(s)
        assert execute(pipe, plan(pipe, [str(inputs)], root / name), batch=2) == 1
    a, b = read_image(root / "torch" / "c.png"), read_image(root / "onnx" / "c.png")
    assert a.shape == (29, 41, 3) and np.abs(a.astype(int) - b.astype(int)).max() <= 1
