import random

import numpy as np
import pytest
import torch

from pixforge.core import checkpoint as ck
from pixforge.core.checkpoint import Checkpoints, load_checkpoint, load_release, read_checkpoint, save_release
from pixforge.core.loop import EMA
from pixforge.export.errors import PixforgeError


def _state(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        loss = model(torch.randn(5, 4)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def test_round_trip_restores_weights_optimizer_ema_rng_and_step(tmp_path):
    model, opt = _state()
    ema = EMA(model, decay=0.5)
    ema.update(model)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = ck.save_checkpoint(tmp_path / "a.pt", step=17, models={"m": model, "ema": ema.module},
                              optimizers={"opt": opt}, config={"lr": 0.01})
    expected = (random.random(), np.random.rand(), torch.rand(3))

    model2, opt2 = _state(seed=99)
    ema2 = EMA(model2)
    state = load_checkpoint(path, models={"m": model2, "ema": ema2.module}, optimizers={"opt": opt2})
    assert state["step"] == 17 and state["config"] == {"lr": 0.01}
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(ema.module.state_dict().values(), ema2.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert opt2.state_dict()["state"][0]["exp_avg"].equal(opt.state_dict()["state"][0]["exp_avg"])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_keep_last_rotates(tmp_path):
    model, opt = _state()
    ckpts = Checkpoints(tmp_path, keep_last=2)
    for step in (10, 20, 30, 40):
        ckpts.save(step, models={"m": model})
    assert [p.name for p in ckpts.all()] == ["step-000000030.pt", "step-000000040.pt"]
    assert ckpts.latest().name == "step-000000040.pt"


def test_crash_during_save_leaves_previous_checkpoint_loadable(tmp_path, monkeypatch):
    model, opt = _state()
    ckpts = Checkpoints(tmp_path)
    ckpts.save(10, models={"m": model}, optimizers={"opt": opt})
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError):
        ckpts.save(20, models={"m": model})
    monkeypatch.setattr(torch, "save", real_save)
    assert ckpts.latest().name == "step-000000010.pt"
    assert [p.name for p in tmp_path.iterdir()] == ["step-000000010.pt"]  # no temp file left behind
    assert read_checkpoint(ckpts.latest())["step"] == 10


def test_corrupt_and_foreign_files_are_clear_errors(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(PixforgeError, match="not a pixforge checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(PixforgeError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def _bad_files(tmp_path):
    """(file, the sentence pixforge must say about it), for every way a weights file goes wrong."""
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(1000)}, good)
    files = {"empty.pt": b"", "random.pt": bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8)),
             "text.pt": b"not a checkpoint", "truncated.pt": good.read_bytes()[:3000],
             "old-pickle.pt": b"\x80\x02" + b"\x00" * 20}
    evil = tmp_path / "evil.pt"
    torch.save({"format": "pixforge-checkpoint-1", "x": Evil()}, evil)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [(tmp_path / "empty.pt", "is empty (0 bytes)"), (tmp_path / "random.pt", "is not a PyTorch weights file"),
            (tmp_path / "text.pt", "is not a PyTorch weights file"),
            (tmp_path / "truncated.pt", "is truncated or corrupt"),
            (tmp_path / "old-pickle.pt", "is truncated or corrupt"),
            (evil, "holds Python objects (possibly code) besides tensors and is not a pixforge file; pixforge never "
                   "unpickles such objects")]


def test_every_bad_file_is_one_sentence_in_our_words(tmp_path, capsys):
    for path, sentence in _bad_files(tmp_path):
        with pytest.raises(PixforgeError) as err:
            read_checkpoint(path)
        assert str(err.value) == f"checkpoint {path} {sentence}"
        assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    assert "pwned" not in capsys.readouterr().out


def test_mismatched_model_is_a_clear_error(tmp_path):
    model, _ = _state()
    path = ck.save_checkpoint(tmp_path / "a.pt", step=1, models={"m": model})
    other = torch.nn.Linear(3, 3)
    with pytest.raises(PixforgeError, match="does not match"):
        load_checkpoint(path, models={"m": other})


def test_release_weights_round_trip(tmp_path):
    model, _ = _state()
    save_release(tmp_path, model, {"arch": "mlp", "width": 8})
    state, config = load_release(tmp_path)
    assert config == {"arch": "mlp", "width": 8}
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value)
    assert (tmp_path / "model.safetensors").read_bytes()[:8] != b"PK\x03\x04"  # not a pickle zip


@pytest.mark.cuda
def test_resume_onto_the_gpu_restores_rng_and_weights(tmp_path):
    """Training loops read checkpoints with map_location=<their device>: the RNG states then arrive on the GPU,
    and torch / NumPy only take them back from the CPU."""
    dev = torch.device("cuda")
    model, opt = _state()
    model.to(dev)
    torch.manual_seed(3)
    torch.cuda.manual_seed_all(4)
    path = ck.save_checkpoint(tmp_path / "a.pt", step=5, models={"m": model}, optimizers={"opt": opt})
    expected = (np.random.rand(), torch.rand(3), torch.rand(3, device=dev))

    model2, opt2 = _state(seed=99)
    model2.to(dev)
    load_checkpoint(path, models={"m": model2}, optimizers={"opt": opt2}, map_location=dev)
    assert np.random.rand() == expected[0]
    assert torch.equal(torch.rand(3), expected[1])
    assert torch.equal(torch.rand(3, device=dev), expected[2])
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
