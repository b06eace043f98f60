"""`pixforge-ffl` (also `pixforge ffl`): the Fire surface over lfd, spectrum, compare and demo.

`spectrum` and `compare` are the library functions themselves: their signatures are the flags, their
docstrings the help.
"""

from __future__ import annotations

import json as jsonlib

from pixforge.core.cli import run
from pixforge.ffl.compare import compare
from pixforge.ffl.lfd import format_table, score_pairs
from pixforge.ffl.spectrum import write_spectra


class FFL:
    """Focal Frequency Loss: the LFD metric, spectrum pictures, and a VAE trained with vs without FFL."""

    spectrum = staticmethod(write_spectra)
    compare = staticmethod(compare)

    def lfd(self, real: str, fake: str, json: bool = False, quiet: bool = False,
            lpips_weights: str | None = None) -> str:
        """Log Frequency Distance (thesis Eq. 5.11, as the official evaluation computes it), PSNR and SSIM of FAKE
        against REAL: two images, or two folders whose images are matched by relative file name. Prints a
        mean/std table, or JSON with the per-image values with --json. --lpips-weights HEADS adds LPIPS v0.1: HEADS
        is lpips/weights/v0.1/alex.pth or vgg.pth from the lpips 0.1.4 wheel, and the ImageNet trunk is read from
        $PIXFORGE_ALEXNET_WEIGHTS / $PIXFORGE_VGG16_WEIGHTS or the torch hub cache."""
        report = score_pairs(real, fake, quiet=quiet, lpips_weights=lpips_weights)
        if json:
            return jsonlib.dumps(report, indent=2)
        return f"{report['count']} image pair(s): {real} vs {fake}\n{format_table(report['metrics'])}"

    def demo(self, out: str = "demo-out/ffl", steps: int = 1000, overwrite: bool = True) -> str:
        """A short `compare` on the built-in photos at 32x32 (1-2 minutes on 2 CPU cores): the with/without
        table, samples, spectra and loss curves under OUT. One CPU thread: this small network gains little
        from more, and a shared, busy CPU makes multi-threaded torch many times slower."""
        return compare(out=out, size=32, steps=steps, ckpt_every=250, sample_every=250, threads=1,
                       overwrite=overwrite)


def main() -> None:
    run(FFL, name="pixforge-ffl")


if __name__ == "__main__":
    main()
