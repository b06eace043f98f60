"""Line plots (matplotlib, the `[plots]` extra): radially averaged power spectra and training-loss curves.

Each function returns False without writing anything when matplotlib is not installed, so the verbs that
draw them still write everything else. Figures are drawn with matplotlib's object API (no pyplot state).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pixforge.export.atomic import atomic_path


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path: Path) -> bool:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return True


def radial_power_plot(curves: dict[str, tuple[torch.Tensor, torch.Tensor]], path: Path) -> bool:
    """One log-log curve per group: ring-mean power against spatial frequency (the DC ring is left out)."""
    fig = _figure(6, 4)
    if fig is None:
        return False
    ax = fig.add_subplot()
    for label, (frequencies, power) in curves.items():
        ax.loglog(frequencies[1:].numpy(), power[1:].numpy(), label=label)
    ax.set(xlabel="spatial frequency (cycles / pixel)", ylabel="mean power |F|² / HW",
           title="radially averaged power spectrum")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def loss_curves(runs: dict[str, list[dict]], path: Path, keys: tuple[str, ...] = ("mse", "ffl")) -> bool:
    """One panel per metric in `keys`, one line per run, from metrics.jsonl records (moving average)."""
    fig = _figure(5 * len(keys), 3.6)
    if fig is None:
        return False
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys, strict=True):
        for name, records in runs.items():
            steps = np.array([r["step"] for r in records if key in r])
            values = np.array([float(r[key]) for r in records if key in r])
            window = max(1, len(values) // 25)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.semilogy(steps[window - 1:], smooth, label=name)
        ax.set(xlabel="step", title=f"train {key.upper()} (moving average)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    return _save(fig, path)
