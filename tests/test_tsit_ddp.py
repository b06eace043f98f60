"""pixforge-tsit train under torchrun: 2 processes on gloo/CPU train the same weights as one process on the doubled
batch, through a checkpoint and a resume, and release.

Semantic synthesis with the VAE: every term that couples the samples of a batch is there. FADE's batch norm spans
the processes (`pixforge.tsit.nets.SyncBatchNorm2d`, on gloo/CPU too), the KL summed over the batch is scaled by the
world size (DDP averages the processes' gradients), data and noise are per global sample index; D's instance norms
and the means of the other terms need nothing.

Both runs compute in float64 (`TRAIN_SCRIPT`). In float32 the sums over a batch split in two round differently,
and Adam turns that rounding into whole +-lr steps on the parameters whose exact gradient is zero (a bias right
before a normalisation, which removes it; D's logit bias while every logit is inside the hinge margin): those
differ by up to 2 lr per step while everything else agrees to 2e-5. In float64 the rounding stays far below
Adam's eps, so every tensor is compared.
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
        "--ckpt-every", "2", "--sample-every", "2", "--task", "sis", "--num-classes", "4", "--enc-size", "16",
        "--z-dim", "8", "--ema", "0.9"]

# `pixforge-tsit train` with float64 networks and data (the data are float32 tensors: made float64 where made)
TRAIN_SCRIPT = """
import torch
from pixforge.core.io import image_to_tensor
from pixforge.tsit import cli, data

torch.set_default_dtype(torch.float64)
data.image_to_tensor = lambda image: image_to_tensor(image).double()
data.one_hot = lambda labels, n: torch.nn.functional.one_hot(labels, n).movedim(-1, 1).double()
cli.main()
"""


def tsit_train(script, out, *args, port: int | None = None):
    launcher = [] if port is None else ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                                        str(port)]
    cmd = [sys.executable, *launcher, str(script), "train", str(out), *map(str, args), *TINY]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_processes_train_what_one_trains_on_the_doubled_batch(tmp_path):
    rng = np.random.default_rng(0)
    for i, img in enumerate(embedded_images(["astronaut", "coffee", "brick", "grass"])):
        labels = np.zeros((32, 32), np.uint8)
        labels[:, rng.integers(4, 28):] = 1 + i % 3
        write_image(tmp_path / "labels" / f"{i}.png", labels)
        write_image(tmp_path / "images" / f"{i}.png", np.ascontiguousarray(img[:32, :32]))
    data = ["--content", tmp_path / "labels", "--style", tmp_path / "images"]
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    ddp = tmp_path / "ddp"
    tsit_train(script, ddp, *data, "--batch", "2", "--steps", "2", port=29583)
    first = checkpoint(ddp / "checkpoints" / "step-000000002.pt")
    assert first["config"]["batch"] == 2 and first["step"] == 2
    tsit_train(script, ddp, *data, "--batch", "2", "--steps", "4", "--resume", port=29584)
    single = tmp_path / "single"
    tsit_train(script, single, *data, "--batch", "4", "--steps", "4")
    assert (ddp / "generator.safetensors").is_file() and (ddp / "encoder.safetensors").is_file()
    a = checkpoint(single / "checkpoints" / "step-000000004.pt")
    b = checkpoint(ddp / "checkpoints" / "step-000000004.pt")
    assert a["step"] == b["step"] == 4 and set(a["models"]) == set(b["models"]) == {"G", "D", "E", "G_ema"}
    for name, state in a["models"].items():
        for key, value in state.items():
            torch.testing.assert_close(b["models"][name][key], value, atol=1e-8, rtol=1e-6, msg=f"{name}.{key}")
    moved = [k for k, v in b["models"]["G"].items() if v.is_floating_point() and not torch.equal(v, first["models"]
                                                                                                 ["G"][k])]
    assert any("conv_img" in k for k in moved) and any("running_var" in k for k in moved)
    logs = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (single, ddp)]
    assert [r["step"] for r in logs[1]] == [1, 2, 3, 4]  # rank 0 logs once per step (losses averaged over the ranks)
    for key in ("g_gan", "g_feat", "g_kld", "d_real", "d_fake", "lr_scale"):  # core GAN losses are float32
        np.testing.assert_allclose([r[key] for r in logs[1]], [r[key] for r in logs[0]], rtol=1e-6, err_msg=key)


FID_SCRIPT = """
import json, sys, torch
from pixforge.core import distributed
from pixforge.core.metrics import FrechetDistance
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
fid = {"metric": FrechetDistance(InceptionFeatures("fid", weights), reset_real_features=False), "real": False}
value = T._fid(fid, G, None, dataset, 16, None, 0, cpu, info.rank, info.world_size)
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
