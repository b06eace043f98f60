"""`pixforge-ffl` (also `pixforge ffl`): the Fire surface over lfd, spectrum, compare and demo."""

from __future__ import annotations

import json as jsonlib

from pixforge.core.cli import run
from pixforge.export.errors import PixforgeError


class FFL:
    """Focal Frequency Loss: the LFD metric, spectrum pictures, and a VAE trained with vs without FFL."""

    def lfd(self, real: str, fake: str, json: bool = False, quiet: bool = False,
            lpips_weights: str | None = None) -> str:
        """Log Frequency Distance (thesis Eq. 5.11, as the official evaluation computes it), PSNR and SSIM of FAKE
        against REAL: two images, or two folders whose images are matched by relative file name. Prints a
        mean/std table, or JSON with the per-image values with --json. --lpips-weights HEADS adds LPIPS v0.1: HEADS
        is lpips/weights/v0.1/alex.pth or vgg.pth from the lpips 0.1.4 wheel, and the ImageNet trunk is read from
        $PIXFORGE_ALEXNET_WEIGHTS / $PIXFORGE_VGG16_WEIGHTS or the torch hub cache."""
        from pixforge.ffl.lfd import format_table, score_pairs

        report = score_pairs(real, fake, quiet=quiet, lpips_weights=lpips_weights)
        if json:
            return jsonlib.dumps(report, indent=2)
        return f"{report['count']} image pair(s): {real} vs {fake}\n{format_table(report['metrics'])}"

    def spectrum(self, *inputs: str, out: str = "spectra", size: int | None = None, alpha: float = 1.0,
                 log_matrix: bool = False, pictures: int = 16, overwrite: bool = False) -> str:
        """Spectrum pictures of each input (an image or a folder = one group) under --out: log-magnitude spectra
        (at most --pictures per group), the batch-average spectrum of each folder, the radially averaged power
        spectrum of every group (CSV, and a plot with the [plots] extra), and with exactly two inputs FFL's
        focal weight map between them (--alpha, --log-matrix). --size N resizes and centre-crops to N x N."""
        from pixforge.ffl.spectrum import write_spectra

        if size is not None and size < 1:
            raise PixforgeError(f"--size must be a positive number of pixels, got {size}")
        if alpha < 0:
            raise PixforgeError(f"--alpha must be at least 0, got {alpha}")
        if pictures < 0:
            raise PixforgeError(f"--pictures must be at least 0, got {pictures}")
        return write_spectra(list(inputs), out, size=size, alpha=alpha, log_matrix=log_matrix, pictures=pictures,
                             overwrite=overwrite)

    def compare(self, out: str = "runs/ffl-compare", data: str = "builtin", size: int = 64, steps: int = 2000,
                batch: int = 16, lr: float = 1e-3, ffl_weight: float = 1.0, kl_weight: float = 1.0,
                alpha: float = 1.0, patch_factor: int = 1, ave_spectrum: bool = False, log_matrix: bool = False,
                batch_matrix: bool = False, transform: str = "fft", width: int = 32, latent: int = 128,
                eval_images: int = 256, seed: int = 0, ckpt_every: int = 500, sample_every: int = 500,
                keep_last: int = 2, workers: int = 0, device: str = "auto", amp: bool | str = False,
                threads: int | None = None, inception_weights: str | None = None, resume: bool = False,
                overwrite: bool = False) -> str:
        """Train one small VAE for reconstruction without and with FFL (same seed, data and options) into
        OUT/without_ffl and OUT/with_ffl (run directories: --resume continues them), then write the PSNR / SSIM /
        LFD (/ FID with --inception-weights) table, side-by-side samples, average spectra and (with the [plots]
        extra) loss curves to OUT.
        --data builtin = crops of scikit-image's photos (runs on a CPU in minutes); or a folder of images.
        FFL options: --ffl-weight, --alpha, --patch-factor, --ave-spectrum, --log-matrix, --batch-matrix,
        --transform fft|dct."""
        import torch

        from pixforge.ffl.compare import compare

        if threads is not None and threads < 1:
            raise PixforgeError(f"--threads must be at least 1, got {threads}")
        if threads:
            torch.set_num_threads(threads)
        return compare(out, data=data, size=size, steps=steps, batch=batch, lr=lr, ffl_weight=ffl_weight,
                       kl_weight=kl_weight, alpha=alpha, patch_factor=patch_factor, ave_spectrum=ave_spectrum,
                       log_matrix=log_matrix, batch_matrix=batch_matrix, transform=transform, width=width,
                       latent=latent, eval_images=eval_images, seed=seed, ckpt_every=ckpt_every,
                       sample_every=sample_every, keep_last=keep_last, workers=workers, device=device, amp=amp,
                       inception_weights=inception_weights, resume=resume, overwrite=overwrite)

    def demo(self, out: str = "demo-out/ffl", steps: int = 1000, overwrite: bool = True) -> str:
        """A short `compare` on the built-in photos at 32x32 (1-2 minutes on 2 CPU cores): the with/without
        table, samples, spectra and loss curves under OUT. One CPU thread: this small network gains little
        from more, and a shared, busy CPU makes multi-threaded torch many times slower."""
        return self.compare(out=out, size=32, steps=steps, ckpt_every=250, sample_every=250,
                            threads=1, overwrite=overwrite)


def main() -> None:
    run(FFL, name="pixforge-ffl")


if __name__ == "__main__":
    main()
