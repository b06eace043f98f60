"""A trained detector: the registry network behind its normalisation, read back from a run, and batch prediction.

    det, arch = load_run("runs/xception")     # the release weights (model.safetensors + model.json)
    probs = predict(det, dataset, batch=16)    # P(fake) per item of an EvalClips
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pixforge.export.errors import PixforgeError
from pixforge.forensics.models import build, spec


class Detector(nn.Module):
    """`net` after (x - mean) / std: x is RGB on [0, 255] (uint8 or float), 3 x H x W or 3 x T x H x W per item;
    returns the N fake logits."""

    def __init__(self, net: nn.Module, mean, std, video: bool):
        super().__init__()
        self.net, self.video = net, video
        shape = (1, 3, 1, 1, 1) if video else (1, 3, 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.float() - self.mean) / self.std)[:, 0]


def make_arch(model: str, size: int | None, clip: int | None) -> dict[str, Any]:
    """The run's architecture record: model name, input size, clip length (frames; TSN segments), normalisation."""
    from pixforge.forensics.data import sampling_of

    s = spec(model)
    return {"model": s.name, "size": int(size or s.size), "clip": int(clip or s.clip) if s.video else 1,
            "sampling": sampling_of(s), "mean": list(s.mean), "std": list(s.std)}


def build_detector(arch: dict[str, Any], weights: str | os.PathLike | None = None, seed: int = 0) -> Detector:
    kwargs = {"segments": arch["clip"]} if arch["model"] == "tsn" else {}
    net = build(arch["model"], num_classes=1, weights=weights, generator=torch.Generator().manual_seed(seed), **kwargs)
    return Detector(net, arch["mean"], arch["std"], arch["sampling"] != "image")


def load_run(run: str | os.PathLike) -> tuple[Detector, dict[str, Any]]:
    """The finished run's detector (eval mode) and its architecture record."""
    from pixforge.core.checkpoint import load_release

    path = Path(run)
    if not path.is_dir():
        raise PixforgeError(f"--run {path} does not exist or is not a folder")
    if not (path / "model.safetensors").is_file():
        raise PixforgeError(f"--run {path} has no model.safetensors: is it a finished `train` run?")
    state, arch = load_release(path)
    missing = [k for k in ("model", "size", "clip", "sampling", "mean", "std") if k not in arch]
    if missing:  # another tool's release (a DF-VAE, a GAN), or a hand-edited record
        raise PixforgeError(f"{path / 'model.json'} is not a forensics detector's record (no {', '.join(missing)})")
    det = build_detector(arch)
    try:
        det.net.load_state_dict(state)
    except RuntimeError as err:
        raise PixforgeError(f"{path}: weights do not match a {arch['model']} ({str(err).splitlines()[0][:160]})") \
            from None
    return det.eval(), arch


@torch.no_grad()
def predict(det: Detector, dataset, batch: int = 16, workers: int = 0,
            device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(fake probabilities, labels, per-item {"video", "frame"}) over `dataset` (an EvalClips)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=False)
    was = det.training
    det.eval()
    probs, labels, meta = [], [], []
    for item in loader:
        probs.append(torch.sigmoid(det(item["clip"].to(device))).float().cpu())
        labels.append(item["label"])
        meta += [{"video": v, "frame": f} for v, f in zip(item["video"], item["frame"], strict=True)]
    det.train(was)
    return torch.cat(probs).numpy().astype(np.float64), torch.cat(labels).numpy(), meta


def video_level(probs: np.ndarray, labels: np.ndarray, meta: list[dict]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The mean item probability of each video (in first-seen order), its label and key."""
    order: dict[str, list[int]] = {}
    for k, m in enumerate(meta):
        order.setdefault(m["video"], []).append(k)
    keys = list(order)
    return (np.array([probs[order[k]].mean() for k in keys]), np.array([labels[order[k][0]] for k in keys]), keys)
