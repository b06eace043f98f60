"""Contrastive pretraining on the package's image models: MoCo v2 (the paper's large-scale run) or alignment +
uniformity (its small-scale loss), on a ResNet-18/50 from `pixforge.core.nets.resnet`.

    train(...)              the launcher and CLI verb `pretrain`: every option checked, the data opened, defaults
                            resolved (lr scaled with the batch); then
    training_loop(...)      one loop under the phase headings of `pixforge.core.toy` (the template);
    ContrastiveLoss         the forward pass and loss terms of the one phase, "main".

Per step (batch B per process, world W): the images of global samples [s B W, (s + 1) B W) (rank r its slice),
two views each (`contrastive.TwoViews`, seeded by (seed, step, rank)), then
  mocov2:    logits = [q.k+, q.queue] / T, loss = CE(logits, 0); key encoder = m key + (1 - m) query; enqueue;
  alignunif: loss = align_w * align(x, y) + unif_w * (uniform(x) + uniform(y)) / 2.
SGD(momentum 0.9, wd 1e-4); lr = base * global batch / 256 with a cosine (per epoch, as MoCo's `--cos`) or the
step decay of the official align/uniform script. Images are functions of (seed, index): a resumed run continues
exactly.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pixforge.core import distributed
from pixforge.core.checkpoint import Checkpoints, load_checkpoint, save_release
from pixforge.core.io import save_grid
from pixforge.core.loop import GracefulStop, MetricLogger, progress
from pixforge.core.rundir import RunDir
from pixforge.core.runtime import autocast, autocast_dtype, configure, grad_scaler, resolve_device, seed_everything
from pixforge.core.steps import StepSampler, cosine_lr, set_lr
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_numbers
from pixforge.spectra.contrastive import (
    AlignUniform,
    MoCo,
    TwoViews,
    align_loss,
    backbone_state,
    step_seed,
    uniform_loss,
)

METHODS = ("mocov2", "alignunif")
ARCHS = ("resnet18", "resnet50")
# official defaults per method: base lr per 256 images, schedule, views (main_moco.py --cos --aug-plus --mlp
# --moco-t 0.2, lr 0.015; align_uniform/main.py: lr 0.12 per 256, x0.1 at epochs 155, 170, 185 of 200)
LR_PER_256 = {"mocov2": 0.015, "alignunif": 0.12}
SCHEDULES = ("cosine", "step")
DEFAULT_SCHEDULE = {"mocov2": "cosine", "alignunif": "step"}
STEP_MILESTONES = (155 / 200, 170 / 200, 185 / 200)
EPOCH_IMAGES = 1_281_167  # MoCo's epoch: ImageNet-1k's size (the authors' virtual_size for generated data)
SAMPLES = 8


def train(data: str, out: str, arch: str = "resnet50", method: str = "mocov2", size: int = 224,
          gen_size: int | None = None, epochs: int | None = None, steps: int | None = None, batch: int = 256,
          n: int = EPOCH_IMAGES, lr: float | None = None, schedule: str | None = None, momentum: float = 0.9,
          weight_decay: float = 1e-4, dim: int = 128, mlp: bool = True, queue: int = 65536,
          moco_momentum: float = 0.999, temperature: float = 0.2, align_w: float = 1.0, unif_w: float = 1.0,
          align_alpha: float = 2.0, unif_t: float = 2.0, aug: str | None = None, bn: str = "shuffle",
          seed: int = 0, workers: int = 0, ckpt_every: int = 1000, sample_every: int = 1000, keep_last: int = 3,
          device: str = "auto", amp: bool | str = False, threads: int | None = None, resume: bool = False,
          overwrite: bool = False, quiet: bool = False) -> Path:
    """Contrastive pretraining of a ResNet into run directory OUT (config.json, checkpoints/, samples/ (the two
    views), metrics.jsonl, log.txt; at the end encoder.safetensors = the query encoder without its head,
    torchvision names, and model.safetensors = the whole MoCo state). Multi-GPU:
    `torchrun --nproc-per-node G -m pixforge.spectra.cli pretrain ...` (--batch is per process).

    --data: a model name (`pixforge-spectra list`), models joined by commas (a mixture: image i from model
    i mod k), generated on the fly at --gen-size (default: the power of two >= 8/7 --size, 256 for 224), with
    --n distinct images per model; or a folder of images / npz / tar shards (`generate`'s output).
    --method mocov2 (official: queue 65536, momentum 0.999, T 0.2, 2-layer MLP head to --dim 128, lr 0.015 per
    256 images, cosine) or alignunif (align_w 1, unif_w 1, alpha 2, t 2, lr 0.12 per 256, x0.1 at 155/170/185
    of 200 epochs). --lr is the lr of the whole global batch (default: scaled linearly from those). --epochs E of
    --n images (default 200 as the official runs) or --steps. --bn shuffle (MoCo's shuffle BN) or sync (SyncBN),
    under torchrun only. --amp (bf16/fp16 on GPU). --resume continues exactly."""
    config = {k: v for k, v in locals().items() if k not in ("out", "resume", "overwrite", "quiet", "threads")}
    # Check options and data (before the run directory exists).
    _check_options(config, threads)
    if Path(out).exists() and not Path(out).is_dir():
        raise PixforgeError(f"--out {out} exists and is not a folder (a run directory)")
    dev = resolve_device(device)
    if steps is not None and epochs is not None:
        raise PixforgeError("give --epochs or --steps, not both")
    dataset = open_data(data, size, gen_size, n, seed)
    # Resolve defaults.
    if threads:
        torch.set_num_threads(threads)
    world = distributed.setup(dev).world_size
    global_batch = batch * world
    if method == "mocov2" and queue % global_batch:
        raise PixforgeError(f"--queue {queue} must be a multiple of the global batch {global_batch} "
                            f"(--batch {batch} x {world} processes), as MoCo's queue update assumes")
    epochs = 200 if steps is None and epochs is None else epochs
    steps_per_epoch = max(1, math.ceil(dataset.epoch / global_batch))
    config.update(gen_size=dataset.gen_size, n=dataset.epoch, data_kind=dataset.kind,
                  steps=steps if steps is not None else epochs * steps_per_epoch, epochs=epochs,
                  steps_per_epoch=steps_per_epoch, global_batch=global_batch,
                  lr=lr if lr is not None else LR_PER_256[method] * global_batch / 256,
                  schedule=schedule or DEFAULT_SCHEDULE[method], aug=aug or method)
    inputs = [p for p in str(data).split(",") if Path(p).exists()]  # folders of images (model names are not paths)
    return training_loop(RunDir(out, inputs), config, dataset, dev, resume=resume, overwrite=overwrite, quiet=quiet)


class ContrastiveLoss:
    """The forward pass and loss terms of `method` on a pair of views; one phase, "main"."""

    def __init__(self, net: torch.nn.Module, config: dict[str, Any], amp_dtype, scaler):
        self.net, self.method, self.amp_dtype, self.scaler = net, config["method"], amp_dtype, scaler
        self.align_w, self.unif_w = config["align_w"], config["unif_w"]
        self.alpha, self.t = config["align_alpha"], config["unif_t"]

    def accumulate_gradients(self, phase: str, q: torch.Tensor, k: torch.Tensor,
                             shuffle_seed: int = 0) -> dict[str, torch.Tensor]:
        """Forward, loss and (scaled) backward of `phase`; returns its loss terms, detached, for the log."""
        assert phase == "main", phase
        with autocast(q.device, self.amp_dtype):
            if self.method == "mocov2":
                logits, labels = self.net(q, k, shuffle_seed)
                loss = F.cross_entropy(logits.float(), labels)
                terms = {"loss": loss, "acc1": (logits.argmax(1) == labels).float().mean() * 100}
            else:
                x, y = self.net(q, k)
                align = align_loss(x, y, self.alpha)
                unif = (uniform_loss(x, self.t) + uniform_loss(y, self.t)) / 2
                loss = self.align_w * align + self.unif_w * unif
                terms = {"loss": loss, "align": align, "uniform": unif}
        self.scaler.scale(loss).backward()
        return {name: value.detach() for name, value in terms.items()}


def build_model(config: dict[str, Any], generator: torch.Generator | None = None) -> torch.nn.Module:
    """The network of `config`'s method (MoCo or AlignUniform), freshly initialised."""
    if config["method"] == "mocov2":
        return MoCo(config["arch"], config["dim"], config["queue"], config["moco_momentum"], config["temperature"],
                    config["mlp"], shuffle_bn=config["bn"] == "shuffle", generator=generator)
    return AlignUniform(config["arch"], config["dim"], config["mlp"], generator=generator)


def lr_at(config: dict[str, Any], step: int) -> float:
    """The learning rate of `step`: per epoch (as the official scripts) when trained by --epochs, else per step."""
    steps, base = config["steps"], config["lr"]
    if config.get("epochs"):
        position, total = step // config["steps_per_epoch"], config["epochs"]
    else:
        position, total = step, steps
    if config["schedule"] == "cosine":
        return cosine_lr(base, position, total)
    return base * 0.1 ** sum(position >= math.floor(f * total) for f in STEP_MILESTONES)


def training_loop(run: RunDir, config: dict[str, Any], dataset: torch.utils.data.Dataset, dev: torch.device, *,
                  resume: bool, overwrite: bool, quiet: bool) -> Path:
    """The loop of `train`: `config` holds its resolved options; returns the run directory."""
    # Initialize.
    configure(dev)
    dist = distributed.setup(dev)
    steps, seed = config["steps"], config["seed"]
    seed_everything(seed)

    # Construct networks.
    model = build_model(config, torch.Generator().manual_seed(seed))
    if dist.enabled and config["bn"] == "sync":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(dev)
    opt = torch.optim.SGD(model.encoder_q.parameters(), lr=config["lr"], momentum=config["momentum"],
                          weight_decay=config["weight_decay"])
    amp_dtype = autocast_dtype(dev, config["amp"])
    scaler = grad_scaler(dev, amp_dtype)
    models, optimizers = {"model": model}, {"opt": opt}

    # Resume (read before the run is touched: a broken or foreign checkpoint leaves it as it was).
    ckpts = Checkpoints(run.checkpoints, keep_last=config["keep_last"])
    start, latest = 0, ckpts.latest() if resume else None
    if latest is not None:
        start = load_checkpoint(latest, models=models, optimizers=optimizers, scaler=scaler, map_location=dev)["step"]
    config = run.start(config, resume=resume, overwrite=overwrite)
    log = logging.getLogger("pixforge")  # RunDir.start set it up: console, and log.txt on the main rank
    if latest is not None:
        log.info("resumed from %s (step %d)", latest, start)

    # Distribute (the queue is the same on every rank: keys are gathered before they are enqueued).
    net = distributed.wrap_ddp(model, dev, broadcast_buffers=False)
    loss = ContrastiveLoss(net, config, amp_dtype, scaler)
    views = TwoViews(config["aug"], config["size"], seed)
    sampler = StepSampler(start, steps, config["batch"], dist.rank, dist.world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=config["workers"],
                                         pin_memory=dev.type == "cuda",
                                         generator=torch.Generator())  # leaves the global RNG (checkpointed) alone

    # Export sample images (the two views of SAMPLES fixed images, drawn outside the training indices).
    fixed = torch.stack([dataset[2**61 + i] for i in range(SAMPLES)]).to(dev)

    # Train.
    step = start
    with MetricLogger(run.metrics, run.tensorboard, start) as metrics, GracefulStop() as stop, \
            progress(steps, initial=start, disable=quiet) as bar:
        for images in loader:
            # Fetch data.
            q, k = views(images.to(dev, non_blocking=True), step, dist.rank)
            lr = lr_at(config, step)
            set_lr(opt, lr)

            # Encoder step.
            opt.zero_grad(set_to_none=True)
            terms = loss.accumulate_gradients("main", q, k, step_seed(seed, step, 0, 1))
            scaler.step(opt)
            scaler.update()

            # Log.
            step += 1
            values = metrics.log(step, **{name: distributed.all_reduce_mean(v) for name, v in terms.items()}, lr=lr)
            bar.set_postfix(loss=f"{values['loss']:.4f}")
            bar.update()

            # Samples.
            if dist.is_main and (step % config["sample_every"] == 0 or step == steps):
                save_samples(views, fixed, step, run.sample_path(step))

            # Checkpoint.
            if step % config["ckpt_every"] == 0 or step == steps or stop.requested:
                ckpts.save(step, models=models, optimizers=optimizers, scaler=scaler, config=config)
            if stop.requested:  # after the checkpoint: a signal that came while a batch loaded still saves
                break

    # Done.
    if step < steps:
        log.info("stopped at step %d; continue with --resume", step)
    elif dist.is_main:
        release = {"arch": config["arch"], "method": config["method"], "size": config["size"],
                   "data": config["data"], "step": step, "num_features": model.encoder_q.num_features}
        save_release(run.path, model, release)
        save_release(run.path, backbone_state(model), release, name="encoder")
        log.info("finished %d steps: %s", step, run.path)
    distributed.teardown()
    return run.path


@torch.no_grad()
def save_samples(views: TwoViews, fixed: torch.Tensor, step: int, path: Path) -> None:
    """A grid: the images, then their two views (un-normalised), one row each."""
    from pixforge.core.nets.resnet import IMAGENET_MEAN, IMAGENET_STD

    q, k = views(fixed, step)
    mean = torch.tensor(IMAGENET_MEAN, device=q.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=q.device).view(1, 3, 1, 1)
    shown = F.interpolate(fixed.float() / 255, size=q.shape[-2:], mode="bilinear", antialias=True,
                          align_corners=False)
    grid = torch.cat([shown, (q * std + mean).clamp(0, 1), (k * std + mean).clamp(0, 1)]) * 2 - 1
    save_grid(grid, path, nrow=len(fixed))


# ----------------------------------------------------------------------------------------------------------------
# Data: global sample index -> uint8 3 x G x G image.

class _Epochs:
    """Sample index -> dataset position: `total` positions, each pass over them in a fresh seeded order."""

    def __init__(self, total: int, seed: int):
        self.total, self.seed, self._order = total, seed, (None, None)

    def position(self, index: int) -> int:
        cycle, offset = divmod(int(index), self.total)
        if self._order[0] != cycle:
            gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, cycle, 7])))
            self._order = (cycle, gen.permutation(self.total))
        return int(self._order[1][offset])


class ModelImages(torch.utils.data.Dataset):
    """Images generated on the fly: position p is image p // k of model p mod k (dataset `seed`), k models."""

    kind = "models"

    def __init__(self, models: list, n: int, gen_size: int, seed: int):
        self.models, self.n, self.gen_size, self.seed = models, n, gen_size, seed
        self.epoch = n  # an epoch is --n images (for a mixture too, as the official 4-mixed run)
        self.order = _Epochs(n * len(models), seed)

    def __len__(self) -> int:
        return 2**62

    def image(self, position: int) -> torch.Tensor:
        from pixforge.core.datagen import sample_aligned, single_thread

        model = self.models[position % len(self.models)]
        index = position // len(self.models)
        with single_thread():
            img = sample_aligned(model, self.seed, [index], self.gen_size, torch.device("cpu"))[index]
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.image(self.order.position(index))


class FolderImages(torch.utils.data.Dataset):
    """The images of a folder (headers checked here, files read per item) or of npz / tar shards (held in memory),
    each resized to cover `gen_size` x `gen_size` and centre-cropped."""

    kind = "folder"

    def __init__(self, path: Path, gen_size: int, seed: int):
        from pixforge.core.datagen import read_images
        from pixforge.export.images import list_images, probe_image

        self.gen_size = gen_size
        shards = sorted(path.glob("shard-*.npz")) + sorted(path.glob("shard-*.tar"))
        if shards:
            self.files, self.images = None, list(read_images(path))
            count = len(self.images)
        else:
            self.files, self.images = list_images(path), None
            for file in self.files:  # headers (PNGs: checksums): an unreadable image fails before the run exists
                probe_image(file)
            count = len(self.files)
        if count == 0:
            raise PixforgeError(f"--data {path} holds no images")
        self.epoch = count
        self.order = _Epochs(count, seed)

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> torch.Tensor:
        from pixforge.export.images import read_image

        position = self.order.position(index)
        img = self.images[position] if self.images is not None else read_image(self.files[position])
        return torch.from_numpy(cover_crop(img, self.gen_size)).permute(2, 0, 1).contiguous()


def cover_crop(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 H x W x 3 (or grey) -> `size` x `size` x 3: resized (bicubic) to cover the square, centre-cropped."""
    if img.ndim == 2 or img.shape[-1] == 1:
        img = np.repeat(img.reshape(*img.shape[:2], 1), 3, axis=2)
    img = img[..., :3]
    h, w = img.shape[:2]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        if (nh, nw) != (h, w):
            img = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((nw, nh), Image.Resampling.BICUBIC))
        top, left = (nh - size) // 2, (nw - size) // 2
        img = img[top:top + size, left:left + size]
    return np.array(img, dtype=np.uint8, order="C")  # a writable copy (PIL's arrays are read-only)


def default_gen_size(size: int) -> int:
    """The power of two of at least 8/7 `size` (256 for 224: the official generated size; 128 for 64)."""
    return 1 << max(4, math.ceil(math.log2(size * 8 / 7)))


def open_data(data: str, size: int, gen_size: int | None, n: int, seed: int):
    """--data as a dataset: model name(s) (comma-separated) or a folder of images / shards; checked here."""
    from pixforge.spectra.models import NAMES, get

    text = str(data).strip()
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise PixforgeError(f"--data {path} is a file: give a folder of images or shards, or a model name")
        return FolderImages(path, gen_size or round(size * 8 / 7), seed)
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise PixforgeError("--data is empty: give a model name, names joined by commas, or a folder")
    gen = gen_size or default_gen_size(size)
    models = []
    for name in names:
        key = name.lower().replace("_", "-")
        if key not in NAMES:
            raise PixforgeError(f"--data {name!r} is neither a folder nor a model: choose a folder or one of "
                                f"{', '.join(NAMES)}")
        model = get(key)
        model.check_size(gen)
        models.append(model)
    return ModelImages(models, n, gen, seed)


# the smallest value of each integer option (None: not given)
INTEGERS = {"size": 16, "gen_size": 16, "epochs": 1, "steps": 1, "batch": 2, "n": 1, "dim": 1, "queue": 1,
            "seed": 0, "workers": 0, "ckpt_every": 1, "sample_every": 1, "keep_last": 1}
POSITIVE = ("lr", "temperature", "align_alpha", "unif_t")
NON_NEGATIVE = ("weight_decay", "align_w", "unif_w")
FRACTIONS = ("momentum", "moco_momentum")  # in [0, 1)


def _check_options(options: dict, threads) -> None:
    """Every option given, checked before anything is read or written."""
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise PixforgeError(f"--threads must be an integer of at least 1, got {threads!r}")
    check_numbers(options, integers=INTEGERS, positive=POSITIVE, non_negative=NON_NEGATIVE, fractions=FRACTIONS)
    for name, allowed in (("arch", ARCHS), ("method", METHODS), ("schedule", SCHEDULES), ("aug", METHODS),
                          ("bn", ("shuffle", "sync"))):
        if options[name] is not None and options[name] not in allowed:
            raise PixforgeError(f"--{name} must be one of {', '.join(allowed)}, got {options[name]!r}")
    if options["gen_size"] is not None and options["gen_size"] < options["size"]:
        raise PixforgeError(f"--gen-size {options['gen_size']} is smaller than the crop --size {options['size']}")
