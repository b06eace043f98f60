"""`pixforge core ...`: the core's own verbs — the reference training run, its export, the demo, env."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import numpy as np
import torch

from pixforge.core import toy
from pixforge.core.cli import output_dir, run
from pixforge.core.io import embedded_images, list_images, make_grid, read_image, write_image
from pixforge.core.metrics import psnr
from pixforge.export.errors import PixforgeError


class CoreTool:
    """Core utilities: a reference training run (tiny denoiser), its ONNX export, and the environment."""

    train = staticmethod(toy.train)

    def export(self, run: str, out: str) -> str:
        """Export a finished run's EMA denoiser to ONNX file OUT, with pixforge metadata and a parity check."""
        return str(toy.export(run, out))

    def fid(self, real: str, fake: str, weights: str | None = None, kid: bool = False, kid_subset_size: int = 1000,
            batch: int = 32, device: str = "auto", json_out: bool = False) -> str:
        """FID (and with --kid, KID) between image folders REAL and FAKE with the public InceptionV3 weights
        (--weights PATH_OR_URL to pt_inception-2015-12-05-6726825d.pth, or $PIXFORGE_INCEPTION_WEIGHTS)."""
        from pixforge.core.nets.inception import InceptionFeatures

        return _folder_distance(real, fake, lambda: InceptionFeatures("fid", weights=weights), kid, kid_subset_size,
                                batch, device, json_out)

    def fd(self, real: str, fake: str, weights: str | None = None, kid: bool = False, kid_subset_size: int = 1000,
           batch: int = 32, device: str = "auto", json_out: bool = False) -> str:
        """Fréchet (and with --kid, kernel) distance between image folders REAL and FAKE on the procedural ResNet-18
        that ships with pixforge-core (fd_pfr18 / kd_pfr18): no download; it orders image sets by quality (see the
        README) but is not FID and not comparable with published FIDs. --weights: another ResNet-18 encoder (e.g. a
        `pixforge-spectra pretrain` run's encoder.safetensors), reported as fd / kd."""
        from pixforge.core.nets.procedural import ProceduralFeatures

        return _folder_distance(real, fake, lambda: ProceduralFeatures(weights), kid, kid_subset_size, batch, device,
                                json_out)

    def env(self) -> str:
        """Versions, devices and what pixforge can use on this machine, as JSON."""
        import onnxruntime

        facts = {"python": platform.python_version(), "torch": torch.__version__,
                 "cuda": torch.version.cuda, "gpus": [torch.cuda.get_device_name(i)
                                                      for i in range(torch.cuda.device_count())],
                 "onnxruntime": onnxruntime.__version__,
                 "onnxruntime_providers": onnxruntime.get_available_providers(),
                 "threads": torch.get_num_threads()}
        return json.dumps(facts, indent=2)

    def demo(self, out: str = "demo-out/core", steps: int = 300, overwrite: bool = True) -> str:
        """Train the denoiser for a few steps on embedded photos, export it, run it with pixforge-run, and
        write a grid (noisy | restored | clean) to OUT/grid.png."""
        out_dir = output_dir(out, overwrite=overwrite)
        run_dir = toy.train(str(out_dir / "run"), steps=steps, ckpt_every=50, sample_every=50, overwrite=True)
        model_path = toy.export(run_dir, out_dir / "denoiser.onnx")
        clean = [_center_crop(img, 192) for img in embedded_images(["chelsea", "coffee", "astronaut", "rocket"])]
        rng = np.random.default_rng(0)
        sigma = 0.2 * 127.5
        noisy_dir = out_dir / "noisy"
        for i, img in enumerate(clean):
            noisy = np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)
            write_image(noisy_dir / f"img{i}.png", noisy)
        restored_dir = out_dir / "restored"
        cmd = [sys.executable, "-m", "pixforge.export.cli", "run", str(model_path), str(noisy_dir),
               "--out", str(restored_dir), "--device", "cpu", "--overwrite"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise PixforgeError(f"pixforge-run failed on {model_path}: {result.stderr.strip().splitlines()[-1:]}")
        rows = [np.stack([read_image(noisy_dir / f"img{i}.png"), read_image(restored_dir / f"img{i}.png"), c])
                for i, c in enumerate(clean)]
        grid = out_dir / "grid.png"
        write_image(grid, make_grid(np.concatenate(rows), nrow=3))
        batch = torch.from_numpy(np.stack(rows)).permute(0, 1, 4, 2, 3).float()  # image, kind, C, H, W
        noisy_db, restored_db = (psnr(batch[:, k], batch[:, 2], data_range=255.0).item() for k in (0, 1))
        return (f"core demo: run {run_dir}\n  model {model_path}\n  pixforge-run outputs {restored_dir}\n"
                f"  grid (noisy | restored | clean) {grid}\n"
                f"  PSNR vs clean: noisy {noisy_db:.2f} dB -> restored {restored_db:.2f} dB")


def _folder_distance(real: str, fake: str, make_features, kid: bool, kid_subset_size: int, batch: int, device: str,
                     json_out: bool) -> str:
    """The fid / fd verbs: folders checked, then the features built, then the distances (text or JSON)."""
    from pixforge.core.metrics import folder_scores
    from pixforge.core.runtime import resolve_device

    dev = resolve_device(device)
    for folder in (real, fake):
        list_images(folder)  # a missing or empty folder fails before the weights load
    scores = folder_scores(real, fake, make_features().to(dev), kid=kid, kid_subset_size=kid_subset_size,
                           batch_size=batch, device=dev)
    if json_out:
        return json.dumps(scores)
    return "\n".join(f"{k:<14} {v:.6g}" if isinstance(v, float) else f"{k:<14} {v}" for k, v in scores.items())


def _center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return img[top:top + size, left:left + size]


def main() -> None:
    run(CoreTool, name="pixforge core")


if __name__ == "__main__":
    main()

