"""StyleGAN2 training (`pixforge.core.stylegan2`): configs, loss terms, ADA's p controller, strategy mixing, the
launcher's run directory, determinism, resume, two processes under torchrun, release, export and bad input.

The loss terms are checked against formulas written out here (hand-written double backward for R1 and path
length) with the draws the loss documents: z per global sample index from `sample_noise` (salt = the phase's salt,
mixing z salt + 10, path-length y salt + 20, the per-sample uniforms salt + 30), the synthesis noise from
`loss.generator(step, phase, device, first index of the round)`. NVlabs' facts come from stylegan2-ada-pytorch
`train.py` / `training/loss.py` (commit d72cc7d).
"""

import itertools
import json
import math
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pixforge.core.checkpoint import read_checkpoint
from pixforge.core.nets.stylegan2 import Generator
from pixforge.core.nets.stylegan2_discriminator import Discriminator
from pixforge.core.steps import sample_noise
from pixforge.core.stylegan2 import configs
from pixforge.core.stylegan2 import train as train_mod
from pixforge.core.stylegan2.export import export_generator
from pixforge.core.stylegan2.generate import load_generator
from pixforge.core.stylegan2.loss import SALTS, StyleGAN2Loss
from pixforge.core.stylegan2.strategy import AdaptiveP, Augmentation
from pixforge.core.stylegan2.train import train
from pixforge.export.errors import PixforgeError

CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------------------------
# 1. configs: NVlabs' train.py table and formulas.

NVLABS = {  # stylegan2-ada-pytorch train.py cfg_specs
    "stylegan2": dict(ref_gpus=8, kimg=25000, mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=10, ema=10, ramp=None, map=8),
    "paper256": dict(ref_gpus=8, kimg=25000, mb=64, mbstd=8, fmaps=0.5, lrate=0.0025, gamma=1, ema=20, ramp=None,
                     map=8),
    "paper512": dict(ref_gpus=8, kimg=25000, mb=64, mbstd=8, fmaps=1, lrate=0.0025, gamma=0.5, ema=20, ramp=None,
                     map=8),
    "paper1024": dict(ref_gpus=8, kimg=25000, mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=2, ema=10, ramp=None,
                      map=8),
    "cifar": dict(ref_gpus=2, kimg=100000, mb=64, mbstd=32, fmaps=1, lrate=0.0025, gamma=0.01, ema=500, ramp=0.05,
                  map=2),
}


def nvlabs_spec(cfg, res, gpus):
    """What NVlabs' train.py sets up for `cfg` (its code, transcribed)."""
    if cfg == "auto":
        mb = max(min(gpus * min(4096 // res, 32), 64), gpus)
        s = dict(ref_gpus=gpus, kimg=25000, mb=mb, mbstd=min(mb // gpus, 4), fmaps=1 if res >= 512 else 0.5,
                 lrate=0.002 if res >= 1024 else 0.0025, gamma=0.0002 * res ** 2 / mb, ema=mb * 10 / 32, ramp=0.05,
                 map=2)
    else:
        s = dict(NVLABS[cfg])
    cifar = cfg == "cifar"
    return dict(kimg=s["kimg"], batch=s["mb"], batch_gpu=s["mb"] // s["ref_gpus"], mbstd=s["mbstd"],
                channel_base=int(s["fmaps"] * 32768), channel_max=512, lr=s["lrate"], gamma=s["gamma"],
                ema_kimg=s["ema"], ema_rampup=s["ramp"], map=s["map"], pl_weight=0 if cifar else 2,
                style_mixing=0 if cifar else 0.9, d_architecture="orig" if cifar else "resnet")


def spec_fields(spec):
    return {k: getattr(spec, k) for k in ("kimg", "batch", "batch_gpu", "mbstd", "channel_base", "channel_max", "lr",
                                          "gamma", "ema_kimg", "ema_rampup", "map", "pl_weight", "style_mixing",
                                          "d_architecture")}


@pytest.mark.parametrize("gpus", [1, 8])
@pytest.mark.parametrize("cfg", ["auto", "stylegan2", "paper256", "paper512", "paper1024", "cifar"])
def test_spec_equals_nvlabs_table_at_256px(cfg, gpus):
    got = spec_fields(configs.spec(cfg, 256, gpus))
    assert got == pytest.approx(nvlabs_spec(cfg, 256, gpus))


@pytest.mark.parametrize("res, gpus, expected", [
    # mb, mbstd, channel_base, lr, gamma, ema: max(min(gpus * min(4096 // res, 32), 64), gpus) etc. worked out
    (32, 1, (32, 4, 16384, 0.0025, 0.0002 * 32 ** 2 / 32, 10.0)),
    (32, 8, (64, 4, 16384, 0.0025, 0.0032, 20.0)),
    (256, 1, (16, 4, 16384, 0.0025, 0.8192, 5.0)),
    (256, 8, (64, 4, 16384, 0.0025, 0.2048, 20.0)),
    (1024, 1, (4, 4, 32768, 0.002, 52.4288, 1.25)),
    (1024, 8, (32, 4, 32768, 0.002, 6.5536, 10.0)),
])
def test_auto_formulas(res, gpus, expected):
    s = configs.spec("auto", res, gpus)
    assert (s.batch, s.mbstd, s.channel_base, s.lr, s.gamma, s.ema_kimg) == pytest.approx(expected)
    assert s.batch_gpu == s.batch // gpus and s.ema_rampup == 0.05 and s.map == 2 and s.kimg == 25000
    assert spec_fields(s) == pytest.approx(nvlabs_spec("auto", res, gpus))


@pytest.mark.parametrize("gpus", [1, 2, 8])
def test_low_shot(gpus):
    s = configs.spec("low_shot", 256, gpus)
    assert (s.batch, s.lr, s.gamma, s.map, s.kimg, s.snap) == (16, 0.002, 10.0, 2, 300, 10)
    assert s.batch_gpu == 16 // gpus and s.mbstd == 4 and s.ema_kimg == 10 and s.ema_rampup is None
    assert (s.pl_weight, s.style_mixing, s.d_architecture) == (2.0, 0.9, "resnet")


def test_cifar_extras_and_batch_per_gpu_from_reference_gpus():
    s = configs.spec("cifar", 32, 1)
    assert (s.pl_weight, s.style_mixing, s.d_architecture) == (0, 0, "orig")
    assert s.batch_gpu == 64 // 2  # ref_gpus 2: gradient accumulation in 2 rounds on one GPU
    assert configs.spec("paper256", 256, 1).batch_gpu == 64 // 8
    assert configs.spec("stylegan2", 1024, 2).batch_gpu == 32 // 8


def test_overrides():
    s = configs.spec("paper256", 256, 2, batch=12, gamma=3.5, kimg=7, cbase=1024, cmax=64, map_layers=3)
    assert (s.batch, s.batch_gpu, s.gamma, s.kimg, s.channel_base, s.channel_max, s.map) == (12, 6, 3.5, 7, 1024, 64,
                                                                                            3)
    assert (s.lr, s.mbstd, s.ema_kimg) == (0.0025, 8, 20.0)  # the rest stays
    assert configs.spec("auto", 16, 1, batch=4, cbase=256, cmax=32, map_layers=2).batch_gpu == 4
    with pytest.raises(ValueError, match="paper9"):
        configs.spec("paper9", 256, 1)


# ---------------------------------------------------------------------------------------------------------------
# 2., 3., 5. the loss on tiny networks.

Z = 32


def tiny_nets(seed=0, c_dim=0):
    torch.manual_seed(seed)
    G = Generator(z_dim=Z, c_dim=c_dim, w_dim=Z, img_resolution=16, img_channels=3, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 256, "channel_max": 32})
    D = Discriminator(c_dim=c_dim, img_resolution=16, img_channels=3, channel_base=256, channel_max=32,
                      epilogue_kwargs={"mbstd_group_size": 2})
    with torch.no_grad():  # the noise matters (its strength starts at 0)
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
    return G.train().requires_grad_(False), D.train().requires_grad_(False)


def grads_of(module):
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in module.parameters()]


def autograd_of(value, module):
    out = torch.autograd.grad(value, list(module.parameters()), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(out, module.parameters(), strict=True)]


def assert_grads_close(got, expected):
    assert any(g.abs().sum() > 0 for g in expected)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4)


def reals(n, seed=1):
    return torch.rand([n, 3, 16, 16], generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_r1_is_gamma_half_squared_input_gradient_times_gain():
    G, D = tiny_nets()
    loss = StyleGAN2Loss(G, D, Augmentation(), seed=3, r1_gamma=3.0)
    x, c = reals(4), torch.zeros([4, 0])
    D.requires_grad_(True)
    terms = loss.accumulate_gradients("Dreg", x, c, c, range(4, 8), step=5, gain=16.0)
    got = grads_of(D)
    x_ = x.clone().requires_grad_(True)
    dx, = torch.autograd.grad(D(x_, c).sum(), x_, create_graph=True)
    r1 = dx.square().flatten(1).sum(1)
    expected = autograd_of((3.0 / 2 * r1).mean() * 16.0, D)
    assert_grads_close(got, expected)
    torch.testing.assert_close(terms["D/reg"], (3.0 / 2 * r1).mean().detach())
    torch.testing.assert_close(terms["r1_penalty"], r1.mean().detach())
    assert "D/loss" not in terms  # no logistic term in Dreg


def test_path_length_penalty_and_mean():
    G, D = tiny_nets()
    seed, step, idx = 7, 3, range(8, 12)
    loss = StyleGAN2Loss(G, D, Augmentation(), seed=seed, style_mixing=0.0, pl_weight=2.0)
    loss.pl_mean.fill_(0.5)
    c = torch.zeros([4, 0])
    G.requires_grad_(True)
    terms = loss.accumulate_gradients("Greg", reals(4), c, c, idx, step=step, gain=4.0)
    got, pl_mean = grads_of(G), float(loss.pl_mean)

    n = 2  # pl_batch_shrink 2
    z = sample_noise([Z], idx[:n], seed, SALTS["Greg"])
    ws = G.mapping(z, c[:n], update_w_avg=False)
    img = G.synthesis(ws, generator=loss.generator(step, "Greg", CPU, idx[0]))
    y = sample_noise([3, 16, 16], idx[:n], seed, SALTS["Greg"] + 20) / math.sqrt(16 * 16)
    jty, = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    lengths = jty.square().sum(2).mean(1).sqrt()
    mean = 0.5 + 0.01 * (lengths.mean() - 0.5)  # NVlabs: lerp(old, mean length, 0.01), the gradient through it too
    penalty = (lengths - mean).square()
    assert pl_mean == pytest.approx(float(mean.detach()), rel=1e-5)
    torch.testing.assert_close(terms["G/reg"], (penalty * 2.0).mean().detach())
    torch.testing.assert_close(terms["pl_penalty"], penalty.mean().detach())
    assert_grads_close(got, autograd_of((penalty * 2.0).mean() * 4.0, G))


def test_non_saturating_logistic_losses():
    G, D = tiny_nets()
    seed, step, idx = 11, 2, range(4, 8)
    loss = StyleGAN2Loss(G, D, Augmentation(), seed=seed, style_mixing=0.0)
    x, c = reals(4), torch.zeros([4, 0])

    G.requires_grad_(True)
    terms = loss.accumulate_gradients("Gmain", x, c, c, idx, step=step, gain=1.0)
    got = grads_of(G)
    z = sample_noise([Z], idx, seed, SALTS["Gmain"])
    fake = G.synthesis(G.mapping(z, c, update_w_avg=False), generator=loss.generator(step, "Gmain", CPU, idx[0]))
    g_loss = F.softplus(-D(fake, c)).mean()
    torch.testing.assert_close(terms["G/loss"], g_loss.detach())
    assert_grads_close(got, autograd_of(g_loss, G))
    G.requires_grad_(False)

    D.requires_grad_(True)
    terms = loss.accumulate_gradients("Dmain", x, c, c, idx, step=step, gain=1.0)
    got = grads_of(D)
    z = sample_noise([Z], idx, seed, SALTS["Dmain"])
    fake = G.synthesis(G.mapping(z, c, update_w_avg=False), generator=loss.generator(step, "Dmain", CPU, idx[0]))
    fake_logits, real_logits = D(fake, c), D(x, c)
    d_loss = (F.softplus(fake_logits) + F.softplus(-real_logits)).mean()
    torch.testing.assert_close(terms["D/loss"], d_loss.detach())
    torch.testing.assert_close(terms["scores/real"], real_logits.mean().detach())
    assert_grads_close(got, autograd_of(d_loss, D))


class MixWithFakes(Augmentation):
    """APA-like: the reals with uniform < p are replaced by this step's fakes."""

    name = "mix"

    def mix_reals(self, reals, fakes, uniform):
        if fakes is None:
            return reals
        return torch.where((uniform < self.p)[:, None, None, None], fakes, reals)


@pytest.mark.parametrize("rounds", [1, 2])
@pytest.mark.parametrize("p", [0.5, 0.0])
def test_mix_reals_gets_gmain_fakes_of_the_same_sample(p, rounds):
    G, D = tiny_nets()
    seed, step, batch = 2, 1, 8
    loss = StyleGAN2Loss(G, D, MixWithFakes(p=p), seed=seed)
    x, c = reals(batch), torch.zeros([batch, 0])
    size = batch // rounds
    idx = [range(step * batch + r * size, step * batch + (r + 1) * size) for r in range(rounds)]
    phase_now, synth_out, d_in = [None], {}, {}
    G.synthesis.register_forward_hook(lambda m, a, out: synth_out.setdefault(phase_now[0], []).append(out.detach()))
    D.register_forward_pre_hook(lambda m, a: d_in.setdefault(phase_now[0], []).append(a[0].detach().clone()))
    for phase, module in (("Gmain", G), ("Dmain", D), ("Dreg", D)):
        module.requires_grad_(True)
        for r in range(rounds):
            phase_now[0] = (phase, r)
            loss.accumulate_gradients(phase, x[r * size:(r + 1) * size], c[:size], c[:size], idx[r], step, gain=1.0)
        module.requires_grad_(False)

    replaced = 0
    for r in range(rounds):
        real, gmain_fakes = x[r * size:(r + 1) * size], synth_out[("Gmain", r)][0]
        dmain_fakes = synth_out[("Dmain", r)][0]
        assert not torch.allclose(gmain_fakes, dmain_fakes)
        assert torch.equal(d_in[("Dmain", r)][0], dmain_fakes)  # D's fake input: Dmain's own fakes
        for phase, seen in (("Dmain", d_in[("Dmain", r)][1]), ("Dreg", d_in[("Dreg", r)][0])):
            flags = torch.special.ndtr(sample_noise([], idx[r], seed, SALTS[phase] + 30)) < p
            expected = torch.where(flags[:, None, None, None], gmain_fakes, real)
            assert torch.equal(seen, expected), (phase, r, flags)
            replaced += int(flags.sum())
            if p == 0:
                assert torch.equal(seen, real)
    if p > 0:
        assert 0 < replaced < 2 * batch  # some replaced, some kept: the check above can tell them apart


# ---------------------------------------------------------------------------------------------------------------
# 4. ADA's p controller.

def test_adaptive_p_follows_the_formula():
    ctl = AdaptiveP(target=0.6, interval=4, kimg=1)
    batch, delta = 8, 8 * 4 / (1 * 1000)
    script = {  # step -> logits observed during it
        1: [-1.0, -2.0], 2: [0.5, -0.1], 3: [-3.0, 0.0], 4: [-1.0, -1.0],  # r = -4/8 < target: p stays at 0 (clamp)
        5: [1.0, 2.0], 6: [3.0, 0.1], 7: [2.0, -1.0], 8: [0.0, 4.0],  # r = (1+1+1+1+1-1+0+1)/8 = 0.625: up
        9: [1.0, 1.0], 10: [1.0], 11: [2.0, 2.0, 3.0], 12: [5.0],  # r = 1: up
        13: [1.0, -1.0], 14: [1.0, -1.0], 15: [-1.0], 16: [-1.0, 0.0],  # r = -2/8: down
        17: [1.0] * 3, 18: [-1.0] * 2, 19: [], 20: [],  # r = 0.2: down
        21: [1.0] * 3, 22: [-1.0] * 2, 23: [0.0] * 0, 24: [],  # r = 0.2: down, clamp at 0
    }
    expected_p, pending, history = 0.0, [], []
    for step in range(1, 25):
        ctl.observe(torch.tensor(script[step]).reshape(-1, 1))
        pending += script[step]
        before = ctl.p
        ctl.adjust(step, batch)
        if step % 4:
            assert ctl.p == before
            continue
        r = float(np.sign(pending).mean())
        expected_p = max(0.0, expected_p + float(np.sign(r - 0.6)) * delta)
        pending = []
        assert ctl.signal == pytest.approx(r)
        assert ctl.p == pytest.approx(expected_p)
        history.append(ctl.p)
    assert history == pytest.approx([0, delta, 2 * delta, delta, 0, 0])


def test_adaptive_p_at_target_holds_and_state_round_trips():
    ctl = AdaptiveP(target=0.5, interval=2, kimg=0.5, p=0.25)
    ctl.observe(torch.tensor([1.0, 1.0, 1.0, -1.0]))  # r = 0.5 == target: no move
    ctl.adjust(2, 4)
    assert ctl.p == 0.25 and ctl.signal == 0.5
    ctl.observe(torch.tensor([1.0, 1.0]))
    ctl.adjust(3, 4)  # not an update step: the evidence stays pending
    state = json.loads(json.dumps(ctl.state_dict()))
    twin = AdaptiveP(target=0.5, interval=2, kimg=0.5)
    twin.load_state_dict(state)
    for c in (ctl, twin):
        c.observe(torch.tensor([-1.0]))
        c.adjust(4, 4)
    assert twin.p == ctl.p == pytest.approx(0.25 - 4 * 2 / 500) and twin.signal == ctl.signal == pytest.approx(1 / 3)


# ---------------------------------------------------------------------------------------------------------------
# 6., 8. train(): run directory, determinism, resume, release, generate, export.

def write_pngs(folder, n=32, size=16, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


# 32 steps of 16 images (2 rounds of 8), ADA from p 0.2; a tick every 8 steps, a snapshot every 2 ticks
TRAIN = dict(cfg="auto", kimg=0.512, batch=16, batch_gpu=8, cbase=256, cmax=32, map=2, aug="ada", p=0.2, tick=0.128,
             snap=2, metrics="swd,fd_pfr18", metric_images=32, workers=0, device="cpu", quiet=True, seed=5)
STOP_AT = 10  # mid-tick, mid-ADA-interval, between the path-length steps


class StopAfter:
    """`GracefulStop` whose stop is requested after `steps` G_ema updates (as SIGTERM during that step would)."""

    def __init__(self, steps):
        self.requested, self.steps = False, steps

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sg2")
    data = write_pngs(root / "faces")
    first = train(str(data), str(root / "out"), **TRAIN)
    second = train(str(data), str(root / "out"), **TRAIN)
    stops, ema_update, betas = [], train_mod.ema_update, []
    counter = itertools.count(1)

    def counting_ema(*args, **kwargs):
        betas.append(args[2])
        ema_update(*args, **kwargs)
        if next(counter) == stops[-1].steps:
            stops[-1].requested = True

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_mod, "GracefulStop", lambda: stops.append(StopAfter(STOP_AT)) or stops[-1])
        mp.setattr(train_mod, "ema_update", counting_ema)
        interrupted = train(str(data), str(root / "resumed"), **TRAIN)
    stopped = {"files": sorted(p.name for p in interrupted.iterdir()),
               "checkpoints": sorted(p.name for p in (interrupted / "checkpoints").iterdir())}
    resumed = train(str(data), str(root / "resumed"), resume=True, **TRAIN)
    return dict(data=data, first=first, second=second, interrupted=interrupted, stopped=stopped, resumed=resumed,
                betas=betas)


def final_state(run):
    return read_checkpoint(run / "checkpoints" / "step-000000032.pt")


def assert_same_state(a, b):
    assert a["step"] == b["step"] == 32
    for net in ("G", "D", "G_ema"):
        assert set(a["models"][net]) == set(b["models"][net])
        for key, value in a["models"][net].items():
            assert torch.equal(value, b["models"][net][key]), f"{net}.{key}"
    assert a["extra"]["strategy"] == b["extra"]["strategy"]
    assert a["extra"]["pl_mean"] == b["extra"]["pl_mean"]
    for name, opt in a["optimizers"].items():
        for k, s in opt["state"].items():
            for key, value in s.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizers"][name]["state"][k][key]))


def test_same_seed_trains_the_same_weights(runs):
    a, b = final_state(runs["first"]), final_state(runs["second"])
    assert_same_state(a, b)
    start = Generator(**a["extra"]["generator"]).state_dict()
    moved = [k for k, v in a["models"]["G_ema"].items() if not torch.equal(v, start[k])]
    assert len(moved) > len(start) // 2  # training did something
    ps = [json.loads(line)["augment/p"] for line in (runs["first"] / "stats.jsonl").read_text().splitlines()]
    assert len(set(ps)) > 1 and min(ps) > 0  # ADA moved p (and its pipe ran with p > 0)
    assert a["extra"]["pl_mean"] > 0


def test_ema_ramps_up_with_the_images_seen_before_each_step(runs):
    """NVlabs: ema_nimg = min(ema_kimg * 1000, cur_nimg * ema_rampup) with cur_nimg before the step, so the first
    update copies G (beta 0) and the second has ema_nimg = 16 x 0.05 (cfg auto, batch 16)."""
    assert runs["betas"][:2] == [0.0, 0.5 ** (16 / (16 * 0.05))]


def test_resume_continues_exactly(runs):
    assert "model.safetensors" not in runs["stopped"]["files"]
    assert runs["stopped"]["checkpoints"][-1] == f"step-{STOP_AT:09d}.pt"
    assert runs["resumed"] == runs["interrupted"]  # --resume picked the run in OUT, no new one
    assert [p.name for p in runs["resumed"].parent.iterdir()] == [runs["interrupted"].name]
    assert_same_state(final_state(runs["first"]), final_state(runs["resumed"]))
    steps = [r["step"] for r in map(json.loads, (runs["resumed"] / "stats.jsonl").read_text().splitlines())]
    assert steps == [8, STOP_AT, 18, 26, 32]



def test_resume_from_an_earlier_checkpoint_logs_each_snapshot_once(runs, tmp_path):
    """Rewinding (the newest checkpoint deleted, then --resume) retrains the later steps: their ticks and snapshot
    metrics, logged by the first pass, are dropped first, so each appears once, with the new values."""
    import shutil

    run = Path(shutil.copytree(runs["first"], tmp_path / runs["first"].name))
    (run / "checkpoints" / "step-000000032.pt").unlink()
    train(str(runs["data"]), str(run), resume=True, **TRAIN)
    for name in ("swd", "fd_pfr18"):
        records = [json.loads(line) for line in (run / f"metric-{name}.jsonl").read_text().splitlines()]
        assert [m["kimg"] for m in records] == pytest.approx([0.256, 0.512]), name
    assert [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()] == [8, 16, 24, 32]
    assert_same_state(final_state(runs["first"]), final_state(run))

def test_run_directory(runs):
    first, second = runs["first"], runs["second"]
    assert first.name == "00000-faces-auto1-ada-kimg0.512-batch16"
    assert second.name == "00001-faces-auto1-ada-kimg0.512-batch16"
    options = json.loads((first / "training_options.json").read_text())
    assert options["cfg"] == "auto" and options["seed"] == 5 and options["num_images"] == 32
    assert options["spec"]["batch"] == 16 and options["spec"]["batch_gpu"] == 8 and options["resolution"] == 16
    ticks = [json.loads(line) for line in (first / "stats.jsonl").read_text().splitlines()]
    assert [t["tick"] for t in ticks] == [0, 1, 2, 3] and [t["step"] for t in ticks] == [8, 16, 24, 32]
    assert [t["kimg"] for t in ticks] == pytest.approx([0.128, 0.256, 0.384, 0.512])
    assert all({"G/loss", "D/loss", "augment/p"} <= set(t) for t in ticks)
    assert any("G/reg" in t for t in ticks) and any("D/reg" in t for t in ticks)
    metrics = [json.loads(line) for line in (first / "metric-swd.jsonl").read_text().splitlines()]
    assert [m["kimg"] for m in metrics] == pytest.approx([0.256, 0.512]) and all(m["metric"] == "swd" for m in metrics)
    fds = [json.loads(line) for line in (first / "metric-fd_pfr18.jsonl").read_text().splitlines()]
    assert [m["kimg"] for m in fds] == pytest.approx([0.256, 0.512]) and all(m["results"]["fd_pfr18"] > 0 for m in fds)
    for name in ("reals.png", "fakes_init.png", "fakes000000.png", "model.safetensors",
                 "model.json", "log.txt"):
        assert (first / name).is_file(), name
    with Image.open(first / "reals.png") as grid:
        assert grid.size[0] >= 8 * 16
    assert sorted(p.name for p in (first / "checkpoints").iterdir()) == ["step-000000016.pt", "step-000000032.pt"]


def test_load_generator_from_release_and_checkpoint(runs):
    run = runs["first"]
    released, kwargs = load_generator(run)
    from_ckpt, kwargs2 = load_generator(run / "checkpoints" / "step-000000032.pt")
    assert kwargs == kwargs2 and kwargs["img_resolution"] == 16 and kwargs["mapping_kwargs"]["num_layers"] == 2
    ema = final_state(run)["models"]["G_ema"]
    for key, value in ema.items():
        assert torch.equal(released.state_dict()[key], value) and torch.equal(from_ckpt.state_dict()[key], value)
    older, _ = load_generator(run / "checkpoints" / "step-000000016.pt")
    assert not torch.equal(older.state_dict()["synthesis.b16.torgb.weight"], ema["synthesis.b16.torgb.weight"])
    with pytest.raises(PixforgeError, match="not a StyleGAN2 run") as err:
        load_generator(runs["data"])
    assert "holds the runs" not in str(err.value)
    hint = f"holds the runs of a train --out folder: pass one, e.g. {runs['second']}"
    with pytest.raises(PixforgeError, match=re.escape(hint)):
        load_generator(run.parent)  # train's --out folder: its numbered runs inside


def onnx_run(path, **inputs):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]


def test_export_matches_pytorch_and_runs_in_the_runtime(runs, tmp_path):
    pytest.importorskip("onnxruntime")
    from pixforge.export.cli import Runtime

    G, _ = load_generator(runs["first"])
    assert G.mapping.w_avg.abs().sum() > 0  # truncation has something to pull towards
    model = export_generator(G, tmp_path / "g.onnx", package="pixforge-core", version="0")
    z = torch.randn(5, G.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = G(z, truncation_psi=0.7, noise_mode="const")
    got = onnx_run(model, z=z, truncation=torch.tensor([0.7]))
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=1e-4)
    Runtime().run(str(model), out=str(tmp_path / "rt"), count=4, seed=0, device="cpu")
    images = sorted((tmp_path / "rt").glob("*.png"))
    assert len(images) == 4
    with Image.open(images[0]) as im:
        assert im.size == (16, 16)


def test_export_conditional_generator(tmp_path):
    pytest.importorskip("onnxruntime")
    G, _ = tiny_nets(c_dim=3)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    G.eval()
    model = export_generator(G, tmp_path / "c.onnx", package="pixforge-core", version="0")
    z = torch.randn(3, Z, generator=torch.Generator().manual_seed(4))
    outs = []
    for cls in (0, 2):
        with torch.no_grad():
            expected = G(z, F.one_hot(torch.full([3], cls), 3).float(), truncation_psi=0.7, noise_mode="const")
        got = onnx_run(model, z=z, truncation=torch.tensor([0.7]), **{"class": torch.tensor([float(cls)])})
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=1e-4)
        outs.append(got)
    assert np.abs(outs[0] - outs[1]).max() > 1e-3  # the class input matters


# ---------------------------------------------------------------------------------------------------------------
# 7. two processes under torchrun train what one process trains in two rounds.

DDP_SCRIPT = """
import dataclasses, sys
from pixforge.core.stylegan2 import configs, train as train_mod

# Path length off: its running mean is updated once per round (lerp after lerp) in one process but once per step
# from the mean over the processes under torchrun (NVlabs: per process, not synchronised at all), so the two
# differ by design. Style mixing stays on.
spec = configs.spec
configs.spec = lambda *a, **k: dataclasses.replace(spec(*a, **k), pl_weight=0.0)


class Stop:
    requested = False
    def __enter__(self): return self
    def __exit__(self, *exc): return None


stop, ema, count = Stop(), train_mod.ema_update, [0]
def counting(*a, **k):
    ema(*a, **k)
    count[0] += 1
    stop.requested = count[0] == int(sys.argv[3])
train_mod.GracefulStop, train_mod.ema_update = lambda: stop, counting
train_mod.train(sys.argv[1], sys.argv[2], cfg="auto", kimg=1, batch=16, batch_gpu=4, cbase=256, cmax=32, map=2,
                aug="noaug", gamma=1.0, tick=10, metrics="none", workers=0, device="cpu", quiet=True, seed=1)
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_what_one_trains_in_two_rounds_each(tmp_path):
    """1 process: batch 16 in 4 rounds of 4; torchrun 2 processes: 2 rounds of 4 each. Same global sample indices per
    round (round r of one process = round r % 2 of rank r // 2), same draws (keyed by the round's first index), the
    same minibatch-stddev groups; gradients summed over rounds vs averaged over ranks: equal up to float rounding.
    `mapping.w_avg` is excluded: each process tracks it from its own samples (NVlabs' DDP check ignores it too)."""
    import os

    data = write_pngs(tmp_path / "data")
    script = tmp_path / "train_sg2.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    steps = 6
    single = subprocess.run([sys.executable, str(script), str(data), str(tmp_path / "one"), str(steps)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(free_port()), str(script), str(data), str(tmp_path / "two"), str(steps)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a = read_checkpoint(next((tmp_path / "one").glob("*/checkpoints/step-000000006.pt")))
    b = read_checkpoint(next((tmp_path / "two").glob("*/checkpoints/step-000000006.pt")))
    assert a["config"]["world"] == 1 and b["config"]["world"] == 2 and a["step"] == b["step"] == steps
    start = Generator(**a["extra"]["generator"]).state_dict()
    for net in ("G", "D", "G_ema"):
        for key, value in a["models"][net].items():
            if key.endswith("w_avg"):
                continue
            if net == "G":
                assert key in start
            torch.testing.assert_close(b["models"][net][key], value, atol=1e-5, rtol=1e-4, msg=f"{net}.{key}")
    moved = [k for k, v in a["models"]["G"].items() if not torch.equal(v, start[k])]
    assert any("noise_strength" in k for k in moved) and any("mapping.fc0" in k for k in moved)


# ---------------------------------------------------------------------------------------------------------------
# 9. bad input through the launcher: a PixforgeError naming the flag or path, and no run directory.

def mixed_sizes(tmp_path):
    folder = write_pngs(tmp_path / "mixed", n=3)
    Image.new("RGB", (32, 32)).save(folder / "big.png")
    return folder


@pytest.mark.parametrize("case", ["empty", "mixed", "kimg0", "aug", "fid", "init", "resume"])
def test_bad_input(case, tmp_path):
    out = tmp_path / "out"
    data = write_pngs(tmp_path / "data", n=4) if case not in ("empty", "mixed") else None
    kwargs = dict(cfg="auto", kimg=1, batch=4, cbase=256, cmax=32, map=2, workers=0, device="cpu", quiet=True)
    if case == "empty":
        data = tmp_path / "empty"
        data.mkdir()
        words = re.escape(str(data))
    elif case == "mixed":
        data = mixed_sizes(tmp_path)
        words = re.escape(str(data)) + " mixes image sizes"
    elif case == "kimg0":
        kwargs["kimg"], words = 0, "--kimg"
    elif case == "aug":
        kwargs["aug"], words = "nope", "--aug"
    elif case == "fid":
        kwargs["metrics"], words = "swd,fid", "--inception"
    elif case == "init":
        kwargs["init"] = str(tmp_path / "missing.pt")
        words = "--init .*missing.pt"
    else:
        kwargs["resume"], words = True, "--resume.*out"
    with pytest.raises(PixforgeError, match=words):
        train(str(data), str(out), **kwargs)
    assert not out.exists() or not any(out.iterdir())
    assert not any(Path(p).name.startswith("0000") for p in tmp_path.rglob("*"))

