"""Official TSIT checkpoints: a generator / encoder with the official module names, old-style spectral norm and
forward (written here from EndlessSora/TSIT's stream.py, architecture.py, normalization.py, generator.py, encoder.py)
-> `pixforge-tsit convert` -> the same outputs from this package's networks."""

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils import spectral_norm as old_spectral_norm

from pixforge.core.io import image_to_tensor, write_image
from pixforge.export.errors import PixforgeError
from pixforge.export.pipeline import read_labels
from pixforge.tsit.model import load
from pixforge.tsit.official import convert, encoder_key, generator_key
from pixforge.tsit.translate import translate

NGF = 2


def _lrelu(x):
    return F.leaky_relu(x, 2e-1)


def _adain(content, style, eps=1e-5):
    n, c = content.shape[:2]
    cm, cs = content.view(n, c, -1).mean(2), (content.view(n, c, -1).var(2) + eps).sqrt()
    sm, ss = style.view(n, c, -1).mean(2), (style.view(n, c, -1).var(2) + eps).sqrt()
    return (content - cm[..., None, None]) / cs[..., None, None] * ss[..., None, None] + sm[..., None, None]


class StreamResnetBlock(nn.Module):
    def __init__(self, fin, fout):
        super().__init__()
        self.learned_shortcut = fin != fout
        self.conv_0 = old_spectral_norm(nn.Conv2d(fin, fin, 3, padding=1))
        self.conv_1 = old_spectral_norm(nn.Conv2d(fin, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = old_spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
        self.norm_layer_in, self.norm_layer_out, self.norm_layer_s = (nn.InstanceNorm2d(fin), nn.InstanceNorm2d(fout),
                                                                      nn.InstanceNorm2d(fout))

    def forward(self, x):
        x_s = _lrelu(self.norm_layer_s(self.conv_s(x))) if self.learned_shortcut else x
        dx = _lrelu(self.norm_layer_in(self.conv_0(x)))
        return x_s + _lrelu(self.norm_layer_out(self.conv_1(dx)))


class Stream(nn.Module):
    def __init__(self, semantic_nc):
        super().__init__()
        chans = [semantic_nc] + [NGF * m for m in (1, 2, 4, 8, 16, 16, 16, 16)]
        for i in range(8):
            setattr(self, f"res_{i}", StreamResnetBlock(chans[i], chans[i + 1]))

    def forward(self, x):
        feats = []
        for i in range(8):
            x = getattr(self, f"res_{i}")(F.interpolate(x, scale_factor=0.5) if i else x)
            feats.append(x)
        return feats


class FADE(nn.Module):
    def __init__(self, norm_nc, label_nc):
        super().__init__()
        self.param_free_norm = nn.BatchNorm2d(norm_nc, affine=False)
        self.mlp_gamma = nn.Conv2d(label_nc, norm_nc, 3, padding=1)
        self.mlp_beta = nn.Conv2d(label_nc, norm_nc, 3, padding=1)

    def forward(self, x, feat):
        return self.param_free_norm(x) * (1 + self.mlp_gamma(feat)) + self.mlp_beta(feat)


class FADEResnetBlock(nn.Module):
    def __init__(self, fin, fout):
        super().__init__()
        self.learned_shortcut = fin != fout
        self.conv_0 = old_spectral_norm(nn.Conv2d(fin, fin, 3, padding=1))
        self.conv_1 = old_spectral_norm(nn.Conv2d(fin, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = old_spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = FADE(fin, fin)
        self.norm_0, self.norm_1 = FADE(fin, fin), FADE(fin, fin)

    def forward(self, x, feat):
        x_s = self.conv_s(self.norm_s(x, feat)) if self.learned_shortcut else x
        dx = self.conv_0(_lrelu(self.norm_0(x, feat)))
        return x_s + self.conv_1(_lrelu(self.norm_1(dx, feat)))


class OfficialGenerator(nn.Module):
    def __init__(self, semantic_nc=3, no_ss=False, use_vae=False, sh=1, sw=2):
        super().__init__()
        nf, self.no_ss, self.use_vae, self.sh, self.sw = NGF, no_ss, use_vae, sh, sw
        self.content_stream = Stream(semantic_nc)
        self.style_stream = Stream(3) if not no_ss else None
        self.fc = nn.Linear(256, 16 * nf * sw * sh) if use_vae else nn.Conv2d(semantic_nc if no_ss else 3, 16 * nf, 3,
                                                                              padding=1)
        for name, (a, b) in zip(("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"),
                                [(16, 16), (16, 16), (16, 16), (16, 8), (8, 4), (4, 2), (2, 1)], strict=True):
            setattr(self, name, FADEResnetBlock(a * nf, b * nf))
        self.conv_img = nn.Conv2d(nf, 3, 3, padding=1)

    def forward(self, content, style, z=None, noise=None):
        ft = self.content_stream(content)
        sft = self.style_stream(style) if not self.no_ss else [None] * 8
        if self.use_vae:
            x = self.fc(z).view(-1, 16 * NGF, self.sh, self.sw)
        else:
            x = self.fc(F.interpolate(content, size=(self.sh, self.sw)) if self.no_ss else noise)
        for k, name in enumerate(("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")):
            x = _adain(x, sft[7 - k]) if not self.no_ss else x
            x = F.interpolate(getattr(self, name)(x, ft[7 - k]), scale_factor=2)
        return torch.tanh(self.conv_img(_lrelu(x)))


class OfficialEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        chans = [3, NGF, NGF * 2, NGF * 4, NGF * 8, NGF * 8, NGF * 8]
        for i in range(6):
            setattr(self, f"layer{i + 1}", nn.Sequential(old_spectral_norm(nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1,
                                                                                     bias=False)),
                                                         nn.InstanceNorm2d(chans[i + 1])))
        self.fc_mu, self.fc_var = nn.Linear(NGF * 8 * 16, 256), nn.Linear(NGF * 8 * 16, 256)

    def forward(self, x):
        x = F.interpolate(x, size=(256, 256), mode="bilinear")
        for i in range(6):
            x = getattr(self, f"layer{i + 1}")(_lrelu(x) if i else x)
        x = _lrelu(x).flatten(1)
        return self.fc_mu(x), self.fc_var(x)


def _trained(module, *inputs):
    """Move BN statistics and spectral-norm vectors off their initial values, then eval mode."""
    module.train()
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.5
    with torch.no_grad():
        for _ in range(2):
            module(*inputs)
    return module.eval()


def test_key_maps():
    assert generator_key("content_stream.res_3.conv_s.weight_orig") == \
        "content_stream.res.3.conv_s.parametrizations.weight.original"
    assert generator_key("G_middle_1.norm_0.param_free_norm.running_var") == \
        "blocks.2.norm_0.param_free_norm.running_var"
    assert generator_key("up_3.conv_1.weight_u") == "blocks.6.conv_1.parametrizations.weight.0._u"
    assert generator_key("fc.weight") == "fc.weight" and generator_key("conv_img.bias") == "conv_img.bias"
    assert encoder_key("layer6.0.weight_v") == "layers.5.0.parametrizations.weight.0._v"


def test_style_transfer_checkpoint_gives_the_official_output(tmp_path):
    torch.manual_seed(0)
    c, s, noise = torch.rand(1, 3, 128, 256) * 2 - 1, torch.rand(1, 3, 128, 256) * 2 - 1, torch.randn(1, 3, 1, 2)
    official = _trained(OfficialGenerator(), c, s, None, noise)
    torch.save(official.state_dict(), tmp_path / "latest_net_G.pth")
    release = convert(tmp_path / "latest_net_G.pth", tmp_path / "rel", size="128x256")
    trained = load(release)
    assert trained.arch["task"] == "ast" and trained.arch["ngf"] == NGF and trained.arch["stride"] == 128
    with torch.no_grad():
        torch.testing.assert_close(trained.generator(c, s, noise), official(c, s, None, noise), atol=1e-5, rtol=1e-4)


def test_semantic_synthesis_vae_checkpoint_gives_the_official_output(tmp_path):
    torch.manual_seed(1)
    semantic_nc = 4 + 1 + 1  # label_nc 4, contain_dontcare_label, instance edges
    c = (torch.rand(2, semantic_nc, 128, 256) > 0.7).float()
    image = torch.rand(2, 3, 128, 256) * 2 - 1
    enc = _trained(OfficialEncoder(), image)
    z = enc(image)[0]
    official = _trained(OfficialGenerator(semantic_nc, no_ss=True, use_vae=True), c, None, z)
    torch.save(official.state_dict(), tmp_path / "latest_net_G.pth")
    torch.save(enc.state_dict(), tmp_path / "latest_net_E.pth")
    common = dict(encoder=tmp_path / "latest_net_E.pth", size="128x256", num_classes=4)
    release = convert(tmp_path / "latest_net_G.pth", tmp_path / "rel", dontcare=255, instance=True, **common)
    trained = load(release)
    assert trained.arch["start"] == "vae" and trained.arch["latent_hw"] == [1, 2]
    with torch.no_grad():
        torch.testing.assert_close(trained.encoder(image)[0], z, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(trained.generator(c, None, z), official(c, None, z), atol=1e-5, rtol=1e-4)
    with pytest.raises(PixforgeError, match="takes 6 label channels but --num-classes 4 --dontcare make 5"):
        convert(tmp_path / "latest_net_G.pth", tmp_path / "bad", dontcare=255, **common)
    with pytest.raises(PixforgeError, match="VAE start map has 2 cells"):
        convert(tmp_path / "latest_net_G.pth", tmp_path / "bad", dontcare=255, instance=True,
                **{**common, "size": 256})
    assert not (tmp_path / "bad").exists()


def test_mismatched_checkpoints_are_one_clear_line(tmp_path):
    torch.manual_seed(2)
    state = OfficialGenerator().state_dict()
    state["up_2.conv_0.weight_orig"] = state["up_2.conv_0.weight_orig"][:, :1]
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(PixforgeError, match=r"shape\.pth does not match the official TSIT layout \(blocks\.5\.conv_0"):
        convert(tmp_path / "shape.pth", tmp_path / "o1")
    state = OfficialGenerator().state_dict()
    del state["up_0.norm_s.mlp_beta.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(PixforgeError, match=r"missing blocks\.3\.norm_s\.mlp_beta\.bias"):
        convert(tmp_path / "missing.pth", tmp_path / "o2")
    torch.save({"step": 3, "model": {}}, tmp_path / "other.pth")
    result = subprocess.run([sys.executable, "-m", "pixforge.tsit.cli", "convert", tmp_path / "other.pth", "--out",
                             tmp_path / "o3"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "other.pth does not hold a state dict of tensors" in result.stderr
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3"))


def _official_ade20k_semantics(label_png, label_nc=150):
    """The one-hot input an official ADE20K model gets for a label map, as EndlessSora/TSIT computes it at test time
    (`Pix2pixDataset.__getitem__` for task SIS, `ADE20KDataset.postprocess`, `Pix2PixModel.preprocess_input`; the
    resize_and_crop geometry is the identity for a map already at the crop size and left out)."""
    label = Image.open(label_png)  # SIS: no convert('RGB')
    label_tensor = torch.from_numpy(np.array(label))[None].float().div(255) * 255.0  # ToTensor() * 255.0
    label_tensor[label_tensor == 255] = label_nc  # 'unknown' is opt.label_nc
    input_dict = {"label": label_tensor}
    # ADE20KDataset.postprocess, as written upstream: it rebinds a local name and returns nothing
    label = input_dict["label"]
    label = label - 1
    label[label == -1] = label_nc
    label_map = input_dict["label"][None].long()
    nc = label_nc + 1  # contain_dontcare_label
    return torch.zeros(1, nc, *label_map.shape[-2:]).scatter_(1, label_map, 1.0)


def test_ade20k_checkpoint_reads_labels_as_the_official_loader(tmp_path, torch_graph):
    """An official ADE20K model saw id k on channel k (0..150): converted with --num-classes 151 it gets the same
    input, and so the official output, from translate's and the exported graph's label handling."""
    torch.manual_seed(4)
    ids = np.random.default_rng(4).integers(0, 151, (128, 256)).astype(np.uint8)
    ids[:8, :8] = 0  # "unknown"
    write_image(tmp_path / "ADE_val_1.png", ids)
    semantics = _official_ade20k_semantics(tmp_path / "ADE_val_1.png")
    assert semantics[0, 0, 0, 0] == 1 and semantics[0, 5].sum() == (ids == 5).sum()  # no shift: id k on channel k
    official = _trained(OfficialGenerator(151, no_ss=True), semantics, None)
    torch.save(official.state_dict(), tmp_path / "latest_net_G.pth")
    with pytest.raises(PixforgeError, match="--dontcare 0: the official loader maps only the id 255.*151"):
        convert(tmp_path / "latest_net_G.pth", tmp_path / "bad", size="128x256", num_classes=150, dontcare=0)
    release = convert(tmp_path / "latest_net_G.pth", tmp_path / "rel", size="128x256", num_classes=151)
    pipe = torch_graph(release)  # translate's (and the exported model's) feeds and graph
    with torch.no_grad():
        expected = official(semantics, None)
    got = pipe.session.run(pipe.feeds([read_labels(tmp_path / "ADE_val_1.png")], [0]))["image"]
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-5, rtol=1e-4)
    write_image(tmp_path / "bad" / "x.png", np.full((128, 256), 255, np.uint8))
    with pytest.raises(PixforgeError, match=r"x\.png holds class id 255, outside the model's 151 classes"):
        translate(str(tmp_path / "bad"), run=str(release), out=str(tmp_path / "out"), device="cpu", quiet=True)


def test_mmis_checkpoint_runs_as_the_official_test_in_train_mode(tmp_path, torch_graph):
    """The official test.py skips model.eval() for MMIS (and photo2art): batch statistics of one image, one spectral-
    norm power iteration per forward. `convert --task mmis` records that mode; translate equals a train-mode forward
    of the official network on each image (the exported graph equals translate: test_translate_export)."""
    torch.manual_seed(5)
    rng = np.random.default_rng(5)
    contents = [rng.integers(0, 256, (128, 256, 3), dtype=np.uint8) for _ in range(2)]
    style = rng.integers(0, 256, (128, 256, 3), dtype=np.uint8)
    c, s = image_to_tensor(np.stack(contents)), image_to_tensor(style)[None]
    official = _trained(OfficialGenerator(), c, s.expand(2, -1, -1, -1), None, torch.randn(2, 3, 1, 2))
    torch.save(official.state_dict(), tmp_path / "latest_net_G.pth")
    release = convert(tmp_path / "latest_net_G.pth", tmp_path / "rel", task="mmis", size="128x256")
    assert load(release).arch["inference"] == "train"
    pipe = torch_graph(release, images={"style": style})  # translate's feeds and graph
    feeds = pipe.feeds(contents, [0, 1])
    noise = torch.from_numpy(feeds["noise"])
    with torch.no_grad():
        expected = torch.cat([copy.deepcopy(official).train()(c[i:i + 1], s, None, noise[i:i + 1]) for i in range(2)])
        assert (expected - official(c, s.expand(2, -1, -1, -1), None, noise)).abs().max() > 1e-3  # eval mode differs
        eval_expected = official(c, s.expand(2, -1, -1, -1), None, noise)
    torch.testing.assert_close(torch.from_numpy(pipe.session.run(feeds)["image"]), expected, atol=1e-5, rtol=1e-4)
    eval_release = convert(tmp_path / "latest_net_G.pth", tmp_path / "eval", task="mmis", size="128x256",
                           inference="eval")
    eval_pipe = torch_graph(eval_release, images={"style": style})
    torch.testing.assert_close(torch.from_numpy(eval_pipe.session.run(eval_pipe.feeds(contents, [0, 1]))["image"]),
                               eval_expected, atol=1e-5, rtol=1e-4)


class Payload:
    """An arbitrary object: a pickle of it is what a weights-only reader must refuse."""


@pytest.mark.parametrize(("content", "message"), [
    (b"", "generator weights {path} is empty (0 bytes)"),
    (bytes(range(256)) * 8, "generator weights {path} is not a PyTorch weights file"),
    (Payload, "generator weights {path} holds Python objects (possibly code) besides tensors"),
])
def test_unreadable_official_weights_are_named_in_our_words(tmp_path, content, message):
    path = tmp_path / "latest_net_G.pth"
    if content is Payload:
        torch.save({"netG": Payload()}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(PixforgeError) as err:
        convert(path, tmp_path / "out")
    assert str(err.value).startswith(message.format(path=path)), err.value
    assert "weights_only" not in str(err.value) and not (tmp_path / "out").exists()
