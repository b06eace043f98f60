"""`pixforge-singleimage`: the Fire surface over train, sample and metrics.

Each verb is the library function itself (its signature is the option list, its docstring the help)."""

from __future__ import annotations

from pixforge.core.cli import run
from pixforge.singleimage.apply import edit, harmonize, paint2image, upscale
from pixforge.singleimage.compare import compare
from pixforge.singleimage.demo import demo
from pixforge.singleimage.export import export
from pixforge.singleimage.metrics import metrics
from pixforge.singleimage.sample import TOOL, sample
from pixforge.singleimage.train import train


class SingleImage:
    """Single-image generation (SinGAN baseline, PetsGAN): train on one image, sample at any size, metrics."""

    train = staticmethod(train)
    sample = staticmethod(sample)
    metrics = staticmethod(metrics)
    harmonize = staticmethod(harmonize)
    edit = staticmethod(edit)
    paint2image = staticmethod(paint2image)
    upscale = staticmethod(upscale)
    export = staticmethod(export)
    compare = staticmethod(compare)
    demo = staticmethod(demo)


def main() -> None:
    run(SingleImage, name=TOOL)


if __name__ == "__main__":
    main()
