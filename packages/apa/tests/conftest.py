from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pixforge.export.images import write_image

TINY = {"batch": 4, "cbase": 256, "cmax": 32, "map": 2, "metric_images": 16, "device": "cpu", "workers": 0,
        "quiet": True, "tick": 0.008, "snap": 1}  # a StyleGAN2 small enough to train for a few steps in seconds


@pytest.fixture(scope="session")
def train_tiny():
    """`pixforge-apa train` with TINY's options (overridable): the run directory."""
    from pixforge.apa.cli import APA

    def train(data: Path, out: Path, **options) -> Path:
        return Path(APA.train(str(data), str(out), **{**TINY, **options}))

    return train


@pytest.fixture(scope="session")
def images16(tmp_path_factory) -> Path:
    """24 smooth random 16 x 16 RGB images."""
    folder = tmp_path_factory.mktemp("images16")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16] / 16
    for i in range(24):
        a, b, c = rng.uniform(0, 2 * np.pi, 3)
        image = np.stack([np.sin(2 * np.pi * (xx * (k + 1) + yy) + a + k * b + c) for k in range(3)], axis=-1)
        write_image(folder / f"{i:03d}.png", ((image + 1) * 127.5).round().astype(np.uint8))
    return folder
