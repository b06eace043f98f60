"""ONNX export of a trained detector, with the clip layout and normalisation in the pixforge metadata.

Input `clip`: float RGB on [0, 255], N x 3 x H x W for Xception, N x 3 x T x H x W for the clip models (T the
training clip length; TSN: segments), H = W = the training size (fixed: the networks end in fixed pooling / a
flatten for C3D). The normalisation ((x - mean) / std, on that scale) is inside the graph; the metadata records it
with the sampling rule, so a host only has to crop faces as extract-faces does. Output `p_fake`: N
probabilities (sigmoid of the fake logit). Batch is dynamic.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pixforge.core.cli import output_file
from pixforge.export.errors import PixforgeError
from pixforge.forensics.detector import Detector, load_run


class ProbabilityGraph(nn.Module):
    def __init__(self, det: Detector):
        super().__init__()
        self.det = det

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.det(clip))


def export(run: str | None = None, out: str | None = None, overwrite: bool = False, check: bool = True) -> Path:
    """Export the detector of --run to ONNX (input `clip`: float RGB 0-255, N x 3 x H x W for Xception, N x 3 x T x
    H x W for the clip models; output `p_fake`; normalisation inside the graph, recorded in the metadata with the
    clip layout and frame sampling) and check it against PyTorch with onnxruntime (--nocheck: skip)."""
    from pixforge.core.onnx import export_onnx, verify_onnx
    from pixforge.export.metadata import TensorSpec
    from pixforge.forensics import __version__

    if run is None or out is None:
        raise PixforgeError("--run RUN and --out M.onnx are required")
    out = output_file(out, ".onnx", overwrite)
    det, arch = load_run(run)
    graph = ProbabilityGraph(det).eval()
    size, clip, video = arch["size"], arch["clip"], arch["sampling"] != "image"
    shape = ["N", 3, clip, size, size] if video else ["N", 3, size, size]
    layout = "NCTHW" if video else "NCHW"
    description = (f"face crops as extract-faces writes them (square, 1.3x the face box), resized to {size} px, "
                   f"RGB 0-255; {layout}" + (f", T = {clip} frames sampled '{arch['sampling']}'" if video else ""))
    spec = (TensorSpec("clip", kind="tensor", shape=shape, description=description) if video else
            TensorSpec("clip", kind="image", range=(0.0, 255.0), size=(size, size), description=description))
    extra = {"model": arch["model"], "layout": layout, "clip": clip, "size": size, "sampling": arch["sampling"],
             "normalisation": {"mean": arch["mean"], "std": arch["std"], "scale": "[0, 255] RGB",
                               "inside_graph": True},
             "output": "p_fake = sigmoid(fake logit)", "step": arch.get("step")}
    example = torch.rand(2, *shape[1:]) * 255
    export_onnx(graph, (example,), out, input_names=["clip"], output_names=["p_fake"], inputs=[spec],
                outputs=[TensorSpec("p_fake", kind="tensor", shape=["N"], description="P(fake) per item")],
                package="pixforge-forensics", version=__version__, task="fake-detection", extra=extra,
                dynamic_axes={"clip": {0: "batch"}})
    if check:
        verify_onnx(out, graph, [torch.rand(3, *shape[1:]) * 255], atol=1e-4, rtol=1e-3)
    return out
