"""`pixforge-tsit demo`: train a small TSIT on scikit-image's photos -> textures, translate, export, run the ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixforge.core.cli import output_dir
from pixforge.core.io import embedded_images, read_image, write_image
from pixforge.export.options import check_numbers

CONTENT = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")
STYLE = ("immunohistochemistry", "hubble_deep_field", "brick", "gravel")
SIZE, NGF, LEVELS = 64, 8, 5


def _write_set(folder: Path, names: tuple[str, ...]) -> None:
    for name, image in zip(names, embedded_images(names), strict=True):
        h, w = image.shape[:2]
        side = min(h, w)
        write_image(folder / f"{name}.png", image[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2])


def demo(out: str = "tsit-demo", steps: int = 150, overwrite: bool = False) -> str:
    """A few-minute CPU run on scikit-image's photos (content) and textures (style): train a small TSIT, translate,
    export and run the ONNX model with pixforge-run; everything under OUT: data/, run/ (samples, metrics, weights),
    translated/, model.onnx, onnx-run/."""
    from pixforge.export.cli import Runtime
    from pixforge.tsit.export import export
    from pixforge.tsit.train import train
    from pixforge.tsit.translate import translate

    check_numbers({"steps": steps}, integers={"steps": 1})  # before the data is written
    root = output_dir(out, overwrite)
    content, style = root / "data" / "content", root / "data" / "style"
    _write_set(content, CONTENT)
    _write_set(style, STYLE)
    run = train(str(root / "run"), task="ast", content=str(content), style=str(style), size=SIZE, batch=2,
                steps=steps, ngf=NGF, levels=LEVELS, ndf=16, sample_every=max(1, steps // 3),
                ckpt_every=max(1, steps // 3), device="cpu", overwrite=overwrite, quiet=True)
    style_image = style / f"{STYLE[0]}.png"
    translate(str(content), run=str(run), out=str(root / "translated"), style=str(style_image), quiet=True,
              overwrite=overwrite, device="cpu")
    model = export(run, root / "model.onnx", overwrite=overwrite)
    Runtime().run(str(model), str(content), out=str(root / "onnx-run"), input=f"style={style_image}", device="cpu",
                  overwrite=overwrite)
    worst = max(int(np.abs(read_image(root / "translated" / f"{n}.png").astype(int)
                           - read_image(root / "onnx-run" / f"{n}.png").astype(int)).max()) for n in CONTENT)
    samples = sorted((Path(run) / "samples").glob("*.png"))
    return (f"TSIT demo ({steps} steps at {SIZE}px, ngf {NGF}, {LEVELS} levels) in {root}:\n"
            f"  run        {run} (last sample grid: {samples[-1].name if samples else '-'}: content | style | output)\n"
            f"  translated {root / 'translated'} (pixforge-tsit translate, style {style_image.name})\n"
            f"  onnx       {model} -> {root / 'onnx-run'} (pixforge-run; max difference to translate: {worst}/255)")
