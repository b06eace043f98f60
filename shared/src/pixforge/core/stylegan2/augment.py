"""ADA's differentiable augmentation pipe for GAN discriminators (DiffAugment: `diffaugment.py`).

`AugmentPipe` follows `training/augment.py` of NVlabs' stylegan2-ada-pytorch (Karras et al., "Training Generative
Adversarial Networks with Limited Data", 2020): the same constructor knobs and defaults, the `p` buffer (0-d
float32, 1 at construction, the overall probability multiplier that ADA's controller adapts) and the `AUGPIPE_SPECS`
presets of NVlabs' `train.py`. Each enabled transform is applied to a sample with probability `p * strength`, its
parameters drawn per sample, in NVlabs' order (xflip, rotate90 and lumaflip then draw their parameter uniformly with
the identity among the choices, so e.g. a sample is mirrored with probability `p * xflip / 2`):

1. Geometric (pixel blitting: xflip, rotate90, xint; general: scale, pre-rotation, aniso, post-rotation, xfrac).
   All are composed into one inverse homogeneous 3x3 matrix per sample, `G_inv @ pixel_out = pixel_in`, in pixel
   units with the origin at the image centre (`translate2d`, `scale2d`, `rotate2d` build the matrices). The
   rotation probability is split over the pre- and post-rotation, `1 - sqrt(1 - rotate * p)` each. `warp_images`
   executes it once: reflect padding wide enough for the warped corners plus the filter support, 2x upsampling with
   the orthogonal sym6 wavelet low-pass, bilinear `grid_sample` (zeros outside, `align_corners=False`), then 2x
   downsampling with the same low-pass and a crop back to the input size. Because sym6 is orthogonal the
   up/down pair is a perfect reconstruction, so flips, quarter turns and integer shifts come out exact (to float
   rounding).
2. Colour (brightness, contrast, lumaflip, hue, saturation): one homogeneous 4x4 matrix per sample acting on RGB
   (`translate3d`, `scale3d`, `rotate3d` about the luma axis `(1, 1, 1) / sqrt(3)`, the Householder reflection
   `I - 2 v v^T` for lumaflip, `v v^T + s (I - v v^T)` for saturation), applied by `apply_color`. Single-channel
   images use the row mean of the RGB part as NVlabs does; hue and saturation are skipped for them.
3. Image-space filtering: 4 frequency bands from the sym2 wavelet (`Hz_fbank`, built as NVlabs builds it), each
   band's gain `2^N(0, imgfilter_std)` drawn with probability `p * imgfilter * band`, normalised to keep the
   expected 1/f power, applied as a separable per-sample filter with reflect padding.
4. Additive Gaussian noise (`|N(0, noise_std)|` per sample) and cutout (a `cutout_size` square, zeroed).

Differences from NVlabs, all of which leave the augmented distribution unchanged:

* A transform whose probability `strength * p` is 0 is skipped, random draws included, and with nothing enabled
  (`p == 0`) `forward` returns its input unchanged: NVlabs still resamples with an identity matrix then.
  Reading `p` costs one host sync per call; on the `meta` device `p` cannot be read and every enabled transform
  runs (the reflect padding then takes its upper bound, the output shape does not depend on it).
* The random draws use `generator` when one is given (drawn on its device, then moved), so they differ from
  NVlabs' stream; `debug_percentile` is not ported.
* Everything is computed in float32 (float64 stays float64) and cast back: bfloat16 and float16 inputs work.
* `grid_sample` is PyTorch's own; its double backward (R1 on augmented reals) works in current PyTorch, so NVlabs'
  `grid_sample_gradfix` / `conv2d_gradfix` are not needed.

Kornia: `kornia.filters.filter2d_separable` / `filter2d` run the sym6 low-pass of the 2x up- and downsampling and
the per-sample image-space filter bank (its 'reflect' border is `F.pad`'s, NVlabs' mode), and
`kornia.geometry.conversions.axis_angle_to_rotation_matrix` builds the hue rotation (Rodrigues, the same matrix as
NVlabs' `rotate3d`). Not kornia: the warp itself is `F.affine_grid` + `F.grid_sample` on the supersampled image,
since `kornia.geometry.warp_affine` inverts its matrix and has neither the 2x wavelet supersampling nor reflect
padding without edge repetition, so it cannot give NVlabs' result; the colour matrix is a matmul because
`kornia.enhance`'s adjust functions do not compose into one matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import filter2d, filter2d_separable
from kornia.geometry.conversions import axis_angle_to_rotation_matrix

# Low-pass (scaling) filters of the Daubechies symlets, as tabulated in PyWavelets (`pywt.Wavelet(name).dec_lo`).
SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)

_BLIT = {"xflip": 1, "rotate90": 1, "xint": 1}
_GEOM = {"scale": 1, "rotate": 1, "aniso": 1, "xfrac": 1}
_COLOR = {"brightness": 1, "contrast": 1, "lumaflip": 1, "hue": 1, "saturation": 1}
AUGPIPE_SPECS: dict[str, dict[str, float]] = {  # NVlabs train.py `augpipe_specs`
    "blit": dict(_BLIT),
    "geom": dict(_GEOM),
    "color": dict(_COLOR),
    "filter": {"imgfilter": 1},
    "noise": {"noise": 1},
    "cutout": {"cutout": 1},
    "bg": {**_BLIT, **_GEOM},
    "bgc": {**_BLIT, **_GEOM, **_COLOR},
    "bgcf": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1},
    "bgcfn": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1, "noise": 1},
    "bgcfnc": {**_BLIT, **_GEOM, **_COLOR, "imgfilter": 1, "noise": 1, "cutout": 1},
}

Number = float | int
Param = torch.Tensor | Number

# ----------------------------------------------------------------------------------------------------------------
# Random draws: from `generator` (on its device, then moved) or from the global RNG on `device`.


def rand(shape: Sequence[int], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.rand(list(shape), device=device)
    return torch.rand(list(shape), generator=generator, device=generator.device).to(device)


def randn(shape: Sequence[int], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.randn(list(shape), device=device)
    return torch.randn(list(shape), generator=generator, device=generator.device).to(device)


def randint(low: int, high: int, shape: Sequence[int], device: torch.device,
             generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.randint(low, high, list(shape), device=device)
    return torch.randint(low, high, list(shape), generator=generator, device=generator.device).to(device)


# ----------------------------------------------------------------------------------------------------------------
# Batched homogeneous matrices. Elements are tensors of one batch shape or Python numbers; the result has shape
# batch + (rows, cols), float32 unless a tensor element says otherwise.


def _matrix(rows: Sequence[Sequence[Param]], device: torch.device | str | None = None) -> torch.Tensor:
    elems = [e for row in rows for e in row]
    tensors = [e for e in elems if isinstance(e, torch.Tensor)]
    if tensors:
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
        dtype, device = tensors[0].dtype, tensors[0].device
    else:
        shape, dtype = torch.Size(), torch.float32
    cols = [e.to(dtype).expand(shape) if isinstance(e, torch.Tensor)
            else torch.full(shape, float(e), dtype=dtype, device=device) for e in elems]
    return torch.stack(cols, dim=-1).reshape(*shape, len(rows), len(rows[0]))


def translate2d(tx: Param, ty: Param, device: torch.device | str | None = None) -> torch.Tensor:
    """`[[1, 0, tx], [0, 1, ty], [0, 0, 1]]`: moves a point by (tx, ty)."""
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], device)


def scale2d(sx: Param, sy: Param, device: torch.device | str | None = None) -> torch.Tensor:
    """`diag(sx, sy, 1)`."""
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], device)


def rotate2d(theta: Param, device: torch.device | str | None = None) -> torch.Tensor:
    """Rotation by `theta` radians, `[[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]]` (x right, y down)."""
    t = theta if isinstance(theta, torch.Tensor) else torch.tensor(float(theta), device=device)
    c, s = torch.cos(t), torch.sin(t)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def translate3d(tx: Param, ty: Param, tz: Param, device: torch.device | str | None = None) -> torch.Tensor:
    """4x4 homogeneous translation by (tx, ty, tz) (brightness: the same offset on R, G, B)."""
    return _matrix([[1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1]], device)


def scale3d(sx: Param, sy: Param, sz: Param, device: torch.device | str | None = None) -> torch.Tensor:
    """`diag(sx, sy, sz, 1)` (contrast: the same factor on R, G, B)."""
    return _matrix([[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1]], device)


def rotate3d(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """4x4 homogeneous rotation by `theta` [B] radians about the unit `axis` (3 or 4 elements, the first three
    used), right-handed: Rodrigues' formula, computed by kornia's `axis_angle_to_rotation_matrix`."""
    theta = torch.as_tensor(theta, dtype=torch.float32)
    if theta.ndim == 0:
        theta = theta[None]
    rot = axis_angle_to_rotation_matrix(axis[:3].to(theta) * theta[:, None])  # [B, 3, 3]
    out = torch.zeros(theta.shape[0], 4, 4, dtype=rot.dtype, device=rot.device)
    out[:, :3, :3] = rot
    out[:, 3, 3] = 1
    return out


def luma_axis(device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The homogeneous luma axis `(1, 1, 1, 0) / sqrt(3)` that lumaflip, hue and saturation act around."""
    return torch.tensor([1.0, 1.0, 1.0, 0.0], device=device, dtype=dtype) / math.sqrt(3)


def lumaflip3d(i: torch.Tensor) -> torch.Tensor:
    """`I - 2 v v^T i` per sample: the Householder reflection of the luma component where `i` [B] is 1."""
    v = luma_axis(i.device, i.dtype)
    return torch.eye(4, dtype=i.dtype, device=i.device) - 2 * torch.outer(v, v) * i[:, None, None]


def saturate3d(s: torch.Tensor) -> torch.Tensor:
    """`v v^T + s (I - v v^T)` per sample: keeps the luma component, scales the chroma by `s` [B]."""
    v = luma_axis(s.device, s.dtype)
    vv = torch.outer(v, v)
    return vv + (torch.eye(4, dtype=s.dtype, device=s.device) - vv) * s[:, None, None]


# ----------------------------------------------------------------------------------------------------------------
# Filters.


def geom_filter() -> torch.Tensor:
    """NVlabs' `Hz_geom`: the sym6 low-pass normalised to sum 1 (float32, 12 taps)."""
    f = torch.tensor(SYM6, dtype=torch.float64)
    return (f / f.sum()).float()


def filter_bank() -> torch.Tensor:
    """NVlabs' `Hz_fbank` [4, 43]: the 1-D responses of 4 octave bands (lowest first) built from the sym2
    half-band pair `H(z) H(1/z) / 2`, `H(-z) H(-1/z) / 2`; the rows sum to the unit impulse."""
    lo = np.asarray(SYM2)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bands = [np.ones(1)] + [np.zeros(1)] * 3
    for i in range(1, 4):
        # Stretch every band by 2 (zero insertion), smooth with the half-band low-pass, add the high-pass to band i.
        stretched = []
        for b in bands:
            z = np.zeros(2 * b.size - 1)
            z[::2] = b
            stretched.append(np.convolve(z, lo2))
        n = stretched[0].size
        start = (n - hi2.size) // 2
        stretched[i][start:start + hi2.size] += hi2
        bands = stretched
    return torch.tensor(np.stack(bands), dtype=torch.float32)


def _upsample2x(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """NVlabs `upsample2d(x, f, up=2)` for a separable 1-D `f` of even length: zero insertion, then a true
    convolution with `2 f` per axis keeping the size exactly 2x."""
    b, c, h, w = x.shape
    x = F.pad(x.reshape(b, c, h, 1, w, 1), [0, 1, 0, 0, 0, 1]).reshape(b, c, 2 * h, 2 * w)
    k = f.shape[0]
    p0, p1 = (k + 1) // 2, (k - 2) // 2
    x = F.pad(x, [p0, p1, p0, p1])
    kern = (2 * f).flip(0)[None].to(x)
    return filter2d_separable(x, kern, kern, padding="valid")


def _downsample2x(x: torch.Tensor, f: torch.Tensor, crop: int) -> torch.Tensor:
    """NVlabs `downsample2d(x, f, down=2, padding=-crop, flip_filter=True)`: correlate with `f` per axis, keep every
    second sample, after cropping so that the output is `(size - 2 crop) / 2`."""
    k = f.shape[0]
    c0, c1 = crop - (k - 1) // 2, crop - (k - 2) // 2  # what is left to crop once the filter support is counted
    x = x[:, :, c0: x.shape[2] - c1, c0: x.shape[3] - c1]
    kern = f.to(x)
    x = filter2d(x, kern[None, None, :], padding="valid")[:, :, :, ::2]
    return filter2d(x, kern[None, :, None], padding="valid")[:, :, ::2, :]


# ----------------------------------------------------------------------------------------------------------------
# Executing sampled transforms.


def warp_images(images: torch.Tensor, G_inv: torch.Tensor, Hz_geom: torch.Tensor | None = None) -> torch.Tensor:
    """Resample `images` [B, C, H, W] so that output pixel `q` reads input pixel `G_inv[b] @ q` (homogeneous, pixel
    units, origin at the image centre), with reflect padding and 2x sym6 supersampling as NVlabs' AugmentPipe."""
    batch, channels, height, width = images.shape
    device = images.device
    f = (geom_filter() if Hz_geom is None else Hz_geom).to(device=device, dtype=images.dtype)
    G_inv = G_inv.to(device=device, dtype=images.dtype).expand(batch, 3, 3)
    pad = f.shape[0] // 4

    # Reflect-pad so that every warped corner, widened by the filter support, lies inside the padded image.
    cx, cy = (width - 1) / 2, (height - 1) / 2
    if device.type == "meta":
        mx0, my0, mx1, my1 = width - 1, height - 1, width - 1, height - 1
    else:
        corners = torch.tensor([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]], device=device,
                               dtype=G_inv.dtype)
        cp = (G_inv @ corners)[:, :2, :].transpose(0, 1).flatten(1)  # [xy, batch * corner]
        margin = torch.cat([-cp, cp]).amax(dim=1)  # x0, y0, x1, y1
        margin = margin + margin.new_tensor([2 * pad - cx, 2 * pad - cy] * 2)
        margin = torch.minimum(margin.clamp(min=0), margin.new_tensor([width - 1, height - 1] * 2))
        mx0, my0, mx1, my1 = (int(m) for m in margin.ceil().tolist())
    images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
    G_inv = translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, device=device).to(G_inv) @ G_inv

    # Upsample 2x; the filter's even length puts a point q of the padded image at 2 q - 0.5 in the upsampled one.
    images = _upsample2x(images, f)
    to_up = translate2d(-0.5, -0.5, device=device) @ scale2d(2, 2, device=device)
    from_up = scale2d(0.5, 0.5, device=device) @ translate2d(0.5, 0.5, device=device)
    G_inv = to_up.to(G_inv) @ G_inv @ from_up.to(G_inv)

    # Sample the output grid (the input size plus the filter margin, at 2x) in grid_sample's [-1, 1] coordinates.
    out_h, out_w = (height + 2 * pad) * 2, (width + 2 * pad) * 2
    in_h, in_w = images.shape[2], images.shape[3]
    G_inv = (scale2d(2 / in_w, 2 / in_h, device=device).to(G_inv) @ G_inv
             @ scale2d(out_w / 2, out_h / 2, device=device).to(G_inv))
    grid = F.affine_grid(G_inv[:, :2, :], [batch, channels, out_h, out_w], align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # Downsample 2x and drop the margin.
    return _downsample2x(images, f, crop=2 * pad)


def apply_color(images: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Apply per-sample homogeneous colour matrices `C` [B, 4, 4] to RGB images (`rgb' = C[:3, :3] rgb + C[:3, 3]`);
    single-channel images use the mean of the three rows, as NVlabs."""
    batch, channels, height, width = images.shape
    C = C.to(images)
    flat = images.reshape(batch, channels, height * width)
    if channels == 3:
        flat = C[:, :3, :3] @ flat + C[:, :3, 3:]
    elif channels == 1:
        row = C[:, :3, :].mean(dim=1, keepdim=True)  # [B, 1, 4]
        flat = flat * row[:, :, :3].sum(dim=2, keepdim=True) + row[:, :, 3:]
    else:
        raise ValueError(f"colour augmentation needs RGB (3 channels) or L (1 channel) images, got {channels}")
    return flat.reshape(batch, channels, height, width)


def apply_band_filter(images: torch.Tensor, gains: torch.Tensor, Hz_fbank: torch.Tensor | None = None) -> torch.Tensor:
    """Filter each sample with `gains[b] @ Hz_fbank` separably (reflect padding): band gains [B, 4]."""
    bank = (filter_bank() if Hz_fbank is None else Hz_fbank).to(images)
    kern = gains.to(images) @ bank  # [B, taps]
    return filter2d_separable(images, kern, kern, border_type="reflect", padding="same")


# ----------------------------------------------------------------------------------------------------------------
# The pipe.

_KNOBS = ("xflip", "rotate90", "xint", "xint_max", "scale", "rotate", "aniso", "xfrac", "scale_std", "rotate_max",
          "aniso_std", "xfrac_std", "brightness", "contrast", "lumaflip", "hue", "saturation", "brightness_std",
          "contrast_std", "hue_max", "saturation_std", "imgfilter", "imgfilter_std", "noise", "cutout", "noise_std",
          "cutout_size")

Prob = float | torch.Tensor  # a probability: a Python float, or a tensor where p cannot be read (meta)


class AugmentPipe(torch.nn.Module):
    """ADA's augmentation pipe (NVlabs `AugmentPipe`); see the module docstring. Every transform is off by default;
    a strength of 1 applies it with probability `p`. Buffers: `p`, `Hz_geom`, `Hz_fbank` (NVlabs' names)."""

    def __init__(self,
                 xflip: float = 0, rotate90: float = 0, xint: float = 0, xint_max: float = 0.125,
                 scale: float = 0, rotate: float = 0, aniso: float = 0, xfrac: float = 0, scale_std: float = 0.2,
                 rotate_max: float = 1, aniso_std: float = 0.2, xfrac_std: float = 0.125,
                 brightness: float = 0, contrast: float = 0, lumaflip: float = 0, hue: float = 0,
                 saturation: float = 0, brightness_std: float = 0.2, contrast_std: float = 0.5, hue_max: float = 1,
                 saturation_std: float = 1,
                 imgfilter: float = 0, imgfilter_bands: Sequence[float] = (1, 1, 1, 1), imgfilter_std: float = 1,
                 noise: float = 0, cutout: float = 0, noise_std: float = 0.1, cutout_size: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("p", torch.ones([]))  # overall probability multiplier (ADA adapts it)
        # Pixel blitting: probability multipliers; integer translation range relative to the image size.
        self.xflip, self.rotate90, self.xint = float(xflip), float(rotate90), float(xint)
        self.xint_max = float(xint_max)
        # General geometry: multipliers; log2 std of scaling, rotation range (1 = full circle), std of translation.
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.scale_std, self.rotate_max = float(scale_std), float(rotate_max)
        self.aniso_std, self.xfrac_std = float(aniso_std), float(xfrac_std)
        # Colour: multipliers; brightness std, log2 std of contrast and saturation, hue range (1 = full circle).
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.brightness_std, self.contrast_std = float(brightness_std), float(contrast_std)
        self.hue_max, self.saturation_std = float(hue_max), float(saturation_std)
        # Image-space filtering: multiplier, per-band multipliers, log2 std of the band gains.
        self.imgfilter, self.imgfilter_std = float(imgfilter), float(imgfilter_std)
        self.imgfilter_bands = [float(b) for b in imgfilter_bands]
        # Corruptions: multipliers; noise std; cutout square size relative to the image size.
        self.noise, self.cutout = float(noise), float(cutout)
        self.noise_std, self.cutout_size = float(noise_std), float(cutout_size)

        self.register_buffer("Hz_geom", geom_filter())
        self.register_buffer("Hz_fbank", filter_bank())
        if len(self.imgfilter_bands) != self.Hz_fbank.shape[0]:
            raise ValueError(f"imgfilter_bands needs {self.Hz_fbank.shape[0]} entries, got {len(self.imgfilter_bands)}")

    @classmethod
    def from_spec(cls, name: str, **overrides: float) -> AugmentPipe:
        """The pipe of one of NVlabs' `--augpipe` presets (`AUGPIPE_SPECS`), knobs overridable."""
        if name not in AUGPIPE_SPECS:
            raise ValueError(f"unknown augpipe {name!r}; expected one of {sorted(AUGPIPE_SPECS)}")
        return cls(**{**AUGPIPE_SPECS[name], **overrides})

    def extra_repr(self) -> str:
        on = [f"{k}={getattr(self, k):g}" for k in _KNOBS if k in AUGPIPE_SPECS["bgcfnc"] and getattr(self, k) > 0]
        return ", ".join(on) or "identity"

    # ---- probabilities

    def _p_now(self, device: torch.device) -> Prob:
        """`p` as a float, or as a tensor on `device` where it cannot be read (meta)."""
        if device.type == "meta" or self.p.device.type == "meta":
            return self.p.to(device=device, dtype=torch.float32)
        return float(self.p)

    @staticmethod
    def _on(strength: float, p: Prob) -> bool:
        return strength > 0 and (isinstance(p, torch.Tensor) or strength * p > 0)

    # ---- sampling

    def sample_geometric(self, batch: int, height: int, width: int, device: torch.device,
                         generator: torch.Generator | None = None, p: Prob | None = None) -> torch.Tensor | None:
        """Per-sample `G_inv` [B, 3, 3] (output pixel -> input pixel), or None when no geometric transform is on."""
        p = self._p_now(device) if p is None else p
        on = self._on
        G_inv: torch.Tensor | None = None

        def compose(m: torch.Tensor) -> None:
            nonlocal G_inv
            G_inv = m if G_inv is None else G_inv @ m

        def gate(values: torch.Tensor, prob: Prob, identity: float) -> torch.Tensor:
            shape = values.shape[:1] + (1,) * (values.ndim - 1)
            return torch.where(rand(shape, device, generator) < prob, values, torch.full_like(values, identity))

        if on(self.xflip, p):
            i = torch.floor(rand([batch], device, generator) * 2)
            i = gate(i, self.xflip * p, 0)
            compose(scale2d(1 / (1 - 2 * i), 1))
        if on(self.rotate90, p):
            i = torch.floor(rand([batch], device, generator) * 4)
            i = gate(i, self.rotate90 * p, 0)
            compose(rotate2d(math.pi / 2 * i))  # inverse of a rotation by -pi/2 i
        if on(self.xint, p):
            t = (rand([batch, 2], device, generator) * 2 - 1) * self.xint_max
            t = gate(t, self.xint * p, 0)
            compose(translate2d(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height)))
        if on(self.scale, p):
            s = torch.exp2(randn([batch], device, generator) * self.scale_std)
            s = gate(s, self.scale * p, 1)
            compose(scale2d(1 / s, 1 / s))
        # Pre- and post-rotation each with p_rot, so that P(pre or post) = rotate * p.
        p_rot: Prob = (1 - torch.sqrt((1 - self.rotate * p).clamp(0, 1)) if isinstance(p, torch.Tensor)
                       else 1 - math.sqrt(min(max(1 - self.rotate * p, 0.0), 1.0)))
        if on(self.rotate, p):
            theta = (rand([batch], device, generator) * 2 - 1) * math.pi * self.rotate_max
            compose(rotate2d(gate(theta, p_rot, 0)))  # inverse of a rotation by -theta
        if on(self.aniso, p):
            s = torch.exp2(randn([batch], device, generator) * self.aniso_std)
            s = gate(s, self.aniso * p, 1)
            compose(scale2d(1 / s, s))
        if on(self.rotate, p):
            theta = (rand([batch], device, generator) * 2 - 1) * math.pi * self.rotate_max
            compose(rotate2d(gate(theta, p_rot, 0)))
        if on(self.xfrac, p):
            t = randn([batch, 2], device, generator) * self.xfrac_std
            t = gate(t, self.xfrac * p, 0)
            compose(translate2d(-t[:, 0] * width, -t[:, 1] * height))
        return G_inv

    def sample_color(self, batch: int, channels: int, device: torch.device, generator: torch.Generator | None = None,
                     p: Prob | None = None) -> torch.Tensor | None:
        """Per-sample colour matrix `C` [B, 4, 4] (`C @ rgb1`), or None when no colour transform is on."""
        p = self._p_now(device) if p is None else p
        on = self._on
        C: torch.Tensor | None = None

        def compose(m: torch.Tensor) -> None:
            nonlocal C
            C = m if C is None else m @ C

        def gate(values: torch.Tensor, prob: Prob, identity: float) -> torch.Tensor:
            return torch.where(rand([batch], device, generator) < prob, values, torch.full_like(values, identity))

        if on(self.brightness, p):
            b = gate(randn([batch], device, generator) * self.brightness_std, self.brightness * p, 0)
            compose(translate3d(b, b, b))
        if on(self.contrast, p):
            c = gate(torch.exp2(randn([batch], device, generator) * self.contrast_std), self.contrast * p, 1)
            compose(scale3d(c, c, c))
        if on(self.lumaflip, p):
            i = gate(torch.floor(rand([batch], device, generator) * 2), self.lumaflip * p, 0)
            compose(lumaflip3d(i))
        if on(self.hue, p) and channels > 1:
            theta = (rand([batch], device, generator) * 2 - 1) * math.pi * self.hue_max
            compose(rotate3d(luma_axis(device), gate(theta, self.hue * p, 0)))
        if on(self.saturation, p) and channels > 1:
            s = gate(torch.exp2(randn([batch], device, generator) * self.saturation_std), self.saturation * p, 1)
            compose(saturate3d(s))
        return C

    def sample_band_gains(self, batch: int, device: torch.device, generator: torch.Generator | None = None,
                          p: Prob | None = None) -> torch.Tensor | None:
        """Per-sample band gains [B, 4] for `apply_band_filter`, or None when image filtering is off."""
        p = self._p_now(device) if p is None else p
        if not self._on(self.imgfilter, p):
            return None
        num_bands = self.Hz_fbank.shape[0]
        expected_power = torch.tensor([10.0, 1.0, 1.0, 1.0], device=device) / 13  # 1/f spectrum of natural images
        g = torch.ones([batch, num_bands], device=device)
        eye = torch.eye(num_bands, dtype=torch.bool, device=device)
        for i, band_strength in enumerate(self.imgfilter_bands):
            if not self._on(self.imgfilter * band_strength, p):
                continue  # a unit gain vector stays the identity after the power normalisation
            t_i = torch.exp2(randn([batch], device, generator) * self.imgfilter_std)
            t_i = torch.where(rand([batch], device, generator) < self.imgfilter * p * band_strength, t_i,
                              torch.ones_like(t_i))
            t = torch.where(eye[i], t_i[:, None], torch.ones_like(g))
            g = g * t / (expected_power * t.square()).sum(dim=-1, keepdim=True).sqrt()
        return g

    # ---- forward

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch [B, C, H, W]; differentiable w.r.t. `images`. `generator` makes the draws reproducible."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError("AugmentPipe expects a [B, C, H, W] tensor")
        batch, channels, height, width = images.shape
        device = images.device
        p = self._p_now(device)
        work = torch.float64 if images.dtype == torch.float64 else torch.float32
        x = images

        G_inv = self.sample_geometric(batch, height, width, device, generator, p)
        if G_inv is not None:
            x = warp_images(x.to(work), G_inv, self.Hz_geom)

        C = self.sample_color(batch, channels, device, generator, p)
        if C is not None:
            x = apply_color(x.to(work), C)

        gains = self.sample_band_gains(batch, device, generator, p)
        if gains is not None:
            x = apply_band_filter(x.to(work), gains, self.Hz_fbank)

        if self._on(self.noise, p):
            sigma = randn([batch, 1, 1, 1], device, generator).abs() * self.noise_std
            sigma = torch.where(rand([batch, 1, 1, 1], device, generator) < self.noise * p, sigma,
                                torch.zeros_like(sigma))
            x = x.to(work) + randn([batch, channels, height, width], device, generator).to(work) * sigma.to(work)

        if self._on(self.cutout, p):
            size = torch.full([batch], self.cutout_size, device=device)
            size = torch.where(rand([batch], device, generator) < self.cutout * p, size, torch.zeros_like(size))
            center = rand([batch, 2], device, generator)
            xs = (torch.arange(width, device=device) + 0.5) / width
            ys = (torch.arange(height, device=device) + 0.5) / height
            keep_x = (xs[None, :] - center[:, :1]).abs() >= size[:, None] / 2  # [B, W]
            keep_y = (ys[None, :] - center[:, 1:]).abs() >= size[:, None] / 2  # [B, H]
            mask = keep_x[:, None, :] | keep_y[:, :, None]
            x = x.to(work) * mask[:, None].to(work)

        return x.to(images.dtype)
