"""ONNX export of a trained TSIT generator, with the pixforge metadata that lets `pixforge-run` drive it.

Style transfer / multi-modal models take `content` (RGB in [-1, 1], height and width multiples of the stride,
dynamic), `style` (RGB, resized by the runtime to the content's network size), `noise` (N x 3 x H/stride x
W/stride standard normal) and the scalar `alpha` (FAdaIN strength, `--set alpha=0.5`):

    pixforge-run run model.onnx CONTENT --input style=STYLE.png --out DIR

Semantic-synthesis models take `content` as a label map (pixforge kind `labels`: one channel of the ids as stored
in the PNG, read and checked by the runtime, resized nearest; the don't-care mapping and the one-hot encoding happen
inside the graph, so the host sends one channel, not K); a model trained with instance maps also takes `instances`,
the instance ids of each label map (a `paired` labels input: `--input instances=DIR`, files named as the label maps;
the boundary map is computed inside the graph); with a VAE encoder (fixed size: the training size) the appearance
code comes either from the `style` image (its mean code, `code="style"`, the default) or, for multi-modal output,
from a standard-normal `z` input (`code="random"`, pixforge kind `noise`, N x z_dim) that pixforge-run draws from
its `--seed` per item, exactly as `pixforge-tsit translate` without `--style`:

    pixforge-tsit export runs/city --out city.onnx                      # style image -> appearance
    pixforge-run run city.onnx labels/ --input style=street.png,instances=instances/ --out out/
    pixforge-tsit export runs/city --out city-random.onnx --code random # one random appearance per item and seed
    pixforge-run run city-random.onnx labels/ --input instances=instances/ --out out/ --seed 3

Spectral norms are folded into plain weights, and the networks run in the model's recorded inference mode
(`pixforge.tsit.nets.for_inference`): "eval", FADE's batch norm with its running statistics; or "train", as the
official test.py runs multi-modal and photo2art models, each image normalised by its own statistics (ONNX
InstanceNormalization) and each spectral norm one power-iteration step on from its stored vectors.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixforge.core.cli import output_file
from pixforge.export.errors import PixforgeError
from pixforge.export.metadata import ModelMeta, TensorSpec
from pixforge.tsit.data import edges
from pixforge.tsit.model import Trained, check_alpha, load
from pixforge.tsit.nets import ConvEncoder, TSITGenerator, for_inference

CODES = ("style", "random")


class StyleGraph(nn.Module):
    """(content, style, noise, alpha) -> image: style transfer and multi-modal synthesis."""

    def __init__(self, generator: TSITGenerator):
        super().__init__()
        self.generator = generator

    def forward(self, content, style, noise, alpha):
        return self.generator(content, style, noise, alpha)


class LabelGraph(nn.Module):
    """(label ids [, instance ids] [, style image | code z]) -> image: semantic synthesis. Ids map to classes as
    `pixforge.export.pipeline.label_classes` (the don't-care id to the extra class K, the ids above it down by one),
    then one-hot; instance ids add their boundary map (`pixforge.tsit.data.edges`). With a VAE the last input is the
    style image (`encoder` given: its mean code) or the code itself (`encoder` None, `vae` True)."""

    def __init__(self, generator: TSITGenerator, encoder: ConvEncoder | None, num_classes: int,
                 dontcare: int | None = None, instance: bool = False, vae: bool = False):
        super().__init__()
        self.generator, self.encoder, self.num_classes, self.dontcare = generator, encoder, num_classes, dontcare
        self.instance, self.vae = instance, vae or encoder is not None
        channels = num_classes + (dontcare is not None)
        self.register_buffer("classes", torch.arange(channels, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, content, *extra):
        ids = content.round()
        if self.dontcare is not None:
            d = float(self.dontcare)
            ids = torch.where(ids == d, torch.full_like(ids, self.num_classes), ids - (ids > d).to(ids.dtype))
        dtype = self.classes.dtype  # the network's precision (float16 in an fp16 export; the ids stay float32)
        semantics = (ids == self.classes.to(ids.dtype)).to(dtype)
        if self.instance:
            semantics = torch.cat([semantics, edges(extra[0][:, 0]).to(dtype)], 1)
        code = None
        if self.vae:
            code = self.encoder(extra[-1])[0] if self.encoder is not None else extra[-1]
        return self.generator(semantics, None, code)


@dataclass
class Graph:
    """A trained model as its exported graph: the module, the pixforge metadata that tells the runtime how to feed
    it, and what `torch.export` needs (example inputs, dynamic shapes) and `verify_onnx` checks (inputs)."""

    module: nn.Module
    meta: ModelMeta
    example: tuple
    dynamic: tuple
    checks: list


def graph(trained: Trained, code: str = "style", alpha: float = 1.0) -> Graph:
    """The exported graph of `trained` (its networks made ready for inference in place: `for_inference` in the
    model's recorded mode); `code` (VAE models): the appearance from a `style` image input, or `random` from a
    noise input z; `alpha`: the default of the FAdaIN strength input."""
    from pixforge.tsit import __version__

    alpha = check_alpha(alpha)
    if code not in CODES:
        raise PixforgeError(f"--code must be one of {', '.join(CODES)}, got {code!r}")
    if code != "style" and trained.arch["start"] != "vae":
        raise PixforgeError(f"--code {code} is for semantic-synthesis models with a VAE encoder; {trained.source} "
                            "has none")
    arch, stride = trained.arch, trained.arch["stride"]
    generator = for_inference(trained.generator, arch["inference"])
    encoder = for_inference(trained.encoder, arch["inference"]) if trained.encoder is not None else None
    image = {"kind": "image", "range": (-1.0, 1.0)}
    batch = torch.export.Dim("batch", min=1)
    h, w = torch.export.Dim("h", min=1), torch.export.Dim("w", min=1)
    size = tuple(arch["size"])
    if arch["task"] != "sis":
        module = StyleGraph(generator)
        ex_h, ex_w = 2 * stride, 3 * stride
        example = (torch.rand(2, 3, ex_h, ex_w) * 2 - 1, torch.rand(2, 3, ex_h, ex_w) * 2 - 1,
                   torch.randn(2, 3, 2, 3), torch.tensor(float(alpha)))
        specs = [TensorSpec("content", **image, multiple=stride, description="content image"),
                 TensorSpec("style", **image, description="style image (resized to the content's network size)"),
                 TensorSpec("noise", kind="noise", shape=["N", 3, f"H/{stride}", f"W/{stride}"]),
                 TensorSpec("alpha", kind="scalar", default=float(alpha), description="FAdaIN strength 0..1")]
        spatial = {0: batch, 2: stride * h, 3: stride * w}
        dynamic = (spatial, spatial, {0: batch, 2: h, 3: w}, None)
        checks = [torch.rand(1, 3, stride, 2 * stride) * 2 - 1, torch.rand(1, 3, stride, 2 * stride) * 2 - 1,
                  torch.randn(1, 3, 1, 2), torch.tensor(0.5)]
    else:
        dontcare, fixed, instance = arch.get("dontcare"), encoder is not None, bool(arch.get("instance"))
        module = LabelGraph(generator, encoder if code == "style" else None, arch["num_classes"], dontcare, instance,
                            vae=fixed)
        ex_hw = size if fixed else (2 * stride, 3 * stride)
        check_hw = size if fixed else (stride, 2 * stride)
        labels = {"kind": "labels", "multiple": stride, "size": size if fixed else None}
        specs = [TensorSpec("content", **labels, num_classes=arch["num_classes"], dontcare=dontcare,
                            description="label map: pixel value (or palette index) = class id")]
        example = [_label_ids(arch, (2, 1, *ex_hw))]
        spatial = {0: batch} if fixed else {0: batch, 2: stride * h, 3: stride * w}
        dynamic = [spatial]
        checks = [_label_ids(arch, (1, 1, *check_hw))]
        if instance:
            specs.append(TensorSpec("instances", **labels, paired=True, description="instance ids of each label map "
                                    "(e.g. Cityscapes *_instanceIds.png): --input instances=DIR, files named as the "
                                    "label maps"))
            example.append(torch.randint(0, 3, (2, 1, *ex_hw)).float())
            dynamic.append(spatial)
            checks.append(torch.randint(0, 3, (1, 1, *check_hw)).float())
        if fixed and code == "style":
            specs.append(TensorSpec("style", **image, size=size, description="style image (appearance code)"))
            example.append(torch.rand(2, 3, *size) * 2 - 1)
            dynamic.append({0: batch})
            checks.append(torch.rand(1, 3, *size) * 2 - 1)
        elif fixed:
            specs.append(TensorSpec("z", kind="noise", shape=["N", arch["z_dim"]],
                                    description="appearance code, standard normal (drawn from --seed per item)"))
            example.append(torch.randn(2, arch["z_dim"]))
            dynamic.append({0: batch})
            checks.append(torch.randn(1, arch["z_dim"]))
        example = tuple(example)  # forward(content, *extra): torch.export nests the extra inputs' shapes
        dynamic = (dynamic[0], tuple(dynamic[1:])) if len(dynamic) > 1 else tuple(dynamic)
    task = "style-transfer" if arch["task"] != "sis" else "semantic-synthesis"
    meta = ModelMeta("pixforge-tsit", __version__, task, specs, [TensorSpec("image", **image)],
                     {"arch": arch, "source": str(trained.source)})
    return Graph(module.eval(), meta, example, dynamic, checks)


def session(trained: Trained, device: torch.device, code: str = "style", alpha: float = 1.0):
    """`trained`'s exported graph run by torch on `device`, as `pixforge-run` runs the ONNX file (a `TorchSession`
    for `pixforge.export.pipeline.Pipeline` and `pixforge.export.jobs`): translate's code path."""
    from pixforge.core.session import TorchSession

    g = graph(trained, code, alpha)
    return TorchSession(g.module.to(device), g.meta, trained.source, device)


def export(run: str | Path, out: str | Path = "model.onnx", alpha: float = 1.0, fp16: bool = False,
           overwrite: bool = False, code: str = "style", check: bool = True, quiet: bool = False) -> Path:
    """Export the generator of --run to an ONNX file (inputs content, style, noise, alpha; dynamic batch and
    spatial sizes; pixforge metadata) and check it against PyTorch (--nocheck: skip). Run it with
    `pixforge-run run OUT CONTENT --input style=STYLE --out DIR`. Semantic synthesis: content is a label map,
    plus `--input instances=DIR` (each label map's instance map, same name) for a model trained with them; a VAE
    model takes the style image (--code style) or, with --code random, a noise input z that pixforge-run draws
    from --seed per item (multi-modal output, as translate without --style). The export and the check each print
    a line on stderr when they start (--quiet: none)."""
    from pixforge.core.onnx import export_onnx, verify_onnx

    out = output_file(out, ".onnx", overwrite)
    trained = load(run)
    g = graph(trained, code, alpha)
    meta = g.meta
    _note(f"exporting {trained.source} to {out} (torch.export; up to a minute or two at the official size)", quiet)
    path = export_onnx(g.module, g.example, out, input_names=[s.name for s in meta.inputs], output_names=["image"],
                       inputs=meta.inputs, outputs=meta.outputs, package=meta.package, version=meta.version,
                       task=meta.task, extra=meta.extra, dynamic_shapes=g.dynamic, fp16=fp16)
    if check:
        _note(f"checking {path} against PyTorch with onnxruntime", quiet)
        tolerance = 5e-2 if fp16 else 1e-3
        verify_onnx(path, g.module.half() if fp16 else g.module,
                    [c.half() if fp16 and spec.kind != "labels" else c
                     for c, spec in zip(g.checks, meta.inputs, strict=True)], atol=tolerance, rtol=tolerance)
    return path


def _note(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"pixforge-tsit: {message}", file=sys.stderr, flush=True)


def _label_ids(arch: dict, shape: tuple[int, ...]) -> torch.Tensor:
    """Random valid label ids (the don't-care id included) as the float tensor the runtime feeds."""
    from pixforge.export.pipeline import label_classes

    ids = np.arange(max(arch["num_classes"], arch.get("dontcare") or 0) + 1)
    valid = ids[label_classes(ids, arch["num_classes"], arch.get("dontcare")) >= 0].tolist()
    return torch.tensor(valid, dtype=torch.float32)[torch.randint(0, len(valid), shape)]
