"""`pixforge-dfvae train` under torchrun: 2 processes (gloo, CPU) on --batch 2 train what one process trains on
--batch 4 (every term is a batch mean, DDP averages the gradients, data and noise are per global sample index).
float32: the split sums round differently, so the weights agree to ~1e-6, not bit for bit (see the root
tests/test_tsit_ddp.py for the float64 argument)."""

import json
import os
import subprocess
import sys

import torch
from integration_helpers import launcher

from pixforge.core.checkpoint import read_checkpoint
from pixforge.core.runtime import seed_everything
from pixforge.dfvae.nets import DFVAE, DFVAEConfig

TINY = ["--size", "32", "--width", "8", "--max-width", "32", "--structure-channels", "8", "--appearance-dim", "16",
        "--fusion-width", "8", "--device", "cpu", "--quiet", "--perceptual", "off", "--threads", "1", "--steps", "2"]


def _train(out, data, batch, processes=1):
    cmd = [sys.executable, *launcher(processes), "-m", "pixforge.dfvae.cli", "train", str(out), "--data", str(data),
           "--batch", str(batch), *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_processes_train_what_one_trains_on_the_doubled_batch(tmp_path, dataset_maker):
    data = dataset_maker(tmp_path / "data", {"anna": 6, "ben": 5}, size=32)
    _train(tmp_path / "ddp", data, batch=2, processes=2)
    _train(tmp_path / "one", data, batch=4)
    a = read_checkpoint(tmp_path / "ddp" / "checkpoints" / "step-000000002.pt")
    b = read_checkpoint(tmp_path / "one" / "checkpoints" / "step-000000002.pt")
    assert a["config"]["batch"] == 2 and b["config"]["batch"] == 4
    seed_everything(b["config"]["seed"])  # the initial weights: `train` seeds, then builds the model
    start = DFVAE(DFVAEConfig(**b["config"]["arch"])).state_dict()
    assert set(a["models"]["model"]) == set(b["models"]["model"]) == set(start)
    for key, value in b["models"]["model"].items():
        torch.testing.assert_close(a["models"]["model"][key], value, atol=1e-5, rtol=1e-4, msg=key)
        for ckpt in (a, b):  # training moved every tensor (equal runs prove nothing if neither trains)
            assert not torch.equal(ckpt["models"]["model"][key], start[key]), key
    losses = [[json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
              for run in ("ddp", "one")]
    assert losses[0] == losses[1] or max(abs(x - y) for x, y in zip(*losses, strict=True)) < 1e-5
