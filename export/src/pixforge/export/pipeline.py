"""Pre- and post-processing read purely from a model's pixforge metadata (see `pixforge.export.metadata`).

* image inputs: uint8 H x W x C pixels (decoded as GRAY, RGB or RGBA; colour and gray convert into each other,
  alpha is dropped) -> BGR order if asked -> value `range` -> `(x - mean) / std` (per network channel) -> layout;
  outputs go back the same way; `size` resizes to that (H, W) and the outputs are resized back; `multiple`
  reflect-pads the bottom and right edges and the outputs are cropped back, scaled by the output/input size
  ratio (an x2 model gives x2 crops);
* label-map inputs (kind `labels`): one channel of ids read from the file as stored (pixel values of an L / I
  image, palette indices of a P image; never converted from colour), checked against `num_classes` / `dontcare`
  before anything runs, resized with nearest-neighbour only, fed as float32 ids (the graph one-hot encodes them);
* the first image or label-map input is the primary one: it comes from the files being processed and fixes the
  geometry ("H/k" in noise shapes); any other one holds one image for every item, resized to its own `size` or
  to the primary input's network size, unless it is `paired`: then each item has its own file, of the same
  relative name in a folder, at the item's size, fitted exactly as the primary input (`paired_files`);
* noise inputs: standard normal from `numpy.random.default_rng([seed, item index, input position])`, so an
  item's noise does not depend on the batch it runs in; a shape without a leading "N" is one tensor per batch;
  a generator (no image inputs) asked for an output `size` gets its noise shapes from the size rule in its
  metadata (`pixforge.export.sizing`) instead of the fixed export-time ones;
* scalar inputs: their `default`, or an override; image outputs go back to uint8, tensor outputs stay float.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from pixforge.export.errors import PixforgeError
from pixforge.export.images import DECODE_ERRORS, IMAGE_SUFFIXES, probe_image, read_image
from pixforge.export.images import MODES as PIL_MODES
from pixforge.export.metadata import TensorSpec, resolve_shape
from pixforge.export.session import ModelSession
from pixforge.export.sizing import noise_sizes
from pixforge.export.video import is_video_path

MODES = {1: "GRAY", 3: "RGB", 4: "RGBA"}  # channel count -> `read_image` mode
LABEL_MODES = ("L", "P", "I", "I;16", "I;16L", "I;16B")  # one-channel PIL modes a label map may use
EXACT_IDS = 2**24  # float32 holds every integer below this exactly


def image_channels(spec: TensorSpec) -> int:
    """The channel count of an image tensor: `channels`, else 1 for GRAY and 3 for RGB/BGR."""
    return spec.channels or (1 if spec.color == "GRAY" else 3)


def to_network(images: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """uint8 (N, H, W, C) pixels -> float32 network values in the spec's colour order, scaling and layout."""
    x = images.astype(np.float32)
    if spec.color == "BGR":
        x = np.concatenate([x[..., 2::-1], x[..., 3:]], axis=-1)
    lo, hi = spec.range
    x = lo + x * np.float32((hi - lo) / 255.0)
    if spec.mean is not None:
        x = x - np.asarray(spec.mean, dtype=np.float32)
    if spec.std is not None:
        x = x / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if spec.layout == "NCHW" else x)


def from_network(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """float network values (N, C, H, W) or (N, H, W, C) -> uint8 (N, H, W, C) RGB/GRAY pixels, clipped and rounded."""
    x = np.asarray(x, dtype=np.float32)
    if spec.layout == "NCHW":
        x = x.transpose(0, 2, 3, 1)
    if spec.std is not None:
        x = x * np.asarray(spec.std, dtype=np.float32)
    if spec.mean is not None:
        x = x + np.asarray(spec.mean, dtype=np.float32)
    lo, hi = spec.range
    pixels = np.clip(np.rint((x - lo) * np.float32(255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    if spec.color == "BGR":
        pixels = np.concatenate([pixels[..., 2::-1], pixels[..., 3:]], axis=-1)
    return pixels


def read_labels(path) -> np.ndarray:
    """A label-map file as int32 H x W x 1 ids: the pixel values of a one-channel image (8 or 16 bit, or 32-bit
    integer as Cityscapes' instance maps), the palette indices of a palette (P) image; a colour image is an error."""
    try:
        with Image.open(path) as img:
            img.load()
            mode, ids = img.mode, np.asarray(img)
    except FileNotFoundError:
        raise PixforgeError(f"label map {path} does not exist") from None
    except DECODE_ERRORS as err:
        raise PixforgeError(f"label map {path} is not a readable image ({err.__class__.__name__}: {err})") from None
    if mode not in LABEL_MODES or ids.ndim != 2:
        raise PixforgeError(f"label map {path} is a {mode} image; label maps are one-channel PNGs of class ids "
                            "(grey L/I or palette P), not colour pictures")
    return ids.astype(np.int32)[..., None]


def label_classes(ids: np.ndarray, num_classes: int, dontcare: int | None = None) -> np.ndarray:
    """The class of every label id (int64, same shape): ids 0..num_classes-1 are their own class; `dontcare` is class
    num_classes and the ids above it move down by one (so 255 -> K as SPADE's datasets, or, for ADE20K's 0 =
    unknown, 0 -> K and 1..K -> 0..K-1); any other id gives -1."""
    ids = np.asarray(ids).astype(np.int64)
    if dontcare is None:
        classes = ids
    else:
        classes = np.where(ids == dontcare, num_classes, ids - (ids > dontcare))
    ok = (classes >= 0) & ((classes < num_classes) | (ids == dontcare))
    return np.where(ok, classes, -1)


def check_labels(ids: np.ndarray, spec: TensorSpec, name: str) -> None:
    """Raise `PixforgeError` naming `name` when a label map holds an id outside the spec's classes (without
    `num_classes`: an id that float32 does not hold exactly)."""
    if spec.num_classes is None:
        if ids.size and np.abs(ids).max() >= EXACT_IDS:
            raise PixforgeError(f"label map {name} holds id {int(ids.flat[np.abs(ids).argmax()])}; "
                                f"ids are fed as float32 and must stay below {EXACT_IDS} in magnitude")
        return
    bad = label_classes(ids, spec.num_classes, spec.dontcare) < 0
    if bad.any():
        first = int(np.asarray(ids)[bad].flat[0])
        allowed = f"0..{spec.num_classes - 1}" + (f" and {spec.dontcare} (don't care)" if spec.dontcare is not None
                                                   else "")
        raise PixforgeError(f"label map {name} holds class id {first}, outside the model's {spec.num_classes} "
                            f"classes (ids {allowed})")


def resize_labels(ids: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of H x W x 1 label ids to (H, W) with PIL (ids are never blended)."""
    if ids.shape[:2] == tuple(hw):
        return ids
    out = np.asarray(Image.fromarray(ids[..., 0].astype(np.int32)).resize((hw[1], hw[0]), Image.NEAREST))
    return out.astype(ids.dtype)[..., None]


def labels_to_network(ids: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """(N, H, W, 1) label ids -> float32 ids in the spec's layout."""
    x = ids.astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if spec.layout == "NCHW" else x)


def resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of a uint8 H x W x C image to (H, W) with PIL."""
    if image.shape[:2] == tuple(hw):
        return image
    pil = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    out = np.asarray(pil.resize((hw[1], hw[0]), Image.BICUBIC))
    return out[..., None] if out.ndim == 2 else out


def convert(image: np.ndarray, channels: int) -> np.ndarray:
    """RGB <-> GRAY with PIL's conversion (RGB frames from a video into a GRAY model's input)."""
    if image.shape[2] == channels:
        return image
    pil = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).convert(PIL_MODES[MODES[channels]])
    out = np.asarray(pil)
    return out[..., None] if out.ndim == 2 else out


class Pipeline:
    """Turns items (source images, or nothing for pure generators) into feeds and model outputs into results."""

    def __init__(self, session: ModelSession, *, seed: int = 0, scalars: dict[str, float] | None = None,
                 images: dict[str, str | np.ndarray] | None = None, size: tuple[int, int] | None = None):
        self.session = session
        self.meta = session.meta
        where = session.path
        if not isinstance(seed, int) or seed < 0:
            raise PixforgeError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        image_inputs = self.meta.image_inputs
        self.primary = image_inputs[0] if image_inputs else None
        if self.primary is not None and self.primary.paired:
            raise PixforgeError(f"{where}: input '{self.primary.name}' is the primary input, which cannot be paired")
        for spec in image_inputs + [s for s in self.meta.outputs if s.kind == "image"]:
            if image_channels(spec) not in MODES or (spec.color == "GRAY") != (image_channels(spec) == 1):
                raise PixforgeError(f"{where}: image tensor '{spec.name}' has {image_channels(spec)} channels as "
                                    f"{spec.color}; pixforge-run handles GRAY with 1, RGB/BGR with 3 or 4")
        for spec in self.meta.inputs:
            if spec.kind == "tensor":
                raise PixforgeError(f"{where}: input '{spec.name}' is of kind 'tensor'; pixforge-run feeds image, "
                                    "noise and scalar inputs only")
            relative = [str(d).strip() for d in spec.shape or [] if isinstance(d, str)]
            if spec.kind == "noise" and ("N" in spec.shape[1:] or (
                    self.primary is None and any(d.startswith(("H", "W")) for d in relative))):
                raise PixforgeError(f"{where}: noise input '{spec.name}' has shape {spec.shape}: 'N' may only "
                                    "come first, and 'H'/'W' need an image input")
        self.scalars = {s.name: float(s.default) for s in self.meta.inputs if s.kind == "scalar"}
        for name, value in (scalars or {}).items():
            if name not in self.scalars:
                raise PixforgeError(f"--set {name}=...: the model has no scalar input '{name}' "
                                    f"(scalar inputs: {', '.join(self.scalars) or 'none'})")
            self.scalars[name] = float(value)
        # paired input -> its folder (None: the caller passes each batch's arrays to `feeds` itself)
        self.paired: dict[str, Path | None] = {s.name: None for s in image_inputs[1:] if s.paired}
        self.extra = self._read_extra_images(images or {})
        self.image_files = [Path(p) for p in (images or {}).values() if not isinstance(p, np.ndarray)]
        self.noise_shapes = self._sized_noise(size) if size is not None else {}

    def _sized_noise(self, size: tuple[int, int]) -> dict[str, list]:
        """{noise input: its shape} for a generator's output `size` (H, W), by the metadata's size rule."""
        where = self.session.path
        if self.primary is not None:
            raise PixforgeError(f"--size is for generators (models without image inputs); {where} takes images, "
                                "whose size sets the output's")
        rule = self.meta.extra.get("size_rule")
        if rule is None:
            fixed = self.meta.extra.get("size")
            at = f" ({fixed[0]}x{fixed[1]})" if isinstance(fixed, list) and len(fixed) == 2 else ""
            raise PixforgeError(f"{where} draws samples at its export-time size{at} only: its metadata has no size "
                                "rule (an older export); drop --size, or re-export the model")
        noise = [s for s in self.meta.inputs if s.kind == "noise"]
        sizes = noise_sizes(rule, size, len(noise), str(where))
        return {spec.name: [*spec.shape[:-2], *hw] for spec, hw in zip(noise, sizes, strict=True)}

    def _read_extra_images(self, paths: dict[str, str | np.ndarray]) -> dict[str, np.ndarray]:
        """Secondary image inputs: a path is checked and decoded, an array (uint8 H x W x C) is taken as is; a paired
        input's folder goes to `self.paired`."""
        wanted = {s.name: s for s in self.meta.image_inputs[1:]}
        for name in paths:
            if name not in wanted:
                raise PixforgeError(f"--input {name}=...: the model has no secondary image input '{name}' "
                                    f"(secondary image inputs: {', '.join(wanted) or 'none'})")
        missing = [name for name in wanted if name not in paths and name not in self.paired]
        if missing:
            raise PixforgeError(f"the model also needs image input(s) {', '.join(missing)}: pass "
                                f"--input {missing[0]}=PATH")
        extra = {}
        for name, path in paths.items():
            folder = not isinstance(path, np.ndarray) and Path(path).is_dir()
            if wanted[name].paired:
                if not folder:
                    raise PixforgeError(f"--input {name}={path}: the model takes one '{name}' per item (paired with "
                                        "the items): give a folder of files named like the items")
                self.paired[name] = Path(path)
                continue
            if folder:
                raise PixforgeError(f"--input {name}={path} is a folder, but '{name}' is one image for every item: "
                                    "give a file")
            if isinstance(path, np.ndarray):
                extra[name] = path
                continue
            if wanted[name].kind == "labels":
                extra[name] = read_labels(path)
                check_labels(extra[name], wanted[name], path)
                continue
            self.check_channels(path, wanted[name], probe_image(path)[2])
            extra[name] = read_image(path, MODES[image_channels(wanted[name])])
        return extra

    # -- geometry and validation -------------------------------------------------------------------------

    def network_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The (H, W) the primary input is fed at for a source image of size `hw`."""
        if self.primary.size is not None:
            return self.primary.size
        m = self.primary.multiple
        return math.ceil(hw[0] / m) * m, math.ceil(hw[1] / m) * m

    def check_item(self, name: str, hw: tuple[int, int], has_alpha: bool) -> None:
        """Raise `PixforgeError` naming `name` when a source of this size (and alpha or not) cannot be fed; a label
        map (the file `name`) is read and its ids checked."""
        if self.paired and is_video_path(name):
            raise PixforgeError(f"{name} is a video; a model with paired inputs ({', '.join(self.paired)}) takes "
                                "image files only")
        if self.primary.kind == "labels":
            if is_video_path(name):
                raise PixforgeError(f"{name} is a video; {self.session.path} takes label maps (PNG images)")
            check_labels(read_labels(name), self.primary, name)
        self.check_channels(name, self.primary, has_alpha)
        shape = self.session.inputs[self.primary.name].shape
        fixed = shape[2:4] if self.primary.layout == "NCHW" else shape[1:3]
        net = self.network_size(hw)
        m = self.primary.multiple
        if self.primary.size is None and m > 1 and (net[0] // m) * (net[1] // m) < 2:
            raise PixforgeError(f"{name} is {hw[1]}x{hw[0]}: too small for {self.session.path}, whose deepest feature "
                                f"map (stride {m}) needs 2 cells or more; give an image at least {m}x{2 * m} pixels")
        if len(shape) == 4 and any(isinstance(d, int) and d != n for d, n in zip(fixed, net, strict=True)):
            raise PixforgeError(f"{name} is {hw[1]}x{hw[0]} but {self.session.path} takes {fixed[1]}x{fixed[0]} "
                                "images only (its metadata sets no 'size' to resize to)")

    @staticmethod
    def check_channels(name: str, spec: TensorSpec, has_alpha: bool) -> None:
        """Colour and gray convert into each other (alpha is dropped); a 4-channel input needs an alpha channel."""
        if image_channels(spec) == 4 and not has_alpha:
            raise PixforgeError(f"{name} has no alpha channel but model input '{spec.name}' takes 4 channels "
                                "(RGBA): give an image with transparency")

    def paired_files(self, source: str, stem: str, hw: tuple[int, int]) -> dict[str, Path]:
        """{paired input: the item's file}: the file named `stem` (the item's relative name, any image suffix) in the
        input's folder, opened and checked (the item's size `hw`; ids or channels); a PixforgeError names it."""
        files = {}
        for name, folder in self.paired.items():
            if folder is None:
                raise PixforgeError(f"the model also needs the input {name}, one file per item: pass --input "
                                    f"{name}=DIR (a folder holding each item's file, by relative name)")
            spec = self.meta.input(name)
            matches = [folder / (stem + s) for s in IMAGE_SUFFIXES if (folder / (stem + s)).is_file()]
            if len(matches) != 1:
                raise PixforgeError(f"{source} has {'no' if not matches else 'more than one'} '{name}' file "
                                    f"{folder / stem}.* (--input {name}=DIR pairs one file with each item by "
                                    "relative name)")
            h, w, has_alpha = probe_image(matches[0])
            if (h, w) != tuple(hw):
                raise PixforgeError(f"{matches[0]} is {w}x{h} but its item {source} is {hw[1]}x{hw[0]}: a paired "
                                    "input must have its item's size")
            if spec.kind == "labels":
                check_labels(read_labels(matches[0]), spec, str(matches[0]))
            self.check_channels(str(matches[0]), spec, has_alpha)
            files[name] = matches[0]
        return files

    def read_source(self, path, spec: TensorSpec | None = None) -> np.ndarray:
        """A file decoded for the primary input (or `spec`): label ids, or uint8 pixels in the input's colour mode."""
        spec = spec or self.primary
        if spec.kind == "labels":
            return read_labels(path)
        return read_image(path, MODES[image_channels(spec)])

    # -- running -------------------------------------------------------------------------------------------

    def feeds(self, sources: list[np.ndarray] | None, indices: list[int],
              paired: dict[str, list[np.ndarray]] | None = None) -> dict[str, np.ndarray]:
        """The model's inputs for one batch: `sources` are uint8 H x W x C images that share one network size
        (None for a model without image inputs), `indices` the items' global indices (noise seeds), `paired` each
        paired input's arrays, one per source, of the sources' sizes."""
        n = len(indices)
        net = self.network_size(sources[0].shape[:2]) if sources else None
        feeds = {}
        for k, spec in enumerate(self.meta.inputs):
            if spec is self.primary or spec.paired:
                if spec.paired and (paired is None or spec.name not in paired):
                    raise ValueError(f"input '{spec.name}' is paired with the items: pass its arrays in `paired`")
                arrays = sources if spec is self.primary else paired[spec.name]
                batch = np.stack([self._fit(image, net, spec) for image in arrays])
                feeds[spec.name] = labels_to_network(batch, spec) if spec.kind == "labels" else to_network(batch, spec)
            elif spec.kind == "labels":
                extra = resize_labels(self.extra[spec.name], spec.size or net)
                feeds[spec.name] = np.repeat(labels_to_network(extra[None], spec), n, axis=0)
            elif spec.kind == "image":
                extra = resize(self.extra[spec.name], spec.size or net)
                feeds[spec.name] = np.repeat(to_network(extra[None], spec), n, axis=0)
            elif spec.kind == "noise":
                feeds[spec.name] = self._noise(spec, k, indices, net or (0, 0))
            else:
                feeds[spec.name] = self._scalar(spec, n)
        return feeds

    def run(self, sources: list[np.ndarray] | None, indices: list[int], names: list[str],
            paired: dict[str, list[np.ndarray]] | None = None) -> list[dict]:
        """Run one batch (see `feeds`); `names` name the items in errors (NaN/inf outputs).

        Returns, per item, {output name: uint8 H x W x C image at the source's scale, or the item's array}.
        """
        n = len(indices)
        net = self.network_size(sources[0].shape[:2]) if sources else None
        outputs = self.session.run(self.feeds(sources, indices, paired))
        results: list[dict] = [{} for _ in range(n)]
        for spec in self.meta.outputs:
            value = outputs[spec.name]
            if value.ndim == 0 or value.shape[0] != n:
                raise PixforgeError(f"{self.session.path}: output '{spec.name}' has shape {list(value.shape)} "
                                    f"for a batch of {n}; pixforge-run needs a leading batch dimension")
            if value.dtype.kind == "f":
                bad = ~np.isfinite(value.reshape(n, -1)).all(axis=1)
                if bad.any():
                    raise PixforgeError(f"{self.session.path} produced NaN/inf in output '{spec.name}' for "
                                        f"{names[int(np.argmax(bad))]}")
            if spec.kind != "image":
                for i in range(n):
                    results[i][spec.name] = value[i]
                continue
            pixels = from_network(value, spec) if value.ndim == 4 else None
            if pixels is None or pixels.shape[-1] not in MODES:
                raise PixforgeError(f"{self.session.path}: image output '{spec.name}' has shape {list(value.shape)}"
                                    f" ({spec.layout}); pixforge-run writes images with 1, 3 or 4 channels")
            for i in range(n):
                results[i][spec.name] = self._restore(pixels[i], sources[i].shape[:2], net) if sources else pixels[i]
        return results

    def _fit(self, image: np.ndarray, net: tuple[int, int], spec: TensorSpec) -> np.ndarray:
        """The primary input's geometry (also a paired input's): resize to `size`, else reflect-pad to `multiple`."""
        if self.primary.size is not None:
            return resize_labels(image, net) if spec.kind == "labels" else resize(image, net)
        h, w = image.shape[:2]
        if (h, w) == net:
            return image
        return np.pad(image, ((0, net[0] - h), (0, net[1] - w), (0, 0)), mode="reflect")

    def _restore(self, image: np.ndarray, source: tuple[int, int], net: tuple[int, int]) -> np.ndarray:
        """Undo `_fit` on an output: same scale as output/network size, at the source's extent."""
        target = (round(source[0] * image.shape[0] / net[0]), round(source[1] * image.shape[1] / net[1]))
        if self.primary.size is not None:
            return resize(image, target)
        return image[: target[0], : target[1]]

    def _noise(self, spec: TensorSpec, k: int, indices: list[int], net: tuple[int, int]) -> np.ndarray:
        spec_shape = self.noise_shapes.get(spec.name, spec.shape)
        if spec_shape[0] == "N":
            shape = resolve_shape(spec_shape[1:], 1, *net)
            return np.stack([np.random.default_rng([self.seed, i, k]).standard_normal(shape, dtype=np.float32)
                             for i in indices])
        shape = resolve_shape(spec_shape, len(indices), *net)
        return np.random.default_rng([self.seed, k]).standard_normal(shape, dtype=np.float32)

    def _scalar(self, spec: TensorSpec, n: int) -> np.ndarray:
        if spec.shape:
            shape = resolve_shape(spec.shape, n, 0, 0)
        else:
            graph = self.session.inputs[spec.name].shape
            shape = [d if isinstance(d, int) else (n if i == 0 else 1) for i, d in enumerate(graph)]
        return np.full(shape, self.scalars[spec.name], dtype=np.float32)
