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


FID_SCRIPT = """
import json, sys, torch
from pixforge.core import distributed
from pixforge.core.metrics import FID
from pixforge.core.nets.inception import InceptionFeatures
from pixforge.tsit import train as T
from pixforge.tsit.model import build_generator, make_arch
root, weights, generator, out = sys.argv[1:5]
torch.set_num_threads(1)
cpu = torch.device("cpu")
info = distributed.setup(cpu)
dataset, _ = T._dataset("ast", root + "/content", root + "/style", (32, 32), None, 0, "fixed", None, False, None, None)
G = build_generator(make_arch("ast", ngf=4, levels=4, size=(32, 32)))
G.load_state_dict(torch.load(generator, weights_only=True))
fid = {"metric": FID(InceptionFeatures("fid", weights), reset_real_features=False), "real": False}
value = T._fid(fid, G, None, dataset, 16, False, None, 0, cpu, info.rank, info.world_size)
if info.is_main:
    open(out, "w").write(json.dumps({"fid": value, "num_fake": fid["metric"].num_fake}))
distributed.teardown()
"""


def test_in_training_fid_counts_each_image_once_under_torchrun(tmp_path):
    """Two ranks score half of the 16 translations each and torchmetrics sums their statistics: the FID equals
    one process scoring all 16 (each rank scoring all of them would count every image twice)."""
    from pixforge.core.nets.inception import InceptionV3
    from pixforge.tsit.model import build_generator, make_arch

    for i, img in enumerate(embedded_images(["astronaut", "coffee", "brick", "grass"])):
        write_image(tmp_path / ("content" if i < 2 else "style") / f"{i}.png", np.ascontiguousarray(img[:64, :64]))
    torch.manual_seed(0)
    weights, generator = tmp_path / "inception.pth", tmp_path / "G.pth"
    torch.save(InceptionV3("fid").state_dict(), weights)
    torch.save(build_generator(make_arch("ast", ngf=4, levels=4, size=(32, 32))).state_dict(), generator)
    script = tmp_path / "fid.py"
    script.write_text(FID_SCRIPT)
    args = [str(script), str(tmp_path), str(weights), str(generator)]
    one = subprocess.run([sys.executable, *args, str(tmp_path / "one.json")], capture_output=True, text=True,
                         env=env(), timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29585", *args, str(tmp_path / "two.json")], capture_output=True, text=True, env=env(),
                         timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    single, ranks = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert single["num_fake"] == 16 and ranks["num_fake"] == 8  # this rank's own share
    assert abs(ranks["fid"] - single["fid"]) <= 1e-3 * max(1.0, single["fid"])
