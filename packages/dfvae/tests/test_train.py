"""`pixforge-dfvae train` at 32 px: the reconstruction loss falls, --resume continues bit for bit, sample grids and
metrics are written, bad options are one line with nothing written."""

import json

import pytest
import torch

from pixforge.core.checkpoint import read_checkpoint
from pixforge.export.command import invoke

TINY = ["--size", "32", "--width", "8", "--max-width", "32", "--structure-channels", "8", "--appearance-dim", "16",
        "--fusion-width", "8", "--device", "cpu", "--quiet", "--keep-last", "30", "--perceptual", "off"]


def cli(*args):
    from pixforge.dfvae.cli import DFVAE

    return invoke(DFVAE, [str(a) for a in args], "pixforge-dfvae")


@pytest.fixture(scope="module")
def data(tmp_path_factory, dataset_maker):
    return dataset_maker(tmp_path_factory.mktemp("data"), {"anna": 6, "ben": 5}, size=32)


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _losses(model, data):
    """Every loss term of `model` on 16 fixed training samples (fixed noise): a deterministic yardstick."""
    from pixforge.dfvae.data import FaceFrames
    from pixforge.dfvae.flow import HornSchunckFlow
    from pixforge.dfvae.loss import DFVAELoss
    from pixforge.dfvae.train import frame_batch

    dataset = FaceFrames([data])
    items = [dataset[i] for i in range(1000, 1016)]
    batch = frame_batch({k: torch.stack([it[k] for it in items]) for k in items[0]}, torch.device("cpu"))
    with torch.no_grad():
        return {k: v.item() for k, v in DFVAELoss(model, HornSchunckFlow()).terms(batch, range(16)).items()}


def test_training_lowers_the_reconstruction_loss(data, tmp_path):
    from pixforge.core.checkpoint import load_release
    from pixforge.dfvae.nets import DFVAE, DFVAEConfig

    run = tmp_path / "run"
    assert cli("train", run, "--data", data, "--steps", 1, "--batch", 4, "--lr", 1e-3, *TINY) == 0
    assert cli("train", run, "--data", data, "--steps", 24, "--batch", 4, "--lr", 1e-3, "--sample-every", 12,
               "--resume", *TINY) == 0
    state, config = load_release(run)
    arch = {k: v for k, v in config.items() if k not in ("identities", "step", "tool", "padding")}
    first, last = DFVAE(DFVAEConfig(**arch)), DFVAE(DFVAEConfig(**arch))
    first.load_state_dict(read_checkpoint(run / "checkpoints" / "step-000000001.pt")["models"]["model"])
    last.load_state_dict(state)
    before, after = _losses(first, data), _losses(last, data)
    assert after["rec_l1"] < 0.95 * before["rec_l1"] and after["fuse_l1"] < 0.8 * before["fuse_l1"], (before, after)
    metrics = _metrics(run)
    assert len(metrics) == 24 and {"rec_l1", "fuse_l1", "kl", "temporal", "loss"} <= set(metrics[0])
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-000000001.png", "step-000000012.png",
                                                                   "step-000000024.png"]
    assert config["resolution"] == 32 and config["identities"] == ["anna", "ben"]


def test_resume_continues_exactly(data, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    common = ["--data", data, "--batch", 2, "--ckpt-every", 3, "--sample-every", 3, "--lambda-kl", 0.01, *TINY]
    assert cli("train", whole, "--steps", 6, *common) == 0
    assert cli("train", split, "--steps", 3, *common) == 0
    assert cli("train", split, "--steps", 6, "--resume", *common) == 0
    a = read_checkpoint(whole / "checkpoints" / "step-000000006.pt")
    b = read_checkpoint(split / "checkpoints" / "step-000000006.pt")
    for key, value in a["models"]["model"].items():
        assert torch.equal(value, b["models"]["model"][key]), key
    state_a, state_b = a["optimizers"]["opt"]["state"], b["optimizers"]["opt"]["state"]
    assert all(torch.equal(state_a[k]["exp_avg_sq"], state_b[k]["exp_avg_sq"]) for k in state_a)
    strip = [{k: v for k, v in m.items() if k != "time"} for m in _metrics(whole)]
    assert strip == [{k: v for k, v in m.items() if k != "time"} for m in _metrics(split)]


def test_bad_options_are_one_line_and_write_nothing(data, tmp_path, capsys):
    run = tmp_path / "run"
    not_weights = tmp_path / "raft-small.pth"
    not_weights.write_text("<html>404</html>")
    cases = [(["--identities", "nobody", "--steps", 1], "unknown identity nobody"),
             (["--steps", 1, "--size", 48], "--size"),
             (["--steps", 1, "--kimg", 1], "exactly one of --steps or --kimg"),
             (["--steps", 0], "--steps must be"),
             (["--steps", 1, "--perceptual", "lpips"], "--perceptual must be one of"),
             (["--steps", 1, "--flow", "flownet2"], "--flow: unknown flow 'flownet2'"),
             (["--steps", 1, "--flow", f"raft-small:{tmp_path / 'none.pth'}"], "none.pth not found"),
             (["--steps", 1, "--flow", f"raft-small:{not_weights}"], "is not a torch weight file")]
    for extra, message in cases:
        args = ["train", run, "--data", data, *TINY[:-2], *extra]
        assert cli(*args) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (extra, err)
    assert cli("train", run, "--data", tmp_path / "missing", "--steps", 1) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not run.exists()


def test_bad_data_and_a_run_over_the_data_are_refused_before_training(data, tmp_path, capsys):
    """Prepared arrays with NaN landmarks, a corrupt or wrong-size crops file: one line naming the file, no run. A
    run directory that is the data (with --overwrite it would be deleted) or lies in it: refused, the data kept."""
    import shutil

    import numpy as np

    cases = []
    for name, spoil, message in (("nan", lambda d: _spoil(d, "landmarks", np.nan), "holds NaN"),
                                 ("corrupt", lambda d: _spoil(d, "crops", None), "is incomplete"),
                                 ("small", lambda d: _spoil(d, "crops", "small"), "holds (6, 16, 16, 3)")):
        copy = tmp_path / name
        shutil.copytree(data, copy)
        spoil(copy)
        cases.append((tmp_path / f"run-{name}", copy, [], message))
    copy = tmp_path / "kept"
    shutil.copytree(data, copy)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    cases += [(copy, copy, ["--overwrite"], "is the input"), (copy / "run", copy, [], "is inside the input folder")]
    for run, folder, extra, message in cases:
        assert cli("train", run, "--data", folder, "--steps", 1, *TINY, *extra) == 2, message
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (message, err)
        assert run == folder or not run.exists()
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before


def _spoil(data, array, how):
    """The first clip's `array`.npy of the prepared folder `data`: NaN everywhere, text, or crops at half size."""
    import numpy as np

    path = next(data.glob(f"anna-*/track-0/{array}.npy"))
    if how is None:
        path.write_text("not an array")
    elif how == "small":
        np.save(path, np.load(path)[:, :16, :16])
    else:
        values = np.load(path)
        values[:] = how
        np.save(path, values)


def test_trains_with_raft_small_flow(data, tmp_path):
    """`--flow raft-small:PATH` (here random weights in the official layout) drives the temporal loss."""
    from pixforge.dfvae.raft import RAFTSmall

    weights = tmp_path / "raft-small.pth"
    torch.save({f"module.{k}": v for k, v in RAFTSmall().state_dict().items()}, weights)
    run = tmp_path / "run"
    assert cli("train", run, "--data", data, "--steps", 1, "--batch", 2, "--flow", f"raft-small:{weights}",
               *TINY) == 0
    assert json.loads((run / "config.json").read_text())["flow"] == f"raft-small:{weights}"
    assert _metrics(run)[0]["temporal"] > 0
