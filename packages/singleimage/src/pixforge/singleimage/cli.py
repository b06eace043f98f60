"""`pixforge-singleimage`: the Fire surface over train, sample and metrics.

Each verb is the library function itself (its signature is the option list, its docstring the help)."""

from __future__ import annotations

from pixforge.core.cli import run
from pixforge.singleimage.metrics import metrics
from pixforge.singleimage.sample import sample
from pixforge.singleimage.train import train


class SingleImage:
    """Single-image generation (SinGAN baseline, PetsGAN): train on one image, sample at any size, metrics."""

    train = staticmethod(train)
    sample = staticmethod(sample)
    metrics = staticmethod(metrics)


def main() -> None:
    run(SingleImage, name="pixforge-singleimage")


if __name__ == "__main__":
    main()
