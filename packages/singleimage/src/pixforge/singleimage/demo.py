"""`pixforge-singleimage demo`: a short CPU run of both methods on one scikit-image photo at 64 px.

compare (SinGAN and PetsGAN, a few steps each: timings, metrics, side-by-side grid), samples of both at a wider
aspect than the photo's, and the PetsGAN sampler exported to ONNX and run by `pixforge-run` at that aspect. The runs
are far from converged: the demo shows the pipeline, not the methods' quality.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from pixforge.core.cli import output_dir
from pixforge.core.io import embedded_images, write_image
from pixforge.export.options import check_numbers

PHOTO, SIDE = "chelsea", 64  # 300x451 -> 43x64: SinGAN 5 scales with --min-size 19; PetsGAN 40x64, 10x16 layouts
MIN_SIZE, DOWNSCALE, BATCH_G = 19, 4, 8
WIDE = (40, 120)  # another aspect (3:1) for sample and for the ONNX model; PetsGAN needs multiples of DOWNSCALE


def demo(out: str = "singleimage-demo", steps: int = 60, n: int = 8, overwrite: bool = False) -> str:
    """A few-minute CPU run on scikit-image's `chelsea` at 64 px: compare (SinGAN --steps iterations per scale,
    PetsGAN --steps per phase; wall times, metrics, compare.png), --n samples of each at 40x120, and PetsGAN exported
    to ONNX (model.onnx, 40x120) and run with pixforge-run; everything under OUT: data/, compare/ (both runs,
    compare.json/.md/.png), wide-singan/, wide-petsgan/, model.onnx, onnx-run/."""
    from pixforge.export.cli import Runtime
    from pixforge.singleimage.compare import compare
    from pixforge.singleimage.export import export
    from pixforge.singleimage.sample import sample

    check_numbers({"steps": steps, "n": n}, integers={"steps": 1, "n": 2})  # before anything is written
    root = output_dir(out, overwrite)
    photo = Image.fromarray(embedded_images([PHOTO])[0])
    scale = SIDE / max(photo.size)
    image = root / "data" / f"{PHOTO}.png"
    write_image(image, np.asarray(photo.resize((round(photo.width * scale), round(photo.height * scale)),
                                               Image.Resampling.BICUBIC)))
    report = compare(str(image), str(root / "compare"), iters=steps, warmup_g=steps, warmup_f=steps, joint=steps,
                     max_size=SIDE, min_size=MIN_SIZE, downscale=DOWNSCALE, batch_g=BATCH_G, n=n, device="cpu",
                     overwrite=overwrite, quiet=True)
    wide = f"{WIDE[0]}x{WIDE[1]}"
    for method, result in report["methods"].items():
        sample(result["run"], n=n, size=wide, out=str(root / f"wide-{method}"), overwrite=overwrite)
    model = export(report["methods"]["petsgan"]["run"], str(root / "model.onnx"), size=wide, overwrite=overwrite,
                   quiet=True)
    Runtime().run(str(model), out=str(root / "onnx-run"), count=n, device="cpu", overwrite=overwrite)
    lines = [f"single-image demo ({PHOTO} at {SIDE} px, {steps} steps per SinGAN scale and per PetsGAN phase, CPU) "
             f"in {root}:"]
    for method, r in report["methods"].items():
        lines.append(f"  {method:<8} train {r['train_s']:6.1f} s  {r['iterations']:4d} iterations  "
                     f"diversity {r['diversity_pixel_std']:.3f}  swd {r['swd_patches'] or float('nan'):.1f}  "
                     f"-> {r['run']}")
    lines += [f"  PetsGAN / SinGAN training wall time {report['petsgan_over_singan_wall']:.2f} "
              f"(at these step counts; see tools/bench/singleimage_bench.py for the papers' schedules)",
              f"  compare  {root / 'compare' / 'compare.png'} (photo, then samples; a row per method), compare.md",
              f"  wide     {root / 'wide-singan'}, {root / 'wide-petsgan'} ({wide} samples)",
              f"  onnx     {model} -> {root / 'onnx-run'} ({n} PetsGAN samples at {wide} by pixforge-run)"]
    return "\n".join(lines)
