"""`TorchSession`: a torch module seen the way the runtime sees its exported graph.

`pixforge.export.pipeline.Pipeline` and `pixforge.export.jobs` drive a `ModelSession` (metadata, graph inputs,
`run(feeds)` on numpy arrays). An onnxruntime `Session` is one; this is the other: the module a tool exports,
with the metadata its exporter writes, run by torch on any device. A tool's inference verb (`tsit translate`,
dfvae `swap`, singleimage `sample`) is then this session + the runtime's pipeline and jobs, so it and
`pixforge-run` on the exported file share one code path by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from pixforge.core.runtime import autocast
from pixforge.export.metadata import ModelMeta, TensorSpec
from pixforge.export.pipeline import image_channels
from pixforge.export.session import GraphIO


class TorchSession:
    """`module(*inputs in metadata order)` -> outputs in metadata order, on numpy feeds (the ModelSession protocol).

    `shapes` overrides graph input shapes (default: image and label inputs `[N, C, H, W]` with dynamic N, H, W,
    as a dynamic-axes export declares them); `amp_dtype` runs the module under autocast. A subclass whose module
    takes its inputs in any memory order (e.g. channels_last) sets `keep_strides`: feeds then go in as they come,
    without a copy into C order.
    """

    keep_strides = False

    def __init__(self, module: torch.nn.Module, meta: ModelMeta, path: str | Path, device: torch.device, *,
                 shapes: Mapping[str, list] | None = None, amp_dtype: torch.dtype | None = None):
        self.module, self.meta, self.path = module.eval(), meta, Path(path)
        self.device, self.amp_dtype = device, amp_dtype
        self.provider = f"torch on {device}"
        shapes = dict(shapes or {})
        self.inputs = {s.name: GraphIO(s.name, shapes.get(s.name, _default_shape(s)), "tensor(float)")
                       for s in meta.inputs}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the module on numpy inputs; outputs come back as float32 numpy arrays, keyed by name."""
        order = np.asarray if self.keep_strides else np.ascontiguousarray
        args = [torch.from_numpy(order(feeds[s.name], dtype=np.float32)).to(self.device) for s in self.meta.inputs]
        with torch.inference_mode(), autocast(self.device, self.amp_dtype):
            outputs = self.module(*args)
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return {s.name: o.float().cpu().numpy() for s, o in zip(self.meta.outputs, outputs, strict=True)}


def _default_shape(spec: TensorSpec) -> list:
    if spec.kind == "labels":
        return ["N", 1, "H", "W"]
    if spec.kind == "image":
        return ["N", image_channels(spec), "H", "W"] if spec.layout == "NCHW" else ["N", "H", "W", image_channels(spec)]
    return list(spec.shape or [1])
