"""`pixforge-tsit` (also `pixforge tsit`): the Fire surface over train, translate, export, convert and demo.

Each verb is the library function itself (its signature is the option list, its docstring the help)."""

from __future__ import annotations

from pixforge.core.cli import run
from pixforge.tsit.demo import demo
from pixforge.tsit.export import export
from pixforge.tsit.official import convert
from pixforge.tsit.train import train
from pixforge.tsit.translate import translate


class TSIT:
    """TSIT two-stream image-to-image translation: train, translate images/folders/videos, export to ONNX."""

    train = staticmethod(train)
    translate = staticmethod(translate)
    export = staticmethod(export)
    convert = staticmethod(convert)
    demo = staticmethod(demo)


def main() -> None:
    run(TSIT, name="pixforge-tsit")


if __name__ == "__main__":
    main()
