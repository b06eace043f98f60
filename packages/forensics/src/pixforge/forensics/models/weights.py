"""Weight files for the detectors: read a public-layout state dict, rename its keys, load it (head optional).

Every detector loads the same way: `read_state(path)` (``.pth`` / ``.pt`` with ``torch.load(weights_only=True)``,
``.safetensors``, or a URL; a checkpoint wrapping it in ``{"state_dict": ...}`` with DDP's
``module.`` prefix), the model's own renaming of the public layout onto its module names, then `load_into`:
every body key must be there with its shape (else one sentence naming the file, the architecture it was meant for
and, when recognisable, the one it holds); the classifier is loaded when its shape matches the model's head and
left freshly initialised otherwise (an ImageNet / Kinetics / Sports-1M head on a binary detector).
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

from pixforge.core.nets.inception import load_weights, state_dict_mismatch
from pixforge.export.errors import PixforgeError

_PREFIXES = ("module.", "model.")


def read_state(weights: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict held by `weights`, unwrapped and with DDP's / wrappers' ``module.`` / ``model.`` prefixes
    stripped (when every key has one)."""
    state = load_weights(weights, unwrap="state_dict")
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def guess_architecture(state: dict[str, torch.Tensor]) -> str | None:
    """Which public architecture a state dict looks like (for error messages), or None."""
    keys = set(state)

    def has(*names: str) -> bool:
        return any(any(k.endswith(n) or k.startswith(n) for k in keys) for n in names)

    if has("block1.rep.0.conv1.weight", "block1.rep.0.weight"):
        return "Xception"
    if has("conv1a.conv.weight", "conv1a.weight", "conv3a.weight"):
        return "C3D"
    if has("Mixed_3b.", "Conv2d_1a_3x3.", "Mixed_5b."):
        return "Inception"
    if has("lstm.weight_ih_l0"):
        return "ResNet+LSTM"
    for key in ("conv1.conv.weight", "backbone.conv1.conv.weight", "conv1.weight", "backbone.conv1.weight"):
        if key in state:
            return "a 3D (inflated) ResNet" if state[key].ndim == 5 else "a 2D ResNet"
    return None


def load_into(net: nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike, arch: str,
              head: tuple[str, ...]) -> bool:
    """Load `state` (already in `net`'s key names) into `net`: strict for everything but the `head` keys, which
    load only when their shapes match; returns whether the head was loaded."""
    own = net.state_dict()
    state = dict(state)
    for key in own:  # files saved by old torch versions carry no BatchNorm step counters
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = own[key]
    head_state = {k: state.pop(k) for k in head if k in state}
    body = {k: v for k, v in own.items() if k not in head}
    problems = state_dict_mismatch(body, state)
    if problems:
        held = guess_architecture(state)
        hint = f" (it looks like {held})" if held and held not in (arch, f"a {arch}") else ""
        raise PixforgeError(f"weights {source} are not a {arch} state dict{hint}: {problems}.")
    head_fits = set(head_state) == set(head) and all(head_state[k].shape == own[k].shape for k in head)
    net.load_state_dict({**state, **(head_state if head_fits else {})}, strict=head_fits)
    return head_fits


def count_parameters(net: nn.Module) -> int:
    """The number of trainable and frozen parameters (buffers such as BatchNorm statistics not counted)."""
    return sum(p.numel() for p in net.parameters())


def mmaction_to_torchvision(key: str) -> str:
    """An mmaction2 / mmcv ResNet key (``conv1.conv.weight``, ``layer1.0.conv2.bn.bias``,
    ``layer1.0.downsample.conv.weight``) as torchvision names it (``conv1.weight``, ``layer1.0.bn2.bias``,
    ``layer1.0.downsample.0.weight``); other keys unchanged."""
    key = re.sub(r"^conv1\.conv\.", "conv1.", key)
    key = re.sub(r"^conv1\.bn\.", "bn1.", key)
    key = re.sub(r"^(layer\d+\.\d+\.)conv(\d)\.conv\.", r"\1conv\2.", key)
    key = re.sub(r"^(layer\d+\.\d+\.)conv(\d)\.bn\.", r"\1bn\2.", key)
    key = re.sub(r"^(layer\d+\.\d+\.downsample\.)conv\.", r"\g<1>0.", key)
    return re.sub(r"^(layer\d+\.\d+\.downsample\.)bn\.", r"\g<1>1.", key)


def torchvision_to_mmaction(key: str) -> str:
    """The inverse of `mmaction_to_torchvision`."""
    key = re.sub(r"^conv1\.(weight|bias)$", r"conv1.conv.\1", key)
    key = re.sub(r"^bn1\.", "conv1.bn.", key)
    key = re.sub(r"^(layer\d+\.\d+\.)conv(\d)\.(weight|bias)$", r"\1conv\2.conv.\3", key)
    key = re.sub(r"^(layer\d+\.\d+\.)bn(\d)\.", r"\1conv\2.bn.", key)
    key = re.sub(r"^(layer\d+\.\d+\.downsample\.)0\.", r"\1conv.", key)
    return re.sub(r"^(layer\d+\.\d+\.downsample\.)1\.", r"\1bn.", key)
