"""`pixforge-apa` (also `pixforge apa`): train StyleGAN2 with APA, generate, diagnose, export, convert, dataset, demo.

Each verb is the library function itself (its signature is the option list, its docstring the help)."""

from __future__ import annotations

from pixforge.apa.demo import demo
from pixforge.apa.diagnose import diagnose
from pixforge.apa.pseudo import STRATEGIES
from pixforge.core.cli import run
from pixforge.core.stylegan2.tool import convert, dataset, export_verb, generate
from pixforge.core.stylegan2.train import train_verb


class APA:
    """Adaptive Pseudo Augmentation (Deceive D) for StyleGAN2 on limited data: train, generate, diagnose, export."""

    train = staticmethod(train_verb(STRATEGIES, aug="apa"))
    generate = staticmethod(generate)
    diagnose = staticmethod(diagnose)
    export = staticmethod(export_verb("pixforge-apa"))
    convert = staticmethod(convert)
    dataset = staticmethod(dataset)
    demo = staticmethod(demo)


def main() -> None:
    run(APA, name="pixforge-apa")


if __name__ == "__main__":
    main()


