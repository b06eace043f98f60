"""The four synthesizers of Primitives-PS (paper §3, official `pretrain/noise_dataset.py`), each a pure function of
`(seed, index, size)`:

* `pinknoise`     — PinkNoise: 1/(|fx|^a + |fy|^b) noise per channel (`generate_rgb_noise` + `renormalize`);
* `primitives`    — 100 monotone shapes (line, circle x2, ellipse x2, rectangle x2 in the draw) with a maximum
                    size shrinking from S/5 + 2 to 2 over the draws, on a uniform background;
* `primitives-s`  — Primitives + one large salient shape (circle, ellipse or rectangle) near the centre, drawn
                    last (official `dead_leaves`);
* `primitives-ps` — PinkNoise background, the 100 shapes, and a salient shape filled with another PinkNoise
                    pattern (official `pink_leaves`, the one the paper pretrains on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from pixforge.core.datagen import rng
from pixforge.export.errors import PixforgeError
from pixforge.primitives import pink, shapes

MIN_SIZE, MAX_SIZE = 16, 4096
NAMES = ("pinknoise", "primitives", "primitives-s", "primitives-ps")
SUMMARIES = {
    "pinknoise": "PinkNoise: 1/(|fx|^a+|fy|^b) power-spectrum noise, a, b ~ U(0.5, 3.5) per channel",
    "primitives": "Primitives: 100 monotone shapes (lines, circles, ellipses, rectangles) shrinking over the draws",
    "primitives-s": "Primitives-S: Primitives + a large monotone salient shape near the centre",
    "primitives-ps": "Primitives-PS: PinkNoise background + shapes + a PinkNoise-patterned salient shape (paper's)",
}


@dataclass(frozen=True)
class Synthesizer:
    """One Primitives-PS synthesizer. Options beyond the defaults (the official behaviour) are the paper's forms:
    `paper_exponents` (one exponent for both axes), `color_background` (an RGB background: the official code
    fills all three channels with the first of its three random values, so Primitives/-S backgrounds are grey),
    `any_direction_lines` (the official code sorts line end points, so every line runs down-right)."""

    name: str = "primitives-ps"
    shapes: int = shapes.SHAPES
    paper_exponents: bool = False
    color_background: bool = False
    any_direction_lines: bool = False
    batch: int = 1

    def __post_init__(self):
        if self.name not in NAMES:
            raise PixforgeError(f"unknown model {self.name!r}: choose one of {', '.join(NAMES)}")
        if self.shapes < 1:
            raise PixforgeError(f"--shapes must be at least 1, got {self.shapes}")

    def params(self) -> dict:
        params = asdict(self)
        params.pop("batch")
        return params

    def check_size(self, size: int) -> None:
        if not MIN_SIZE <= size <= MAX_SIZE:
            raise PixforgeError(f"{self.name} makes square images of {MIN_SIZE} to {MAX_SIZE} pixels, not {size}")

    def recipe(self, seed: int, index: int, size: int) -> dict:
        """Everything random about image `index`: noise fields, exponents, background, shapes, salient shape."""
        r = rng(seed, index)
        out: dict = {}
        if self.name in ("pinknoise", "primitives-ps"):
            out["noise"], out["exps"] = pink.draw(r, size, self.paper_exponents)
        if self.name == "pinknoise":
            return out
        if self.name in ("primitives", "primitives-s"):
            background = r.integers(0, 255, 3).astype(np.uint8)
            out["background"] = background if self.color_background else np.repeat(background[:1], 3)
        out["kinds"], out["geom"], out["colors"] = shapes.sample_particles(r, size, self.shapes,
                                                                         self.any_direction_lines)
        if self.name != "primitives":
            out["salient"] = shapes.sample_salient(r, size)
        if self.name == "primitives-ps":
            out["inside_noise"], out["inside_exps"] = pink.draw(r, size, self.paper_exponents)
        return out

    def sample(self, seed: int, indices: Sequence[int], size: int, device: torch.device) -> np.ndarray:
        recipes = [self.recipe(seed, i, size) for i in indices]
        if self.name == "pinknoise":
            return pink.pink_noise([r["noise"] for r in recipes], [r["exps"] for r in recipes], device)
        labels = self.labels(recipes, size, device)
        patterns = None
        if self.name == "primitives-ps":  # background and salient-shape patterns, one batched FFT
            patterns = pink.pink_noise([r["noise"] for r in recipes] + [r["inside_noise"] for r in recipes],
                                       [r["exps"] for r in recipes] + [r["inside_exps"] for r in recipes], device)
        images = np.empty((len(recipes), size, size, 3), dtype=np.uint8)
        for k, (r, lab) in enumerate(zip(recipes, labels, strict=True)):
            salient = r["salient"][2] if "salient" in r else np.zeros((0, 3), np.uint8)
            palette = np.concatenate([r.get("background", np.zeros(3, np.uint8))[None], r["colors"], salient])
            images[k] = np.take(palette, lab + 1, axis=0)
            if patterns is not None:  # background and salient shape show their patterns
                np.copyto(images[k], patterns[k], where=(lab < 0)[..., None])
                np.copyto(images[k], patterns[len(recipes) + k], where=(lab == self.shapes)[..., None])
        return images

    def labels(self, recipes: list[dict], size: int, device: torch.device) -> np.ndarray:
        """Label maps N x S x S (int16): -1 background, k < shapes particle k, `shapes` the salient shape."""
        if device.type == "cpu":
            out = []
            for r in recipes:
                lab = shapes.paint_labels(np.full((size, size), -1, np.int16), r["kinds"], r["geom"])
                if "salient" in r:
                    shapes.paint_labels(lab, r["salient"][0], r["salient"][1], first_label=self.shapes)
                out.append(lab)
            return np.stack(out)
        kinds = torch.from_numpy(np.stack([r["kinds"] for r in recipes])).to(device)
        geom = torch.from_numpy(np.stack([r["geom"] for r in recipes])).to(device, torch.float32)
        lab = shapes.paint_labels_torch(kinds, geom, size)
        if "salient" in recipes[0]:
            kinds = torch.from_numpy(np.stack([r["salient"][0] for r in recipes])).to(device)
            geom = torch.from_numpy(np.stack([r["salient"][1] for r in recipes])).to(device, torch.float32)
            lab = shapes.paint_labels_torch(kinds, geom, size, first_label=self.shapes, labels=lab)
        return lab.cpu().numpy()


def get(name: str, **options) -> Synthesizer:
    """The synthesizer called `name` (case-insensitive; `_` and `-` alike)."""
    key = str(name).lower().replace("_", "-")
    if key not in NAMES:
        raise PixforgeError(f"unknown model {name!r}: choose one of {', '.join(NAMES)}")
    fields = [f for f in Synthesizer.__dataclass_fields__ if f != "name"]
    unknown = [k for k in options if k not in fields]
    if unknown:
        raise PixforgeError(f"{key} has no option {', '.join(unknown)} (options: "
                            f"{', '.join(f for f in fields if f != 'batch')})")
    return Synthesizer(name=key, **options)
