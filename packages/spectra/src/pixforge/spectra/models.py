"""The image models of "Learning to See by Looking at Noise", each a pure function of `(seed, index, size)`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from pixforge.core.datagen import rng, whole_number
from pixforge.export.errors import PixforgeError
from pixforge.spectra import deadleaves, deadleaves_torch, statistical
from pixforge.spectra.featurevis import ENCODERS, FeatureVis
from pixforge.spectra.stylegan import VARIANTS, RandomStyleGAN

STATISTICAL = {  # name: (spectrum, wmm, colour)
    "spectrum": (True, False, False),
    "wmm": (False, True, False),
    "color": (False, False, True),
    "spectrum-color": (True, False, True),
    "spectrum-color-wmm": (True, True, True),
}
DEAD_LEAVES = {"dead-leaves-squares": "squares", "dead-leaves-oriented": "oriented",
               "dead-leaves-shapes": "shapes", "dead-leaves-textured": "textured"}
SUMMARIES = {
    "dead-leaves-squares": "dead leaves of axis-aligned squares, r ~ 1/r^3 on [0.03, 1] x size (Fig. 2e)",
    "dead-leaves-oriented": "dead leaves of randomly rotated squares (Fig. 2f)",
    "dead-leaves-shapes": "dead leaves of circles, squares, rectangles, triangles, quadrilaterals (Fig. 2g)",
    "dead-leaves-textured": "dead leaves filled with Spectrum+Color+WMM textures (Fig. 2h)",
    "spectrum": "noise with a 1/(|fx|^a + |fy|^b) power spectrum in a random colour basis (Fig. 2i)",
    "wmm": "wavelet-marginal model: generalised-normal steerable-pyramid marginals (Fig. 2j)",
    "color": "white noise with the colour histograms of a random few-colour image",
    "spectrum-color": "power-law spectrum + colour histograms (Fig. 2k)",
    "spectrum-color-wmm": "power-law spectrum + colour histograms + wavelet marginals (Fig. 2l)",
    "stylegan-random": "untrained StyleGAN2, NVlabs' initialisation, no noise (Fig. 2m)",
    "stylegan-highfreq": "untrained StyleGAN2, wavelet filters, 1/f^alpha noise maps (Fig. 2n)",
    "stylegan-sparse": "High-freq + Laplacian noise envelopes + random biases (Fig. 2o)",
    "stylegan-oriented": "Sparse with one noise map shared by all layers (Fig. 2p)",
    "featurevis-random": "images optimised to excite 1-2 avgpool units of a random ResNet50 (Fig. 2q)",
    "featurevis-deadleaves": "the same for a MoCo v2 ResNet50 trained on dead leaves, --encoder PATH (Fig. 2r)",
}
NAMES = tuple(SUMMARIES)
_TEXTURES: dict = {}  # texture pools, per process
_DEVICE_TEXTURES: dict = {}  # the current texture pool on each device (a tensor), per process


@dataclass(frozen=True)
class Statistical:
    """Spectrum / WMM / colour-histogram model (see `statistical`). `paper_spectrum`: the paper's independent
    exponents per channel instead of the code's nearly equal ones; `correlate_channels`: rotate back from a
    random colour basis (the code's default for every published dataset)."""

    name: str = "spectrum-color-wmm"
    iterations: int = 10
    paper_spectrum: bool = False
    correlate_channels: bool = True
    batch: int = 1

    def __post_init__(self) -> None:
        whole_number("--iterations", self.iterations)

    def params(self) -> dict:
        params = asdict(self)
        params.pop("batch")
        return params

    def check_size(self, size: int) -> None:
        if STATISTICAL[self.name][1]:
            if size < 32 or size > 2048 or size & (size - 1):
                raise PixforgeError(f"{self.name} needs a power-of-two size from 32 to 2048 (steerable pyramid), "
                                    f"not {size}")
        elif size < 16 or size > 4096 or size % 2:
            raise PixforgeError(f"{self.name} makes even sizes from 16 to 4096 pixels, not {size}")

    def recipe(self, seed: int, index: int, size: int) -> dict:
        spectrum, wmm, color = STATISTICAL[self.name]
        r = rng(seed, index)
        out: dict = {}
        if color or self.correlate_channels:
            out["color"] = statistical.sample_color_model(r, size)
        if spectrum:
            out["magnitude"], out["slopes"] = statistical.sample_spectrum(r, size, self.paper_spectrum)
        if wmm:
            out["wmm"] = statistical.sample_wmm(r, size)
        out["start"] = (256.0 * r.uniform(0, 1, (3, size, size))).astype(np.float32)
        return out

    def sample(self, seed: int, indices: Sequence[int], size: int, device: torch.device) -> np.ndarray:
        spectrum, wmm, color = STATISTICAL[self.name]
        recipes = [self.recipe(seed, i, size) for i in indices]

        def stack(get, dtype=torch.float32):
            return torch.from_numpy(np.stack([get(r) for r in recipes])).to(device, dtype)

        colors = ({"hist": stack(lambda r: r["color"]["hist"]), "centres": stack(lambda r: r["color"]["centres"])}
                  if color else None)
        wmm_params = {k: stack(lambda r, k=k: r["wmm"][k]) for k in ("hist", "mean", "std")} if wmm else None
        images = statistical.synthesize(
            stack(lambda r: r["start"]), magnitude=stack(lambda r: r["magnitude"]) if spectrum else None,
            wmm=wmm_params, color=colors,
            basis=stack(lambda r: r["color"]["basis"]) if self.correlate_channels else None,
            mean=stack(lambda r: r["color"]["mean"]) if self.correlate_channels else None,
            iterations=self.iterations)
        return images.cpu().numpy()


@dataclass(frozen=True)
class DeadLeaves:
    """Dead leaves (see `deadleaves`). `paper_shapes`: circles, triangles and rectangles only (the paper) for
    the shapes/textured models; textured: `texture_pool` textures of `texture_model` at `texture_size` px
    (official: 10,000 Spectrum+Color+WMM images of 128 px), nearest-resized, one drawn per leaf."""

    name: str = "dead-leaves-shapes"
    paper_shapes: bool = False
    texture_model: str = "spectrum-color-wmm"
    texture_pool: int = 100
    texture_size: int = 128
    batch: int = 1

    def __post_init__(self) -> None:
        if DEAD_LEAVES[self.name] == "textured":
            whole_number("--texture-pool", self.texture_pool)
            try:
                get(self.texture_model).check_size(self.texture_size)
            except PixforgeError as err:
                raise PixforgeError(f"--texture-size: {err}") from None

    def params(self) -> dict:
        params = asdict(self)
        params.pop("batch")
        if DEAD_LEAVES[self.name] != "textured":
            for key in ("texture_model", "texture_pool", "texture_size"):
                params.pop(key)
        return params

    def check_size(self, size: int) -> None:
        if not 16 <= size <= 4096:
            raise PixforgeError(f"{self.name} makes square images of 16 to 4096 pixels, not {size}")

    def kinds(self) -> tuple[int, ...]:
        style = DEAD_LEAVES[self.name]
        if style in ("shapes", "textured") and self.paper_shapes:
            return deadleaves.PAPER_MIXED
        return deadleaves.KINDS[style]

    def textures(self, seed: int, size: int) -> np.ndarray:
        key = (seed, self.texture_model, self.texture_pool, self.texture_size, size)
        if key not in _TEXTURES:
            model = get(self.texture_model)
            pool = np.concatenate([model.sample(seed, range(i, min(i + 16, self.texture_pool)), self.texture_size,
                                                torch.device("cpu")) for i in range(0, self.texture_pool, 16)])
            rows = np.arange(size) * self.texture_size // size  # nearest resize
            _TEXTURES.clear()
            _TEXTURES[key] = np.ascontiguousarray(pool[:, rows][:, :, rows])
        return _TEXTURES[key]

    def device_textures(self, seed: int, size: int, device: torch.device) -> torch.Tensor:
        """`textures` as a tensor on `device`, copied once (kept until another pool is asked for on `device`)."""
        pool = self.textures(seed, size)
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        cached = _DEVICE_TEXTURES.get(device)
        if cached is None or cached[0] is not pool:
            _DEVICE_TEXTURES[device] = pool, torch.from_numpy(pool).to(device)
        return _DEVICE_TEXTURES[device][1]

    def sample(self, seed: int, indices: Sequence[int], size: int, device: torch.device) -> np.ndarray:
        """On the CPU the NumPy rasteriser (the reference), elsewhere `sample_batched` (equal images)."""
        if device.type != "cpu":
            return self.sample_batched(seed, indices, size, device)
        textured = DEAD_LEAVES[self.name] == "textured"
        pool = self.textures(seed, size) if textured else None
        out = []
        for i in indices:
            labels, leaves = deadleaves.paint(size, rng(seed, i), self.kinds(), self.texture_pool if textured else 0)
            out.append(deadleaves.render(labels, leaves, pool))
        return np.stack(out)

    def sample_batched(self, seed: int, indices: Sequence[int], size: int, device: torch.device) -> np.ndarray:
        """The images of `indices` painted together by the torch rasteriser on `device`: equal to `sample`."""
        textured = DEAD_LEAVES[self.name] == "textured"
        labels, leaves = deadleaves_torch.paint(size, [rng(seed, i) for i in indices], self.kinds(),
                                                self.texture_pool if textured else 0, device)
        pool = self.device_textures(seed, size, device) if textured else None
        return deadleaves_torch.render(labels, leaves, pool).cpu().numpy()


def get(name: str, **options):
    """The model called `name` (case-insensitive; `_` and `-` alike) with `options`."""
    key = str(name).lower().replace("_", "-")
    if key in STATISTICAL:
        cls = Statistical
    elif key in DEAD_LEAVES:
        cls = DeadLeaves
    elif key in VARIANTS:
        cls = RandomStyleGAN
    elif key in ENCODERS:
        cls = FeatureVis
    else:
        raise PixforgeError(f"unknown model {name!r}: choose one of {', '.join(NAMES)}")
    fields = cls.__dataclass_fields__
    unknown = [k for k in options if k not in fields]
    if unknown:
        raise PixforgeError(f"{key} has no option {', '.join(unknown)} (options: "
                            f"{', '.join(f for f in fields if f not in ('name', 'batch'))})")
    if cls is DeadLeaves and options.get("texture_model", "spectrum-color-wmm") not in STATISTICAL:
        raise PixforgeError(f"--texture-model must be one of {', '.join(STATISTICAL)}")
    return cls(name=key, **options)
