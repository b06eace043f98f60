"""Filter diversity (paper §4.3, Table 4): how similar the filters of each convolution layer are to each other.

For a layer's weight `[O, I, H, W]` (O filters of I x H x W values), the cosine similarity of every ordered pair of
distinct filters, averaged ("all possible permutations of O filters"); the network's figure is the mean of its
layers' values. The paper reports D 0.00820 / G 0.00828 for the Primitives-PS pretrained StyleGAN2 and 0.01348 /
0.01434 for FFHQ's. It does not say whether the absolute value is taken: the default is the plain (signed)
cosine, `absolute=True` averages |cos|. The layers are the 3 x 3 convolutions (G's modulated ones by their base
weight): the paper compares "26 layers", which is what a 256 px StyleGAN2 has, 13 in D (two per block from
256 to 8 px, one at 4 px) and 13 in G (one at 4 px, two per block from 8 to 256 px); `include_1x1=True` adds the
1 x 1 ones (fromrgb, skip, torgb). Fully connected layers (G's mapping and affines, D's fc / out) never count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pixforge.export.errors import PixforgeError

PAPER = {"primitives-ps": {"D": 0.00820, "G": 0.00828}, "ffhq": {"D": 0.01348, "G": 0.01434}}


def layer_similarity(weight: torch.Tensor, absolute: bool = False) -> float:
    """Mean cosine similarity over the ordered pairs of distinct filters of `weight` (O x ...; O >= 2)."""
    w = weight.detach().reshape(weight.shape[0], -1).double()
    if w.shape[0] < 2:
        raise ValueError("a layer needs at least 2 filters")
    w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-30)
    sim = w @ w.T
    if absolute:
        sim = sim.abs()
    o = w.shape[0]
    return float((sim.sum() - sim.diagonal().sum()) / (o * (o - 1)))


def network_similarity(state: dict[str, torch.Tensor], absolute: bool = False,
                       include_1x1: bool = False) -> dict[str, Any]:
    """Per conv layer of the state dict `state` (its 4-D `*weight` tensors with >= 2 filters and a kernel larger
    than 1 x 1 unless `include_1x1`): the similarity and the number of filters; and the mean over the layers."""
    convs = {name: value for name, value in state.items()
             if name.endswith("weight") and value.dim() == 4 and value.shape[0] >= 2
             and (include_1x1 or value.shape[2] * value.shape[3] > 1)}
    if not convs:
        raise PixforgeError("the network has no convolution layers")
    layers = {name: layer_similarity(value, absolute) for name, value in convs.items()}
    return {"mean": sum(layers.values()) / len(layers), "layers": layers,
            "filters": {name: int(value.shape[0]) for name, value in convs.items()}}


def load_networks(run: str | Path, generator: str = "G_ema") -> dict[str, dict[str, torch.Tensor]]:
    """{'D': state dict, 'G': state dict of `generator` (G_ema or G)} of a run (its newest checkpoint), a pixforge
    checkpoint or an official `.pkl` snapshot."""
    from pixforge.core.checkpoint import read_checkpoint
    from pixforge.core.stylegan2.train import init_file

    if generator not in ("G_ema", "G"):
        raise PixforgeError(f"--generator must be G_ema or G, got {generator!r}")
    path = init_file(run, "--run")  # a run directory: its newest checkpoint (model.safetensors alone has no D)
    if path.suffix == ".pkl":
        from pixforge.core.stylegan2.convert import load_official_pickle

        states = {k: v["state_dict"] for k, v in load_official_pickle(path).items() if isinstance(v, dict)}
    else:
        states = read_checkpoint(path)["models"]
    missing = [n for n in ("D", generator) if n not in states]
    if missing:
        raise PixforgeError(f"--run {path} has no {' and '.join(missing)} weights")
    return {"D": states["D"], "G": states[generator]}


def filter_diversity(run: str | Path, generator: str = "G_ema", absolute: bool = False,
                     include_1x1: bool = False) -> dict[str, Any]:
    """Table 4 for RUN: {'D': {'mean', 'layers', 'filters'}, 'G': {...}, 'source', 'generator', 'absolute',
    'include_1x1', 'paper'}."""
    nets = load_networks(run, generator)
    result: dict[str, Any] = {name: network_similarity(state, absolute, include_1x1) for name, state in nets.items()}
    result.update(source=str(run), generator=generator, absolute=bool(absolute), include_1x1=bool(include_1x1),
                  paper=PAPER)
    return result


def table(result: dict[str, Any]) -> str:
    """Per-layer rows, then the means next to the paper's."""
    rows = [f"{'network':8s} {'layer':36s} {'filters':>7s} {'mean cos':>10s}"]
    for net in ("D", "G"):
        for name, value in result[net]["layers"].items():
            rows.append(f"{net:8s} {name:36s} {result[net]['filters'][name]:7d} {value:10.5f}")
    kind = "|cos|" if result["absolute"] else "cos"
    rows.append("")
    rows.append(f"mean {kind} over layers: D {result['D']['mean']:.5f} ({len(result['D']['layers'])} layers), "
                f"G {result['G']['mean']:.5f} ({len(result['G']['layers'])} layers, {result['generator']}); paper "
                f"Table 4: Primitives-PS D 0.00820 G 0.00828, FFHQ D 0.01348 G 0.01434")
    return "\n".join(rows)
