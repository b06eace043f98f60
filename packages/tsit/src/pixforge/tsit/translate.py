"""Translate any image, folder or video with a trained TSIT model and any style image.

Geometry follows the exported model under `pixforge-run` exactly, so both give the same pictures: the content is
reflect-padded at the bottom / right to a multiple of the network's stride and the output cropped back; the style
image is resized (bicubic) to the padded content size; the noise map of item i is
`numpy.random.default_rng([seed, i, position]).standard_normal(...)` (the noise input's position in the exported
graph, `pixforge.tsit.export.input_names`), so every frame of a video shares one noise map (temporal stability) and
results do not depend on the batch size. Items are numbered as `pixforge-run` numbers them: the inputs in order,
folders sorted recursively.

Semantic-synthesis models take label maps (PNG class ids, read as `pixforge-run` reads them: pixel values or palette
indices, the don't-care id mapped to the extra class, nearest resizing) as content, and for a model trained with
instance maps the instance map of the same relative name from `--instances DIR` (the label map's size, fitted as
it); with a VAE encoder the style image sets the code (its mean), without one the code z is drawn from the seed as
the exported graph's `z` input (`export(..., code="random")`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixforge.core.io import VideoReader, VideoWriter, image_to_tensor, probe_video, read_image, tensor_to_image
from pixforge.core.io import write_image as _write_image
from pixforge.core.loop import progress
from pixforge.export.errors import PixforgeError
from pixforge.export.images import IMAGE_SUFFIXES, probe_image
from pixforge.export.jobs import media_files
from pixforge.export.pipeline import label_classes, read_labels, resize_labels
from pixforge.export.video import is_video_path
from pixforge.tsit import data as tdata
from pixforge.tsit.export import input_names
from pixforge.tsit.model import Trained, check_alpha, classes, load
from pixforge.tsit.nets import for_inference


@dataclass
class Item:
    index: int
    source: Path
    stem: str
    video: bool
    hw: tuple[int, int] = (0, 0)
    frames: int = 1


class Translator:
    """A loaded model ready for inference (`for_inference` in the model's recorded mode) plus the pixforge-run
    geometry."""

    def __init__(self, trained: Trained, device: torch.device, alpha: float = 1.0, seed: int = 0):
        self.arch, self.device, self.alpha, self.seed = trained.arch, device, check_alpha(alpha), seed
        mode = self.arch["inference"]
        self.generator = for_inference(trained.generator, mode).to(device)
        self.encoder = for_inference(trained.encoder, mode).to(device) if trained.encoder is not None else None
        self.stride = self.arch["stride"]
        self.sis = self.arch["task"] == "sis"
        self.fixed = tuple(self.arch["latent_hw"]) if self.arch["start"] == "vae" else None
        # the noise input's position in the exported graph (0 when there is none: a label-map start ignores it)
        self.noise_position = next((k for k, n in enumerate(input_names(self.arch, "random")) if n in ("noise", "z")),
                                   0)

    def network_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        if self.fixed is not None:
            return tuple(self.arch["size"])
        return math.ceil(hw[0] / self.stride) * self.stride, math.ceil(hw[1] / self.stride) * self.stride

    def check(self, name: str, hw: tuple[int, int]) -> None:
        net = self.network_size(hw)
        if (net[0] // self.stride) * (net[1] // self.stride) < 2:
            raise PixforgeError(f"{name} is {hw[1]}x{hw[0]}: padded to {net[1]}x{net[0]} it leaves a 1x1 map at the "
                                f"network's deepest level (stride {self.stride}); give an image at least "
                                f"{self.stride}x{2 * self.stride} pixels")

    def noise(self, index: int, net: tuple[int, int]) -> np.ndarray:
        """Item `index`'s noise map (style transfer) or code z (VAE), as pixforge-run draws the graph's input."""
        h, w = max(1, net[0] // self.stride), max(1, net[1] // self.stride)
        shape = (self.arch["z_dim"],) if self.fixed else (3, h, w)
        return np.random.default_rng([self.seed, index, self.noise_position]).standard_normal(shape, dtype=np.float32)

    def _fit(self, image: np.ndarray, net: tuple[int, int], resample: int) -> np.ndarray:
        if self.fixed is not None:
            return resize_labels(image, net) if self.sis else tdata.resize(image, net, resample)
        h, w = image.shape[:2]
        return image if (h, w) == net else np.pad(image, ((0, net[0] - h), (0, net[1] - w), (0, 0)), mode="reflect")

    @torch.no_grad()
    def run(self, contents: list[np.ndarray], style: np.ndarray | None, indices: list[int],
            instances: list[np.ndarray] | None = None) -> torch.Tensor:
        """Network output (N x 3 x Hn x Wn, float in [-1, 1]) for contents sharing one network size: uint8 RGB
        images, or (semantic synthesis) label-map ids as `pixforge.export.pipeline.read_labels` gives them, with
        instance maps alike when the model was trained with them."""
        net = self.network_size(contents[0].shape[:2])
        if self.sis:
            ids = np.stack([self._fit(c, net, Image.Resampling.NEAREST)[..., 0] for c in contents])
            cls = label_classes(ids, self.arch["num_classes"], self.arch.get("dontcare"))
            if (cls < 0).any():
                raise PixforgeError(f"a label map holds class id {int(ids[cls < 0].flat[0])}, outside the model's "
                                    f"{self.arch['num_classes']} classes")
            inst = None
            if self.arch.get("instance"):
                if instances is None:
                    raise PixforgeError("this model was trained with instance maps: give them with --instances DIR")
                inst = torch.from_numpy(np.stack([self._fit(i, net, Image.Resampling.NEAREST)[..., 0]
                                                  for i in instances]).astype(np.int64)).to(self.device)
            # one-hot on the device: K float maps per image would be K times the ids' host memory and transfer
            content = tdata.semantics(torch.from_numpy(cls).to(self.device), classes(self.arch), inst)
        else:
            content = image_to_tensor(np.stack([self._fit(c, net, Image.Resampling.BICUBIC) for c in contents]))
        n = len(contents)
        noise = torch.from_numpy(np.stack([self.noise(i, net) for i in indices])).to(self.device)
        style_t = None
        if style is not None:
            style_t = image_to_tensor(tdata.resize(style, net, Image.Resampling.BICUBIC))[None].expand(n, -1, -1, -1)
            style_t = style_t.contiguous().to(self.device)
        if self.encoder is not None and style_t is not None:
            noise = self.encoder(style_t)[0]
        out = self.generator(content.to(self.device), None if self.sis else style_t, noise, self.alpha)
        return out.float()

    def translate(self, contents: list[np.ndarray], style: np.ndarray | None, indices: list[int],
                  instances: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """uint8 H x W x 3 results at each content's own size."""
        pixels = tensor_to_image(self.run(contents, style, indices, instances))
        return [p[: c.shape[0], : c.shape[1]] if self.fixed is None else
                tdata.resize(p, c.shape[:2], Image.Resampling.BICUBIC) for p, c in zip(pixels, contents, strict=True)]


def collect(inputs: list[str], out: Path) -> list[Item]:
    """Every item in pixforge-run's order (the same file list: `pixforge.export.jobs.media_files`)."""
    if not inputs:
        raise PixforgeError("no inputs: give image files, folders or videos to translate")
    return [Item(k, f, stem, is_video_path(f)) for k, (f, stem) in enumerate(media_files(inputs, out))]


def translate(run: str, inputs: list[str], out: str, style: str | None = None, alpha: float = 1.0, batch: int = 4,
              seed: int = 0, device: str = "auto", overwrite: bool = False, quiet: bool = False,
              instances: str | None = None) -> list[Path]:
    """Translate images / folders / videos; returns the files written (OUT/<name>.png|.mp4, or
    OUT/<style name>/<name>... when --style is a folder of several styles)."""
    from pixforge.core.runtime import resolve_device

    if not isinstance(batch, int) or batch < 1:
        raise PixforgeError(f"--batch must be a positive integer, got {batch!r}")
    if not isinstance(seed, int) or seed < 0:
        raise PixforgeError(f"--seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise PixforgeError(f"--out {out_dir} exists and is not a folder")
    translator = Translator(load(run), resolve_device(device), alpha, seed)
    styles = _styles(style, translator)
    items = collect(inputs, out_dir)
    for item in items:  # every input is opened and checked before anything is written
        if item.video:
            if translator.sis:
                raise PixforgeError(f"{item.source}: semantic-synthesis models translate label maps, not videos")
            info = probe_video(item.source)
            item.hw, item.frames = (info.height, info.width), info.frame_count or 1
        else:
            item.hw = probe_image(item.source)[:2]
            if translator.sis:
                tdata.read_labels(item.source, translator.arch["num_classes"], translator.arch.get("dontcare"))
        translator.check(str(item.source), item.hw)
    inst_files = _instance_files(items, instances, translator)
    plan = {(name, item.index): out_dir / (name if len(styles) > 1 else "") / (item.stem + _suffix(item))
            for name in styles for item in items}
    style_files = tdata.list_images(Path(style)) if style is not None else []
    sources = {f.resolve() for f in [*(it.source for it in items), *inst_files.values(), *style_files]}
    clash = next((p for p in plan.values() if p.resolve() in sources), None)
    if clash is not None:  # never, even with --overwrite
        raise PixforgeError(f"{clash} is one of the inputs and would be overwritten: choose another --out")
    existing = [p for p in plan.values() if p.exists()]
    if existing and not overwrite:
        raise PixforgeError(f"{existing[0]} already exists: pass --overwrite to replace it")
    written = []
    total = len(styles) * sum(it.frames for it in items)
    with progress(total, desc="translate", unit="image", disable=quiet) as bar:
        for name, style_image in styles.items():
            stills = sorted((it for it in items if not it.video), key=lambda it: translator.network_size(it.hw))
            for _, group in groupby(stills, key=lambda it: translator.network_size(it.hw)):
                group = list(group)
                for k in range(0, len(group), batch):
                    chunk = group[k:k + batch]
                    images = [read_labels(it.source) if translator.sis else read_image(it.source) for it in chunk]
                    inst = [read_labels(inst_files[it.index]) for it in chunk] if inst_files else None
                    results = translator.translate(images, style_image, [it.index for it in chunk], inst)
                    for it, result in zip(chunk, results, strict=True):
                        written.append(_write_image(plan[(name, it.index)], result))
                    bar.update(len(chunk))
            for it in (it for it in items if it.video):
                written.append(_video(translator, it, style_image, plan[(name, it.index)], batch, bar))
    return written


def _suffix(item: Item) -> str:
    return ".mp4" if item.video else ".png"


def _instance_files(items: list[Item], instances: str | None, translator: Translator) -> dict[int, Path]:
    """{item index: instance map}: the file of each item's relative name (any image suffix) under `instances`, of
    the item's size."""
    if not translator.arch.get("instance"):
        if instances is not None:
            raise PixforgeError("--instances is for semantic-synthesis models trained with instance maps")
        return {}
    if instances is None:
        raise PixforgeError("this model was trained with instance maps: give them with --instances DIR")
    found = {}
    for item in items:
        matches = [p for p in (Path(instances) / (item.stem + s) for s in IMAGE_SUFFIXES) if p.is_file()]
        if not matches:
            raise PixforgeError(f"{item.source} has no instance map {Path(instances) / item.stem}.png (--instances "
                                "maps are matched to label maps by relative name)")
        if read_labels(matches[0]).shape[:2] != item.hw:
            raise PixforgeError(f"instance map {matches[0]} is not the size of its label map {item.source}")
        found[item.index] = matches[0]
    return found


def _styles(style: str | None, translator: Translator) -> dict[str, np.ndarray | None]:
    """{name: uint8 image}: one style image, or every image of a folder (named by relative path)."""
    if style is None:
        if not translator.sis:
            raise PixforgeError("--style is required: a style image, or a folder of style images")
        return {"random": None}
    root = Path(style)
    files = tdata.list_images(root)
    tdata.check_images(files)
    if root.is_file():
        return {root.stem: read_image(root)}
    return {f.relative_to(root).with_suffix("").as_posix(): read_image(f) for f in files}


def _video(translator: Translator, item: Item, style: np.ndarray | None, path: Path, batch: int, bar) -> Path:
    """Stream a video through the model batch by batch; one noise map (the item's) for every frame; audio kept."""
    with VideoReader(item.source, batch) as reader:
        even = item.hw[0] % 2 == 0 and item.hw[1] % 2 == 0
        with VideoWriter(path, reader.info.fps_fraction, audio_from=item.source,
                         pix_fmt="yuv420p" if even else "yuv444p") as writer:
            for frames in reader:
                writer.write(np.stack(translator.translate(list(frames), style, [item.index] * len(frames))))
                bar.update(len(frames))
    return path
