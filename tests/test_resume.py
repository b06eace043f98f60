"""A training run killed with SIGKILL resumes bit-exact from its last checkpoint."""

import signal
import subprocess
import time

import torch
from integration_helpers import TINY, TRAIN, checkpoint, env, train

STEPS = "240"


def _assert_same_state(a, b):
    assert a["step"] == b["step"]
    for name in ("model", "ema"):
        for key, value in a["models"][name].items():
            assert torch.equal(value, b["models"][name][key]), f"{name}.{key} differs"
    opt_a, opt_b = a["optimizers"]["opt"]["state"], b["optimizers"]["opt"]["state"]
    for index, state in opt_a.items():
        for key, value in state.items():
            assert torch.equal(value, opt_b[index][key]), f"optimizer state {index}.{key} differs"
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert a["rng"]["python"] == b["rng"]["python"]
    assert torch.equal(a["rng"]["numpy"]["keys"], b["rng"]["numpy"]["keys"])


def test_sigkill_then_resume_is_bit_exact(tmp_path):
    reference = tmp_path / "reference"
    train(reference, "--steps", STEPS, "--ckpt-every", "20")

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*TRAIN, str(killed), *TINY, "--steps", STEPS, "--ckpt-every", "20"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    first = killed / "checkpoints" / "step-000000040.pt"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = checkpoint(sorted((killed / "checkpoints").glob("step-*.pt"))[-1])["step"]
    assert stopped_at < int(STEPS)

    result = train(killed, "--steps", STEPS, "--ckpt-every", "20", "--resume")
    assert f"step {stopped_at}" in result.stderr  # the log says where it resumed
    name = f"step-{int(STEPS):09d}.pt"
    _assert_same_state(checkpoint(reference / "checkpoints" / name), checkpoint(killed / "checkpoints" / name))


def test_sigterm_checkpoints_then_exits(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([*TRAIN, str(run), *TINY, "--steps", "100000", "--ckpt-every", "100000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while (not metrics.exists() or metrics.stat().st_size < 200) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    saved = sorted((run / "checkpoints").glob("step-*.pt"))
    assert len(saved) == 1 and 0 < checkpoint(saved[0])["step"] < 100000
    assert "continue with --resume" in err


def test_a_signal_while_a_batch_loads_still_saves_a_checkpoint(tmp_path, monkeypatch):
    """SIGTERM delivered inside the data loader (between two steps' checkpoint checks, where the loop used to break
    without saving): the step in flight finishes, is checkpointed, and the run stops there."""
    import os

    from pixforge.core import toy
    from pixforge.core.io import RandomCrops
    from pixforge.core.rundir import RunDir

    class SignalAt(RandomCrops):
        def __getitem__(self, index):
            if index == 3 * 4:  # the first image of step 3's batch (batch 4, one process)
                os.kill(os.getpid(), signal.SIGTERM)
            return super().__getitem__(index)

    from pixforge.core.io import embedded_images

    dataset = SignalAt(embedded_images(), size=32, length=2**31 - 1, seed=0)
    config = dict(steps=50, batch=4, size=32, width=8, lr=2e-3, sigma=0.2, seed=0, ema=0.99, ckpt_every=50,
                  sample_every=50, keep_last=3, workers=0, device="cpu", amp=False, threads=1)
    toy.training_loop(RunDir(str(tmp_path / "run")), config, dataset, torch.device("cpu"), resume=False,
                      overwrite=False, quiet=True)
    saved = sorted((tmp_path / "run" / "checkpoints").glob("step-*.pt"))
    assert [checkpoint(p)["step"] for p in saved] == [4]
