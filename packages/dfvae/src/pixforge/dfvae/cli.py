"""`pixforge-dfvae` (also `pixforge dfvae`): the Fire surface over prepare, train, swap, export, metrics and demo.

Each verb is the library function itself (its signature is the option list, its docstring the help)."""

from __future__ import annotations

from pixforge.core.cli import run
from pixforge.dfvae.demo import demo
from pixforge.dfvae.export import export
from pixforge.dfvae.metrics import metrics
from pixforge.dfvae.prepare import prepare
from pixforge.dfvae.swap import swap
from pixforge.dfvae.train import train


class DFVAE:
    """DF-VAE face swapping (DeeperForensics-1.0): prepare face data from videos, train, swap, export, metrics, demo."""

    prepare = staticmethod(prepare)
    train = staticmethod(train)
    swap = staticmethod(swap)
    export = staticmethod(export)
    metrics = staticmethod(metrics)
    demo = staticmethod(demo)


def main() -> None:
    run(DFVAE, name="pixforge-dfvae")


if __name__ == "__main__":
    main()
