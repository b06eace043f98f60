"""pixforge-tsit train under torchrun: 2 processes on gloo/CPU train, checkpoint, resume and release.

FADE's batch norm stays per-process on CPU (torch's SyncBatchNorm needs GPU tensors); on CUDA the generator is
converted to SyncBatchNorm. So this checks the multi-process mechanics, not equality with one process.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from integration_helpers import checkpoint, env

pytest.importorskip("pixforge.tsit")

from pixforge.core.io import embedded_images, write_image  # noqa: E402

TINY = ["--size", "32", "--ngf", "4", "--levels", "4", "--ndf", "4", "--device", "cpu", "--threads", "1", "--quiet",
        "--batch", "1", "--ckpt-every", "2", "--sample-every", "2"]


def torchrun(*args, port: int):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "pixforge.tsit.cli", "train", *map(str, args), *TINY]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=300)


def test_two_process_tsit_training_checkpoints_and_resumes(tmp_path):
    for i, img in enumerate(embedded_images(["astronaut", "coffee", "brick", "grass"])):
        write_image(tmp_path / ("content" if i < 2 else "style") / f"{i}.png", np.ascontiguousarray(img[:64, :64]))
    out = tmp_path / "run"
    data = ["--content", tmp_path / "content", "--style", tmp_path / "style"]
    result = torchrun(out, *data, "--steps", "2", port=29583)
    assert result.returncode == 0, result.stderr[-3000:]
    first = checkpoint(out / "checkpoints" / "step-000000002.pt")
    assert first["config"]["batch"] == 1 and first["step"] == 2
    result = torchrun(out, *data, "--steps", "4", "--resume", port=29584)
    assert result.returncode == 0, result.stderr[-3000:]
    last = checkpoint(out / "checkpoints" / "step-000000004.pt")
    assert last["step"] == 4 and (out / "generator.safetensors").is_file()
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # rank 0 logs once per step (losses averaged over the ranks)
    for key, value in last["models"]["G"].items():
        assert torch.isfinite(value.float()).all(), key
    moved = [k for k, v in last["models"]["G"].items() if v.is_floating_point() and not torch.equal(v, first["models"]
                                                                                                   ["G"][k])]
    assert any("conv_img" in k for k in moved)
