"""torchrun with 2 processes on gloo/CPU trains the same weights as one process on the doubled batch."""

import subprocess
import sys

import torch
from integration_helpers import checkpoint, env

from pixforge.core.runtime import seed_everything
from pixforge.core.toy import Denoiser

COMMON = ["--size", "32", "--width", "8", "--device", "cpu", "--threads", "1", "--steps", "6"]


def test_two_process_ddp_matches_single_process(tmp_path):
    single = tmp_path / "single"
    result = subprocess.run([sys.executable, "-m", "pixforge.core.tool", "train", str(single), *COMMON,
                             "--batch", "8"], capture_output=True, text=True, env=env())
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29571",
           "-m", "pixforge.core.tool", "train", str(ddp), *COMMON, "--batch", "4"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    a = checkpoint(single / "checkpoints" / "step-000000006.pt")
    b = checkpoint(ddp / "checkpoints" / "step-000000006.pt")
    assert a["step"] == b["step"] == 6
    seed_everything(0)
    start = Denoiser(8).state_dict()
    for key, value in a["models"]["model"].items():
        assert not torch.equal(value, start[key])  # training moved every tensor
        torch.testing.assert_close(b["models"]["model"][key], value, atol=2e-5, rtol=1e-4)
