"""`pixforge-apa demo`: a few CPU minutes of StyleGAN2 + APA at 32 px on crops of scikit-image's photos, then
generate, diagnose, export and run the ONNX generator with pixforge-run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pixforge.core.cli import output_dir
from pixforge.core.io import embedded_images, write_image
from pixforge.export.options import check_numbers

SIZE, CROPS = 32, 256


def _write_crops(folder: Path, seed: int = 0) -> None:
    """CROPS random SIZE-px crops of the embedded photos, each first shrunk to 1.5 SIZE on its short side."""
    rng = np.random.default_rng(seed)
    photos = []
    for image in embedded_images():
        image = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        t = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)[None].float()
        scale = 1.5 * SIZE / min(t.shape[2:])
        photos.append(torch.nn.functional.interpolate(t, scale_factor=scale, mode="area", recompute_scale_factor=True)
                      [0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy())
    for i in range(CROPS):
        photo = photos[i % len(photos)]
        y, x = rng.integers(0, photo.shape[0] - SIZE + 1), rng.integers(0, photo.shape[1] - SIZE + 1)
        write_image(folder / f"{i:04d}.png", photo[y:y + SIZE, x:x + SIZE])


def demo(out: str = "apa-demo", kimg: float = 1, overwrite: bool = False) -> str:
    """Train a small StyleGAN2 with APA for --kimg thousand images at 32 px on CPU (p adapting 50x faster than the
    paper's 500 kimg per unit, so that it moves within the demo), then generate, diagnose, export and run the ONNX
    generator with pixforge-run; everything under OUT: data/, runs/00000-*/ (grids, stats.jsonl, metric-swd.jsonl,
    checkpoints, weights), generated/, diagnose.png, generator.onnx, onnx-run/."""
    from pixforge.apa.cli import APA
    from pixforge.apa.diagnose import diagnose
    from pixforge.core.stylegan2.tool import generate
    from pixforge.export.cli import Runtime

    check_numbers({"kimg": kimg}, positive=("kimg",))  # before the data is written
    root = output_dir(out, overwrite)
    _write_crops(root / "data")
    run = APA.train(str(root / "data"), str(root / "runs"), kimg=kimg, ada_kimg=10, batch=16, cbase=2048, cmax=64,
                    map=2, tick=0.5, snap=2, metric_images=256, device="cpu", workers=0, quiet=True)
    generate(str(run), str(root / "generated"), seeds="0-31", device="cpu", overwrite=overwrite)
    diagnose(str(run), str(root), overwrite=True)
    model = APA.export(str(run), str(root / "generator.onnx"), overwrite=overwrite)
    Runtime().run(str(root / "generator.onnx"), out=str(root / "onnx-run"), count=16, seed=0, device="cpu",
                  overwrite=overwrite)
    return (f"APA demo ({kimg} kimg at {SIZE}px on {CROPS} photo crops) in {root}:\n"
            f"  run       {run} (fakes*.png grids, stats.jsonl, metric-swd.jsonl)\n"
            f"  generated {root / 'generated'} (seeds 0-31, grid.png)\n"
            f"  diagnose  {root / 'diagnose.png'} (p, lambda_r, D's logits, SWD over kimg)\n"
            f"  onnx      {model} -> {root / 'onnx-run'} (pixforge-run --count 16)")
