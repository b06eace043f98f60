"""A StyleGAN2 generator as ONNX that `pixforge-run` drives with no torch: `pixforge-run run G.onnx --count N --seed S`.

Inputs: `z` (pixforge kind `noise`, N x z_dim standard normal, which the runtime draws per item from its seed),
`truncation` (scalar, default 1: `w_avg + psi (w - w_avg)` on every layer) and, for a conditional generator,
`class` (scalar class index, default 0, one-hot inside the graph). Output: `image`, RGB (or grey) in [-1, 1].
Dynamic batch; the synthesis noise is the generator's stored constant noise (`noise_mode="const"`, what NVlabs'
snapshots show), so a graph is a deterministic function of its inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pixforge.core.nets.stylegan2 import Generator
from pixforge.export.metadata import TensorSpec


class GeneratorGraph(nn.Module):
    """(z, truncation[, class]) -> image."""

    def __init__(self, G: Generator):
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor, truncation: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        c = None
        if self.G.c_dim:  # a named input, not *label: torch.export cannot pair a varargs tuple with dynamic shapes
            classes = torch.arange(self.G.c_dim, device=z.device, dtype=z.dtype)
            c = (label.reshape(-1, 1).to(z.dtype).round() == classes).to(z.dtype).expand(z.shape[0], -1)
        ws = self.G.mapping(z, c)
        ws = self.G.mapping.w_avg.to(ws.dtype).lerp(ws, truncation.reshape(-1, 1, 1).to(ws.dtype))
        return self.G.synthesis(ws, noise_mode="const")


def export_generator(G: Generator, out: str | Path, *, package: str, version: str,
                     extra: dict[str, Any] | None = None, fp16: bool = False) -> Path:
    """Export `G` (eval, on the CPU) to `out` with pixforge metadata, then check ONNX against PyTorch."""
    from pixforge.core.onnx import export_onnx, verify_onnx

    G = G.eval().cpu()
    graph = GeneratorGraph(G).eval()
    specs = [TensorSpec("z", kind="noise", shape=["N", G.z_dim], description="latent, standard normal"),
             TensorSpec("truncation", kind="scalar", default=1.0, shape=[1],
                        description="truncation psi: 1 = none, smaller = closer to the average image")]
    example = [torch.randn(2, G.z_dim), torch.ones(1)]
    if G.c_dim:
        specs.append(TensorSpec("class", kind="scalar", default=0.0, shape=[1],
                                description=f"class index 0..{G.c_dim - 1}"))
        example.append(torch.zeros(1))
    output = TensorSpec("image", kind="image", range=(-1.0, 1.0), channels=G.img_channels,
                        color="RGB" if G.img_channels == 3 else "GRAY")
    path = export_onnx(graph, example, out, input_names=[s.name for s in specs], output_names=["image"],
                       inputs=specs, outputs=[output], package=package, version=version, task="generate",
                       dynamic_axes={"z": {0: "batch"}}, extra={"resolution": G.img_resolution, **(extra or {})},
                       fp16=fp16)
    check = [torch.randn(3, G.z_dim), torch.full([1], 0.7)] + ([torch.full([1], 1.0)] if G.c_dim else [])
    verify_onnx(path, graph, check, atol=1e-3 if not fp16 else 5e-2, rtol=1e-3 if not fp16 else 5e-2)
    return path
