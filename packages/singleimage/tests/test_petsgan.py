"""PetsGAN: positional encoding, collapse penalty, patch transfer, network shapes, a tiny three-phase run."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from pixforge.core.loop import read_metrics
from pixforge.export.errors import PixforgeError
from pixforge.singleimage.petsgan import (
    collapse_penalty,
    data_spread,
    ema_update,
    hinge_d_loss,
    layout_diversity,
    petsgan_sizes,
    sparsity,
    tps_augment,
)
from pixforge.singleimage.petsgan_model import (
    DEPDiscriminator,
    DEPNet,
    PatchDiscriminator,
    PatchTransfer,
    Restoration,
    sinusoidal_encoding,
)
from pixforge.singleimage.sample import load_model
from pixforge.singleimage.train import train


def test_positional_encoding_is_its_formula():
    c, h, w = 8, 5, 7
    pe = sinusoidal_encoding(c, h, w)
    d = c // 2
    for k in range(d // 2):
        freq = 10000 ** (-2 * k / d)
        for y in range(h):
            for x in range(w):
                assert pe[2 * k, y, x] == pytest.approx(math.sin(x * freq), abs=1e-6)
                assert pe[2 * k + 1, y, x] == pytest.approx(math.cos(x * freq), abs=1e-6)
                assert pe[d + 2 * k, y, x] == pytest.approx(math.sin(y * freq), abs=1e-6)
                assert pe[d + 2 * k + 1, y, x] == pytest.approx(math.cos(y * freq), abs=1e-6)


def test_collapse_penalty_is_its_formula():
    scores = torch.tensor([[0.5], [-1.0], [2.0], [0.25], [1.0], [-2.0]])
    p = torch.sigmoid(scores).flatten().tolist()  # Eq. 6's D_G is a probability (its log D_G terms)
    expected = (abs(p[0] - p[3]) + abs(p[1] - p[4]) + abs(p[2] - p[5])) / 3  # E|D(G(z1)) - D(G(z2))| over 3 pairs
    assert collapse_penalty(scores).item() == pytest.approx(expected)
    assert collapse_penalty(scores, official=True).item() == pytest.approx(1.5)  # official: raw scores, first two


def test_layout_diversity_is_the_capped_pairwise_distance():
    x = torch.zeros(4, 3, 2, 2)
    x[2:] = 0.5  # pairs (0, 2), (1, 3): mean L1 0.5
    assert layout_diversity(x, 1.0).item() == pytest.approx(0.5)
    assert layout_diversity(x, 0.2).item() == pytest.approx(0.2)  # capped at the data's own spread
    same = torch.full((5, 3, 2, 2), 0.3)
    assert data_spread(same, 0) == 0.0 and data_spread(torch.cat([same, -same]), 0) > 0


def test_patch_transfer_reproduces_the_input_as_tau_goes_to_zero():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 9, 11) * 2 - 1
    pt = PatchTransfer()
    out, attn = pt(x, x, tau=1e-4)
    torch.testing.assert_close(out, x, atol=1e-4, rtol=0)
    assert sparsity(attn).item() == pytest.approx(1.0, abs=1e-4)  # one-hot rows
    soft, _ = pt(x, x, tau=10.0)  # a hot softmax: a_{i,i*} < 1, so the output is no longer the input
    assert (soft - x).abs().max() > 1e-2
    hard, _ = pt(x, x, tau=10.0, hard=True)  # the best match is still the patch itself
    torch.testing.assert_close(hard, x, atol=1e-5, rtol=0)


def test_patch_transfer_does_not_match_by_position_on_a_small_layout():
    """Unrelated content must not be matched to its own position: with zero-padded windows 45 % of a 10x16 layout's
    windows went to their own position in the reference (the padding pattern tells the position), collapsing
    F(G(z)) onto I whatever z; with reflect-padded windows it is near chance."""
    torch.manual_seed(0)
    pt = PatchTransfer()
    own = []
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        ref, x = torch.rand(1, 3, 10, 16, generator=gen) * 2 - 1, torch.rand(4, 3, 10, 16, generator=gen) * 2 - 1
        _, attn = pt(x, ref, tau=1.0)
        own.append((attn.argmax(-1) == torch.arange(160)).float().mean())
    assert torch.stack(own).mean() < 0.1


def test_patch_transfer_output_patches_come_from_the_reference():
    torch.manual_seed(1)
    ref = torch.rand(1, 3, 8, 8) * 2 - 1
    out, _ = PatchTransfer()(torch.rand(2, 3, 6, 10) * 2 - 1, ref, tau=1e-6, hard=True)
    assert out.shape == (2, 3, 6, 10)
    assert out.min() >= ref.min() - 1e-5 and out.max() <= ref.max() + 1e-5  # averages of reference pixels



def test_patch_transfer_passes_repeat_the_transfer_on_its_own_output():
    """The official lpm_iter: each pass matches the previous pass's output again (features re-extracted); the
    attention returned is the last pass's. One pass is Eq. 7; the module's `passes` is the default."""
    torch.manual_seed(2)
    ref, x = torch.rand(1, 3, 10, 12) * 2 - 1, torch.rand(2, 3, 8, 9) * 2 - 1
    pt = PatchTransfer()
    once, _ = pt(x, ref, tau=0.05)
    twice, attn2 = pt(once, ref, tau=0.05)
    thrice, attn3 = pt(twice, ref, tau=0.05)
    got, attn = pt(x, ref, tau=0.05, passes=3)
    torch.testing.assert_close(got, thrice, atol=1e-6, rtol=0)
    torch.testing.assert_close(attn, attn3, atol=1e-6, rtol=0)
    assert (thrice - once).abs().mean() > 1e-3  # the passes change the result
    pt.passes = 3
    torch.testing.assert_close(pt(x, ref, tau=0.05)[0], thrice, atol=1e-6, rtol=0)
    torch.testing.assert_close(pt(x, ref, tau=0.05, passes=1)[0], once, atol=1e-6, rtol=0)


@pytest.mark.parametrize("layout", ["torchvision", "official"])
def test_patch_transfer_takes_torchvisions_vgg19_and_the_official_vgg_conv(tmp_path, layout):
    """PT's two convolutions from torchvision's VGG19 (features.0 / features.2) or the official code's
    Pretrained/vgg_conv.pth (conv1_1 / conv1_2, Gatys' VGG19 as `patch_match` loads it)."""
    gen = torch.Generator().manual_seed(0)
    w1, b1, w2, b2 = (torch.randn(*shape, generator=gen) for shape in ((64, 3, 3, 3), (64,), (64, 64, 3, 3), (64,)))
    names = ("features.0", "features.2") if layout == "torchvision" else ("conv1_1", "conv1_2")
    state = {f"{names[0]}.weight": w1, f"{names[0]}.bias": b1, f"{names[1]}.weight": w2, f"{names[1]}.bias": b2,
             "other.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "vgg.pth")
    pt = PatchTransfer(tmp_path / "vgg.pth")
    for got, want in zip((pt.features[0].weight, pt.features[0].bias, pt.features[2].weight, pt.features[2].bias),
                         (w1, b1, w2, b2), strict=True):
        assert torch.equal(got.data, want)
    torch.save({"conv9.weight": w1}, tmp_path / "bad.pth")
    with pytest.raises(PixforgeError, match="not a VGG19 state dict"):
        PatchTransfer(tmp_path / "bad.pth")

def test_network_shapes():
    z = torch.randn(2, 1, 10, 13)
    lay = DEPNet(8)(z)
    assert lay.shape == (2, 3, 10, 13)
    assert DEPDiscriminator((10, 13), dim=4)(lay).shape == (2, 1)
    assert Restoration(8, factor=8)(lay).shape == (2, 3, 80, 104)
    assert PatchDiscriminator(8)(torch.rand(1, 3, 24, 20)).shape == (1, 1, 24, 20)


def test_hinge_loss():
    assert hinge_d_loss(torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])).item() == pytest.approx(0.5 + 0.75)


def test_tps_augment_is_deterministic_and_keeps_the_size():
    img = torch.rand(1, 3, 16, 20) * 2 - 1
    a, b = tps_augment(img, 5, seed=3), tps_augment(img, 5, seed=3)
    assert a.shape == (5, 3, 16, 20) and torch.equal(a, b)


def test_sizes_and_minimum():
    assert petsgan_sizes(300, 400) == [(24, 32), (192, 256)]
    with pytest.raises(PixforgeError, match="at least 80 px"):
        petsgan_sizes(60, 60)


@pytest.mark.parametrize("official, diversity", [(False, 0.0), (True, 0.0), (False, 10.0)])
def test_tiny_three_phase_run_and_any_size_sampling(tmp_path, image_file, official, diversity):
    run = train(str(image_file), str(tmp_path / "p"), method="petsgan", downscale=2, warmup_g=2, warmup_f=2, joint=2,
                batch_g=4, augment=6, g_dim=8, ir_dim=8, d_dim=8, official=official, layout_diversity=diversity,
                device="cpu", quiet=True)
    assert {p.name for p in (run / "samples").iterdir()} == {"phase-G.png", "phase-F.png", "phase-joint.png",
                                                             "final.png"}
    model = load_model(run)
    assert model.sample(2, (18, 50)).shape == (2, 3, 18, 50)
    assert model.sample(1).shape == (1, 3, 30, 40)
    # the EMA of G: off in the paper form, on (0.99) under --official, as the official code; PT's passes 1 / 10
    assert (model.G_ema is not None) == official
    released = json.loads((run / "model.json").read_text())
    assert released["ema_decay"] == (0.99 if official else 0.0) and released["pt_passes"] == (10 if official else 1)
    assert model.PT.passes == released["pt_passes"]


def test_bad_layout_diversity_writes_nothing(tmp_path, image_file):
    with pytest.raises(PixforgeError, match="--layout-diversity"):
        train(str(image_file), str(tmp_path / "p"), method="petsgan", layout_diversity=-1.0, quiet=True)
    assert not (tmp_path / "p").exists()


def test_no_phi_is_the_w_o_phi_ablation(tmp_path, image_file):
    """--no-phi: no Warmup_G step, D_G never stepped; G and D stepped in the joint phase only."""
    from pixforge.core.checkpoint import Checkpoints, read_checkpoint

    run = train(str(image_file), str(tmp_path / "p"), method="petsgan", downscale=2, warmup_g=5, warmup_f=2, joint=2,
                batch_g=4, augment=6, g_dim=8, ir_dim=8, d_dim=8, no_phi=True, log_every=1, device="cpu", quiet=True)
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["phase"] for r in rows] == [1, 1, 2, 2] and rows[-1]["step"] == 4  # --warmup-g ignored
    assert not any("collapse" in r or "dg" in r for r in rows)
    ckpt = read_checkpoint(Checkpoints(run / "checkpoints").latest())
    opts = ckpt["optimizers"]
    assert not opts["G"]["state"] and not opts["DG"]["state"] and not opts["DG_joint"]["state"]
    assert opts["G_joint"]["state"] and opts["D_joint"]["state"]
    assert "phase-G.png" not in {p.name for p in (run / "samples").iterdir()}
    assert load_model(run).sample(2).shape == (2, 3, 30, 40)
    with pytest.raises(PixforgeError, match="holds no EMA of G"):  # its checkpoints have no G_ema to resume
        train(str(image_file), str(run), method="petsgan", downscale=2, warmup_g=5, warmup_f=2, joint=2, batch_g=4,
              augment=6, g_dim=8, ir_dim=8, d_dim=8, no_phi=True, ema_decay=0.5, device="cpu", quiet=True,
              resume=True)


@pytest.mark.parametrize("bad", [{"layout_diversity": 1.0}, {"no_phi": "yes"}])
def test_bad_no_phi_writes_nothing(tmp_path, image_file, bad):
    with pytest.raises(PixforgeError, match="--no-phi"):
        train(str(image_file), str(tmp_path / "p"), method="petsgan", no_phi=bad.pop("no_phi", True), quiet=True,
              **bad)
    assert not (tmp_path / "p").exists()


def test_ema_update_is_its_formula():
    """target <- decay * target + (1 - decay) * source on every entry (official `functions.ema.update`)."""
    torch.manual_seed(0)
    source, target = DEPNet(4), DEPNet(4)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update(target, source, 0.9)
    for key, value in target.state_dict().items():
        want = before[key] * 0.9 + source.state_dict()[key] * 0.1
        assert torch.allclose(value, want, atol=1e-7, rtol=0), key
    w = torch.tensor([[2.0]]), torch.tensor([[4.0]])  # 0.99 * 2 + 0.01 * 4 = 2.02
    a, b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    a.weight.data, b.weight.data = w[0].clone(), w[1].clone()
    ema_update(a, b, 0.99)
    assert a.weight.item() == pytest.approx(2.02, abs=1e-6) and b.weight.item() == 4.0


EMA_RUN = {"method": "petsgan", "downscale": 2, "warmup_g": 2, "warmup_f": 1, "joint": 2, "batch_g": 4,
           "augment": 6, "g_dim": 8, "ir_dim": 8, "d_dim": 8, "ema_decay": 0.9, "ckpt_every": 1, "keep_last": 100,
           "log_every": 1, "device": "cpu", "quiet": True}


def test_ema_resume_is_exact_and_sample_uses_the_ema(tmp_path, image_file, logged):
    """A run with --ema-decay straight through == resumed from its checkpoint at step 1 (inside Warmup_G) and at
    step 3 (the joint phase's start, where G is loaded from the EMA), bit for bit, G_ema included, training (and
    logging) only the steps after the checkpoint; `sample` (and export, metrics: the same loaded model) draws from
    the EMA."""
    from pixforge.singleimage.export import PetsGANSampler

    run = train(str(image_file), str(tmp_path / "p"), **EMA_RUN)
    straight = load_file(run / "model.safetensors")
    straight_log = logged(run)
    assert [r["step"] for r in straight_log] == [1, 2, 3, 4, 5]
    assert any(k.startswith("G_ema.") for k in straight)
    assert not all(torch.equal(straight[k], straight["G_ema." + k[2:]]) for k in straight if k.startswith("G."))
    for stop in (1, 3):
        for ckpt in (run / "checkpoints").iterdir():  # as if killed right after writing checkpoint `stop`
            if int(ckpt.stem.split("-")[1]) > stop:
                ckpt.unlink()
        (run / "model.safetensors").unlink()
        train(str(image_file), str(run), resume=True, **EMA_RUN)
        resumed = load_file(run / "model.safetensors")
        assert straight.keys() == resumed.keys()
        for key in straight:
            assert torch.equal(straight[key], resumed[key]), (stop, key)
        # every step logged once, the losses of the straight run's: nothing up to `stop` was trained again
        assert logged(run) == straight_log, stop

    from pixforge.core.checkpoint import read_checkpoint

    at = {s: read_checkpoint(run / "checkpoints" / f"step-{s:09d}.pt")["models"] for s in (3, 4)}
    gap = {k: (at[3]["G"][k] - at[3]["G_ema"][k]).abs().max() for k in at[3]["G"]}
    joint = {k: (at[4]["G"][k] - at[3]["G_ema"][k]).abs().max() for k in at[3]["G"]}
    assert max(gap.values()) > 1e-5 and max(joint.values()) < 1e-5  # one joint step at lr 1e-6 from G_ema

    model = load_model(run)
    assert model.G is model.G_ema and PetsGANSampler(model).G is model.G_ema
    for k, v in model.G.state_dict().items():
        assert torch.equal(v, straight["G_ema." + k])
    from pixforge.core.steps import sample_noise
    from pixforge.singleimage.petsgan_model import TAU_JOINT

    z = sample_noise((1, 15, 20), range(2), 0, 0)
    with torch.no_grad():
        want = torch.cat([model.IR(model.PT(model.G_ema(z[i:i + 1]), model.ref, TAU_JOINT)[0]) for i in range(2)])
        trained = torch.cat([model.IR(model.PT(model.G_trained(z[i:i + 1]), model.ref, TAU_JOINT)[0])
                             for i in range(2)])
    got = model.sample(2)
    assert torch.equal(got, want.clamp(-1, 1)) and not torch.equal(got, trained.clamp(-1, 1))


@pytest.mark.parametrize("bad", [{"ema_decay": 1.0}, {"ema_decay": -0.1}, {"ema_decay": 0.5, "method": "singan"}])
def test_bad_ema_decay_writes_nothing(tmp_path, image_file, bad):
    with pytest.raises(PixforgeError, match="--ema-decay"):
        train(str(image_file), str(tmp_path / "p"), **{"method": "petsgan", "quiet": True, **bad})
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("bad", [{"pt_passes": 0}, {"pt_passes": 2.5}, {"pt_passes": 3, "method": "singan"}])
def test_bad_pt_passes_writes_nothing(tmp_path, image_file, bad):
    with pytest.raises(PixforgeError, match="--pt-passes"):
        train(str(image_file), str(tmp_path / "p"), **{"method": "petsgan", "quiet": True, **bad})
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("official", [False, True])
def test_the_joint_patch_discriminator_sees_the_mirror_only_under_official(tmp_path, image_file, monkeypatch,
                                                                           official):
    """Official `use_flip`: the joint phase's D gets I or its mirror at random (main.py:574-576, 597); the paper
    form's D_I is I."""
    import pixforge.singleimage.petsgan as petsgan

    calls = []
    D_forward = petsgan.PatchDiscriminator.forward

    def recording(self, x):
        calls.append(x.detach().clone())
        return D_forward(self, x)

    monkeypatch.setattr(petsgan.PatchDiscriminator, "forward", recording)
    train(str(image_file), str(tmp_path / "p"), method="petsgan", downscale=2, warmup_g=1, warmup_f=1, joint=8,
          batch_g=4, augment=6, g_dim=8, ir_dim=8, d_dim=8, official=official, pt_passes=1, device="cpu", quiet=True)
    assert len(calls) == 3 * 8  # per joint step: D(real), D(fake), then D of G's fake
    reals = calls[0::3]
    image = reals[0]
    assert not torch.equal(image, image.flip(-1))
    mirrored = [torch.equal(r, image.flip(-1)) for r in reals]
    plain = [torch.equal(r, image) for r in reals]
    if official:
        assert all(a or b for a, b in zip(mirrored, plain, strict=True)) and any(mirrored) and any(plain)
    else:
        assert all(plain)
