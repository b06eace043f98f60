import math

import kornia
import pytest
import torch
import torch.nn.functional as F

from pixforge.core.stylegan2.augment import (
    AUGPIPE_SPECS,
    SYM6,
    AugmentPipe,
    apply_band_filter,
    apply_color,
    luma_axis,
    lumaflip3d,
    rotate2d,
    rotate3d,
    saturate3d,
    scale2d,
    scale3d,
    translate2d,
    translate3d,
    warp_images,
)
from pixforge.core.stylegan2.diffaugment import (
    DIFFAUG_POLICIES,
    diff_augment,
    diffaug_brightness,
    diffaug_contrast,
    diffaug_cutout,
    diffaug_saturation,
    diffaug_translation,
)

# NVlabs/stylegan2-ada-pytorch train.py `augpipe_specs`, copied out as facts.
NVLABS_SPECS = {
    "blit": dict(xflip=1, rotate90=1, xint=1),
    "geom": dict(scale=1, rotate=1, aniso=1, xfrac=1),
    "color": dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    "filter": dict(imgfilter=1),
    "noise": dict(noise=1),
    "cutout": dict(cutout=1),
    "bg": dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1),
    "bgc": dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
                lumaflip=1, hue=1, saturation=1),
    "bgcf": dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
                 lumaflip=1, hue=1, saturation=1, imgfilter=1),
    "bgcfn": dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
                  lumaflip=1, hue=1, saturation=1, imgfilter=1, noise=1),
    "bgcfnc": dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
                   lumaflip=1, hue=1, saturation=1, imgfilter=1, noise=1, cutout=1),
}
# NVlabs training/augment.py AugmentPipe.__init__ defaults.
NVLABS_DEFAULTS = dict(
    xflip=0, rotate90=0, xint=0, xint_max=0.125, scale=0, rotate=0, aniso=0, xfrac=0, scale_std=0.2, rotate_max=1,
    aniso_std=0.2, xfrac_std=0.125, brightness=0, contrast=0, lumaflip=0, hue=0, saturation=0, brightness_std=0.2,
    contrast_std=0.5, hue_max=1, saturation_std=1, imgfilter=0, imgfilter_bands=[1, 1, 1, 1], imgfilter_std=1,
    noise=0, cutout=0, noise_std=0.1, cutout_size=0.5,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_image(size: int = 48, batch: int = 1) -> torch.Tensor:
    """Three unit-amplitude low-frequency sinusoid channels (periods >= 16 px), shifted per sample."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    out = []
    for b in range(batch):
        ph = 0.7 * b
        out.append(torch.stack([torch.cos(2 * math.pi * xx / 16 + 0.3 + ph) * torch.sin(2 * math.pi * yy / 24 + 1.0),
                                torch.cos(2 * math.pi * (xx + 0.5 * yy) / 20 + ph),
                                torch.sin(2 * math.pi * (xx - 2 * yy) / 30 + 2 * ph)]))
    return torch.stack(out)


def reflect_shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """out[y, x] = in[y - dy, x - dx], reflect (no edge repeat) outside."""
    m = max(abs(dx), abs(dy))
    p = F.pad(x, [m, m, m, m], mode="reflect")
    h, w = x.shape[-2:]
    return p[..., m - dy: m - dy + h, m - dx: m - dx + w]


def zero_shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[y, x] = in[y + dy, x + dx], zero outside (DiffAugment's translation)."""
    m = max(abs(dx), abs(dy))
    p = F.pad(x, [m, m, m, m])
    h, w = x.shape[-2:]
    return p[..., m + dy: m + dy + h, m + dx: m + dx + w]


# ---------------------------------------------------------------------------------------------------------------
# Construction, presets, p.


def test_presets_equal_nvlabs_table():
    assert AUGPIPE_SPECS == NVLABS_SPECS
    for name, spec in NVLABS_SPECS.items():
        pipe = AugmentPipe.from_spec(name)
        for knob in NVLABS_SPECS["bgcfnc"]:
            assert getattr(pipe, knob) == spec.get(knob, 0), (name, knob)
    assert AugmentPipe.from_spec("bgc", hue_max=0.5).hue_max == 0.5
    with pytest.raises(ValueError, match="augpipe"):
        AugmentPipe.from_spec("bgcx")


def test_defaults_and_buffers_match_nvlabs():
    pipe = AugmentPipe()
    for knob, value in NVLABS_DEFAULTS.items():
        assert getattr(pipe, knob) == value, knob
    assert pipe.p.shape == () and pipe.p.dtype == torch.float32 and float(pipe.p) == 1.0
    sd = pipe.state_dict()
    assert set(sd) == {"p", "Hz_geom", "Hz_fbank"}
    assert sd["Hz_geom"].shape == (12,) and sd["Hz_fbank"].shape == (4, 43)
    pipe.p.fill_(0.3)
    other = AugmentPipe()
    other.load_state_dict(pipe.state_dict())
    assert float(other.p) == pytest.approx(0.3)


def test_wavelet_filters():
    h = torch.tensor(SYM6, dtype=torch.float64)
    # Orthogonal wavelet: sum h = sqrt 2, sum_k h[k] h[k + 2n] = delta(n) — why the 2x up/down pair reconstructs.
    assert float(h.sum()) == pytest.approx(math.sqrt(2), abs=1e-12)
    for n in range(6):
        assert float((h[: 12 - 2 * n] * h[2 * n:]).sum()) == pytest.approx(float(n == 0), abs=1e-10)
    pipe = AugmentPipe()
    assert float(pipe.Hz_geom.sum()) == pytest.approx(1.0, abs=1e-6)
    bank = pipe.Hz_fbank.double()
    impulse = torch.zeros(43, dtype=torch.float64)
    impulse[21] = 1
    torch.testing.assert_close(bank.sum(0), impulse, atol=1e-6, rtol=0)  # unit gains = identity filter
    torch.testing.assert_close(bank, bank.flip(1), atol=1e-7, rtol=0)  # zero-phase bands
    torch.testing.assert_close(bank.sum(1), torch.tensor([1.0, 0, 0, 0], dtype=torch.float64), atol=1e-6, rtol=0)


def test_p_zero_returns_input_unchanged():
    pipe = AugmentPipe.from_spec("bgcfnc")
    pipe.p.zero_()
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(pipe(x), x)
    assert torch.equal(pipe(x, generator=gen(1)), x)
    assert torch.equal(AugmentPipe()(x), x)  # nothing enabled


# ---------------------------------------------------------------------------------------------------------------
# Matrices.


def test_2d_matrices_against_explicit_values():
    tx, ty = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5])
    T = translate2d(tx, ty)
    assert T.shape == (2, 3, 3)
    torch.testing.assert_close(T[1], torch.tensor([[1, 0, -2.0], [0, 1, 0.5], [0, 0, 1]]))
    torch.testing.assert_close(scale2d(2.0, torch.tensor([3.0]))[0], torch.diag(torch.tensor([2.0, 3.0, 1.0])))
    th = torch.tensor([0.3, -1.2])
    R = rotate2d(th)
    c, s = math.cos(-1.2), math.sin(-1.2)
    torch.testing.assert_close(R[1], torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]]))
    # Composition: rotations add, translations add, scale then its inverse is the identity, points move as stated.
    torch.testing.assert_close(rotate2d(th) @ rotate2d(0.5), rotate2d(th + 0.5))
    torch.testing.assert_close(translate2d(tx, ty) @ translate2d(1.0, 1.0), translate2d(tx + 1, ty + 1))
    torch.testing.assert_close(scale2d(2.0, 4.0) @ scale2d(0.5, 0.25), torch.eye(3))
    point = torch.tensor([1.0, 0.0, 1.0])
    torch.testing.assert_close(rotate2d(math.pi / 2) @ point, torch.tensor([0.0, 1.0, 1.0]), atol=1e-7, rtol=0)
    torch.testing.assert_close((translate2d(2.0, 3.0) @ scale2d(2.0, 2.0)) @ point, torch.tensor([4.0, 3.0, 1.0]))


def test_3d_colour_matrices_against_formulas():
    v = luma_axis()
    torch.testing.assert_close(translate3d(0.1, 0.2, 0.3)[:3, 3], torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(scale3d(2.0, 2.0, 2.0), torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    theta = torch.tensor([0.0, 0.4, -2.5, math.pi])
    R = rotate3d(v, theta)
    # Rodrigues about the unit axis u: c I + s [u]x + (1 - c) u u^T.
    u = v[:3]
    K = torch.tensor([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    for i, t in enumerate(theta.tolist()):
        expect = math.cos(t) * torch.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * torch.outer(u, u)
        torch.testing.assert_close(R[i, :3, :3], expect, atol=1e-6, rtol=0)
    torch.testing.assert_close(R @ v, v.expand(4, 4), atol=1e-6, rtol=0)  # the luma axis is fixed
    torch.testing.assert_close(R.transpose(1, 2) @ R, torch.eye(4).expand(4, 4, 4), atol=1e-6, rtol=0)
    F_ = lumaflip3d(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(F_[0], torch.eye(4))
    torch.testing.assert_close(F_[1] @ v, -v)  # luma component negated
    chroma = torch.tensor([1.0, -1.0, 0.0, 0.0])
    torch.testing.assert_close(F_[1] @ chroma, chroma)
    torch.testing.assert_close(F_[1] @ F_[1], torch.eye(4), atol=1e-6, rtol=0)  # an involution
    S = saturate3d(torch.tensor([0.5]))
    torch.testing.assert_close(S[0] @ v, v)
    torch.testing.assert_close(S[0] @ chroma, 0.5 * chroma)


# ---------------------------------------------------------------------------------------------------------------
# Geometric transforms.


def test_identity_and_integer_translation_are_exact():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(warp_images(x, torch.eye(3)), x, atol=1e-5, rtol=0)
    for dx, dy in [(3, -2), (-4, 4), (0, 1), (-1, 0)]:
        # G_inv maps output to input pixels: shifting the content by (dx, dy) reads from q - (dx, dy).
        out = warp_images(x, translate2d(-dx, -dy))
        torch.testing.assert_close(out, reflect_shift(x, dx, dy), atol=1e-5, rtol=0)


def test_flip_and_quarter_turns_on_smooth_images():
    # The sym6 low-pass is not symmetric, so (as in NVlabs) a flip is exact only for band-limited content; on
    # unit-amplitude sinusoids with periods >= 16 px the deviation stays below 0.06.
    x = smooth_image(48)
    flip = warp_images(x, scale2d(-1.0, 1.0))
    assert (flip - x.flip(-1)).abs().max() < 0.06
    assert (flip - x).abs().max() > 1.0
    for k in range(4):
        out = warp_images(x, rotate2d(math.pi / 2 * k))  # x right, y down: torch.rot90's turn (H towards W)
        errs = [(out - torch.rot90(x, j, (2, 3))).abs().max().item() for j in range(4)]
        assert errs[k] < 0.06 and sorted(errs)[1] > 1.0, (k, errs)


@pytest.mark.parametrize("G", [rotate2d(0.4) @ scale2d(0.8, 0.8), scale2d(1 / 1.3, 1.3) @ translate2d(2.5, -1.25),
                               rotate2d(-1.1) @ translate2d(0.5, 0.25)])
def test_general_warp_matches_explicit_matrix(G):
    """Compare with kornia's bilinear warp_affine under the same matrix in pixel coordinates (origin at pixel 0):
    within 0.05 on unit-amplitude smooth content at least 8 px from the borders (kornia pads with zeros)."""
    x = smooth_image(48)
    c = (48 - 1) / 2
    pix_inv = translate2d(c, c) @ G @ translate2d(-c, -c)  # output pixel index -> input pixel index
    M = torch.linalg.inv(pix_inv)[None, :2]  # kornia wants the forward (src -> dst) matrix
    ref = kornia.geometry.transform.warp_affine(x, M, (48, 48), mode="bilinear", align_corners=True)
    out = warp_images(x, G[None])
    assert (out - ref)[..., 8:-8, 8:-8].abs().max() < 0.05


def test_forward_blits_are_flips_turns_and_shifts():
    x = smooth_image(32, batch=1).expand(16, 3, 32, 32)
    out = AugmentPipe(xflip=1)(x, generator=gen(0))
    flipped = [(o - x[0].flip(-1)).abs().max() < 0.06 for o in out]
    same = [(o - x[0]).abs().max() < 1e-5 for o in out]
    assert all(f ^ s for f, s in zip(flipped, same, strict=True)) and any(flipped) and any(same)

    out = AugmentPipe(rotate90=1)(x, generator=gen(1))
    seen = set()
    for o in out:
        errs = [(o - torch.rot90(x[0], j, (1, 2))).abs().max().item() for j in range(4)]
        assert min(errs) < 0.06
        seen.add(errs.index(min(errs)))
    assert len(seen) >= 3

    torch.manual_seed(0)
    xr = torch.rand(8, 3, 32, 32)
    out = AugmentPipe(xint=1)(xr, generator=gen(2))
    shifts = set()
    for i in range(8):  # each sample is an exact reflect shift within round(0.125 * 32) = 4 px
        found = [(dx, dy) for dx in range(-4, 5) for dy in range(-4, 5)
                 if (out[i] - reflect_shift(xr[i], dx, dy)).abs().max() < 1e-5]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 1


def test_flip_probability_statistics_and_determinism():
    # NVlabs: with probability xflip * p the sample gets i ~ {0, 1}, so P(flip) = p / 2.
    pipe = AugmentPipe(xflip=1)
    n = 4000
    for p in (0.5, 1.0):
        pipe.p.fill_(p)
        G = pipe.sample_geometric(n, 32, 32, torch.device("cpu"), gen(3))
        frac = (G[:, 0, 0] < 0).double().mean().item()
        sd = math.sqrt(p / 2 * (1 - p / 2) / n)
        assert abs(frac - p / 2) < 5 * sd, (p, frac)
    pipe.p.fill_(0.5)
    x = smooth_image(32, batch=1).expand(64, 3, 32, 32)
    a, b = pipe(x, generator=gen(4)), pipe(x, generator=gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, pipe(x, generator=gen(5)))


def test_rotation_probability_split_over_pre_and_post():
    pipe = AugmentPipe(rotate=1)
    pipe.p.fill_(0.5)
    n = 4000
    G = pipe.sample_geometric(n, 32, 32, torch.device("cpu"), gen(6))
    rotated = (G[:, 0, 1].abs() > 1e-6).double().mean().item()  # P(pre or post) = p
    assert abs(rotated - 0.5) < 5 * math.sqrt(0.25 / n)


# ---------------------------------------------------------------------------------------------------------------
# Colour, filtering, corruptions.


def constant_colour(batch: int = 16) -> torch.Tensor:
    rgb = torch.tensor([0.6, -0.2, 0.1])
    return rgb[None, :, None, None].expand(batch, 3, 8, 8).clone()


def luma_chroma(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rgb = img[:, :, 0, 0]
    luma = rgb.mean(dim=1, keepdim=True)
    return luma, rgb - luma


@pytest.mark.parametrize("knob", ["brightness", "contrast", "lumaflip", "hue", "saturation"])
def test_colour_transforms_follow_their_formulas(knob):
    x = constant_colour()
    out = AugmentPipe(**{knob: 1})(x, generator=gen(7))
    assert (out == out[:, :, :1, :1]).all()  # stays a constant colour
    l0, c0 = luma_chroma(x)
    l1, c1 = luma_chroma(out)
    if knob == "brightness":  # + b (1, 1, 1): chroma kept, b ~ N(0, 0.2)
        torch.testing.assert_close(c1, c0, atol=1e-6, rtol=0)
        assert (l1 - l0).abs().max() > 1e-3
    elif knob == "contrast":  # x c, c = 2^N(0, 0.5) > 0
        ratio = out[:, :, 0, 0] / x[:, :, 0, 0]
        torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
        assert (ratio > 0).all() and ratio.std() > 1e-3
    elif knob == "lumaflip":  # luma -> +-luma, chroma kept
        torch.testing.assert_close(c1, c0, atol=1e-6, rtol=0)
        flipped = (l1 + l0).abs() < 1e-6
        assert (((l1 - l0).abs() < 1e-6) | flipped).all() and flipped.any() and not flipped.all()
    elif knob == "hue":  # rotation about the luma axis: luma and chroma norm kept, chroma turned
        torch.testing.assert_close(l1, l0, atol=1e-6, rtol=0)
        torch.testing.assert_close(c1.norm(dim=1), c0.norm(dim=1), atol=1e-6, rtol=0)
        assert (c1 - c0).norm(dim=1).max() > 0.1
    else:  # saturation: luma kept, chroma scaled by s = 2^N(0, 1) > 0
        torch.testing.assert_close(l1, l0, atol=1e-6, rtol=0)
        s = (c1 * c0).sum(1) / (c0 * c0).sum(1)
        torch.testing.assert_close(c1, s[:, None] * c0, atol=1e-6, rtol=0)
        assert (s > 0).all() and s.std() > 0.1


def test_forward_colour_equals_sampled_matrix():
    pipe = AugmentPipe.from_spec("color")
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16)
    C = pipe.sample_color(6, 3, torch.device("cpu"), gen(8))
    torch.testing.assert_close(pipe(x, generator=gen(8)), apply_color(x, C))
    # Single channel: brightness and contrast act on the value, hue and saturation are skipped.
    g = torch.rand(6, 1, 16, 16)
    C1 = pipe.sample_color(6, 1, torch.device("cpu"), gen(9))
    out = pipe(g, generator=gen(9))
    row = C1[:, :3].mean(1)
    torch.testing.assert_close(out, g * row[:, :3].sum(1)[:, None, None, None] + row[:, 3][:, None, None, None])
    with pytest.raises(ValueError, match="RGB"):
        pipe(torch.rand(2, 4, 8, 8))


def test_band_filter():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(apply_band_filter(x, torch.ones(3, 4)), x, atol=1e-5, rtol=0)  # unit gains: identity
    const = torch.full((3, 3, 32, 32), 0.7)
    gains = torch.tensor([[2.0, 1, 1, 1], [0.5, 3, 1, 1], [1, 1, 1, 4]])
    out = apply_band_filter(const, gains)  # DC lies in the lowest band only; the filter runs along x and y
    torch.testing.assert_close(out, 0.7 * gains[:, 0, None, None, None].square().expand_as(out), atol=1e-5, rtol=0)
    # One band on: gains (1, t, 1, 1) normalised to unit expected (1/f: 10, 1, 1, 1 over 13) power.
    pipe = AugmentPipe(imgfilter=1, imgfilter_bands=[0, 1, 0, 0])
    g = pipe.sample_band_gains(1000, torch.device("cpu"), gen(10))
    power = (g.square() * torch.tensor([10.0, 1, 1, 1]) / 13).sum(1)
    torch.testing.assert_close(power, torch.ones(1000), atol=1e-5, rtol=0)
    torch.testing.assert_close(g[:, 2:], g[:, :1].expand(-1, 2))
    assert (g[:, 1] / g[:, 0]).std() > 0.5  # t = 2^N(0, 1)
    pipe = AugmentPipe(imgfilter=1)
    assert pipe(x, generator=gen(11)).shape == x.shape


def test_noise_and_cutout():
    ones = torch.ones(32, 3, 32, 32)
    out = AugmentPipe(cutout=1)(ones, generator=gen(12))
    for o in out:
        cut = o[0] == 0
        assert torch.equal(o[0], o[1]) and ((o == 0) | (o == 1)).all()
        rows, cols = cut.any(1), cut.any(0)
        assert torch.equal(cut, rows[:, None] & cols[None, :])  # a rectangle
        for line in (rows, cols):
            idx = line.nonzero().flatten()
            assert len(idx) == idx[-1] - idx[0] + 1 <= 16  # contiguous, cutout_size 0.5 of 32 px
            if 0 < idx[0] and idx[-1] < 31:
                assert len(idx) == 16
    x = torch.zeros(16, 3, 32, 32)
    noisy = AugmentPipe(noise=1)(x, generator=gen(13))
    std = noisy.flatten(1).std(1)
    assert (std < 0.6).all() and (std > 0).any()  # |N(0, 0.1)| per sample, 6 sigma bound


# ---------------------------------------------------------------------------------------------------------------
# Autograd, devices, dtypes.


def test_gradients_and_double_backward():
    pipe = AugmentPipe.from_spec("bgcfnc")
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    pipe(x, generator=gen(14)).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # R1 on augmented reals: grad of D(aug(x)) w.r.t. x, then backward of its norm into D's weights.
    D = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Softplus(), torch.nn.Conv2d(4, 1, 3))
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    logits = D(pipe(x, generator=gen(15))).sum()
    (g,) = torch.autograd.grad(logits, x, create_graph=True)
    g.square().sum().backward()
    w = D[0].weight.grad
    assert w is not None and torch.isfinite(w).all() and w.abs().sum() > 0


def test_warp_gradcheck():
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    G = (rotate2d(0.3) @ scale2d(0.9, 1.1)).double()[None]
    assert torch.autograd.gradcheck(lambda t: warp_images(t, G), (x,))


def test_meta_device():
    pipe = AugmentPipe.from_spec("bgcfnc").to("meta")
    out = pipe(torch.empty(4, 3, 32, 32, device="meta"))
    assert out.device.type == "meta" and out.shape == (4, 3, 32, 32)
    cpu_pipe = AugmentPipe.from_spec("bgcfnc")  # CPU module, meta input, a CPU generator
    out = cpu_pipe(torch.empty(2, 3, 32, 32, device="meta"), generator=gen(0))
    assert out.device.type == "meta" and out.shape == (2, 3, 32, 32)
    assert diff_augment(torch.empty(2, 3, 32, 32, device="meta")).device.type == "meta"


def test_bfloat16_input():
    pipe = AugmentPipe.from_spec("bgcfnc")
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32).bfloat16()
    out = pipe(x, generator=gen(16))
    ref = pipe(x.float(), generator=gen(16))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=1e-2, rtol=1e-2)


# ---------------------------------------------------------------------------------------------------------------
# DiffAugment.


def test_diffaug_translation_shifts_by_integers_with_zero_fill():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32) + 1  # no zeros of its own
    out = diffaug_translation(x, generator=gen(0))
    shifts = set()
    for i in range(16):
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                 if torch.equal(out[i], zero_shift(x[i], dy, dx))]  # int(32 / 8 + 0.5) = 4
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 4


@pytest.mark.parametrize("size", [32, 30])
def test_diffaug_cutout_zeroes_a_square(size):
    side = int(size * 0.5 + 0.5)
    x = torch.ones(32, 3, size, size)
    out = diffaug_cutout(x, generator=gen(1))
    full = 0
    for o in out:
        cut = o[0] == 0
        assert all(torch.equal(cut, c == 0) for c in o)
        rows, cols = cut.any(1), cut.any(0)
        assert torch.equal(cut, rows[:, None] & cols[None, :])
        for line in (rows, cols):
            idx = line.nonzero().flatten()
            assert len(idx) == idx[-1] - idx[0] + 1 <= side
            if 0 < idx[0] and idx[-1] < size - 1:
                assert len(idx) == side
        full += int(cut.sum() == side * side)
    assert full > 0


def test_diffaug_colour_uses_the_drawn_amounts():
    torch.manual_seed(0)
    x = torch.rand(5, 3, 16, 16)
    u = torch.rand([5, 1, 1, 1], generator=gen(2))
    torch.testing.assert_close(diffaug_brightness(x, generator=gen(2)), x + (u - 0.5))
    mean = x.mean(1, keepdim=True)
    torch.testing.assert_close(diffaug_saturation(x, generator=gen(2)), (x - mean) * 2 * u + mean)
    mean = x.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(diffaug_contrast(x, generator=gen(2)), (x - mean) * (u + 0.5) + mean)


def test_diff_augment_policies_determinism_and_gradients():
    assert set(DIFFAUG_POLICIES) == {"color", "translation", "cutout"}
    assert DIFFAUG_POLICIES["color"] == (diffaug_brightness, diffaug_saturation, diffaug_contrast)
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    assert diff_augment(x, "") is x
    a = diff_augment(x, generator=gen(3))
    assert torch.equal(a, diff_augment(x, generator=gen(3)))
    assert not torch.equal(a, diff_augment(x, generator=gen(4)))
    a.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="policy"):
        diff_augment(x, "color,zoom")
    xb = x.detach().bfloat16()
    assert diff_augment(xb, "color,translation,cutout", generator=gen(3)).dtype == torch.bfloat16
