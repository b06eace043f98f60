"""The VAE, the deterministic data stream, and `compare` end to end (tiny sizes): outputs, fairness, resume, FID."""

import json
import os
import shutil
import signal

import numpy as np
import pytest
import torch

from pixforge.core.io import write_image
from pixforge.core.nets.inception import InceptionV3
from pixforge.export.errors import PixforgeError
from pixforge.ffl.compare import Shuffled, compare
from pixforge.ffl.lfd import score_pairs
from pixforge.ffl.loss import FocalFrequencyLoss
from pixforge.ffl.vae import VAE, check_size

TINY = dict(size=16, steps=4, batch=4, width=8, latent=8, eval_images=4, ckpt_every=2, sample_every=2, quiet=True)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No InceptionV3 weights from the environment; one CPU thread (tiny nets, and a shared CPU is slow with more)."""
    monkeypatch.delenv("PIXFORGE_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_vae_shapes_and_deterministic_reconstruction(size):
    torch.manual_seed(0)
    vae = VAE(size, width=8, latent=4)
    x = torch.rand(3, 3, size, size) * 2 - 1
    recon, mu, logvar = vae(x, torch.randn(3, 4))
    assert recon.shape == x.shape and mu.shape == logvar.shape == (3, 4)
    assert recon.abs().max() <= 1
    vae.eval()
    torch.testing.assert_close(vae.reconstruct(x), vae.reconstruct(x))
    torch.testing.assert_close(vae(x, torch.zeros(3, 4))[0], vae.reconstruct(x))  # zero noise decodes mu


@pytest.mark.parametrize("size", [4, 12, 48, 2048])
def test_vae_sizes_must_be_powers_of_two(size):
    with pytest.raises(ValueError, match="power of two"):
        check_size(size)


def test_shuffled_stream_visits_every_image_once_per_epoch_and_is_reproducible():
    images = [torch.full((1, 2, 2), float(i)) for i in range(5)]
    stream = Shuffled(images, seed=3)
    epochs = [[int(stream[e * 5 + k].max()) for k in range(5)] for e in range(3)]
    assert all(sorted(epoch) == list(range(5)) for epoch in epochs) and epochs[0] != epochs[1]
    again = Shuffled(images, seed=3)
    for i in (12, 0, 7):  # any order, any process: item i is a function of (seed, i)
        torch.testing.assert_close(again[i], stream[i])


def test_compare_end_to_end(tmp_path):
    out = tmp_path / "cmp"
    text = compare(str(out), **TINY)
    assert "| w/o |" in text and "| w/ |" in text and "fd_pfr18: Fréchet distance on pfr18-64" in text
    for name in ("results.json", "results.md", "samples.png", "spectra.png", "loss_curves.png"):
        assert (out / name).is_file(), name
        assert name in text
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 4 and results["eval_images"] == 4 and results["metrics"]["with_ffl"]["fd_pfr18"] >= 0
    for run, weight in (("without_ffl", 0.0), ("with_ffl", 100.0)):
        assert json.loads((out / run / "config.json").read_text())["ffl_weight"] == weight
        assert len(list((out / run / "checkpoints").glob("step-*.pt"))) == 2
        assert len(list((out / "eval" / run).glob("*.png"))) == 4
    # same initial weights, data and noise: the first step's MSE is the same in both runs
    first = [json.loads((out / run / "metrics.jsonl").read_text().splitlines()[0])
             for run in ("without_ffl", "with_ffl")]
    assert first[0]["mse"] == first[1]["mse"] and first[0]["ffl"] == first[1]["ffl"]
    # the LFD column is what `pixforge-ffl lfd` measures on the written images
    rescored = score_pairs(str(out / "eval" / "real"), str(out / "eval" / "with_ffl"), quiet=True)
    assert rescored["metrics"]["lfd"]["mean"] == pytest.approx(results["metrics"]["with_ffl"]["lfd"]["mean"], rel=1e-9)
    with pytest.raises(PixforgeError, match="not empty"):
        compare(str(out), **TINY)


def _assert_same_state(straight, resumed, step):
    """The step-`step` checkpoints of both runs hold the same weights and Adam moments, bit for bit."""
    name = f"checkpoints/step-{step:09d}.pt"
    for run in ("without_ffl", "with_ffl"):
        a, b = (torch.load(d / run / name, weights_only=True) for d in (straight, resumed))
        for key, value in a["models"]["vae"].items():
            assert torch.equal(value, b["models"]["vae"][key]), f"{run} {key}"
        for index, state in a["optimizers"]["opt"]["state"].items():
            for key, value in state.items():
                assert torch.equal(value, b["optimizers"]["opt"]["state"][index][key]), f"{run} Adam {index}.{key}"


def _logged(out, run):
    """The `run` of compare `out`: its metrics.jsonl records without their wall-clock times."""
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in (out / run / "metrics.jsonl").read_text().splitlines()]


def test_resume_continues_exactly(tmp_path, monkeypatch):
    """Resumed runs end on the uninterrupted runs' weights and train (and log) only the steps after their checkpoint
    (training from step 0 again would end on the same weights)."""
    straight = tmp_path / "straight"
    compare(str(straight), **TINY)
    logs = {run: _logged(straight, run) for run in ("without_ffl", "with_ffl")}
    assert all([r["step"] for r in log] == [1, 2, 3, 4] for log in logs.values())
    shutil.copytree(straight, tmp_path / "resumed")
    for run in ("without_ffl", "with_ffl"):  # as if killed after the step-2 checkpoint
        (tmp_path / "resumed" / run / "checkpoints/step-000000004.pt").unlink()
    compare(str(tmp_path / "resumed"), **TINY, resume=True)
    _assert_same_state(straight, tmp_path / "resumed", 4)
    for run in ("without_ffl", "with_ffl"):  # steps 3 and 4 trained once more, with the same losses
        assert _logged(tmp_path / "resumed", run) == logs[run], run

    # SIGINT during step 3 of the first run: that step ends, is checkpointed (between the step-2 and step-4
    # checkpoints), the command stops; --resume then ends on the uninterrupted run's weights
    calls = []

    class Interrupted(FocalFrequencyLoss):
        def forward(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return super().forward(*args, **kwargs)

    monkeypatch.setattr("pixforge.ffl.train.FocalFrequencyLoss", Interrupted)
    stopped = tmp_path / "stopped"
    assert compare(str(stopped), **TINY).startswith(f"stopped: continue with pixforge-ffl compare --out {stopped}")
    assert sorted(p.name for p in (stopped / "without_ffl" / "checkpoints").iterdir()) == [
        "step-000000002.pt", "step-000000003.pt"]
    assert not (stopped / "with_ffl").exists()
    assert [r["step"] for r in _logged(stopped, "without_ffl")] == [1, 2, 3]
    compare(str(stopped), **TINY, resume=True)
    _assert_same_state(straight, stopped, 4)
    for run in ("without_ffl", "with_ffl"):  # without_ffl: step 4 only; with_ffl: started now
        assert _logged(stopped, run) == logs[run], run
    with pytest.raises(PixforgeError, match="--resume"):
        compare(str(tmp_path / "nothing-here"), **TINY, resume=True)


def test_compare_on_a_folder_with_dct_and_fid(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(30):
        write_image(tmp_path / "data" / f"{i:02d}.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    weights = tmp_path / "random-inception.pth"
    torch.save(InceptionV3("fid").state_dict(), weights)
    out = tmp_path / "cmp"
    text = compare(str(out), data=str(tmp_path / "data"), transform="dct", inception_weights=str(weights),
                   **{**TINY, "steps": 2})
    results = json.loads((out / "results.json").read_text())
    assert results["data"].endswith("27 training images and 3 held-out images, centre 16x16 crops")
    assert results["transform"] == "dct" and "random-inception.pth" in results["distance"]["features"]
    fids = [results["metrics"][run]["fid"] for run in ("without_ffl", "with_ffl")]
    assert all(isinstance(f, float) and f >= 0 for f in fids) and "n/a" not in text
    with pytest.raises(PixforgeError, match="does not exist"):
        compare(str(tmp_path / "other"), inception_weights=str(tmp_path / "missing.pth"), **TINY)


def test_summary_lists_loss_curves_only_when_drawn(tmp_path, monkeypatch):
    monkeypatch.setattr("pixforge.ffl.compare.loss_curves", lambda runs, path: False)  # as without matplotlib
    text = compare(str(tmp_path / "cmp"), **{**TINY, "steps": 1, "ckpt_every": 1, "sample_every": 1})
    assert "loss_curves.png" not in text and not (tmp_path / "cmp" / "loss_curves.png").exists()
    assert "not drawn: matplotlib is missing" in (tmp_path / "cmp" / "results.md").read_text()
