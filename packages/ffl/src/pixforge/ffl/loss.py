"""Focal Frequency Loss (Jiang, Dai, Wu, Loy, ICCV 2021; thesis chapter 5, Eqs. 5.9-5.10), FFT and DCT forms.

FFT form — the official loss (`focal-frequency-loss==0.3.0`) in value and gradient, with the same knobs
and defaults. Per image, channel and patch, the spectra are the orthonormal 2D DFTs F_r, F_f; the weight
w = |F_r - F_f|^alpha (optionally log(1 + w)) is divided by its maximum over the spectrum (or over the
whole batch with `batch_matrix`), detached, and FFL = loss_weight * mean(w * |F_r - F_f|^2).

It computes the same numbers with less work than the official code:

* the DFT is linear, so F_r - F_f is the DFT of (pred - target): one transform instead of two, and with
  `ave_spectrum` the batch mean of the spectra is the spectrum of the batch-mean difference;
* the difference is real, so its spectrum is Hermitian: |D(u, v)| = |D(-u, -v)|. `rfft2` keeps the columns
  v = 0 .. W//2; the others mirror columns 1 .. (W-1)//2, which therefore count twice in the mean (column 0
  and, for even W, the Nyquist column W/2 are their own mirrors and count once). The weight at a mirrored
  position equals the weight at the kept one, and the maximum over the full spectrum is the maximum over
  the kept half, so every normalisation (per spectrum, `batch_matrix`, `log_matrix`) is unchanged.

DCT form (`transform="dct"`) — no DCT code was released with the paper (thesis Table 5.7 compares the two
forms), so it is defined here in the same terms: each channel and patch goes through the orthonormal 2D
DCT-II, X = C_h x C_w^T (C_n[k, i] = sqrt(2/n) cos(pi (2i + 1) k / 2n), row 0 scaled by 1/sqrt(2);
computed with FFTs); the distance is (X_r - X_f)^2, the weight |X_r - X_f|^alpha with the same normalisation
options, and the loss their weighted mean. Both transforms are orthonormal, so with alpha = 0 either form
equals the MSE, and for any alpha neither exceeds loss_weight * MSE.

The loss runs in float32 (float64 stays float64) with autocast turned off inside, so it works under
autocast with fp16/bf16 activations on the CPU and on CUDA. NaN inputs give a NaN loss, as torch's losses do.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

TRANSFORMS = ("fft", "dct")


def check_inputs(pred: torch.Tensor, target: torch.Tensor, patch_factor: int = 1) -> None:
    """Raise ValueError unless pred and target are N x C x H x W of one shape with H, W divisible by patch_factor."""
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"focal frequency loss expects two N x C x H x W tensors of the same shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    h, w = pred.shape[-2:]
    if h % patch_factor or w % patch_factor:
        raise ValueError(f"focal frequency loss: image size {h}x{w} (H x W) is not divisible by "
                         f"patch_factor {patch_factor}")


def spectrum_weight(distance: torch.Tensor, alpha: float = 1.0, log_matrix: bool = False,
                    batch_matrix: bool = False) -> torch.Tensor:
    """The focal weight matrix (Eq. 5.9, normalised to [0, 1]) from squared spectral distances.

    `distance` is |F_r - F_f|^2 with the spectrum in the last two dimensions. Each spectrum is divided by its
    own maximum (all of them by the global maximum with `batch_matrix`); an all-zero spectrum gets weight 0.
    Returns a new tensor without gradient.
    """
    with torch.no_grad():
        weight = distance.pow(alpha / 2)
        if log_matrix:
            weight = weight.log1p_()
        peak = weight.amax() if batch_matrix else weight.amax(dim=(-2, -1), keepdim=True)
        return weight.div_(torch.where(peak > 0, peak, 1.0))  # the official 0 / 0 -> 0


def focal_frequency_loss(pred: torch.Tensor, target: torch.Tensor, matrix: torch.Tensor | None = None, *,
                         alpha: float = 1.0, patch_factor: int = 1, ave_spectrum: bool = False,
                         log_matrix: bool = False, batch_matrix: bool = False, transform: str = "fft") -> torch.Tensor:
    """FFL between two N x C x H x W batches (no loss weight); see the module docstring and `FocalFrequencyLoss`."""
    check_inputs(pred, target, patch_factor)
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    with torch.autocast(pred.device.type, enabled=False):
        difference = functools.partial(_difference, patch_factor=patch_factor, ave_spectrum=ave_spectrum)
        diff = difference(pred, target)
        if matrix is not None:
            matrix = _predefined(matrix, diff)
        options = (alpha, log_matrix, batch_matrix)
        if transform == "fft":
            return _HalfSpectrumLoss.apply(diff, pred, target, matrix, options, difference)
        distance = dct2(diff).square()
        weight = spectrum_weight(distance, *options) if matrix is None else matrix
        return torch.sum(weight * distance) / diff.numel()


class FocalFrequencyLoss(nn.Module):
    """Focal Frequency Loss, a drop-in beside an L1/L2 loss: `loss = l1(out, x) + ffl(out, x)`.

    Args (names and defaults of the official implementation):
        loss_weight: the factor the loss is multiplied by. Default 1.0.
        alpha: the exponent of the spectrum weight matrix (larger focuses harder). Default 1.0.
        patch_factor: split each image into patch_factor x patch_factor patches, one spectrum each. Default 1.
        ave_spectrum: compare the batch-average spectra (as for StyleGAN2 in the paper). Default False.
        log_matrix: weight by log(1 + w) instead of w. Default False.
        batch_matrix: normalise the weights by the maximum over the whole batch. Default False.
        transform: "fft" (the paper's loss) or "dct" (the DCT form of thesis Table 5.7). Default "fft".

    `forward(pred, target, matrix=None)`: N x C x H x W tensors of one shape, H and W divisible by
    `patch_factor`. `matrix` optionally replaces the dynamic weights: values in [0, 1], broadcastable to the
    official full-spectrum layout N x patch_factor^2 x C x H/patch_factor x W/patch_factor. Returns a scalar.
    """

    def __init__(self, loss_weight: float = 1.0, alpha: float = 1.0, patch_factor: int = 1, ave_spectrum: bool = False,
                 log_matrix: bool = False, batch_matrix: bool = False, transform: str = "fft"):
        super().__init__()
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if int(patch_factor) != patch_factor or patch_factor < 1:
            raise ValueError(f"patch_factor must be a positive integer, got {patch_factor}")
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        self.loss_weight, self.alpha, self.patch_factor = loss_weight, alpha, int(patch_factor)
        self.ave_spectrum, self.log_matrix, self.batch_matrix = ave_spectrum, log_matrix, batch_matrix
        self.transform = transform

    def forward(self, pred: torch.Tensor, target: torch.Tensor, matrix: torch.Tensor | None = None) -> torch.Tensor:
        loss = focal_frequency_loss(pred, target, matrix, alpha=self.alpha, patch_factor=self.patch_factor,
                                    ave_spectrum=self.ave_spectrum, log_matrix=self.log_matrix,
                                    batch_matrix=self.batch_matrix, transform=self.transform)
        return loss * self.loss_weight

    def extra_repr(self) -> str:
        return (f"loss_weight={self.loss_weight}, alpha={self.alpha}, patch_factor={self.patch_factor}, "
                f"ave_spectrum={self.ave_spectrum}, log_matrix={self.log_matrix}, "
                f"batch_matrix={self.batch_matrix}, transform={self.transform!r}")


def dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2D DCT-II over the last two dimensions (= scipy.fft.dctn(x, type=2, norm="ortho"))."""
    return _dct(_dct(x).transpose(-1, -2)).transpose(-1, -2)


def _dct(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-II along the last dimension through one FFT (Makhoul 1980), so no matmul (TF32) is involved."""
    n = x.shape[-1]
    v = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    k = torch.arange(n, dtype=x.dtype, device=x.device)
    twiddle = torch.polar(torch.full_like(k, math.sqrt(2 / n)), -math.pi * k / (2 * n))
    twiddle[0] /= math.sqrt(2)
    return torch.real(torch.fft.fft(v) * twiddle)


def _difference(pred: torch.Tensor, target: torch.Tensor, patch_factor: int, ave_spectrum: bool) -> torch.Tensor:
    """pred - target in float32 (float64 stays) as N x P x C x h x w patches; with `ave_spectrum` the batch mean."""
    pred, target = (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x for x in (pred, target))
    diff = _patches(pred - target, patch_factor)
    return diff.mean(0, keepdim=True) if ave_spectrum else diff


def _patches(x: torch.Tensor, patch_factor: int) -> torch.Tensor:
    """N x C x H x W -> N x P x C x h x w, patch p = i * patch_factor + j (the official order)."""
    n, c, h, w = x.shape
    if patch_factor == 1:
        return x.unsqueeze(1)
    f = patch_factor
    return (x.reshape(n, c, f, h // f, f, w // f).permute(0, 2, 4, 1, 3, 5)
            .reshape(n, f * f, c, h // f, w // f))


def _predefined(matrix: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
    """A user-given weight matrix, detached, checked to lie in [0, 1], broadcast to the full spectrum."""
    try:
        matrix = torch.broadcast_to(matrix.detach().to(diff.dtype), diff.shape)
    except RuntimeError:
        raise ValueError(f"the spectrum weight matrix of shape {tuple(matrix.shape)} does not broadcast to the "
                         f"spectrum shape {tuple(diff.shape)} (N x P x C x H/P x W/P)") from None
    lo, hi = torch.aminmax(matrix)
    if lo < 0 or hi > 1:
        raise ValueError(f"the spectrum weight matrix must lie in [0, 1], got values in [{lo.item():.6g}, "
                         f"{hi.item():.6g}]")
    return matrix


class _HalfSpectrumLoss(torch.autograd.Function):
    """mean over the full orthonormal DFT of weight * |DFT(e)|^2 for real e, computed on the rfft2 half.

    Columns 1 .. (W-1)//2 of the half stand for themselves and their mirrors (-u, -v), so they count twice.
    The weights used are symmetric, w(u, v) = w(-u, -v): the dynamic ones are by construction, a predefined
    matrix M is replaced by (M(u, v) + M(-u, -v)) / 2, which leaves the loss unchanged because |DFT(e)|^2 is
    symmetric. Then w * DFT(e) is Hermitian and the gradient 2 / count * Re(IDFT(w * DFT(e))) is one
    irfft2 of the weighted half spectrum: no full spectrum is built forward or backward.

    The weight is a constant (detached, as in the official loss), so the gradient is linear in e. A first-order
    backward uses the saved weighted spectrum. Under `create_graph=True` (gradient penalties such as WGAN-GP or
    R1 differentiate the gradient again) the backward is rebuilt from differentiable ops instead: e is
    recomputed from `pred` and `target` by `difference` (the forward's own function, so its graph reaches
    them), the weight is recomputed without gradient, and the gradient is irfft2(w * rfft2(e)).
    """

    @staticmethod
    def forward(ctx, e: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, matrix: torch.Tensor | None,
                options: tuple, difference) -> torch.Tensor:
        spectrum = torch.fft.rfft2(e, norm="ortho")
        distance = spectrum.real.square().add_(spectrum.imag.square())
        weight = _half_weight(distance, matrix, options)
        loss = torch.sum(distance.mul_(weight).sum(-2) * _column_counts(e)) / e.numel()
        ctx.save_for_backward(spectrum.mul_(weight), pred, target, matrix)
        ctx.options, ctx.difference, ctx.size = options, difference, e.shape[-2:]
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        weighted, pred, target, matrix = ctx.saved_tensors
        if not torch.is_grad_enabled():  # first order: one irfft2 of the saved product
            grad = torch.fft.irfft2(weighted, s=ctx.size, norm="ortho")
            return grad.mul_(grad_loss * (2.0 / grad.numel())), None, None, None, None, None
        with torch.autocast(pred.device.type, enabled=False):  # create_graph: the gradient from differentiable ops
            e = ctx.difference(pred, target)
            spectrum = torch.fft.rfft2(e, norm="ortho")
            with torch.no_grad():
                weight = _half_weight(spectrum.real.square() + spectrum.imag.square(), matrix, ctx.options)
            grad = torch.fft.irfft2(spectrum * weight, s=ctx.size, norm="ortho")
            return grad * (grad_loss * (2.0 / grad.numel())), None, None, None, None, None


def _column_counts(e: torch.Tensor) -> torch.Tensor:
    """How often each rfft2 column counts in the full spectrum: 1 for column 0 (and an even W's Nyquist), else 2."""
    width = e.shape[-1]
    columns = torch.full((width // 2 + 1,), 2.0, dtype=e.dtype, device=e.device)
    columns[0] = 1.0
    if width % 2 == 0:
        columns[-1] = 1.0  # the Nyquist column is its own mirror
    return columns


def _half_weight(distance: torch.Tensor, matrix: torch.Tensor | None, options: tuple) -> torch.Tensor:
    """The weight on the rfft2 half: dynamic from the distances, or the symmetrised predefined matrix."""
    return spectrum_weight(distance, *options) if matrix is None else _symmetric_half(matrix)


def _symmetric_half(matrix: torch.Tensor) -> torch.Tensor:
    """(M(u, v) + M(-u, -v)) / 2 on the rfft2 half (columns 0 .. W//2) of a full-spectrum matrix M."""
    half = matrix.shape[-1] // 2 + 1
    mirrored = matrix.flip(-2, -1).roll((1, 1), (-2, -1))  # mirrored[..., u, v] = M[..., -u, -v]
    return (matrix[..., :half] + mirrored[..., :half]) / 2
