"""`--prior biggan`: BigGAN-PyTorch / DGP's G and D (the official layout) and BigGAN-deep in pytorch_pretrained_biggan's
key layout (random weights we make in both), the shared DGP recipe, and bad files."""

import json

import pytest
import torch

from pixforge.export.command import invoke
from pixforge.export.errors import PixforgeError
from pixforge.singleimage import biggan
from pixforge.singleimage.biggan import (
    biggan_prior,
    feature_loss,
    inversion_loss,
    invert,
    jitter,
    layout,
    load_biggan,
    load_prior,
    one_hot,
    select_start,
)
from pixforge.singleimage.biggan_deep import (
    BIGGAN_DEEP_128,
    BIGGAN_DEEP_256,
    BigGAN,
    BigGANConfig,
    CondBatchNorm,
    config_from_state,
    save_biggan,
    truncated_noise,
)
from pixforge.singleimage.biggan_official import DConfig, Discriminator, GConfig, Generator, d_config, g_config, settle
from pixforge.singleimage.cli import SingleImage
from pixforge.singleimage.sample import load_model
from pixforge.singleimage.train import train

# 64 px, width 4 (64 ... 4 channels), z 16, attention at 32 px: the 128 model's pattern at a test's size
TINY = BigGANConfig(output_dim=64, z_dim=16, class_embed_dim=16, channel_width=4, attention_layer_position=6,
                    layers=((False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2),
                            (False, 2, 2), (True, 2, 1)))
FEW = ((6, 0.1, 2e-7), (6, 0.01, 2e-5), (4, 2e-4, 2e-6))  # the official three stages, shortened


def _tiny(seed=0):
    torch.manual_seed(seed)
    G = BigGAN(TINY).eval()
    with torch.no_grad():  # distinct statistics per truncation row, so that truncation matters
        for module in G.modules():
            if isinstance(module, CondBatchNorm):
                module.running_means.copy_(0.1 * torch.randn_like(module.running_means))
                module.running_vars.copy_(1 + 0.5 * torch.rand_like(module.running_vars))
    return G


def _outputs(G, seed=3, truncation=1.0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return G(truncated_noise(2, G.config.z_dim, truncation, gen), one_hot(torch.tensor([1, 500]), 1000), truncation)


# ----------------------------------------------------------------------------------------------------------------
# The official layout: BigGAN-PyTorch / DGP's G_ema_*.pth and D_*.pth.

SMALL_G = GConfig(resolution=64, ch=4, shared_dim=16, n_classes=10, attn="32")  # 64 px, z 5 x 24, 10 classes
SMALL_D = DConfig(resolution=64, ch=8, n_classes=10, attn="16")


def _official(seed=0, res=64):
    torch.manual_seed(seed)
    G = settle(Generator(SMALL_G if res == 64 else GConfig(resolution=res, ch=8, shared_dim=16, n_classes=10))).eval()
    D = settle(Discriminator(SMALL_D if res == 64 else DConfig(resolution=res, ch=8, n_classes=10)))
    with torch.no_grad():  # stored BN statistics other than (0, 1), so that eval mode is seen to use them
        for name, buf in G.named_buffers():
            if name.endswith("stored_mean"):
                buf.copy_(0.1 * torch.randn_like(buf))
            elif name.endswith("stored_var"):
                buf.copy_(1 + 0.5 * torch.rand_like(buf))
    return G, D


def _save_official(folder, seed=0, d=True, g_name="G_ema_64.pth"):
    G, D = _official(seed)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(G.state_dict(), folder / g_name)
    if d:
        torch.save(D.state_dict(), folder / "D_64.pth")
    return G, D, folder / g_name


def test_the_official_128_and_256_models_have_biggan_pytorchs_keys_shapes_and_sizes():
    with torch.device("meta"):
        G, D = Generator(), Discriminator()  # RunJitter.py's config: 128 px, ch 96, dim_z 120, shared 128, hier
        G256, D256 = Generator(GConfig(resolution=256)), Discriminator(DConfig(resolution=256))
    g, d = G.state_dict(), D.state_dict()
    # the 128 px BigGAN's sizes (compare_gan's BigGAN test; BigGAN-PyTorch's G count, 70,305,988, omits the shared
    # 1000 x 128 embedding)
    assert sum(p.numel() for p in G.parameters()) == 70_433_988
    assert sum(p.numel() for p in D.parameters()) == 87_982_370
    assert g["shared.weight"].shape == (1000, 128) and g["linear.weight"].shape == (16 * 96 * 16, 20)
    assert g["linear.u0"].shape == (1, 16 * 96 * 16) and g["linear.sv0"].shape == (1,)
    assert g["blocks.0.0.bn1.gain.weight"].shape == (16 * 96, 128 + 20) and "blocks.0.0.bn1.gain.bias" not in g
    assert g["blocks.0.0.bn1.stored_mean"].shape == (1536,) and g["blocks.4.0.conv_sc.weight"].shape == (96, 192, 1, 1)
    assert g["blocks.3.1.gamma"].shape == () and g["blocks.3.1.theta.weight"].shape == (24, 192, 1, 1)  # attn, 64 px
    assert g["output_layer.0.gain"].shape == (96,) and g["output_layer.2.weight"].shape == (3, 96, 3, 3)
    assert d["blocks.0.1.theta.u0"].shape == (1, 12) and d["embed.weight"].shape == (1000, 16 * 96)
    assert "blocks.5.0.conv_sc.weight" not in d and d["linear.weight"].shape == (1, 16 * 96)
    assert g_config(g) == GConfig() and d_config(d) == DConfig() and G.z_dim == 120
    assert g_config(G256.state_dict()) == GConfig(resolution=256, dim_z=119)  # 7 slots of 17 (dim_z 120 rounded)
    assert d_config(D256.state_dict()) == DConfig(resolution=256)


def test_official_forward_at_128_px_and_the_discriminator_features():
    G, D = _official(res=128)
    x = G.synthesize(torch.randn(2, G.z_dim), torch.tensor([1, 7]))
    assert x.shape == (2, 3, 128, 128) and x.abs().max() <= 1 and x.std() > 0
    score, feats = D(x, torch.tensor([1, 7]))
    # 6 blocks + the attention after the 64 px block + the pooled vector
    assert score.shape == (2, 1) and [tuple(f.shape[1:]) for f in feats] == [
        (8, 64, 64), (8, 64, 64), (16, 32, 32), (32, 16, 16), (64, 8, 8), (128, 4, 4), (128, 4, 4), (128,)]


def test_official_eval_mode_semantics():
    G, D = _official()
    conv = G.blocks[0][0].conv1
    u = conv.u0.clone()
    with torch.no_grad():
        w = conv.weight.flatten(1)
        v1 = torch.nn.functional.normalize(u @ w, eps=1e-6)
        u1 = torch.nn.functional.normalize(v1 @ w.t(), eps=1e-6)
        assert torch.allclose(conv.W_(), conv.weight / (v1 @ w.t() @ u1.t()))  # one power iteration from u0
    z, y = torch.randn(3, G.z_dim), torch.tensor([1, 2, 3])
    with torch.no_grad():
        out = G.synthesize(z, y)
        assert torch.equal(conv.u0, u) and torch.allclose(out[:1], G.synthesize(z[:1], y[:1]), atol=1e-6)
        d_u = D.blocks[1][0].conv1.u0.clone()
        D.train()(out, y)  # D stays in train mode (official): its u0 are stored back
        assert not torch.equal(D.blocks[1][0].conv1.u0, d_u)


@pytest.mark.parametrize("form", ["G_ema_64.pth", "folder", "with DGP in1/in2"])
def test_official_files_load_strictly_with_their_discriminator(tmp_path, form):
    name = "G_ema.pth" if form == "folder" else "G_ema_64.pth"  # a folder is searched for the official names
    G, D, file = _save_official(tmp_path, g_name=name)
    if form == "with DGP in1/in2":  # DGP's GBlock also holds instance norms (unused by PetsGAN)
        extra = {f"blocks.{i}.0.in{k}.{p}": torch.ones(4) for i in range(4) for k in (1, 2) for p in ("weight", "bias")}
        torch.save({**G.state_dict(), **extra}, file)
    G2, D2, d_file = load_prior(tmp_path if form == "folder" else file)
    assert d_file == tmp_path / "D_64.pth" and layout(torch.load(file, weights_only=True)) == "official"
    for a, b in ((G, G2), (D, D2)):
        assert a.state_dict().keys() == b.state_dict().keys()
        assert all(torch.equal(b.state_dict()[k], v) for k, v in a.state_dict().items())
    assert not G2.training and D2.training and not any(p.requires_grad for p in G2.parameters())
    z, y = torch.randn(2, G.z_dim), torch.tensor([3, 4])
    with torch.no_grad():
        assert torch.equal(G2.synthesize(z, y), G.synthesize(z, y))
    torch.save({k: v for k, v in G.state_dict().items() if k != "blocks.2.0.bn1.stored_mean"}, file)
    with pytest.raises(PixforgeError, match="keys differ"):
        load_biggan(file)


def test_layout_detection(tmp_path):
    G, D = _official()
    assert layout(G.state_dict()) == "official" and layout(_tiny().state_dict()) == "deep"
    with pytest.raises(PixforgeError, match="discriminator: pass the generator"):
        layout(D.state_dict(), "D_64.pth")
    with pytest.raises(PixforgeError, match="neither a BigGAN-PyTorch"):
        layout({"weight": torch.zeros(1)}, "x.pth")


def test_the_discriminator_feature_loss_is_used_when_d_is_there(tmp_path, capsys):
    G, D = _official()
    with torch.no_grad():
        target = G.synthesize(0.3 * torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(9)),
                              torch.tensor([7]))
    D.eval()  # for the exact checks: in train mode (the official, used below) each call moves D's u0 a little
    z0, y = select_start(G, target, 12, seed=0, D=D)
    assert y.shape == (1,)
    # the official criterion: D's feature loss of every candidate, the one class of all (inversion.py:122-139)
    gen = torch.Generator().manual_seed(0)
    zs = torch.randn(12, G.z_dim, generator=gen) * 0.3
    cls = torch.randint(0, 10, (1,), generator=gen).expand(12)
    with torch.no_grad():
        crit = torch.stack([feature_loss(D, target, G.synthesize(zs[i:i + 1], cls[:1]), cls[:1]) for i in range(12)])
    assert torch.equal(z0, zs[int(crit.argmin()):int(crit.argmin()) + 1]) and y == cls[0]
    with torch.no_grad():
        plain = inversion_loss(G, z0, y, target)
        full = inversion_loss(G, z0, y, target, D)
        x = G.synthesize(z0, y)
        assert plain == pytest.approx(float(torch.nn.functional.mse_loss(x, target) + 0.02 * (z0 ** 2 / 2).mean()))
        assert full == pytest.approx(float(plain + feature_loss(D, target, x, y)), rel=1e-5) and full > plain
        D.train()
    z, losses = invert(G, target, z0, y, FEW, D=D)
    assert len(losses) == 16 and losses[-1] < 0.8 * losses[0]
    with torch.no_grad():
        assert feature_loss(D, target, G.synthesize(z, y), y) < feature_loss(D, target, x, y)
    # without D beside G: MSE only, said in one stderr line
    _save_official(tmp_path / "noD", d=False)
    capsys.readouterr()
    data = biggan_prior(str(tmp_path / "noD" / "G_ema_64.pth"), torch.rand(1, 3, 30, 40) * 2 - 1, 5, (10, 16), seed=0,
                        dev=torch.device("cpu"), candidates=3, stages=((2, 0.1, 2e-7),))
    err = capsys.readouterr().err.strip().splitlines()
    assert data.shape == (5, 3, 10, 16) and len(err) == 1 and "without the discriminator" in err[0]


# ----------------------------------------------------------------------------------------------------------------
# The second layout: pytorch_pretrained_biggan's BigGAN-deep.

def test_the_128_and_256_configs_have_pytorch_pretrained_biggans_keys_and_shapes():
    with torch.device("meta"):
        state = BigGAN(BIGGAN_DEEP_128).state_dict()
        state256 = BigGAN(BIGGAN_DEEP_256).state_dict()
    assert state["embeddings.weight"].shape == (128, 1000)
    assert state["generator.gen_z.weight_orig"].shape == (4 * 4 * 16 * 128, 256)
    assert state["generator.layers.0.bn_0.running_means"].shape == (51, 2048)
    assert state["generator.layers.0.bn_0.scale.weight_orig"].shape == (2048, 256)
    assert state["generator.layers.0.conv_1.weight_orig"].shape == (512, 512, 3, 3)
    assert state["generator.layers.8.snconv1x1_theta.weight_orig"].shape == (32, 256, 1, 1)  # attention at 64 px
    assert state["generator.layers.8.gamma"].shape == (1,)
    assert state["generator.layers.10.conv_3.weight_orig"].shape == (128, 64, 1, 1)
    assert {"generator.bn.weight", "generator.bn.bias", "generator.conv_to_rgb.weight_u",
            "generator.conv_to_rgb.weight_v", "generator.conv_to_rgb.bias"} <= set(state)
    assert not any(k.startswith("generator.layers.11.") for k in state)
    assert config_from_state(state) == BIGGAN_DEEP_128 and config_from_state(state256) == BIGGAN_DEEP_256


def test_forward_at_128_px():
    torch.manual_seed(0)
    G = BigGAN(BigGANConfig(channel_width=16)).eval()  # the 128 model's layers at width 16
    out = _outputs(G)
    assert out.shape == (2, 3, 128, 128) and out.abs().max() <= 1 and out.std() > 0


@pytest.mark.parametrize("form", ["folder", "bin", "safetensors", "no weight_v"])
def test_the_key_layout_round_trips(tmp_path, form):
    G = _tiny()
    weights = save_biggan(G, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["layers"][1] == [True, 16, 8]
    if form == "bin":  # no config.json: read from the shapes
        (tmp_path / "config.json").unlink()
    elif form == "safetensors":
        from safetensors.torch import save_file

        save_file(G.state_dict(), tmp_path / "g.safetensors")
        weights = tmp_path / "g.safetensors"
    elif form == "no weight_v":  # files from before PyTorch stored v
        torch.save({k: v for k, v in G.state_dict().items() if not k.endswith("weight_v")}, weights)
    loaded = load_biggan(tmp_path if form == "folder" else weights)
    assert loaded.config == TINY
    same = {k: v for k, v in G.state_dict().items() if form != "no weight_v" or not k.endswith("weight_v")}
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in same.items())
    # v derived from u (PyTorch's rule for such files) gives sigma to about 1e-4, not bit for bit
    assert torch.allclose(_outputs(loaded), _outputs(G), atol=1e-3 if form == "no weight_v" else 1e-6)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_truncation_picks_the_stored_statistics_and_bounds_z():
    bn = CondBatchNorm(2, None, 51, 1e-4)
    bn.running_means.copy_(torch.arange(51.0)[:, None].expand(-1, 2))
    assert bn.stats(1.0)[0][0] == 50 and bn.stats(0.5)[0][0] == 25
    frac = 0.51 / 0.02 - 25  # between rows 25 and 26, weighted (frac, 1 - frac) as pytorch_pretrained_biggan
    assert bn.stats(0.51)[0][0] == pytest.approx(25 * frac + 26 * (1 - frac))
    z = truncated_noise(1000, 8, 0.4, torch.Generator().manual_seed(0))
    assert z.abs().max() <= 0.8 and z.std() > 0.2
    G = _tiny()
    assert not torch.allclose(_outputs(G, truncation=1.0), _outputs(G, truncation=0.5))
    with pytest.raises(ValueError):
        _outputs(G, truncation=0.0)


def test_eval_uses_stored_spectral_norm_vectors_and_batch_norm_statistics():
    G = _tiny()
    conv = G.generator.layers[0].conv_1
    u = conv.weight_u.clone()
    first = _outputs(G)
    assert torch.equal(first, _outputs(G)) and torch.equal(conv.weight_u, u)  # no power iteration in eval
    w = conv.weight_orig.flatten(1)
    sigma = conv.weight_u @ w @ conv.weight_v
    assert torch.allclose(conv.weight, conv.weight_orig / sigma)
    assert torch.allclose(sigma, torch.linalg.matrix_norm(w, 2), rtol=1e-3)  # settled: the top singular value
    # stored statistics, never the batch's: a sample does not depend on the others in its batch
    z, y = torch.randn(3, 16), one_hot(torch.tensor([1, 2, 3]), 1000)
    with torch.no_grad():
        assert torch.allclose(G(z, y)[:1], G(z[:1], y[:1]), atol=1e-6)
    bn = G.generator.layers[0].bn_0
    x, c = torch.randn(2, 64, 4, 4), torch.randn(2, 32)
    mean, var = bn.running_means[50], bn.running_vars[50]
    want = ((x - mean[:, None, None]) / (var[:, None, None] + 1e-4).sqrt() * (1 + bn.scale(c)[..., None, None])
            + bn.offset(c)[..., None, None])
    assert torch.allclose(bn(x, 1.0, c), want, atol=1e-6)


def test_inversion_lowers_its_loss_and_the_prior_has_the_right_size(tmp_path):
    G = _tiny()
    with torch.no_grad():
        target = G(0.3 * torch.randn(1, 16, generator=torch.Generator().manual_seed(9)), one_hot(torch.tensor([7]),
                                                                                              1000))
    z0, y = select_start(G, target, 20, seed=0)
    assert y.shape == (1,) and y.dtype == torch.long
    z, losses = invert(G, target, z0, y, FEW)
    assert len(losses) == 16 and losses[-1] < 0.8 * losses[0]
    samples = jitter(G, z, y, 10, (12, 20), seed=1)
    assert samples.shape == (10, 3, 12, 20) and samples.std(0).mean() > 0
    save_biggan(_tiny(), tmp_path)
    image = torch.rand(1, 3, 30, 40) * 2 - 1
    data = biggan_prior(str(tmp_path), image, 7, (10, 16), seed=0, dev=torch.device("cpu"), candidates=4, stages=FEW)
    assert data.shape == (7, 3, 10, 16) and data.abs().max() <= 1


@pytest.mark.parametrize("kind", ["official", "deep"])
def test_tiny_run_with_a_biggan_prior(tmp_path, image_file, monkeypatch, kind):
    if kind == "official":
        weights = _save_official(tmp_path / "bg")[2]
    else:
        weights = save_biggan(_tiny(), tmp_path / "bg")
    monkeypatch.setattr(biggan, "CANDIDATES", 4)
    monkeypatch.setattr(biggan, "STAGES", FEW)
    code = invoke(SingleImage, ["train", str(image_file), "--out", str(tmp_path / "p"), "--method", "petsgan",
                                "--prior", "biggan", "--prior-model", str(weights),
                                "--prior-samples", "5", "--downscale", "2", "--warmup-g", "2", "--warmup-f", "2",
                                "--joint", "2", "--batch-g", "4", "--augment", "6", "--g-dim", "8", "--ir-dim", "8",
                                "--d-dim", "8", "--device", "cpu", "--quiet"], "pixforge-singleimage")
    assert code == 0
    assert load_model(tmp_path / "p").sample(2).shape == (2, 3, 30, 40)
    assert json.loads((tmp_path / "p" / "config.json").read_text())["prior"] == "biggan"


def _bad(tmp_path, kind):
    if kind == "missing":
        return tmp_path / "nothing.bin"
    bad = tmp_path / "prior.bin"
    if kind == "garbage":
        bad.write_bytes(b"not a torch file")
    elif kind == "other dict":
        torch.save({"G": torch.zeros(3)}, bad)
    elif kind == "empty folder":
        bad.mkdir()
    elif kind in ("wrong config", "wrong shapes"):
        save_biggan(_tiny(), bad)
        cfg = json.loads((bad / "config.json").read_text())
        if kind == "wrong config":  # config.json of another model beside the weights
            cfg["attention_layer_position"] = 4
        else:
            cfg["channel_width"] = 8
        (bad / "config.json").write_text(json.dumps(cfg))
    elif kind == "official, wrong shape":
        G, _, file = _save_official(tmp_path, d=False)
        state = G.state_dict()
        state["blocks.1.0.conv2.weight"] = torch.zeros(1, 1, 3, 3)
        torch.save(state, bad)
    elif kind in ("official D", "official, bad D"):
        G, D, file = _save_official(tmp_path)
        if kind == "official D":  # the discriminator passed as --prior-model
            return tmp_path / "D_64.pth"
        torch.save({k: v for k, v in D.state_dict().items() if k != "embed.weight"}, tmp_path / "D_64.pth")
        return file
    return bad


@pytest.mark.parametrize("kind", ["missing", "garbage", "other dict", "empty folder", "wrong config", "wrong shapes",
                                  "official, wrong shape", "official D", "official, bad D"])
def test_a_bad_biggan_file_is_one_line_and_exit_2(tmp_path, capsys, image_file, kind):
    bad = _bad(tmp_path, kind)
    with pytest.raises(PixforgeError):
        load_biggan(bad)
    capsys.readouterr()
    code = invoke(SingleImage, ["train", str(image_file), "--out", str(tmp_path / "run"), "--method", "petsgan",
                                "--prior", "biggan", "--prior-model", str(bad)], "pixforge-singleimage")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and bad.name in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_prior_model_goes_with_a_prior(tmp_path, image_file):
    with pytest.raises(PixforgeError, match="--prior-model"):
        train(str(image_file), str(tmp_path / "r"), method="petsgan", prior="biggan")
    with pytest.raises(PixforgeError, match="nothing is downloaded"):
        load_biggan("https://example.com/pytorch_model.bin")
