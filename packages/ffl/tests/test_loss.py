"""FocalFrequencyLoss: parity with the official package (value and gradient), the DCT form, properties, errors."""

import itertools
import math

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn.functional as F
from focal_frequency_loss import FocalFrequencyLoss as OfficialFFL

from pixforge.ffl import FocalFrequencyLoss, focal_frequency_loss
from pixforge.ffl.loss import dct2

KNOBS = list(itertools.product([0.0, 0.5, 1.0, 2.0], [1, 2], [False, True], [False, True], [False, True]))
SIZES = [(8, 8), (10, 6), (6, 14), (14, 18), (18, 10)]  # patch sides even and odd, square and not
ODD_SIZES = [(7, 9), (9, 7), (5, 5), (1, 6), (6, 1)]


def _value_and_grads(loss, pred, target, matrix=None):
    value = loss(pred, target, matrix)
    return (value, *torch.autograd.grad(value, (pred, target)))


def _assert_parity(ours, official, device="cpu", shape=(3, 2, 8, 8), matrix=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pred = torch.randn(shape, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    target = torch.randn(shape, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    for mine, ref in zip(_value_and_grads(ours, pred, target, matrix), _value_and_grads(official, pred, target, matrix),
                         strict=True):
        assert mine.shape == ref.shape
        torch.testing.assert_close(mine, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("alpha,patch_factor,ave_spectrum,log_matrix,batch_matrix", KNOBS)
def test_parity_with_official_over_all_knobs(alpha, patch_factor, ave_spectrum, log_matrix, batch_matrix):
    knobs = dict(loss_weight=1.7, alpha=alpha, patch_factor=patch_factor, ave_spectrum=ave_spectrum,
                 log_matrix=log_matrix, batch_matrix=batch_matrix)
    for i, (h, w) in enumerate(SIZES):
        _assert_parity(FocalFrequencyLoss(**knobs), OfficialFFL(**knobs), shape=(3, 2, h, w), seed=i)


@pytest.mark.parametrize("shape", ODD_SIZES)
def test_parity_on_odd_sizes_with_defaults(shape):
    _assert_parity(FocalFrequencyLoss(), OfficialFFL(), shape=(2, 3, *shape))


def test_parity_with_a_predefined_matrix():
    gen = torch.Generator().manual_seed(1)
    full = torch.rand(3, 4, 2, 4, 5, generator=gen, dtype=torch.float64)  # N x P x C x h x w
    _assert_parity(FocalFrequencyLoss(patch_factor=2), OfficialFFL(patch_factor=2), shape=(3, 2, 8, 10), matrix=full)
    shared = torch.rand(1, 1, 1, 7, 9, generator=gen, dtype=torch.float64)
    _assert_parity(FocalFrequencyLoss(), OfficialFFL(), shape=(2, 3, 7, 9), matrix=shared)


def test_float32_parity():
    gen = torch.Generator().manual_seed(2)
    pred = torch.rand(4, 3, 32, 32, generator=gen).requires_grad_()
    target = torch.rand(4, 3, 32, 32, generator=gen)
    ours, ref = FocalFrequencyLoss()(pred, target), OfficialFFL()(pred, target)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.autograd.grad(ours, pred)[0], torch.autograd.grad(ref, pred)[0],
                               rtol=1e-4, atol=1e-9)


@pytest.mark.cuda
def test_parity_on_cuda():
    for alpha, patch_factor, ave_spectrum, log_matrix, batch_matrix in KNOBS[::3]:
        knobs = dict(alpha=alpha, patch_factor=patch_factor, ave_spectrum=ave_spectrum, log_matrix=log_matrix,
                     batch_matrix=batch_matrix)
        for i, (h, w) in enumerate(SIZES + [(12, 14)]):
            _assert_parity(FocalFrequencyLoss(**knobs), OfficialFFL(**knobs), "cuda", (3, 2, h, w), seed=i)


@pytest.mark.cuda
def test_cuda_autocast_fp16_and_bf16():
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).cuda()
    x, target = torch.rand(2, 3, 32, 32, device="cuda"), torch.rand(2, 3, 32, 32, device="cuda")
    for dtype in (torch.float16, torch.bfloat16):
        with torch.autocast("cuda", dtype=dtype):
            out = conv(x)
            loss = FocalFrequencyLoss()(out, target)
        assert out.dtype == dtype and loss.dtype == torch.float32 and torch.isfinite(loss)
        loss.backward()
        torch.testing.assert_close(loss, FocalFrequencyLoss()(out.float(), target), rtol=1e-5, atol=0)


def test_cpu_autocast_bf16():
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    x, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
        loss = FocalFrequencyLoss()(out, target)
    assert out.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    torch.testing.assert_close(loss, FocalFrequencyLoss()(out.float(), target), rtol=1e-6, atol=0)


@pytest.mark.parametrize("transform", ["fft", "dct"])
def test_alpha_zero_is_mse_and_loss_never_exceeds_mse(transform):
    gen = torch.Generator().manual_seed(3)
    pred, target = (torch.rand(2, 3, 12, 10, generator=gen, dtype=torch.float64) for _ in range(2))
    mse = F.mse_loss(pred, target)
    torch.testing.assert_close(FocalFrequencyLoss(loss_weight=2.0, alpha=0.0, transform=transform)(pred, target),
                               2 * mse, atol=1e-12, rtol=0)
    for alpha in (0.5, 1.0, 3.0):
        assert 0 < FocalFrequencyLoss(alpha=alpha, transform=transform)(pred, target) <= mse


@pytest.mark.parametrize("transform", ["fft", "dct"])
def test_identical_images_give_zero_loss_and_gradient(transform):
    pred = torch.rand(2, 3, 8, 8, requires_grad=True)
    loss = FocalFrequencyLoss(transform=transform)(pred, pred.detach().clone())
    loss.backward()
    assert loss.item() == 0 and pred.grad.abs().max() == 0


def test_fft_form_is_invariant_to_a_joint_circular_shift():
    gen = torch.Generator().manual_seed(4)
    pred, target = torch.rand(2, 3, 16, 12, generator=gen), torch.rand(2, 3, 16, 12, generator=gen)
    shifted = [torch.roll(x, (5, 3), (-2, -1)) for x in (pred, target)]
    torch.testing.assert_close(FocalFrequencyLoss()(pred, target), FocalFrequencyLoss()(*shifted))


def test_ave_spectrum_is_the_loss_of_the_batch_means():
    gen = torch.Generator().manual_seed(5)
    pred, target = torch.rand(4, 3, 8, 8, generator=gen), torch.rand(4, 3, 8, 8, generator=gen)
    averaged = FocalFrequencyLoss(ave_spectrum=True)(pred, target)
    torch.testing.assert_close(averaged, FocalFrequencyLoss()(pred.mean(0, keepdim=True), target.mean(0, keepdim=True)))


def test_dct_matches_scipy_and_is_orthonormal():
    for shape in [(2, 3, 7, 12), (1, 1, 8, 5), (1, 2, 1, 1)]:
        x = torch.from_numpy(np.random.default_rng(0).random(shape))
        coeffs = dct2(x)
        torch.testing.assert_close(coeffs, torch.from_numpy(scipy.fft.dctn(x.numpy(), norm="ortho", axes=(-2, -1))))
        torch.testing.assert_close(coeffs.square().sum(), x.square().sum())  # Parseval


def test_dct_form_value_and_gradient_match_its_definition():
    rng = np.random.default_rng(1)
    pred, target = rng.random((2, 3, 6, 10)), rng.random((2, 3, 6, 10))
    coeffs = scipy.fft.dctn(pred - target, type=2, norm="ortho", axes=(-2, -1))
    weight = np.abs(coeffs) ** 1.5
    weight /= weight.max(axis=(-2, -1), keepdims=True)
    expected = np.mean(weight * coeffs**2)
    expected_grad = 2 / coeffs.size * scipy.fft.idctn(weight * coeffs, type=2, norm="ortho", axes=(-2, -1))
    p = torch.from_numpy(pred).requires_grad_()
    loss = FocalFrequencyLoss(alpha=1.5, transform="dct")(p, torch.from_numpy(target))
    loss.backward()
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)
    np.testing.assert_allclose(p.grad.numpy(), expected_grad, rtol=1e-9, atol=1e-15)


def test_dct_form_differs_from_the_fft_form():
    gen = torch.Generator().manual_seed(6)
    pred, target = torch.rand(2, 3, 8, 8, generator=gen), torch.rand(2, 3, 8, 8, generator=gen)
    assert not torch.isclose(FocalFrequencyLoss(transform="dct")(pred, target), FocalFrequencyLoss()(pred, target))


def test_functional_form_and_repr():
    pred, target = torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)
    weighted = FocalFrequencyLoss(loss_weight=3.0)(pred, target)
    torch.testing.assert_close(weighted, 3 * focal_frequency_loss(pred, target))
    assert "patch_factor=1" in repr(FocalFrequencyLoss()) and "'fft'" in repr(FocalFrequencyLoss())


def test_bad_arguments_are_clear_errors():
    x = torch.rand(1, 3, 10, 12)
    with pytest.raises(ValueError, match=r"10x12 \(H x W\) is not divisible by patch_factor 4"):
        FocalFrequencyLoss(patch_factor=4)(x, x)
    with pytest.raises(ValueError, match=r"same shape, got \(1, 3, 10, 12\) and \(1, 1, 10, 12\)"):
        FocalFrequencyLoss()(x, x[:, :1])
    with pytest.raises(ValueError, match="N x C x H x W"):
        FocalFrequencyLoss()(x[0], x[0])
    with pytest.raises(ValueError, match="transform"):
        FocalFrequencyLoss(transform="wavelet")
    with pytest.raises(ValueError, match="alpha"):
        FocalFrequencyLoss(alpha=-1)
    with pytest.raises(ValueError, match="patch_factor"):
        FocalFrequencyLoss(patch_factor=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FocalFrequencyLoss()(x, x, torch.full((1, 1, 1, 10, 12), 2.0))
    with pytest.raises(ValueError, match="does not broadcast"):
        FocalFrequencyLoss()(x, x, torch.rand(5, 5))


def test_nan_input_gives_nan_loss_like_torch_losses():
    x = torch.rand(1, 3, 8, 8)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    assert torch.isnan(FocalFrequencyLoss()(bad, x))


def _reference_ffl(pred, target, matrix=None, *, alpha=1.0, patch_factor=1, ave_spectrum=False, log_matrix=False,
                   batch_matrix=False, transform="fft"):
    """The official formulation in plain autograd (full fft2 of each input, weight detached), and its DCT form."""
    def spectra(x):
        h, w = x.shape[-2] // patch_factor, x.shape[-1] // patch_factor
        patches = torch.stack([x[..., i * h:(i + 1) * h, j * w:(j + 1) * w]
                               for i in range(patch_factor) for j in range(patch_factor)], 1)
        if transform == "fft":
            return torch.view_as_real(torch.fft.fft2(patches, norm="ortho"))
        steps = [torch.arange(n, dtype=torch.float64) for n in (h, w)]
        basis = [math.sqrt(2 / len(k)) * torch.cos(math.pi * torch.outer(k, k + 0.5) / len(k)) for k in steps]
        for b in basis:
            b[0] /= math.sqrt(2)
        return basis[0].to(x) @ patches @ basis[1].to(x).T

    fake, real = spectra(pred), spectra(target)
    if ave_spectrum:
        fake, real = fake.mean(0, keepdim=True), real.mean(0, keepdim=True)
    distance = (fake - real) ** 2
    if transform == "fft":
        distance = distance[..., 0] + distance[..., 1]
    if matrix is None:
        with torch.no_grad():
            matrix = distance.sqrt() ** alpha
            matrix = torch.log(matrix + 1.0) if log_matrix else matrix
            matrix = matrix / (matrix.max() if batch_matrix else matrix.amax((-2, -1), keepdim=True))
            matrix = torch.nan_to_num(matrix, nan=0.0).clamp(0, 1)
    return torch.mean(matrix.detach() * distance)


def _penalty_grads(loss, kind, seed):
    """A gradient penalty through `loss`, differentiated again: (penalty, d penalty / d (conv weight, bias, target)).

    R1: |d loss / d x|^2 where the prediction is tanh(conv(x)); WGAN-GP: (|d loss / d x_hat|_2 - 1)^2 per image at
    a random interpolate x_hat of two batches.
    """
    gen = torch.Generator().manual_seed(seed)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).double()
    for p in conv.parameters():
        p.data = torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.3
    x, other, target = (torch.randn(2, 3, 8, 10, generator=gen, dtype=torch.float64) for _ in range(3))
    target.requires_grad_()
    if kind == "wgan-gp":
        x = torch.lerp(x, other, torch.rand(2, 1, 1, 1, generator=gen, dtype=torch.float64))
    x.requires_grad_()
    (grad,) = torch.autograd.grad(loss(torch.tanh(conv(x)), target), x, create_graph=True)
    norms = grad.flatten(1).norm(dim=1)
    penalty = grad.square().sum() if kind == "r1" else ((norms - 1) ** 2).mean()
    return (penalty, *torch.autograd.grad(penalty, (conv.weight, conv.bias, target)))


SECOND_ORDER_KNOBS = [dict(), dict(log_matrix=True), dict(batch_matrix=True), dict(log_matrix=True, batch_matrix=True),
                      dict(alpha=0.5, patch_factor=2, ave_spectrum=True)]


@pytest.mark.parametrize("kind", ["r1", "wgan-gp"])
@pytest.mark.parametrize("transform", ["fft", "dct"])
@pytest.mark.parametrize("knobs", SECOND_ORDER_KNOBS, ids=lambda k: "-".join(k) or "defaults")
def test_gradient_penalties_differentiate_the_gradient_as_plain_autograd_does(kind, transform, knobs):
    ours = _penalty_grads(FocalFrequencyLoss(loss_weight=50.0, transform=transform, **knobs), kind, seed=7)
    reference = _penalty_grads(lambda p, t: 50.0 * _reference_ffl(p, t, transform=transform, **knobs), kind, seed=7)
    assert all(g.abs().max() > 1e-6 for g in reference)  # the penalty and its gradients are not trivially zero
    for mine, ref in zip(ours, reference, strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-9, atol=1e-12)  # float64: equal up to round-off


def test_gradient_penalty_with_a_predefined_matrix():
    matrix = torch.rand(1, 1, 3, 8, 10, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    ours = _penalty_grads(lambda p, t: FocalFrequencyLoss()(p, t, matrix), "r1", seed=9)
    reference = _penalty_grads(lambda p, t: _reference_ffl(p, t, matrix), "r1", seed=9)
    for mine, ref in zip(ours, reference, strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-9, atol=1e-12)
