import math

import pytest
import torch
import torch.nn.functional as F

from pixforge.core.nets.stylegan2 import (
    Generator,
    modulate,
    modulated_conv2d,
    setup_filter,
    style_mix,
    upfirdn2d,
    upsample2d,
)

# Read off NVlabs/stylegan2-ada-pytorch training/networks.py for z_dim = w_dim = 32, 2 mapping layers,
# img_resolution 32, channel_base 256, channel_max 32 (channels: 4 -> 32, 8 -> 32, 16 -> 16, 32 -> 8).
W = 32
CH = {4: 32, 8: 32, 16: 16, 32: 8}


def _official_small() -> dict[str, tuple[int, ...]]:
    keys = {"mapping.w_avg": (W,)}
    for i in range(2):
        keys |= {f"mapping.fc{i}.weight": (W, W), f"mapping.fc{i}.bias": (W,)}
    for res, out in CH.items():
        b = f"synthesis.b{res}"
        keys[f"{b}.resample_filter"] = (4, 4)
        convs = {"conv1": out}
        if res == 4:
            keys[f"{b}.const"] = (out, 4, 4)
        else:
            convs = {"conv0": CH[res // 2], "conv1": out}
        for name, cin in convs.items():
            keys |= {f"{b}.{name}.weight": (out, cin, 3, 3), f"{b}.{name}.bias": (out,),
                     f"{b}.{name}.noise_strength": (), f"{b}.{name}.noise_const": (res, res),
                     f"{b}.{name}.resample_filter": (4, 4),
                     f"{b}.{name}.affine.weight": (cin, W), f"{b}.{name}.affine.bias": (cin,)}
        keys |= {f"{b}.torgb.weight": (3, out, 1, 1), f"{b}.torgb.bias": (3,),
                 f"{b}.torgb.affine.weight": (out, W), f"{b}.torgb.affine.bias": (out,)}
    return keys


def _small(**kw) -> Generator:
    torch.manual_seed(0)
    return Generator(z_dim=W, w_dim=W, img_resolution=kw.pop("res", 32), mapping_kwargs={"num_layers": 2},
                     synthesis_kwargs={"channel_base": 256, "channel_max": 32, **kw}).eval()


def test_parameter_names_and_shapes_match_nvlabs():
    got = {k: tuple(v.shape) for k, v in _small().state_dict().items()}
    assert got == _official_small()
    assert _small().num_ws == 2 * len(CH)  # 1 + 2 per block above 4 px + the last toRGB


def _config_f_count(res: int, z=512, w=512, layers=8) -> int:
    """Parameters of config F, summed layer by layer from the architecture."""
    ch = {r: min(32768 // r, 512) for r in (2 ** i for i in range(2, int(math.log2(res)) + 1))}
    fc = lambda i, o: i * o + o  # noqa: E731
    total = fc(z, w) + (layers - 1) * fc(w, w)
    for r, out in ch.items():
        convs = [out] if r == 4 else [ch[r // 2], out]
        total += out * 16 if r == 4 else 0
        for cin in convs:  # conv weight, bias, noise strength, affine
            total += out * cin * 9 + out + 1 + fc(w, cin)
        total += 3 * out + 3 + fc(w, out)  # torgb
    return total


@pytest.mark.parametrize("res", [256, 1024])
def test_config_f_parameter_count(res):
    with torch.device("meta"):
        g = Generator(img_resolution=res)
    assert sum(p.numel() for p in g.parameters()) == _config_f_count(res)
    assert g.num_ws == 2 * int(math.log2(res)) - 2


def test_config_f_1024_has_the_published_size():
    assert _config_f_count(1024) == 30_370_060  # stylegan2-ada-pytorch's printout for the FFHQ-1024 generator


def test_upsample_equals_transposed_convolution_with_the_filter():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 7)
    for f in (setup_filter([1, 3, 3, 1]), setup_filter([1, 2, 5, 3])):
        ref = F.conv_transpose2d(x, (4 * f)[None, None].repeat(3, 1, 1, 1), stride=2, padding=1, groups=3)
        torch.testing.assert_close(upsample2d(x, f), ref)
    # and the direct formula: zero insertion, pad (2, 1), convolution with the flipped filter
    f = setup_filter([1, 2, 5, 3])
    z = torch.zeros(2, 3, 10, 14)
    z[:, :, ::2, ::2] = x
    ref = F.conv2d(F.pad(z, [2, 1, 2, 1]), (4 * f.flip([0, 1]))[None, None].repeat(3, 1, 1, 1), groups=3)
    torch.testing.assert_close(upsample2d(x, f), ref)


def test_upsample_preserves_a_constant_image_away_from_the_border():
    y = upsample2d(torch.full((1, 1, 6, 6), 0.7), setup_filter([1, 3, 3, 1]))
    assert y.shape == (1, 1, 12, 12)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], torch.full((1, 1, 10, 10), 0.7))


def test_upfirdn2d_downsampling_and_cropping():
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    one = torch.ones(1, 1)
    assert torch.equal(upfirdn2d(x, one, down=2), x[..., ::2, ::2])
    assert torch.equal(upfirdn2d(x, one, padding=(-1, -2, -3, 0)), x[..., 3:, 1:-2])


def test_demodulation_gives_unit_norm_filters_and_unit_variance():
    torch.manual_seed(0)
    weight, styles = torch.randn(16, 64, 3, 3), torch.rand(2, 64) * 3 + 0.1
    w = modulate(weight, styles)
    torch.testing.assert_close(w.square().sum(dim=[2, 3, 4]), torch.ones(2, 16))
    x = torch.randn(2, 64, 48, 48)
    y = modulated_conv2d(x, weight, styles, padding=1)
    assert abs(y[..., 1:-1, 1:-1].var().item() - 1) < 0.05  # iid unit input -> unit-variance output
    fused = torch.cat([F.conv2d(x[i:i + 1], w[i], padding=1) for i in range(2)])
    torch.testing.assert_close(y, fused, atol=1e-4, rtol=1e-4)  # unfused == per-image weights


def test_truncation_and_style_mixing():
    g = _small()
    g.mapping.w_avg.normal_()
    z = torch.randn(3, W)
    ws = g.mapping(z)
    trunc = g.mapping(z, truncation_psi=0.0)
    torch.testing.assert_close(trunc, g.mapping.w_avg.expand_as(trunc))
    cut = g.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], g.mapping.w_avg.lerp(ws[:, :2], 0.5))
    torch.testing.assert_close(cut[:, 2:], ws[:, 2:])
    z2 = torch.randn(3, W)
    mixed = style_mix(ws, g.mapping(z2), 3)
    assert torch.equal(mixed[:, :3], ws[:, :3]) and torch.equal(mixed[:, 3:], g.mapping(z2)[:, 3:])
    with torch.no_grad():
        torch.testing.assert_close(g(z, mix_z=z2, mix_cutoff=3, noise_mode="none"),
                                   g.synthesis(mixed, noise_mode="none"))


def test_w_avg_tracks_only_in_training():
    g = _small()
    g.mapping(torch.randn(4, W))
    assert torch.count_nonzero(g.mapping.w_avg) == 0
    g.train()
    g.mapping(torch.randn(4, W))
    assert torch.count_nonzero(g.mapping.w_avg) == W


def test_determinism_and_noise_modes():
    g = _small()
    for layer in g.modules():
        if hasattr(layer, "noise_strength"):
            layer.noise_strength.data.fill_(0.5)
    ws = g.mapping(torch.randn(2, W))
    with torch.no_grad():
        const = g.synthesis(ws, noise_mode="const")
        assert torch.equal(const, g.synthesis(ws, noise_mode="const"))
        seeded = [g.synthesis(ws, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
        assert torch.equal(*seeded)
        assert not torch.allclose(seeded[0], g.synthesis(ws, generator=torch.Generator().manual_seed(6)))
        assert not torch.allclose(const, g.synthesis(ws, noise_mode="none"))


@pytest.mark.parametrize("res", [4, 8, 64])
def test_output_shape_at_several_resolutions(res):
    g = _small(res=res)
    with torch.no_grad():
        img = g(torch.randn(2, W))
    assert img.shape == (2, 3, res, res) and torch.isfinite(img).all()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="power of two"):
        Generator(img_resolution=48)
    g = _small()
    with pytest.raises(ValueError, match="ws must be"):
        g.synthesis(torch.randn(1, 3, W))
    with pytest.raises(ValueError, match="noise_mode"):
        g.synthesis(torch.randn(1, g.num_ws, W), noise_mode="pink")


def test_state_dict_round_trip_with_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    g = _small()
    save_file(g.state_dict(), str(tmp_path / "g.safetensors"))
    h = _small()
    for p in h.parameters():
        p.data.normal_()
    h.load_state_dict(load_file(str(tmp_path / "g.safetensors")), strict=True)
    z = torch.randn(2, W)
    with torch.no_grad():
        assert torch.equal(g(z, noise_mode="const"), h(z, noise_mode="const"))


class _Synthesis(torch.nn.Module):
    def __init__(self, g):
        super().__init__()
        self.synthesis = g.synthesis

    def forward(self, ws):
        return self.synthesis(ws, noise_mode="const")


def test_onnx_export_of_the_synthesis(tmp_path):
    from pixforge.core.onnx import export_onnx, verify_onnx
    from pixforge.export.metadata import TensorSpec

    g = _small(res=16)
    for layer in g.modules():
        if hasattr(layer, "noise_strength"):
            layer.noise_strength.data.fill_(0.3)
    model = _Synthesis(g).eval()
    ws = g.mapping(torch.randn(2, W)).detach()
    path = export_onnx(model, (ws,), tmp_path / "g.onnx", input_names=["ws"], output_names=["image"],
                       inputs=[TensorSpec("ws", kind="tensor", shape=["batch", g.num_ws, W])],
                       outputs=[TensorSpec("image", range=(-1, 1))], package="pixforge-core", version="0.1.0",
                       task="stylegan2-synthesis", dynamic_axes={"ws": {0: "batch"}})
    report = verify_onnx(path, model, [g.mapping(torch.randn(3, W)).detach()], atol=1e-4)
    assert report.shapes == [(3, 3, 16, 16)]
