"""ONNX export of a trained DF-VAE's face network, with the pixforge metadata that describes its inputs, and the torch
session that runs the same graph for `swap` (so PyTorch and ONNX swaps share one code path, as tsit's translate).

The graph is the whole face network (E_α, E_β, D_γ, MAdaIN fusion with D_δ and the blend), on aligned crops at the
model's resolution S (fixed) and any batch size:

    target     (N, 3, S, S) RGB in [-1, 1]   the aligned target face crop y_t
    heatmaps   (N, 68, S, S) in [0, 1]       its landmark heatmaps ŷ_t (`heatmaps.landmark_heatmaps`, σ = 2 S / 128)
    reference  (N, 3, S, S) RGB in [-1, 1]   an aligned crop of the source identity (x', E_β's input)
    mask       (N, 1, S, S) in [0, 1]        the target's blurred face mask m^b (`masks.blur_mask(face_mask)`, σ = S/32)
    -> swapped (N, 3, S, S) RGB in [-1, 1]   the source's face in the target crop (background = the target crop)

Exported as `SwapGraph` over `sub_pixel(model)`: each nearest x2 upsampling + 3x3 convolution of the decoders as one
stride-2 transposed convolution (`SubPixelUp`, the module swap's torch path `InferenceGraph` runs too; ~17 % fewer
multiply-adds a face at 128 px), and checked against the model as trained.

Face tracking, alignment and paste-back happen outside the graph (`pixforge.dfvae.swap`): `pixforge-run info`
describes the file, `pixforge-dfvae swap --model MODEL.onnx` runs it through onnxruntime (`pixforge.export.session`);
`pixforge-run run` / `bench` refuse it (heatmaps and mask are `tensor` inputs, computed from tracked landmarks).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixforge.core.cli import output_file
from pixforge.core.session import TorchSession
from pixforge.dfvae.blocks import Up
from pixforge.dfvae.model import Trained, load
from pixforge.dfvae.nets import DFVAE
from pixforge.export.errors import PixforgeError
from pixforge.export.metadata import ModelMeta, TensorSpec

INPUTS = ("target", "heatmaps", "reference", "mask")
TOLERANCE = 1e-3  # float32 ONNX vs PyTorch, absolute on [-1, 1] outputs (measured ~1e-5 at 32-128 px)


class SwapGraph(nn.Module):
    """(target, heatmaps, reference, mask) -> swapped crop: `DFVAE.forward` with the target first (the primary
    image input)."""

    def __init__(self, model: DFVAE):
        super().__init__()
        self.model = model

    def forward(self, target, heatmaps, reference, mask):
        return self.model(heatmaps, reference, target, mask)


@dataclass
class Graph:
    module: nn.Module
    meta: ModelMeta
    example: tuple
    dynamic: tuple
    checks: list


def inputs(n: int, size: int, landmarks: int = 68, seed: int = 0) -> list[torch.Tensor]:
    """Random inputs of the graph (batch `n`): for the export example and the parity check."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.rand(n, landmarks, size, size, generator=g),
            torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.rand(n, 1, size, size, generator=g)]


def graph(trained: Trained) -> Graph:
    from pixforge.dfvae import __version__

    s, k = trained.size, trained.arch.get("landmarks", 68)
    image = {"kind": "image", "range": (-1.0, 1.0), "size": (s, s)}
    specs = [TensorSpec("target", **image, description="aligned target face crop y_t (dlib mean-face alignment, "
                        f"padding {trained.padding})"),
             TensorSpec("heatmaps", kind="tensor", shape=["N", k, s, s],
                        description=f"one Gaussian per landmark of the target crop (iBUG-68 order, pixel centres at "
                                    f"integers), exp(-d^2 / 2 sigma^2), sigma = {2.0 * s / 128:g} px"),
             TensorSpec("reference", **image, description="aligned crop of the source identity (x')"),
             TensorSpec("mask", kind="tensor", shape=["N", 1, s, s],
                        description=f"blurred face mask m^b of the target crop (filled landmark outline, Gaussian "
                                    f"sigma {s / 32:g} px), values 0..1")]
    meta = ModelMeta("pixforge-dfvae", __version__, "face-swap", specs,
                     [TensorSpec("swapped", **image, description="the source's face in the target crop")],
                     {"arch": trained.arch, "identities": trained.identities, "padding": trained.padding,
                      "source": str(trained.source)})
    batch = torch.export.Dim("batch", min=1)
    return Graph(SwapGraph(sub_pixel(trained.model)).eval(), meta, tuple(inputs(2, s, k)), ({0: batch},) * 4,
                 inputs(3, s, k, seed=1))


def sub_pixel(model: DFVAE) -> DFVAE:
    """A copy of `model` for inference with each `Up` as a `SubPixelUp` (the exported graph and `InferenceGraph`);
    the trained model is left as it is."""
    model = copy.deepcopy(model).eval().requires_grad_(False)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, Up):
                setattr(module, name, SubPixelUp(child))
    return model


class SubPixelUp(nn.Module):
    """`blocks.Up` (nearest x2, 3x3 conv, LeakyReLU, 3x3 conv, LeakyReLU) with the upsampling folded into the first
    convolution: a 3x3 convolution of a nearest-upsampled image is, for each of the 4 output phases (row and column
    parity), a 2x2 convolution of the small image whose taps are sums of the 3x3 taps. The four 2x2 kernels,
    interleaved, are the 4x4 kernel of one stride-2 transposed convolution (padding 1) of the small image, which
    computes each phase at its place: 16 instead of 36 multiply-adds per input channel and small pixel, no upsampled
    copy, no interleaving copy. One operator in torch (oneDNN) and in ONNX (`ConvTranspose`, dynamic batch and size),
    so `InferenceGraph` and the exported graph run this same module. The same function up to float rounding;
    inference only."""

    # FOLD[k]: rows of the 3x3 kernel that row k of the 4x4 transposed kernel sums. Output row 2m + p reads small row
    # i through kernel row 2m + p + 1 - 2i: phase 0 reads rows m - 1 (k = 3: 3x3 row 0) and m (k = 1: rows 1, 2),
    # phase 1 rows m (k = 2: rows 0, 1) and m + 1 (k = 0: row 2).
    FOLD = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))

    def __init__(self, up: nn.Module):
        super().__init__()
        first, second = up.body[0], up.body[2]
        w = first.weight.detach()  # (Cout, Cin, 3, 3)
        fold = torch.tensor(self.FOLD, dtype=w.dtype, device=w.device)  # (4, 3)
        self.up = nn.ConvTranspose2d(w.shape[1], w.shape[0], 4, stride=2, padding=1)
        self.up.weight = nn.Parameter(torch.einsum("ak,oikl,bl->ioab", fold, w, fold), requires_grad=False)
        self.up.bias = nn.Parameter(first.bias.detach().clone(), requires_grad=False)
        self.second, self.slope = second, up.body[1].negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu_(self.second(F.leaky_relu_(self.up(x), self.slope)), self.slope)


class InferenceGraph(nn.Module):
    """`SwapGraph` re-expressed for inference (what `session` runs; the ONNX file is `SwapGraph` over the same
    `sub_pixel(model)`, without the torch-only parts that follow): each `Up` as a `SubPixelUp`, weights and inputs in
    channels_last (~1.3x faster convolutions on a CPU, the layout tensor cores want on a GPU), LeakyReLUs in place,
    E_β's appearance code computed once when every row of `reference` is the same crop (a swap feeds one reference
    crop to every face) and kept while it stays the same, and on a CPU the batch run in chunks of about `CHUNK`
    values per full-resolution feature map (4 faces at 128 px): there larger activations are fresh memory (page
    faults) on every call, which cost more than the batch saves; a GPU's caching allocator reuses its memory, so the
    batch runs whole there. Equal to `SwapGraph` up to float rounding (tests: within 1e-4). A copy: the trained
    model is left as it is."""

    CHUNK = 2**21  # float32 values (8 MiB) of the largest activation (the first level's width x S x S) per chunk

    def __init__(self, model: DFVAE):
        super().__init__()
        self.model = sub_pixel(model)
        for module in self.model.modules():
            if isinstance(module, nn.LeakyReLU):
                module.inplace = True
        self.model.to(memory_format=torch.channels_last)
        config = self.model.config
        self.chunk = max(1, self.CHUNK // (max(config.width, config.fusion_width) * config.resolution ** 2))
        self._code: tuple[torch.Tensor, torch.Tensor] | None = None

    def appearance(self, reference: torch.Tensor) -> torch.Tensor:
        """μ_a(x') per row; one E_β pass when all rows are equal (cached for the same crop and dtype)."""
        first = reference[:1]
        if reference.shape[0] > 1 and not bool((reference == first).all()):
            return self.model.appearance(_channels_last(reference)).mu
        cached = self._code
        if cached is None or cached[0].shape != first.shape or cached[0].device != first.device \
                or cached[1].dtype != self._dtype(first) or not torch.equal(cached[0], first):
            cached = self._code = (first.clone(), self.model.appearance(_channels_last(first)).mu)
        return cached[1].expand(reference.shape[0], -1)

    @staticmethod
    def _dtype(x: torch.Tensor) -> torch.dtype:
        return torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype

    def forward(self, target, heatmaps, reference, mask):
        if target.shape[0] > self.chunk and target.device.type == "cpu" and not torch.is_grad_enabled():
            return torch.cat([self.forward(*(x[i:i + self.chunk] for x in (target, heatmaps, reference, mask)))
                              for i in range(0, target.shape[0], self.chunk)])
        codes = self.appearance(reference)
        target, heatmaps, mask = (_channels_last(x) for x in (target, heatmaps, mask))
        face = self.model.decoder(self.model.structure(heatmaps).mu, codes)
        return self.model.fusion(face, target, mask)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


class GraphSession(TorchSession):
    """A `TorchSession` that takes the feeds in the memory order they come in: `pipeline.Swapper` hands the
    heatmaps over channels last (`channels_last`), and they go to the channels_last network without a transposing
    copy."""

    channels_last = keep_strides = True


def session(trained: Trained, device: torch.device, amp_dtype: torch.dtype | None = None):
    """The exported graph run by torch on `device` (a `GraphSession`, i.e. a `TorchSession`): swap's network path,
    as `InferenceGraph` (channels_last, sub-pixel upsampling, one appearance code per reference crop, chunks)."""
    g = graph(trained)
    shapes = {s.name: ["N", *s.shape[1:]] if s.kind == "tensor" else ["N", 3, *s.size] for s in g.meta.inputs}
    return GraphSession(InferenceGraph(trained.model).to(device), g.meta, trained.source, device, shapes=shapes,
                        amp_dtype=amp_dtype)


def export(run: str | None = None, out: str | None = None, fp16: bool = False, overwrite: bool = False,
           check: bool = True, quiet: bool = False) -> Path:
    """Export the face network of --run (a run directory, checkpoint or release folder) to the ONNX file --out
    (inputs target, heatmaps, reference, mask at the model's size, dynamic batch; output swapped; pixforge metadata
    describing each input) and check it against PyTorch with onnxruntime (--nocheck: skip; tolerance 1e-3, 5e-2
    with --fp16). `pixforge-dfvae swap --model OUT --run RUN ...` (or --source-images) swaps with it."""
    from pixforge.core.onnx import export_onnx, verify_onnx

    if run is None or out is None:
        raise PixforgeError("--run and --out are required")
    path = output_file(out, ".onnx", overwrite)
    trained = load(run)
    g = graph(trained)
    _note(f"exporting {trained.source} to {path}", quiet)
    export_onnx(g.module, g.example, path, input_names=list(INPUTS), output_names=["swapped"],
                inputs=g.meta.inputs, outputs=g.meta.outputs, package=g.meta.package, version=g.meta.version,
                task=g.meta.task, extra=g.meta.extra, dynamic_shapes=g.dynamic, fp16=fp16)
    if check:
        _note(f"checking {path} against PyTorch with onnxruntime", quiet)
        tol = 5e-2 if fp16 else TOLERANCE
        plain = SwapGraph(trained.model).eval()  # the network as trained: nearest upsampling, then 3x3 convolutions
        try:
            verify_onnx(path, plain.half() if fp16 else plain,
                        [c.half() for c in g.checks] if fp16 else g.checks, atol=tol, rtol=tol)
        except Exception:
            path.unlink(missing_ok=True)  # a file that failed its check is not left behind
            raise
    return path


def _note(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"pixforge-dfvae: {message}", file=sys.stderr, flush=True)
