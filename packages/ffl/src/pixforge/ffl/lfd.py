"""Log Frequency Distance (thesis Eq. 5.11) and the full-reference scores reported beside it (PSNR, SSIM).

LFD follows the official evaluation (`metrics/metric_utils.py` of EndlessSora/focal-frequency-loss), so the
numbers compare with the thesis tables: per image, on 0..255 pixel values, with the unnormalised DFT of each
channel, LFD = log(mean over C, H, W of |F_r - F_f|^2 + 1); a set's LFD is the mean over its images.
By Parseval's theorem this equals log(H * W * MSE + 1) on 0..255 values; it is computed through the DFT as
defined. PSNR and SSIM come from `pixforge.core.metrics` on the same 0..255 values (data range 255).
LPIPS (`pixforge.core.lpips`, v0.1) is added when its weights are given: the lpips heads file, with the ImageNet
trunk found through `$PIXFORGE_ALEXNET_WEIGHTS` / `$PIXFORGE_VGG16_WEIGHTS` or the torch hub cache.
"""

from __future__ import annotations

import math

import torch

from pixforge.core.loop import progress
from pixforge.core.lpips import LPIPS
from pixforge.core.metrics import psnr, ssim
from pixforge.core.nets.inception import load_weights
from pixforge.export.errors import PixforgeError
from pixforge.ffl.images import matched_pairs, read_pair

Range = tuple[float, float]
METRICS = ("lfd", "psnr", "ssim")


def to_255(images: torch.Tensor, value_range: Range) -> torch.Tensor:
    """float64 copy of `images` mapped from `value_range` to 0..255."""
    lo, hi = value_range
    return (images.double() - lo) * (255.0 / (hi - lo))


def check_pair(real: torch.Tensor, fake: torch.Tensor, what: str = "lfd") -> None:
    """PixforgeError unless both are N x C x H x W of one shape with finite values."""
    if real.shape != fake.shape or real.ndim != 4 or real.shape[0] == 0:
        raise PixforgeError(f"{what} expects real and fake N x C x H x W batches of the same shape, got "
                            f"{tuple(real.shape)} and {tuple(fake.shape)}")
    for name, images in (("real", real), ("fake", fake)):
        if images.is_floating_point() and not torch.isfinite(images).all():
            raise PixforgeError(f"{what}: the {name} images hold NaN or infinite values")


def lfd(real: torch.Tensor, fake: torch.Tensor, value_range: Range = (0.0, 255.0),
        reduction: str = "mean") -> torch.Tensor:
    """Log Frequency Distance per image (`reduction="none"`, float64, shape N) or its mean; lower is better.

    `real`, `fake`: N x C x H x W, uint8 or float with values in `value_range` (e.g. (-1, 1) for a
    network's tanh output); they are mapped to 0..255 first, as the official evaluation reads image files.
    """
    check_pair(real, fake)
    if reduction not in ("mean", "none"):
        raise PixforgeError(f"unknown reduction {reduction!r}; choose 'mean' or 'none'")
    spectrum = torch.fft.fft2(to_255(real, value_range) - to_255(fake, value_range))  # = F_r - F_f (linear)
    per_image = torch.log((spectrum.real.square() + spectrum.imag.square()).mean(dim=(1, 2, 3)) + 1.0)
    return per_image.mean() if reduction == "mean" else per_image


def lpips_from_heads(lin_weights: str) -> LPIPS:
    """LPIPS with the lpips v0.1 heads file `lin_weights` (alex.pth or vgg.pth: told apart by their shapes)."""
    channels = load_weights(lin_weights).get("lin1.model.1.weight", torch.empty(0, 0)).shape[1:2]
    net = {(192,): "alex", (128,): "vgg"}.get(tuple(channels))
    if net is None:
        raise PixforgeError(f"{lin_weights} is not an lpips v0.1 alex.pth or vgg.pth heads file")
    return LPIPS(net, lin_weights=lin_weights)


def quality(real: torch.Tensor, fake: torch.Tensor, value_range: Range = (0.0, 255.0),
            lpips: LPIPS | None = None) -> dict[str, torch.Tensor]:
    """Per-image LFD, PSNR (dB) and SSIM of `fake` against `real` on 0..255 values: {name: float64 tensor N};
    with an `LPIPS` module also "lpips" (RGB images, mapped to [-1, 1])."""
    check_pair(real, fake, "quality")
    r, f = to_255(real, value_range), to_255(fake, value_range)
    scores = {"lfd": lfd(r, f, reduction="none"), "psnr": psnr(f, r, data_range=255.0, reduction="none").double(),
              "ssim": ssim(f, r, data_range=255.0, reduction="none").double()}
    if lpips is not None:
        with torch.no_grad():
            scores["lpips"] = lpips(r.float() / 127.5 - 1, f.float() / 127.5 - 1).double()
    return scores


def score_pairs(real: str, fake: str, quiet: bool = False, lpips_weights: str | None = None) -> dict:
    """LFD, PSNR and SSIM (and LPIPS given its heads file) of every fake image against the real image of the same
    name (two files or two folders).

    Returns {"real", "fake", "count", "metrics": summarize(...), "images": [{"name", "lfd", "psnr", "ssim"}]}.
    """
    pairs = matched_pairs(real, fake)
    lpips = lpips_from_heads(lpips_weights) if lpips_weights is not None else None
    rows = []
    with progress(len(pairs), desc="lfd", unit="image", disable=quiet or len(pairs) < 50) as bar:
        for name, real_file, fake_file in pairs:
            scores = quality(*read_pair(real_file, fake_file), lpips=lpips)
            rows.append({"name": name, **{k: float(v[0]) for k, v in scores.items()}})
            bar.update()
    metrics = METRICS + (("lpips",) if lpips is not None else ())
    summary = summarize({metric: [row[metric] for row in rows] for metric in metrics})
    return {"real": str(real), "fake": str(fake), "count": len(rows), "metrics": summary, "images": rows}


def summarize(per_image: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """{metric: values} -> {metric: {"mean", "std" (population), "count"}}."""
    summary = {}
    for name, values in per_image.items():
        mean = sum(values) / len(values)
        spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) if math.isfinite(mean) else math.nan
        summary[name] = {"mean": mean, "std": spread, "count": len(values)}
    return summary


def format_table(summary: dict[str, dict[str, float]]) -> str:
    """A plain-text mean/std table of `summarize`'s result."""
    arrows = {"lfd": "lower is better", "psnr": "dB, higher is better", "ssim": "higher is better",
              "lpips": "lower is better"}
    lines = [f"{'metric':<8}{'mean':>12}{'std':>12}{'images':>8}"]
    for name, s in summary.items():
        lines.append(f"{name.upper():<8}{s['mean']:>12.4f}{s['std']:>12.4f}{s['count']:>8}  "
                     f"({arrows.get(name, '')})")
    return "\n".join(lines)
