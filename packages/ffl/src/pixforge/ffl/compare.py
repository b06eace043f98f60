"""`pixforge-ffl compare`: one VAE trained for reconstruction with and without FFL, then measured side by side.

`compare` is the verb itself (the CLI exposes it: its signature is the option list) and the launcher of
`pixforge.ffl.train.training_loop`: it checks every option and the data before anything is written, then
trains the two runs in turn and evaluates them.

Both runs (OUT/without_ffl, OUT/with_ffl: pixforge run directories, resumable) share the seed, the data
stream and every option but the FFL weight. Each is then evaluated on the same held-out images through
its posterior-mean reconstruction, quantised to 8 bits as image files are: PSNR, SSIM and LFD as the
thesis reports them (`pixforge.ffl.lfd`), and a Fréchet distance: FID when InceptionV3 weights are available,
else fd_pfr18 on pixforge-core's procedural ResNet-18 (no download; not comparable with FID). OUT receives
results.json / results.md (the table), samples.png (rows: real, without FFL, with FFL), spectra.png (the
batch-average spectra in the same order), loss_curves.png ([plots] extra) and eval/<real|run>/NNNN.png,
so `pixforge-ffl lfd OUT/eval/real OUT/eval/with_ffl` reproduces the LFD column.

Data: "builtin" = random crops of scikit-image's embedded photos (the training stream and a disjoint-seed
evaluation set of crops); or a folder of images, resized to cover size x size and centre-cropped, whose
last tenth in sorted order (at most `eval_images`) is held out for evaluation.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from pixforge.core.checkpoint import Checkpoints, read_checkpoint
from pixforge.core.cli import output_dir, require_dir
from pixforge.core.io import (
    ImageFolder,
    RandomCrops,
    embedded_images,
    image_to_tensor,
    make_grid,
    tensor_to_image,
    write_image,
)
from pixforge.core.loop import read_metrics
from pixforge.core.metrics import FrechetDistance
from pixforge.core.rundir import RunDir
from pixforge.core.runtime import autocast_dtype, resolve_device
from pixforge.export.atomic import write_text
from pixforge.export.errors import PixforgeError
from pixforge.export.images import probe_image
from pixforge.export.options import check_outside
from pixforge.ffl.lfd import METRICS, quality, summarize
from pixforge.ffl.loss import TRANSFORMS
from pixforge.ffl.plots import loss_curves
from pixforge.ffl.spectrum import log_magnitude, picture
from pixforge.ffl.train import training_loop
from pixforge.ffl.vae import check_size

RUNS = ("without_ffl", "with_ffl")
EVAL_SEED = 1_000_000_007  # the builtin evaluation crops, whatever the training seed


class Shuffled(Dataset):
    """An endless stream over `images`: item i is image perm_(seed, i // n)[i % n], flipped when rng(seed, i) says."""

    def __init__(self, images: Dataset, seed: int):
        self.images, self.seed, self._order = images, seed, (None, None)

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> torch.Tensor:
        epoch, k = divmod(index, len(self.images))
        if self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng((self.seed, epoch)).permutation(len(self.images)))
        image = self.images[int(self._order[1][k])]
        return image.flip(-1) if np.random.default_rng((self.seed, index, 1)).random() < 0.5 else image


def datasets(data: str, size: int, eval_images: int, seed: int) -> tuple[Dataset, torch.Tensor, str]:
    """(training stream, evaluation batch in [-1, 1], a description of both)."""
    if data == "builtin":
        photos = embedded_images()
        held_out = RandomCrops(photos, size, eval_images, seed=EVAL_SEED)
        return (RandomCrops(photos, size, 2**62, seed=seed), torch.stack([held_out[i] for i in range(eval_images)]),
                f"builtin: random {size}x{size} crops of scikit-image's {len(photos)} embedded photos "
                f"({eval_images} held-out crops)")
    folder = ImageFolder(require_dir(data, "--data folder"), size)
    for file in folder.files:  # a file that is not an image stops compare here, before any training
        probe_image(file)
    n = len(folder)
    if n < 2:
        raise PixforgeError(f"--data {data} holds {n} image: compare needs at least 2 (training + held out)")
    k = min(eval_images, max(1, n // 10))
    evaluation = torch.stack([folder[i] for i in range(n - k, n)])
    return (Shuffled(Subset(folder, range(n - k)), seed), evaluation,
            f"{data}: {n - k} training images and {k} held-out images, centre {size}x{size} crops")


def _distance_features(weights: str | None):
    """The network of the distance column: InceptionV3 (FID) when its weights are given or found, else pixforge-core's
    procedural ResNet-18 (fd_pfr18: no download, orders sets as FID does but is not comparable with it)."""
    from pixforge.core.nets import InceptionFeatures
    from pixforge.core.nets.procedural import ProceduralFeatures

    try:
        return InceptionFeatures("fid", weights=weights)
    except PixforgeError:
        if weights is not None:  # the user named weights that do not load: that is an error
            raise
        return ProceduralFeatures()


def compare(out: str = "runs/ffl-compare", data: str = "builtin", size: int = 64, steps: int = 2000, batch: int = 16,
            lr: float = 1e-3, ffl_weight: float = 100.0, kl_weight: float = 1.0, alpha: float = 1.0,
            patch_factor: int = 1, ave_spectrum: bool = False, log_matrix: bool = False, batch_matrix: bool = False,
            transform: str = "fft", width: int = 32, latent: int = 128, eval_images: int = 256, seed: int = 0,
            ckpt_every: int = 500, sample_every: int = 500, keep_last: int = 2, workers: int = 0,
            device: str = "auto", amp: bool | str = False, threads: int | None = None,
            inception_weights: str | None = None, resume: bool = False, overwrite: bool = False,
            quiet: bool = False) -> str:
    """Train one small VAE for reconstruction without and with FFL (same seed, data and options) into
    OUT/without_ffl and OUT/with_ffl (run directories: --resume continues them), then write the PSNR / SSIM /
    LFD / FID (with --inception-weights; else fd_pfr18) table, side-by-side samples, average spectra and (with the
    [plots] extra) loss curves to OUT.
    --data builtin = crops of scikit-image's photos (runs on a CPU in minutes); or a folder of images.
    FFL options: --ffl-weight, --alpha, --patch-factor, --ave-spectrum, --log-matrix, --batch-matrix,
    --transform fft|dct."""
    config = {k: v for k, v in locals().items() if k not in ("out", "threads", "inception_weights", "resume",
                                                              "overwrite", "quiet")}
    _check(config, threads)
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    autocast_dtype(dev, amp)  # a bad --amp is refused here, before any work
    check_outside(out, [data if Path(data).exists() else None, inception_weights], holding=True)
    out_dir = _resumable(out) if resume else None
    train_data, evaluation, description = datasets(data, size, eval_images, seed)
    features = _distance_features(inception_weights)
    out_dir = out_dir or output_dir(out, overwrite)
    start = time.time()
    models = {}
    for name in RUNS:
        run = RunDir(out_dir / name)
        run_config = {**config, "ffl_weight": ffl_weight if name == "with_ffl" else 0.0}
        model, finished = training_loop(run, run_config, train_data, dev, fixed=evaluation[:8],
                                        resume=resume and run.has_run(), overwrite=overwrite, quiet=quiet)
        if not finished:
            return f"stopped: continue with pixforge-ffl compare --out {out_dir} --resume (same options)"
        models[name] = model
    images = {"real": tensor_to_image(evaluation)}
    for name, model in models.items():
        recon = torch.cat([model.reconstruct(chunk.to(dev)).cpu() for chunk in evaluation.split(batch)])
        images[name] = tensor_to_image(recon.clamp(-1, 1))
    results = {
        "data": description, "size": size, "steps": steps, "batch": batch, "ffl_weight": ffl_weight,
        "transform": transform, "seed": seed, "device": _device_name(dev), "eval_images": len(evaluation),
        "wall_s": round(time.time() - start, 1),
        "metrics": _scores(images, features),
        "distance": {"name": features.names[0], "features": features.label},
    }
    files = ["results.md", "results.json", "samples.png (real / without FFL / with FFL)", "spectra.png",
             *_write(out_dir, images, results), "eval/", *(f"{name}/" for name in RUNS)]
    return f"{format_results(results)}\n\noutputs in {out_dir}: {', '.join(files)}"


def _check(config: dict[str, Any], threads: int | None) -> None:
    """Every option compare can check on its own, as one PixforgeError naming the flag (before any work)."""
    if threads is not None and threads < 1:
        raise PixforgeError(f"--threads must be at least 1, got {threads}")
    size, patch_factor, transform = config["size"], config["patch_factor"], config["transform"]
    try:
        check_size(size)
    except ValueError as err:
        raise PixforgeError(f"--size {size}: {err}") from None
    if patch_factor < 1:
        raise PixforgeError(f"--patch-factor must be a whole number from 1 (the whole image) to --size {size}, got "
                            f"{patch_factor}")
    if size % patch_factor:
        raise PixforgeError(f"--size {size} is not divisible by --patch-factor {patch_factor}")
    if transform not in TRANSFORMS:
        raise PixforgeError(f"--transform {transform!r}: choose one of {', '.join(TRANSFORMS)}")
    if config["ffl_weight"] <= 0:
        raise PixforgeError(f"--ffl-weight must be positive (the run without FFL uses 0), got {config['ffl_weight']}")
    if config["lr"] <= 0:
        raise PixforgeError(f"--lr must be positive, got {config['lr']}")
    for name in ("kl_weight", "alpha", "workers", "seed"):
        if config[name] < 0:
            raise PixforgeError(f"--{name.replace('_', '-')} must be at least 0, got {config[name]}")
    for name in ("steps", "batch", "eval_images", "width", "latent", "ckpt_every", "sample_every", "keep_last"):
        if config[name] < 1:
            raise PixforgeError(f"--{name.replace('_', '-')} must be at least 1, got {config[name]}")


def _resumable(out: str) -> Path:
    """The --out of a compare to resume, checked before any work: the first run must exist (the second may not
    have started), and each run's latest checkpoint must be a readable pixforge checkpoint."""
    out_dir = require_dir(out, "--resume: --out")
    first = RunDir(out_dir / RUNS[0])
    if not first.has_run():
        raise PixforgeError(f"--resume: {first.path} is not a compare run (no config.json); start a new compare "
                            "without --resume")
    for name in RUNS:
        run = RunDir(out_dir / name)
        if run.has_run():
            if (latest := Checkpoints(run.checkpoints).latest()) is not None:
                read_checkpoint(latest)
        elif run.path.exists() and any(run.path.iterdir()):
            raise PixforgeError(f"--resume: {run.path} holds files but no config.json, so it cannot be continued; "
                                "move it away to start that run again")
    return out_dir


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _scores(images: dict[str, np.ndarray], features) -> dict[str, dict[str, Any]]:
    """Per run: mean/std/count of LFD, PSNR, SSIM on the 8-bit images, and the Fréchet distance on `features` (FID or
    fd_pfr18; None with a single evaluation image)."""
    real = image_to_tensor(images["real"], (0.0, 255.0))
    distance = FrechetDistance(features, reset_real_features=False)
    distance.update(torch.from_numpy(images["real"]).permute(0, 3, 1, 2), real=True)
    name = distance.names[0]
    scores = {}
    for run in RUNS:
        per_image = quality(real, image_to_tensor(images[run], (0.0, 255.0)))
        scores[run] = summarize({m: per_image[m].tolist() for m in METRICS})
        distance.update(torch.from_numpy(images[run]).permute(0, 3, 1, 2), real=False)
        scores[run][name] = distance.compute()[name] if len(images["real"]) > 1 else None
        distance.reset()
    return scores


def format_results(results: dict) -> str:
    """The with/without table (markdown) with the facts needed to read it."""
    name, label = results["distance"]["name"], results["distance"]["features"]
    lines = [f"data: {results['data']}", f"{results['steps']} steps of batch {results['batch']} at "
             f"{results['size']}x{results['size']}, FFL ({results['transform']}) weight {results['ffl_weight']}, "
             f"seed {results['seed']}, device {results['device']}, {results['wall_s']} s",
             f"evaluated on {results['eval_images']} held-out images; {name}: Fréchet distance on {label}"
             + ("" if name == "fid" else " (no InceptionV3 weights: not FID, not comparable with published FIDs)"),
             *([f"loss curves: {results['loss_curves']}"] if "loss_curves" in results else []), "",
             f"| FFL | PSNR ↑ | SSIM ↑ | LFD ↓ | {name} ↓ |", "|---|---|---|---|---|"]
    for run, tag in zip(RUNS, ("w/o", "w/"), strict=True):
        m = results["metrics"][run]
        value = "n/a" if m[name] is None else f"{m[name]:.3f}"
        lines.append(f"| {tag} | {m['psnr']['mean']:.3f} | {m['ssim']['mean']:.3f} | {m['lfd']['mean']:.3f} | "
                     f"{value} |")
    return "\n".join(lines)


def _write(out_dir: Path, images: dict[str, np.ndarray], results: dict) -> list[str]:
    """Every output file beside the two run directories (the eval/ folders are replaced as a whole); returns the
    optional files written (loss_curves.png needs the [plots] extra)."""
    eval_dir = out_dir / "eval"
    if eval_dir.exists():
        shutil.rmtree(eval_dir)
    for name, batch in images.items():
        for i, image in enumerate(batch):
            write_image(eval_dir / name / f"{i:04d}.png", image)
    rows = [images[name][:8] for name in ("real", *RUNS)]
    write_image(out_dir / "samples.png", make_grid(np.concatenate(rows), nrow=len(rows[0])))
    spectra = [log_magnitude(image_to_tensor(images[name], (0.0, 1.0))).mean(0) for name in ("real", *RUNS)]
    lo, hi = min(float(s.min()) for s in spectra), max(float(s.max()) for s in spectra)
    write_image(out_dir / "spectra.png", make_grid([picture(s, lo, hi) for s in spectra], nrow=len(spectra)))
    runs = {name: _last_per_step(read_metrics(out_dir / name / "metrics.jsonl")) for name in RUNS}
    drawn = loss_curves(runs, out_dir / "loss_curves.png")
    if not drawn:
        results["loss_curves"] = "not drawn: matplotlib is missing (pip install 'pixforge-ffl[plots]')"
        (out_dir / "loss_curves.png").unlink(missing_ok=True)  # a stale one from an earlier run
    write_text(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
    write_text(out_dir / "results.md", format_results(results) + "\n")
    return ["loss_curves.png"] if drawn else []


def _last_per_step(records: list[dict]) -> list[dict]:
    """metrics.jsonl records, keeping the last one logged for each step (a resumed run logs some steps twice)."""
    by_step = {r["step"]: r for r in records}
    return [by_step[s] for s in sorted(by_step)]
