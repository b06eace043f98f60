"""What a pretrained encoder is worth, and what it learned: `linear-eval`, `export`, `feature-vis`.

linear-eval follows MoCo's `main_lincls.py` (the script the authors run after MoCo v2): the encoder frozen and in
eval mode (BatchNorm statistics fixed), a linear classifier on the pooled features (`fc` initialised N(0, 0.01),
bias 0), cross entropy, SGD lr 30, momentum 0.9, weight decay 0, batch 256, 100 epochs, lr x0.1 at epochs 60 and 80;
training views RandomResizedCrop(S) + flip, validation resize to 8/7 S + centre crop S; ImageNet normalisation;
top-1 / top-5. `--no-augment` trains on the centre crops' features, computed once (fast on a CPU).
`--optimizer adam --lr 1e-3 --momentum 0.5 --lr-decay 0.2 --batch 128 --no-standardize` is the align/uniform
small-scale probe (`align_uniform/linear_eval_imagenet100.py`: Adam betas (0.5, 0.999), x0.2 at 60 and 80).

One addition (on by default, `--no-standardize` for the exact official recipe): the features are standardised with
the training set's per-feature mean and their RMS standard deviation (of the centre views) before the classifier.
A fixed affine map leaves the linear classifiers one can learn unchanged but makes lr 30 usable for every encoder:
raw pooled features of a random-init or briefly trained ResNet (BatchNorm running statistics far from the data's)
reach magnitudes where SGD at lr 30 diverges.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pixforge.core.nets.resnet import ARCHS, IMAGENET_MEAN, IMAGENET_STD, ResNet, resnet
from pixforge.export.errors import PixforgeError
from pixforge.spectra.contrastive import step_seed

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # where Debian's dataset-fashion-mnist package puts it
SETS = ("digits", "fashion-mnist")


# ----------------------------------------------------------------------------------------------------------------
# Labelled sets. Each gives batches of (normalised views on the device, labels): centre views (the shorter side
# resized to 8/7 S, centre crop S) or, for a training epoch, RandomResizedCrop(S) + horizontal flip.

class TensorSet:
    """Small whole images held in memory (digits, Fashion-MNIST: uint8 N x 3 x h x w); views made on the device a
    batch at a time: centre views resized bilinearly, training views by kornia (RandomResizedCrop scale (0.08, 1),
    ratio (3/4, 4/3), flip) seeded per step."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, size: int, seed: int):
        self.images, self.labels, self.size, self.seed = images, labels, size, seed

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> TensorSet:
        return TensorSet(self.images[index], self.labels[index], self.size, self.seed)

    def batches(self, order: torch.Tensor, batch: int, dev: torch.device, epoch: int | None = None, workers: int = 0):
        crop = None
        if epoch is not None:
            import kornia.augmentation as K

            crop = torch.nn.Sequential(K.RandomResizedCrop((self.size, self.size)), K.RandomHorizontalFlip())
        steps = math.ceil(len(order) / batch)
        for i in range(steps):
            index = order[i * batch:(i + 1) * batch]
            images = self.images[index].to(dev)
            if crop is None:
                views = center_views(images, self.size)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(step_seed(self.seed, epoch * steps + i, 0, 4))
                    views = normalize(crop(images.float() / 255))
            yield views, self.labels[index].to(dev)


class FileSet(torch.utils.data.Dataset):
    """Image files read as each batch needs them (memory does not grow with the set: ImageNet-scale folders); each
    view made from the whole image as torchvision's transforms make it from a PIL image in the official script:
    Resize(8/7 S) + CenterCrop(S), or RandomResizedCrop(S) (scale (0.08, 1), ratio (3/4, 4/3), bilinear) +
    RandomHorizontalFlip, drawn from (seed, epoch, index) so any --workers gives the same views."""

    def __init__(self, files: list[Path], labels: torch.Tensor, size: int, seed: int):
        self.files, self.labels, self.size, self.seed = files, labels, size, seed

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> FileSet:
        return FileSet([self.files[i] for i in index.tolist()], self.labels[index], self.size, self.seed)

    def __getitem__(self, key: tuple[int, int | None]) -> tuple[torch.Tensor, int] | str:
        from pixforge.export.images import read_image

        index, epoch = key
        try:
            img = Image.fromarray(read_image(self.files[index]))
        except PixforgeError as err:
            return str(err)  # raised by the main process: a worker's exception would carry the worker's traceback
        if epoch is None:
            view = center_view(img, self.size)
        else:
            view = train_view(img, self.size, np.random.default_rng([self.seed, epoch, index]))
        return torch.from_numpy(np.array(view)).permute(2, 0, 1), index

    def batches(self, order: torch.Tensor, batch: int, dev: torch.device, epoch: int | None = None, workers: int = 0):
        keys = [(int(i), epoch) for i in order]
        batches = [keys[i:i + batch] for i in range(0, len(keys), batch)]
        loader = torch.utils.data.DataLoader(self, batch_sampler=batches, num_workers=workers, collate_fn=_collate,
                                             pin_memory=dev.type == "cuda")
        for item in loader:
            if isinstance(item, str):
                raise PixforgeError(item)
            views, index = item
            yield normalize(views.to(dev, non_blocking=True).float() / 255), self.labels[index].to(dev)


def _collate(items: list):
    """A batch, or the first unreadable file's message."""
    return next((item for item in items if isinstance(item, str)), None) or torch.utils.data.default_collate(items)


def center_view(img: Image.Image, size: int) -> Image.Image:
    """torchvision's Resize(round(8/7 size)) (the shorter side; bilinear) + CenterCrop(size) of a PIL image."""
    w, h = img.size
    short = round(size * 8 / 7)
    img = img.resize((short, int(short * h / w)) if w <= h else (int(short * w / h), short), Image.Resampling.BILINEAR)
    w, h = img.size
    top, left = int(round((h - size) / 2)), int(round((w - size) / 2))
    return img.crop((left, top, left + size, top + size))


def crop_box(width: int, height: int, rng: np.random.Generator, scale=(0.08, 1.0),
             ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: (top, left, h, w) of a crop of a random share of the area (in
    `scale`) and log-uniform aspect ratio (in `ratio`); after 10 tries that do not fit, the centre crop of the
    image's aspect ratio clamped to `ratio`."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    w, h = width, height
    if width / height < ratio[0]:
        h = int(round(width / ratio[0]))
    elif width / height > ratio[1]:
        w = int(round(height * ratio[1]))
    return (height - h) // 2, (width - w) // 2, h, w


def train_view(img: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """torchvision's RandomResizedCrop(size) (bilinear) + RandomHorizontalFlip of a PIL image, drawn from `rng`."""
    top, left, h, w = crop_box(*img.size, rng)
    view = img.crop((left, top, left + w, top + h)).resize((size, size), Image.Resampling.BILINEAR)
    return view.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else view


# ----------------------------------------------------------------------------------------------------------------
# Where labelled images come from: (train, val, class names, name of the set).

def digits(size: int, seed: int, val_fraction: float):
    """scikit-learn's 8 x 8 digits (1,797 images, 10 classes), split at random (`seed`)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise PixforgeError("--data digits needs scikit-learn (pip install scikit-learn), which is not installed: "
                            "give --data DIR (one sub-folder per class) or fashion-mnist") from None
    bunch = load_digits()
    images = np.clip(np.round(bunch.images * 255.0 / 16.0), 0, 255).astype(np.uint8)
    x = torch.from_numpy(images)[:, None].expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(bunch.target.astype(np.int64))
    return (*split(TensorSet(x, y, size, seed), seed, val_fraction), [str(c) for c in range(10)], "digits")


def _idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format, optionally gzipped) as an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
        ndim = data[3]
        shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, ValueError, IndexError) as err:
        raise PixforgeError(f"{path} is not a readable IDX file ({err})") from None


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def fashion_mnist(size: int, seed: int, root: Path | None = None):
    """Fashion-MNIST from Debian's dataset-fashion-mnist files (never downloaded), in the files' order."""
    root = Path(root or FASHION_MNIST)
    files = {part: _find(root, f"{part}-ubyte") for part in ("train-images-idx3", "train-labels-idx1",
                                                                "t10k-images-idx3", "t10k-labels-idx1")}
    if not all(files.values()):
        raise PixforgeError(f"--data fashion-mnist needs the files of Debian's dataset-fashion-mnist package in {root} "
                            "(apt-get install dataset-fashion-mnist); they are not there")
    sets = []
    for split_name in ("train", "t10k"):
        images = torch.from_numpy(_idx(files[f"{split_name}-images-idx3"]).copy())
        labels = torch.from_numpy(_idx(files[f"{split_name}-labels-idx1"]).astype(np.int64))
        sets.append(TensorSet(images[:, None].expand(-1, 3, -1, -1).contiguous(), labels, size, seed))
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    return sets[0], sets[1], names, "fashion-mnist"


def class_folders(path: Path, size: int, seed: int, flag: str = "--data"):
    """One sub-folder per class (sorted names), every image's header checked now: (FileSet, class names); errors
    name `flag`."""
    from pixforge.export.images import list_images, probe_image

    if not path.is_dir():
        raise PixforgeError(f"{flag} {path} is not a folder: give a folder with one sub-folder of images per class")
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = {}
    for name in classes:
        try:
            found[name] = list_images(path / name)
        except PixforgeError:
            continue  # a sub-folder without images is not a class
    if not found:
        raise PixforgeError(f"{flag} {path} holds no class sub-folders with images (expected DIR/<class>/<image>)")
    if len(found) < 2:
        raise PixforgeError(f"{flag} {path} holds one class ({next(iter(found))}): a classifier needs two or more "
                            "class sub-folders")
    files = [file for listed in found.values() for file in listed]
    for file in files:  # headers (PNGs: checksums): an unreadable image fails before the evaluation starts
        probe_image(file)
    labels = torch.tensor([label for label, listed in enumerate(found.values()) for _ in listed])
    return FileSet(files, labels, size, seed), list(found)


def split(dataset, seed: int, val_fraction: float):
    """A seeded random split: (train, val), `val_fraction` of the images (at least one) held out."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(len(dataset) * val_fraction))
    return dataset.subset(order[n_val:]), dataset.subset(order[:n_val])


def labelled_data(data: str | None, val: str | None, size: int, seed: int, val_fraction: float):
    """(train, val, class names, name of the set) for --data / --val; default: digits, else Fashion-MNIST. A
    folder's training images come in a seeded random order (--max-samples takes the first)."""
    if data is None:
        try:
            import sklearn  # noqa: F401
            data = "digits"
        except ImportError:
            if _find(FASHION_MNIST, "train-images-idx3-ubyte") is None:
                raise PixforgeError("linear-eval has no default labelled set here: scikit-learn (digits) is not "
                                    f"installed and Debian's dataset-fashion-mnist files are not in {FASHION_MNIST}; "
                                    "give --data DIR (one sub-folder of images per class)") from None
            data = "fashion-mnist"
    if data in SETS:
        if val is not None:
            raise PixforgeError(f"--val is for --data DIR; {data} has its own validation split")
        return digits(size, seed, val_fraction) if data == "digits" else fashion_mnist(size, seed)
    train, names = class_folders(Path(data).expanduser(), size, seed)
    if val is None:
        train, held = split(train, seed, val_fraction)
    else:
        held, val_names = class_folders(Path(val).expanduser(), size, seed, "--val")
        if val_names != names:
            raise PixforgeError(f"--val {val} has the classes {val_names[:5]}..., --data {data} has {names[:5]}...: "
                                "they must be the same sub-folder names")
        train = train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)))
    return train, held, names, str(data)


# ----------------------------------------------------------------------------------------------------------------
# Encoders.

def run_encoder(run: str | Path) -> tuple[ResNet, dict]:
    """The headless query encoder of a finished pretraining run (eval mode), and its release config."""
    from pixforge.core.checkpoint import load_release

    run = Path(run)
    if not (run / "encoder.safetensors").is_file():
        raise PixforgeError(f"--run {run} holds no encoder.safetensors: is it a finished `pretrain` run?")
    state, config = load_release(run, name="encoder")
    arch = config.get("arch")
    if arch not in ARCHS:
        raise PixforgeError(f"--run {run}: encoder.json names no known architecture ({arch!r})")
    net = ResNet(arch, num_classes=0)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise PixforgeError(f"--run {run}: encoder.safetensors is not a {arch} "
                            f"({str(err).splitlines()[0][:160]})") from None
    return net.eval(), config


def encoder_for(run: str | None, arch: str | None, weights: str | None, seed: int) -> tuple[ResNet, str, dict]:
    """(headless encoder in eval mode, description, release config) for linear-eval's --run / --arch / --weights."""
    config: dict = {}
    if arch is not None and (arch == "random" or arch.startswith("random-")):
        name = arch[len("random-"):] if arch.startswith("random-") else None
        if run is not None:
            _, config = run_encoder(run)
        name = name or config.get("arch", "resnet50")
        if name not in ARCHS:
            raise PixforgeError(f"--arch {arch}: {name!r} is not one of {', '.join(ARCHS)}")
        net = ResNet(name, num_classes=0, generator=torch.Generator().manual_seed(seed))
        return net.eval(), f"random {name}", config
    if arch is not None and arch not in ARCHS:
        raise PixforgeError(f"--arch must be random, random-<resnet>, or one of {', '.join(ARCHS)}, got {arch!r}")
    if run is not None and weights is not None:
        raise PixforgeError("give --run or --weights, not both")
    if run is not None:
        net, config = run_encoder(run)
        if arch is not None and arch != config["arch"]:
            raise PixforgeError(f"--run {run} holds a {config['arch']} encoder, not {arch}")
        return net, f"{config['arch']} of {run}", config
    if weights is not None:
        net = resnet(arch or "resnet50", weights=weights)
        net.fc = torch.nn.Identity()
        return net.eval(), f"{arch or 'resnet50'} {weights}", config
    raise PixforgeError("give --run RUN (a pretrain run), --weights FILE, or --arch random")


def normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def center_views(images: torch.Tensor, size: int) -> torch.Tensor:
    """Validation views: resize to 8/7 `size` (256 for 224), centre crop `size`; normalised floats."""
    resize = round(size * 8 / 7)
    x = F.interpolate(images.float() / 255, size=(resize, resize), mode="bilinear", antialias=True,
                      align_corners=False)
    top = (resize - size) // 2
    return normalize(x[..., top:top + size, top:top + size].clamp(0, 1))


@torch.no_grad()
def features(net: ResNet, dataset: TensorSet | FileSet, dev: torch.device, batch: int, workers: int) -> torch.Tensor:
    """Pooled features of the centre views of a labelled set, in its order, on the CPU."""
    return torch.cat([net.features(views).float().cpu()
                      for views, _ in dataset.batches(torch.arange(len(dataset)), batch, dev, workers=workers)])


def topk(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """Top-k accuracies in percent (k capped at the number of classes)."""
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    return {f"top{k}": round(float((ranked[:, :k] == labels[:, None]).any(1).float().mean() * 100), 3) for k in ks}


def linear_eval(run: str | None = None, data: str | None = None, val: str | None = None, arch: str | None = None,
                weights: str | None = None, size: int | None = None, epochs: int = 100, batch: int = 256,
                lr: float = 30.0, milestones: str | tuple = "60,80", lr_decay: float = 0.1, momentum: float = 0.9,
                weight_decay: float = 0.0, optimizer: str = "sgd", augment: bool = True, max_samples: int | None = None,
                val_fraction: float = 0.2, standardize: bool = True, workers: int = 0, seed: int = 0,
                device: str = "auto", out: str | None = None, overwrite: bool = False, quiet: bool = False) -> str:
    """Linear evaluation of a frozen encoder: --run RUN (a pretrain run), --weights FILE (--arch resnet18|resnet50:
    torchvision / MoCo files) or --arch random (a random-init network: the run's architecture, else resnet50;
    random-resnet18 names one). --data DIR (one sub-folder of images per class, read as needed by --workers
    processes; --val DIR, else a seeded --val-fraction split), digits (scikit-learn's, the default when installed)
    or fashion-mnist (Debian's dataset-fashion-mnist files; else the default). Official schedule (MoCo
    main_lincls.py): SGD lr 30, momentum 0.9, wd 0, batch 256, 100 epochs, x0.1 (--lr-decay) at --milestones
    60,80, RandomResizedCrop of the whole image + flip, validation Resize(8/7 S) + CenterCrop(S) (--no-augment:
    the training images' centre views, their features computed once); features centred with the training set's
    mean and divided by their RMS std (--no-standardize: the raw features, as the official script). --optimizer adam
    takes --momentum as Adam's beta1 (beta2 0.999): the align/uniform small-scale probe
    (`linear_eval_imagenet100.py`) is --optimizer adam --lr 1e-3 --momentum 0.5 --lr-decay 0.2 --batch 128
    --no-standardize. --max-samples N: the first N training images. --size: the run's (else 224). Prints JSON
    (top-1 / top-5 in %); --out FILE.json writes it (--overwrite replaces an existing one)."""
    from pixforge.core.cli import output_file
    from pixforge.core.loop import progress
    from pixforge.core.runtime import resolve_device
    from pixforge.export.options import check_numbers, whole_number

    for flag, value, least in (("--epochs", epochs, 1), ("--batch", batch, 1), ("--workers", workers, 0),
                               ("--seed", seed, 0)):
        whole_number(flag, value, least)
    if size is not None:
        whole_number("--size", size, 16)
    if max_samples is not None:
        whole_number("--max-samples", max_samples, 1)
    check_numbers(dict(lr=lr, momentum=momentum, weight_decay=weight_decay, lr_decay=lr_decay),
                  positive=("lr", "lr_decay"), non_negative=("weight_decay",), fractions=("momentum",))
    if optimizer not in ("sgd", "adam"):
        raise PixforgeError(f"--optimizer must be sgd or adam, got {optimizer!r}")
    if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1):
        raise PixforgeError(f"--val-fraction must be a number between 0 and 1, got {val_fraction!r}")
    try:
        marks = sorted(int(m) for m in (milestones.split(",") if isinstance(milestones, str) else milestones)
                       if str(m).strip())
    except (TypeError, ValueError):
        raise PixforgeError(f"--milestones must be epochs joined by commas (60,80), got {milestones!r}") from None
    if out is not None:
        output_file(out, ".json", overwrite, inputs=[run, weights, data, val])
    dev = resolve_device(device)
    net, described, run_config = encoder_for(run, arch, weights, seed)
    size = size or run_config.get("size", 224)
    train, held, names, data_name = labelled_data(data, val, size, seed, val_fraction)
    if max_samples is not None:
        train = train.subset(torch.arange(min(max_samples, len(train))))
    if len(set(train.labels.tolist())) < 2:
        raise PixforgeError(f"--data {data_name}: the training images hold one class; a classifier needs two or more")

    # The classifier, its optimiser, and the feature standardisation (from the training images' centre views).
    net = net.to(dev).requires_grad_(False)
    classifier = torch.nn.Linear(net.num_features, len(names)).to(dev)
    with torch.no_grad():
        classifier.weight.normal_(0.0, 0.01, generator=torch.Generator(device=dev).manual_seed(seed))
        classifier.bias.zero_()
    if optimizer == "adam":
        opt = torch.optim.Adam(classifier.parameters(), lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    cached = features(net, train, dev, batch, workers) if standardize or not augment else None
    shift, scale = torch.zeros(net.num_features), torch.ones(net.num_features)
    if standardize:
        # one scale for all features (their RMS std): per-feature scales would blow up near-dead units
        shift, scale = cached.mean(0), cached.var(0).mean().sqrt().clamp_min(1e-12).expand(net.num_features)
    shift, scale = shift.to(dev), scale.to(dev)

    def epoch_batches(epoch: int, order: torch.Tensor):
        """(features, labels) of one epoch's batches: augmented views through the encoder, or the cached ones."""
        if not augment:
            for i in range(0, len(order), batch):
                yield cached[order[i:i + batch]].to(dev), train.labels[order[i:i + batch]].to(dev)
            return
        for views, labels in train.batches(order, batch, dev, epoch, workers):
            with torch.no_grad():
                feats = net.features(views).float()
            yield feats, labels

    # Train the classifier.
    with progress(epochs, desc="linear-eval", unit="epoch", disable=quiet) as bar:
        for epoch in range(epochs):
            for group in opt.param_groups:
                group["lr"] = lr * lr_decay ** sum(epoch >= m for m in marks)
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(step_seed(seed, epoch, 0, 3)))
            for feats, labels in epoch_batches(epoch, order):
                loss = F.cross_entropy(classifier((feats - shift) / scale), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
            bar.update()

    # Evaluate on the held-out centre views.
    with torch.no_grad():
        logits = classifier((features(net, held, dev, batch, workers).to(dev) - shift) / scale).cpu()
    report = {"encoder": described, "data": data_name, "classes": len(names), "train": len(train), "val": len(held),
              **topk(logits, held.labels), "chance_top1": round(100 / len(names), 3), "epochs": epochs,
              "optimizer": optimizer, "lr": lr, "lr_decay": lr_decay, "momentum": momentum,
              "batch": batch, "augment": augment, "standardize": standardize, "size": size,
              "final_train_loss": round(loss.item(), 5)}
    text = json.dumps(report)
    if out is not None:
        from pixforge.export.atomic import write_text

        write_text(Path(out), json.dumps(report, indent=2) + "\n")
    return text


# ----------------------------------------------------------------------------------------------------------------
# Export and feature visualisation.

class FeatureNet(torch.nn.Module):
    """The encoder's pooled features (what linear-eval classifies)."""

    def __init__(self, net: ResNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.features(image)


def export(run: str, out: str | None = None, overwrite: bool = False) -> str:
    """Export a finished pretrain run's encoder to ONNX (default RUN/encoder.onnx): input "image" (RGB, ImageNet
    normalisation, resized by the runtime to the run's --size), output "features" (N x 512 / 2048 pooled features),
    pixforge metadata; parity with PyTorch is checked. Run it with `pixforge-run run RUN/encoder.onnx IMAGES --out
    DIR` (features as .json or --tensor-format npy)."""
    from pixforge.core.cli import output_file
    from pixforge.core.onnx import export_onnx, verify_onnx
    from pixforge.export.metadata import TensorSpec
    from pixforge.spectra import __version__

    net, config = run_encoder(run)
    path = output_file(out if out is not None else Path(run) / "encoder.onnx", ".onnx", overwrite, inputs=[run])
    size = int(config["size"])
    model = FeatureNet(net).eval()
    image = TensorSpec("image", kind="image", range=(0.0, 1.0), mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD),
                       size=(size, size))
    feats = TensorSpec("features", kind="tensor", description=f"{net.num_features} pooled features (avgpool)")
    export_onnx(model, (torch.rand(2, 3, size, size),), path, input_names=["image"], output_names=["features"],
                inputs=[image], outputs=[feats], package="pixforge-spectra", version=__version__, task="features",
                dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}},
                extra={k: config.get(k) for k in ("arch", "method", "size", "data", "step", "num_features")})
    report = verify_onnx(path, model, [normalize(torch.rand(3, 3, size, size))])
    return json.dumps({"onnx": str(path), "max_abs_diff": report.max_abs_diff, "features": net.num_features})


def feature_vis(run: str, out: str | None = None, units: str | tuple | int | None = None, n: int = 8,
                size: int = 128, steps: int = 128, layer: str = "avgpool", seed: int = 0, device: str = "auto",
                overwrite: bool = False) -> str:
    """Feature visualisations of a finished pretrain run's encoder (`featurevis.FeatureVis`: lucent's FFT + colour
    decorrelated images, Adam 0.05, --steps 128, pad/jitter/scale/rotate) maximising its --layer units (default
    avgpool, the features linear-eval reads): --units 0,5,17 (default the first --n); one image per unit in a grid
    written to --out (default RUN/featurevis.png)."""
    from pixforge.core.runtime import resolve_device
    from pixforge.export.images import make_grid, write_image
    from pixforge.export.options import whole_number
    from pixforge.spectra.featurevis import FeatureVis

    whole_number("--n", n)
    whole_number("--steps", steps)
    _, config = run_encoder(run)
    path = Path(out) if out is not None else Path(run) / "featurevis.png"
    if path.exists() and not overwrite:
        raise PixforgeError(f"{path} exists: choose another --out or pass --overwrite")
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise PixforgeError(f"--out {path} must end in .png or .jpg")
    wanted = list(range(n)) if units is None else [
        int(u) for u in (units.split(",") if isinstance(units, str) else
                         units if isinstance(units, (list, tuple)) else [units])]
    vis = FeatureVis(name="featurevis-deadleaves", encoder=str(Path(run) / "encoder.safetensors"),
                     arch=config["arch"], layer=layer, units="single", steps=steps)
    vis.check_size(size)
    channels = vis.network(seed)[1]
    bad = [u for u in wanted if not 0 <= u < channels]
    if bad:
        raise PixforgeError(f"--units {bad} are not units of {layer} (0..{channels - 1})")
    images = vis.sample(seed, wanted, size, resolve_device(device))
    write_image(path, make_grid(images, nrow=min(8, len(images))))
    return json.dumps({"out": str(path), "units": wanted, "layer": layer, "steps": steps})
