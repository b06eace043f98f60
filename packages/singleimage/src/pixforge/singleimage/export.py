"""`export --run RUN --out M.onnx [--size HxW]`: a finished run's sampler as ONNX, with the pixforge metadata that lets
`pixforge-run` draw samples from it (no torch).

Both graphs take standard-normal noise only, with dynamic batch and spatial sizes: the noise's size sets the output's,
at any aspect, and the noise is exactly what `sample` draws in PyTorch (so the same noise gives the same image).

    PetsGAN   one input `noise`, N x 1 x h x w (the layout's noise at 1/f of the output); the graph is the paper's
              sampler G -> PT -> IR: the positional encoding is computed inside the graph for h x w, PT matches
              against the run's c_I (a constant) at the sampling temperature, IR restores x f; output
              N x 3 x fh x fw.
    SinGAN    one noise input per scale, coarsest first: `noise0` N x 1 x h0 x w0 (one channel, repeated over RGB
              inside the graph, as the official code draws it), `noise1` ... `noiseK` N x 3 x hk x wk; scale k's
              output is upsampled (bicubic) to the size of noise k+1, so the noise maps define the pyramid; output
              N x 3 x hK x wK. Per-scale inputs rather than one seed input keep the graph free of random ops and
              make it the PyTorch sampler, noise for noise; their sizes must increase from scale to scale.

The metadata's noise shapes are fixed numbers, the pyramid at `--size` (default: the training size), since a
generator has no input image to take its size from: `pixforge-run run M.onnx --count 16 --out DIR [--seed S]` draws
samples of that size (item i's noise from (S, i)). The metadata also stores the rule from an output size to the
noise shapes (`extra["size_rule"]`, read by the torch-free `pixforge.export.sizing`), so that `pixforge-run run
M.onnx --count 16 --size HxW --out DIR` draws any other size: PetsGAN rule `divide` (ceil(H / f) x ceil(W / f),
H and W multiples of f), SinGAN rule `pyramid` (the training pyramid stretched by H / H_top and W / W_top, rounded
half to even: `SinGAN.scaled_sizes`), each with the run's minimum size. onnxruntime callers may feed any noise.

`--fp16` exports a half-precision graph through `pixforge.core.onnx.export_onnx(fp16=True)` (the path tsit and
dfvae use): weights and activations float16, the noise inputs and the image output float16 too (`pixforge-run`
casts its float32 noise to the graph's type and reads float16 back as float32). PetsGAN keeps PT (VGG features and
the patch matching, 39k weights) in float32 inside the graph: its softmax at tau 1e-5 divides cosines by 1e-5,
which overflows float16 (max 65504). onnxruntime's CPU provider has no float16 kernel for some operators and
runs those in float32 behind inserted casts (same results, no speed-up); the CUDA provider runs them in float16.
The check compares the float16 graph with the float32 PyTorch sampler at `FP16_TOLERANCE`.
"""

from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.core.cli import output_file
from pixforge.export.errors import PixforgeError
from pixforge.export.metadata import ModelMeta, TensorSpec
from pixforge.singleimage.data import parse_size
from pixforge.singleimage.petsgan_model import MIN_SAMPLE_LR, TAU_JOINT, PetsGAN
from pixforge.singleimage.sample import load_model
from pixforge.singleimage.singan import SinGAN

# ONNX vs PyTorch, absolute and relative, on outputs in [-1, 1] (one 8-bit level is 2 / 255 = 0.0078). PetsGAN's is
# looser: PT's softmax at tau 1e-5 turns float32 differences of 1e-7 in the cosines into attention weights that move
# by 1e-3 and more (measured up to 5e-3 at 20x40 layouts; PyTorch alone differs by 2e-4 between batch sizes).
TOLERANCE = {"singan": 1e-3, "petsgan": 1e-2}
# A float16 graph against the float32 PyTorch sampler (float16 has 11 significant bits: 5e-4 relative per op).
FP16_TOLERANCE = {"singan": 5e-2, "petsgan": 5e-2}


class PetsGANSampler(nn.Module):
    """noise N x 1 x h x w -> IR(PT(G(noise), c_I)) clamped to [-1, 1], N x 3 x fh x fw."""

    def __init__(self, model: PetsGAN):
        super().__init__()
        self.G, self.PT, self.IR = model.G, model.PT, model.IR
        self.register_buffer("ref", model.ref.clone())

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        layout = self.G(noise)  # PT in float32 (a no-op in a float32 graph): b / tau overflows float16
        matched = self.PT(layout.float(), self.ref.float(), TAU_JOINT)[0].to(layout.dtype)
        return self.IR(matched).clamp(-1, 1)

    def half(self) -> PetsGANSampler:
        """G and IR in float16, PT and c_I kept in float32 (see `forward`)."""
        self.G.half()
        self.IR.half()
        return self


class SinGANSampler(nn.Module):
    """(noise0, ..., noiseK) -> the pyramid's output clamped to [-1, 1]: `singan.run_pyramid` with the upsampling
    written as one bicubic interpolation to the next noise's size (what `data.resize` does when enlarging), so that
    the sizes stay symbolic in the export."""

    def __init__(self, model: SinGAN):
        super().__init__()
        self.gens = nn.ModuleList(model.gens)
        self.amps = [float(a) for a in model.amps]

    def forward(self, *noises: torch.Tensor) -> torch.Tensor:
        out = None
        for k, (G, amp, z) in enumerate(zip(self.gens, self.amps, noises, strict=True)):
            if k == 0:
                z = z.expand(-1, 3, -1, -1)
                prev = torch.zeros_like(z)
            else:
                prev = F.interpolate(out, size=z.shape[-2:], mode="bicubic", align_corners=False)
            out = G(amp * z + prev, prev)
        return out.clamp(-1, 1)


@dataclass
class Graph:
    """A run's sampler as an exported graph: the module, the noise shapes (N x C x h x w, one per input) at the
    export size and at a check size of another aspect, the metadata and torch.export's dynamic shapes."""

    module: nn.Module
    shapes: list[tuple[int, int, int]]
    check_shapes: list[tuple[int, int, int]]
    meta: ModelMeta
    dynamic: tuple


def _noise_sizes(model, size: tuple[int, int]) -> list[tuple[int, int, int]]:
    """(channels, h, w) of every noise input for an output of `size`."""
    if isinstance(model, PetsGAN):
        return [(1, math.ceil(size[0] / model.factor), math.ceil(size[1] / model.factor))]
    return [(1 if k == 0 else 3, h, w) for k, (h, w) in enumerate(model.scaled_sizes(size))]


def _check_size(model, size: tuple[int, int]) -> tuple[int, int]:
    """Another aspect than `size` for the parity check: 1.5 x as wide, a multiple of PetsGAN's factor."""
    h, w = size
    w = math.ceil(1.5 * w)
    if isinstance(model, PetsGAN):
        w = math.ceil(w / model.factor) * model.factor
    return h, w


def graph(model, size: tuple[int, int] | None = None, source: str = "") -> Graph:
    """The exported graph of a loaded run (`sample.load_model`) whose metadata noise shapes give `size` (H, W;
    default the training size; PetsGAN: multiples of its factor f)."""
    from pixforge.singleimage import __version__

    train_size = tuple(model.sizes[-1])
    size = tuple(size or train_size)
    low = model.min_size()
    if size[0] < low[0] or size[1] < low[1]:
        raise PixforgeError(f"--size {size[0]}x{size[1]} is below this run's minimum {low[0]}x{low[1]}")
    batch = torch.export.Dim("batch", min=1)
    if isinstance(model, PetsGAN):
        f = model.factor
        if size[0] % f or size[1] % f:
            raise PixforgeError(f"--size {size[0]}x{size[1]}: a PetsGAN graph outputs {f}x its noise's size, so give "
                                f"multiples of {f} (the run's --downscale)")
        module, method = PetsGANSampler(model), "petsgan"
        names, lowest = ["noise"], MIN_SAMPLE_LR
        descriptions = [f"the layout's noise, standard normal; the output is {f}x its height and width"]
    else:
        module, method = SinGANSampler(model), "singan"
        names, lowest = [f"noise{k}" for k in range(len(model.gens))], 2
        descriptions = ["scale 0 (coarsest) noise, standard normal, one channel repeated over RGB"]
        descriptions += [f"scale {k} noise, standard normal; sets scale {k}'s size" for k in range(1, len(names))]
    shapes = _noise_sizes(model, size)
    specs = [TensorSpec(name, kind="noise", shape=["N", *shape], description=text)
             for name, shape, text in zip(names, shapes, descriptions, strict=True)]
    dynamic = tuple({0: batch, 2: torch.export.Dim(f"h{k}", min=lowest), 3: torch.export.Dim(f"w{k}", min=lowest)}
                    for k in range(len(names)))
    if method == "singan":  # forward(*noises): torch.export nests the variadic inputs' shapes in one tuple
        dynamic = (dynamic,)
    out = TensorSpec("image", kind="image", range=(-1.0, 1.0), description="sample, RGB")
    extra = {"method": method, "training_size": list(train_size), "size": list(size), "source": source,
             "noise_sizes": [list(s[1:]) for s in shapes]}
    if method == "petsgan":
        extra["downscale"] = model.factor
        rule = {"rule": "divide", "factor": model.factor}
    else:
        rule = {"rule": "pyramid", "sizes": [list(s) for s in model.sizes], "rounding": "half-even"}
    extra["size_rule"] = {**rule, "min": list(low), "default": list(size)}
    meta = ModelMeta("pixforge-singleimage", __version__, "generate", specs, [out], extra)
    return Graph(module.eval(), shapes, _noise_sizes(model, _check_size(model, size)), meta, dynamic)


def noise_inputs(shapes: list[tuple[int, int, int]], n: int, seed: int = 0) -> list[torch.Tensor]:
    """Standard-normal noise of the given (C, h, w) shapes, batch `n`, from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, *shape, generator=gen) for shape in shapes]


def export(run: str, out: str = "model.onnx", size: str | None = None, check: bool = True, overwrite: bool = False,
           quiet: bool = False, fp16: bool = False) -> Path:
    """Export the sampler of the finished run --run to the ONNX file --out: noise inputs only (PetsGAN: one layout
    noise; SinGAN: one per scale), dynamic batch and spatial size, pixforge metadata whose noise shapes give --size
    HxW (default: the training size; PetsGAN: multiples of its --downscale; at most 4096x4096 pixels in area) and the
    rule for any other size.
    Checked against PyTorch with onnxruntime at --size and at a 1.5x wider size (--nocheck: skip); tolerance 1e-3,
    PetsGAN 1e-2 (its patch matching is ill-conditioned; with --pt-passes > 1 the one-pass graph is checked: over
    several passes the runtimes' rounding picks other patches). --fp16: a half-precision graph (float16 weights;
    PetsGAN's patch matching stays float32), checked against the float32 sampler at tolerance 5e-2. Draw samples
    with `pixforge-run run OUT --count 16 [--size HxW] --out DIR [--seed S]`."""
    from pixforge.core.onnx import export_onnx, verify_onnx

    model = load_model(run)
    g = graph(model, parse_size(size), str(Path(run).resolve()))
    path = output_file(out, ".onnx", overwrite)
    names = [s.name for s in g.meta.inputs]
    _note(f"exporting {run} ({g.meta.extra['method']}) to {path}", quiet)
    export_onnx(g.module, noise_inputs(g.shapes, 2), path, input_names=names, output_names=["image"],
                inputs=g.meta.inputs, outputs=g.meta.outputs, package=g.meta.package, version=g.meta.version,
                task=g.meta.task, extra={**g.meta.extra, "precision": "float16" if fp16 else "float32"},
                dynamic_shapes=g.dynamic, fp16=fp16)
    if check:
        tol = (FP16_TOLERANCE if fp16 else TOLERANCE)[g.meta.extra["method"]]
        passes = getattr(getattr(model, "PT", None), "passes", 1)
        if passes == 1:
            _note(f"checking {path} against PyTorch (float32) with onnxruntime at two sizes", quiet)
            for shapes in (g.shapes, g.check_shapes):
                verify_onnx(path, g.module, noise_inputs(shapes, 1, seed=1), atol=tol, rtol=tol)
        else:  # repeated matching at tau 1e-5 turns rounding into other patch choices: the one-pass graph is checked
            _note(f"checking the graph with one of its {passes} PT passes against PyTorch (float32) with "
                  "onnxruntime at two sizes (over several passes the runtimes' rounding picks other patches)", quiet)
            model.PT.passes = 1
            one = graph(model, parse_size(size), str(Path(run).resolve()))
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                single = Path(tmp) / "one-pass.onnx"
                export_onnx(one.module, noise_inputs(one.shapes, 2), single, input_names=names, output_names=["image"],
                            inputs=one.meta.inputs, outputs=one.meta.outputs, package=one.meta.package,
                            version=one.meta.version, task=one.meta.task, extra=one.meta.extra,
                            dynamic_shapes=one.dynamic, fp16=fp16)
                for shapes in (one.shapes, one.check_shapes):
                    verify_onnx(single, one.module, noise_inputs(shapes, 1, seed=1), atol=tol, rtol=tol)
    return path


def _note(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"pixforge-singleimage: {message}", file=sys.stderr, flush=True)
