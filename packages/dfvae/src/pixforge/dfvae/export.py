"""ONNX export of a trained DF-VAE's face network, with the pixforge metadata that describes its inputs, and the torch
session that runs the same graph for `swap` (so PyTorch and ONNX swaps share one code path, as tsit's translate).

The graph is the whole face network (E_α, E_β, D_γ, MAdaIN fusion with D_δ and the blend), on aligned crops at the
model's resolution S (fixed) and any batch size:

    target     (N, 3, S, S) RGB in [-1, 1]   the aligned target face crop y_t
    heatmaps   (N, 68, S, S) in [0, 1]       its landmark heatmaps ŷ_t (`heatmaps.landmark_heatmaps`, σ = 2 S / 128)
    reference  (N, 3, S, S) RGB in [-1, 1]   an aligned crop of the source identity (x', E_β's input)
    mask       (N, 1, S, S) in [0, 1]        the target's blurred face mask m^b (`masks.blur_mask(face_mask)`, σ = S/32)
    -> swapped (N, 3, S, S) RGB in [-1, 1]   the source's face in the target crop (background = the target crop)

Face tracking, alignment and paste-back happen outside the graph (`pixforge.dfvae.swap`): `pixforge-run info`
describes the file, `pixforge-dfvae swap --model MODEL.onnx` runs it through onnxruntime (`pixforge.export.session`);
`pixforge-run run` / `bench` refuse it (heatmaps and mask are `tensor` inputs, computed from tracked landmarks).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pixforge.core.cli import output_file
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
    return Graph(SwapGraph(trained.model).eval(), meta, tuple(inputs(2, s, k)), ({0: batch},) * 4,
                 inputs(3, s, k, seed=1))


class ChannelsLast(nn.Module):
    """The graph with its weights and inputs in channels_last memory order (the same numbers; ~1.3x faster
    convolutions on a CPU, and the layout tensor cores want on a GPU). Torch only: the ONNX graph is exported
    from the plain module."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.to(memory_format=torch.channels_last)

    def forward(self, *xs):
        return self.module(*[x.contiguous(memory_format=torch.channels_last) for x in xs])


def session(trained: Trained, device: torch.device, amp_dtype: torch.dtype | None = None):
    """The exported graph run by torch on `device` (a `TorchSession`, channels_last): swap's network path."""
    from pixforge.core.session import TorchSession

    g = graph(trained)
    shapes = {s.name: ["N", *s.shape[1:]] if s.kind == "tensor" else ["N", 3, *s.size] for s in g.meta.inputs}
    return TorchSession(ChannelsLast(g.module).to(device), g.meta, trained.source, device, shapes=shapes,
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
        try:
            verify_onnx(path, g.module.half() if fp16 else g.module,
                        [c.half() for c in g.checks] if fp16 else g.checks, atol=tol, rtol=tol)
        except Exception:
            path.unlink(missing_ok=True)  # a file that failed its check is not left behind
            raise
    return path


def _note(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"pixforge-dfvae: {message}", file=sys.stderr, flush=True)
