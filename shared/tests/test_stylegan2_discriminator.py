"""StyleGAN2 discriminator against NVlabs' stylegan2-ada-pytorch.

The fixtures were produced once by running NVlabs' own `training/networks.py` (commit d72cc7d, its CPU
reference ops, torch 2.13) outside this repository:
* `nvlabs_stylegan2_shapes.json`: for the train.py configs 'paper256' (256 px, channel_base 16384, 8 mapping
  layers, mbstd 8), 'stylegan2' (1024 px, channel_base 32768, 8 mapping layers, mbstd 4) and 'cifar' (32 px,
  c_dim 10, channel_base 32768, 2 G mapping layers, mbstd 32, D 'orig'), all with num_fp16_res 4 and
  conv_clamp 256: the G and D constructor arguments, parameter counts and every state-dict name -> shape.
* `nvlabs_stylegan2_discriminator_32px.pt`: 32 px discriminators (channel_base 128, channel_max 16, 2 mapping
  layers) for 'resnet' (c_dim 3, mbstd group 2), 'orig' (unconditional, conv_clamp 0.75) and 'skip' (c_dim 3,
  mbstd group 2 with 2 channels), every parameter randomised (biases included), with their state dicts, a
  fixed batch of 4 images and labels and NVlabs' logits; for 'resnet' also NVlabs' logits with FP16 blocks
  (num_fp16_res 2, channels-last) on CPU.
"""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pixforge.core.nets.stylegan2 import Generator, conv2d_resample, setup_filter, upfirdn2d
from pixforge.core.nets.stylegan2_discriminator import (
    Conv2dLayer,
    Discriminator,
    MinibatchStdLayer,
    downsample2d,
)

FIXTURES = Path(__file__).parent / "fixtures"
SHAPES = json.loads((FIXTURES / "nvlabs_stylegan2_shapes.json").read_text())
PARITY = torch.load(FIXTURES / "nvlabs_stylegan2_discriminator_32px.pt", weights_only=True)


def _small(arch: str = "resnet", c_dim: int = 0, seed: int = 0, **kw) -> Discriminator:
    torch.manual_seed(seed)
    kw = {"channel_base": 128, "channel_max": 16, "mapping_kwargs": {"num_layers": 2},
          "epilogue_kwargs": {"mbstd_group_size": 2}, **kw}
    return Discriminator(c_dim, 32, 3, architecture=arch, **kw).eval()


@pytest.mark.parametrize("net", ["G", "D"])
@pytest.mark.parametrize("config", ["paper256", "stylegan2", "cifar"])
def test_state_dict_names_shapes_and_parameter_count_equal_nvlabs(config, net):
    expected = SHAPES[config][net]
    kwargs = dict(expected["kwargs"])
    if net == "G":  # our generator has no FP16 blocks; num_fp16_res changes no parameter or buffer
        kwargs["synthesis_kwargs"] = {k: v for k, v in kwargs["synthesis_kwargs"].items() if k != "num_fp16_res"}
    with torch.device("meta"):
        model = (Generator if net == "G" else Discriminator)(**kwargs)
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert got == expected["state_dict"]
    assert list(got) == list(expected["state_dict"])  # same order too
    assert sum(p.numel() for p in model.parameters()) == expected["num_params"]


def test_fixture_covers_the_published_layouts():
    d256 = SHAPES["paper256"]["D"]["state_dict"]
    assert d256["b256.fromrgb.weight"] == [64, 3, 1, 1] and d256["b256.skip.weight"] == [128, 64, 1, 1]
    assert d256["b4.conv.weight"] == [512, 513, 3, 3] and d256["b4.fc.weight"] == [512, 8192]
    assert d256["b4.out.weight"] == [1, 512] and "mapping.fc0.weight" not in d256
    cifar = SHAPES["cifar"]["D"]["state_dict"]
    assert cifar["mapping.embed.weight"] == [512, 10] and cifar["b4.out.weight"] == [512, 512]
    assert "mapping.w_avg" not in cifar and "b32.skip.weight" not in cifar  # z-less mapping, 'orig'
    assert SHAPES["stylegan2"]["D"]["num_params"] == 29012513  # the 1024 px config-F discriminator


@pytest.mark.parametrize("arch", ["resnet", "orig", "skip"])
def test_forward_equals_nvlabs(arch):
    entry = PARITY["nets"][arch]
    D = Discriminator(**entry["kwargs"]).eval()
    D.load_state_dict(entry["state_dict"], strict=True)
    c = PARITY["c"] if entry["kwargs"]["c_dim"] else None
    with torch.no_grad():
        out = D(PARITY["img"], c)
    assert out.shape == (4, 1) and out.dtype == torch.float32
    torch.testing.assert_close(out, entry["logits"], rtol=1e-5, atol=1e-6)  # same float32 arithmetic
    assert entry["logits"].std() > 1e-3  # the fixture's logits depend on the image


def test_fp16_blocks_equal_nvlabs_fp16_on_cpu():
    entry = PARITY["nets"]["resnet"]
    D = Discriminator(**entry["kwargs"], **entry["fp16_kwargs"], low_precision=torch.float16).eval()
    D.load_state_dict(entry["state_dict"], strict=True)
    with torch.no_grad():
        out = D(PARITY["img"], PARITY["c"])
        out32 = D(PARITY["img"], PARITY["c"], force_fp32=True)
    assert out.dtype == torch.float32
    # Bitwise equal on the machine that made the fixture; float16 vs float32 logits differ by ~1e-4 there.
    torch.testing.assert_close(out, entry["logits_fp16"], rtol=0, atol=2e-5)
    torch.testing.assert_close(out32, entry["logits"], rtol=1e-5, atol=1e-6)
    assert not torch.equal(out, out32)


def test_minibatch_stddev_on_a_hand_made_batch():
    # N = 4, group size 2: images 0 and 2 form one group, 1 and 3 the other; 2 channel slices of 2 channels.
    x = torch.zeros(4, 4, 2, 2)
    x[0, :2], x[2, :2] = 1.0, 3.0  # group 0, slice 0: population std 1 everywhere
    x[1, 2:, 0, 0], x[3, 2:, 0, 0] = -2.0, 2.0  # group 1, slice 1: std 2 at 1 of 4 pixels, 0 elsewhere
    y = MinibatchStdLayer(group_size=2, num_channels=2)(x)
    assert y.shape == (4, 6, 2, 2) and torch.equal(y[:, :4], x)
    eps = math.sqrt(1e-8)
    expected = {(0, 0): 1.0, (0, 1): eps, (1, 0): eps, (1, 1): (2.0 + 3 * eps) / 4}  # (group, slice)
    for i in range(4):
        for f in range(2):
            torch.testing.assert_close(y[i, 4 + f], torch.full((2, 2), expected[i % 2, f]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("group_size, num_channels", [(4, 1), (2, 3), (None, 1), (16, 2)])
def test_minibatch_stddev_against_its_formula(group_size, num_channels):
    torch.manual_seed(0)
    x = torch.randn(8, 6, 3, 3)
    y = MinibatchStdLayer(group_size, num_channels)(x)
    g = 8 if group_size is None else min(group_size, 8)
    for i in range(8):
        members = x[i % (8 // g):: 8 // g]  # image i's group
        assert members.shape[0] == g
        std = (members.var(dim=0, unbiased=False) + 1e-8).sqrt()  # C x H x W
        want = std.reshape(num_channels, -1).mean(dim=1)
        torch.testing.assert_close(y[i, 6:, 1, 2], want)
        assert torch.equal(y[i, 6:], y[i, 6:, :1, :1].expand(-1, 3, 3))
    with pytest.raises(ValueError, match="divisible"):
        MinibatchStdLayer(3)(x)


def test_conditioning_by_projection():
    D = _small(c_dim=3)
    assert not hasattr(D.mapping, "w_avg") and D.mapping.z_dim == 0 and D.cmap_dim == 16
    torch.manual_seed(1)
    img, c = torch.randn(4, 3, 32, 32), torch.randn(4, 3)
    seen = {}
    D.b4.out.register_forward_hook(lambda m, i, o: seen.__setitem__("out", o))
    D.mapping.register_forward_hook(lambda m, i, o: seen.__setitem__("cmap", o))
    with torch.no_grad():
        out = D(img, c)
        assert seen["out"].shape == seen["cmap"].shape == (4, 16)
        torch.testing.assert_close(out, (seen["out"] * seen["cmap"]).sum(dim=1, keepdim=True) / 4)
        other = D(img, torch.randn(4, 3))
        assert (out - other).abs().min() > 1e-4
        assert torch.equal(D(img, c), out)
    with pytest.raises(ValueError, match="conditional"):
        D(img)


def test_freeze_layers_turns_the_first_layers_into_buffers_under_the_same_names():
    free, frozen = _small(), _small(block_kwargs={"freeze_layers": 5})
    # Read off NVlabs for 'resnet' at 32 px: layers b32.fromrgb, conv0, conv1, skip, then b16.conv0, ...
    want = {"b16.conv0.bias", "b16.conv0.weight", "b32.conv0.bias", "b32.conv0.weight", "b32.conv1.bias",
            "b32.conv1.weight", "b32.fromrgb.bias", "b32.fromrgb.weight", "b32.skip.weight"}
    params = {n for n, _ in frozen.named_parameters()}
    assert {n for n, _ in free.named_parameters()} - params == want
    assert {n for n, _ in frozen.named_buffers()} >= want
    assert all(not frozen.get_buffer(n).requires_grad for n in want)
    assert {k: v.shape for k, v in frozen.state_dict().items()} == {k: v.shape for k, v in free.state_dict().items()}
    frozen.load_state_dict(free.state_dict(), strict=True)
    img = torch.randn(2, 3, 32, 32, requires_grad=True)
    out = frozen(img)
    torch.testing.assert_close(out, free(img))
    out.sum().backward()
    assert img.grad is not None and all(p.grad is not None for p in frozen.parameters())
    assert frozen.b32.conv0.weight.grad is None


def test_bf16_blocks_on_cpu():
    D = _small(c_dim=3, num_fp16_res=2, conv_clamp=256, low_precision=torch.bfloat16)
    assert [D.b32.use_fp16, D.b16.use_fp16, D.b8.use_fp16] == [True, True, False]
    ref = _small(c_dim=3, conv_clamp=256)  # same seed, same weights, all float32
    torch.manual_seed(1)
    img, c = torch.randn(4, 3, 32, 32), torch.randn(4, 3)
    dtypes = {}
    for name in ("b32.conv0", "b16.conv1", "b8.conv0", "b4.conv"):
        D.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: dtypes.__setitem__(name, o.dtype))
    with torch.no_grad():
        out, out32, want = D(img, c), D(img, c, force_fp32=True), ref(img, c)
    assert dtypes == {"b32.conv0": torch.float32, "b16.conv1": torch.float32, "b8.conv0": torch.float32,
                      "b4.conv": torch.float32}  # the last call was force_fp32
    with torch.no_grad():
        D(img, c)
    assert dtypes["b32.conv0"] == dtypes["b16.conv1"] == torch.bfloat16 and dtypes["b8.conv0"] == torch.float32
    assert out.dtype == torch.float32 and out.shape == (4, 1)
    assert torch.equal(out32, want)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-2)  # bfloat16 (8-bit mantissa): ~1e-3 seen, logits ~0.1
    assert not torch.equal(out, want)


def test_channels_last_blocks():
    kw = dict(num_fp16_res=2, low_precision=torch.bfloat16)
    plain, cl = _small(**kw), _small(**kw, block_kwargs={"fp16_channels_last": True})
    assert cl.b32.conv0.weight.is_contiguous(memory_format=torch.channels_last)
    assert not cl.b8.conv0.weight.is_contiguous(memory_format=torch.channels_last)  # float32 block
    cl.load_state_dict(plain.state_dict(), strict=True)
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(cl(img), plain(img), rtol=0, atol=2e-2)


@pytest.mark.parametrize("arch", ["resnet", "orig", "skip"])
def test_meta_device_forward(arch):
    with torch.device("meta"):
        D = _small(arch, c_dim=3, num_fp16_res=2, low_precision=torch.bfloat16)
    out = D(torch.empty(4, 3, 32, 32, device="meta"), torch.empty(4, 3, device="meta"))
    assert out.device.type == "meta" and out.shape == (4, 1) and out.dtype == torch.float32
    cpu = _small(arch).to("meta")
    assert cpu(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 1)


@pytest.mark.parametrize("arch", ["resnet", "orig", "skip"])
def test_r1_double_backward(arch):
    D = _small(arch, c_dim=3).train()
    img = torch.randn(2, 3, 32, 32, requires_grad=True)
    logits = D(img, torch.randn(2, 3))
    (grad,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
    assert grad.shape == img.shape and grad.abs().sum() > 0
    penalty = grad.square().sum(dim=[1, 2, 3]).mean()
    penalty.backward()
    # Every parameter but the output bias (the image gradient does not depend on it) gets a gradient.
    missing = {n for n, p in D.named_parameters() if p.grad is None}
    assert missing == {"b4.out.bias"}
    assert D.b32.conv0.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("k", [1, 3])
def test_conv2d_resample_down_is_convolution_then_fir_downsampling(k):
    torch.manual_seed(0)
    x, w, f = torch.randn(2, 5, 16, 16), torch.randn(7, 5, k, k), setup_filter([1, 3, 3, 1])
    got = conv2d_resample(x, w, f, down=2, padding=k // 2)
    # NVlabs' generic reference path: pad (filter padding + conv padding), convolve, FIR with stride 2.
    p0 = p1 = 1 + k // 2  # (4 - 2 + 1) // 2 and (4 - 2) // 2, plus k // 2
    want = upfirdn2d(F.conv2d(F.pad(x, [p0, p1, p0, p1]), w), f, down=2)
    assert got.shape == (2, 7, 8, 8)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        conv2d_resample(x, w, f, up=2, down=2)


def test_downsample2d_keeps_a_constant_image_away_from_the_border():
    y = downsample2d(torch.ones(1, 2, 16, 16), setup_filter([1, 3, 3, 1]))
    assert y.shape == (1, 2, 8, 8)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], torch.ones(1, 2, 6, 6))


def test_conv2d_layer_equalised_lr_bias_act_clamp():
    torch.manual_seed(0)
    layer = Conv2dLayer(4, 6, 3, activation="lrelu", conv_clamp=0.5)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 4, 8, 8)
    pre = F.conv2d(x, layer.weight / math.sqrt(4 * 9), layer.bias, padding=1)
    torch.testing.assert_close(layer(x, gain=0.5), (F.leaky_relu(pre, 0.2) * math.sqrt(2) * 0.5).clamp(-0.25, 0.25))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="architecture"):
        _small("dense")
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(0, 48, 3)
    with pytest.raises(ValueError, match="low_precision"):
        _small(low_precision=torch.float32)
    with pytest.raises(ValueError, match="img must be"):
        _small()(torch.randn(2, 3, 16, 16))
