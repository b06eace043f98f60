"""ONNX export with pixforge metadata, followed by a parity check against PyTorch.

Exporter: torch's `torch.export`-based ONNX exporter (`dynamo=True`, opset 20, onnxscript). The
TorchScript exporter is deprecated and slated for removal, so pixforge never uses it; the choice is
pinned here (`EXPORTER`, `OPSET`) rather than left to torch's default. Dynamic axes become
`torch.export.Dim`s: the same axis name on two inputs means "equal sizes".
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixforge.export.atomic import atomic_path
from pixforge.export.errors import PixforgeError
from pixforge.export.metadata import TensorSpec, build_metadata, parse_metadata

EXPORTER = "dynamo"
OPSET = 20


def export_onnx(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor], path: str | Path, *,
                input_names: Sequence[str], output_names: Sequence[str],
                inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                package: str, version: str, task: str, extra: dict[str, Any] | None = None,
                dynamic_axes: dict[str, dict[int, str]] | None = None,
                dynamic_shapes: Any = None, opset: int = OPSET, fp16: bool = False) -> Path:
    """Export `module` to `path` (atomically) with pixforge metadata; returns the path.

    `inputs` / `outputs` describe each tensor for the runtime (layout, value range, normalisation, size
    constraints); their names must equal `input_names` / `output_names`. `dynamic_axes` maps an input
    name to {axis: symbolic name}; `dynamic_shapes` (torch.export's form) overrides it for models whose
    sizes carry constraints. With `fp16` the graph runs in half precision (inputs/outputs float16, except
    `labels` inputs, whose ids stay float32).
    """
    if [s.name for s in inputs] != list(input_names) or [s.name for s in outputs] != list(output_names):
        raise ValueError("TensorSpec names must equal input_names / output_names, in order")
    module = module.eval()
    example = tuple(example_inputs)
    if fp16:  # label ids stay float32: float16 holds integers exactly only up to 2048 (instance ids reach 10^5)
        module = _half_copy(module)
        example = tuple(x.half() if x.is_floating_point() and spec.kind != "labels" else x
                        for x, spec in zip(example, inputs, strict=True))
        for spec in (*inputs, *outputs):
            if spec.kind in ("image", "noise", "tensor", "scalar"):
                spec.dtype = "float16"
    if dynamic_shapes is None and dynamic_axes:
        dims: dict[str, torch.export.Dim] = {}
        dynamic_shapes = tuple(
            {axis: dims.setdefault(name, torch.export.Dim(name, min=1)) for axis, name in
             (dynamic_axes.get(n) or {}).items()} or None
            for n in input_names)
    path = Path(path)
    metadata = build_metadata(package, version, task, list(inputs), list(outputs), extra)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet("torch.onnx"):
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(module, example, dynamo=True, opset_version=opset,
                                        input_names=list(input_names), output_names=list(output_names),
                                        dynamic_shapes=dynamic_shapes, verbose=False, optimize=True)
        except Exception as err:
            raise RuntimeError(f"ONNX export of {module.__class__.__name__} failed: {err}") from err
    import onnx

    model = program.model_proto
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
    return path


@contextlib.contextmanager
def _quiet(logger_name: str):
    """Silence the exporter's own log lines (e.g. 'torchvision is not installed') while exporting."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _half_copy(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module).half()


@dataclass
class ParityReport:
    max_abs_diff: float
    outputs: list[str]
    shapes: list[tuple[int, ...]]
    provider: str


class OnnxParityError(PixforgeError):
    """The exported graph does not reproduce the PyTorch module."""


def verify_onnx(path: str | Path, module: torch.nn.Module, inputs: Sequence[torch.Tensor], *,
                atol: float = 1e-4, rtol: float = 1e-3) -> ParityReport:
    """onnx.checker, pixforge metadata, then onnxruntime (CPU) vs PyTorch on `inputs`.

    Pass inputs of another batch size / spatial size than the export example to test the dynamic axes.
    """
    import onnx
    import onnxruntime as ort

    path = Path(path)
    onnx.checker.check_model(str(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = parse_metadata(session.get_modelmeta().custom_metadata_map, str(path))
    feeds = {}
    for spec, arg, tensor in zip(meta.inputs, session.get_inputs(), inputs, strict=True):
        array = tensor.detach().cpu().numpy()
        feeds[arg.name] = array.astype(np.float16 if spec.dtype == "float16" else array.dtype)
    got = session.run(None, feeds)
    with torch.no_grad():
        expected = module.eval()(*inputs)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    worst = 0.0
    for name, g, e in zip([o.name for o in session.get_outputs()], got, expected, strict=True):
        e = e.detach().float().cpu().numpy()
        g = np.asarray(g, dtype=np.float32)
        if g.shape != e.shape:
            raise OnnxParityError(f"{path}: output {name!r} has shape {g.shape} in ONNX, {e.shape} in PyTorch")
        diff = float(np.max(np.abs(g - e))) if g.size else 0.0
        worst = max(worst, diff)
        if not np.allclose(g, e, atol=atol, rtol=rtol):
            raise OnnxParityError(f"{path}: output {name!r} differs from PyTorch by up to {diff:.3g} "
                                  f"(atol {atol}, rtol {rtol})")
    return ParityReport(worst, [o.name for o in session.get_outputs()], [tuple(np.shape(g)) for g in got],
                        session.get_providers()[0])
