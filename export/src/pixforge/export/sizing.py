"""Output sizes for generators: the noise shapes that make a generator draw samples of a given size.

A generator has no image input to take its size from: its noise inputs set it. Its metadata lists each noise
input's shape at the export-time size (fixed ints, which `pixforge-run run --count N` uses by default); a model
that can draw other sizes also stores the rule that maps an output size (H, W) to every noise input's (h, w), in
`pixforge.extra["size_rule"]`, so that `pixforge-run run MODEL --count N --size HxW` needs no torch and no tool:

* `rule`: `"divide"`: every noise input is ceil(H / f) x ceil(W / f), and H, W must be multiples of f (`factor`);
  `"pyramid"`: noise input k (in input order) is scale k of the reference pyramid `sizes` (coarsest first, its
  last entry the reference size) stretched by H / H_top and W / W_top, rounded half to even (Python's `round`,
  `rounding: "half-even"`) and at least 1; the last one is exactly H x W;
* `factor` (rule `divide`): the divisor, also the multiple H and W must be;
* `sizes` (rule `pyramid`): `[[h0, w0], ..., [H_top, W_top]]`, one entry per noise input;
* `rounding` (rule `pyramid`): `"half-even"`, the only one so far;
* `min`: `[H, W]`, the smallest output size the model accepts;
* `default`: `[H, W]`, the export-time size (the one the fixed noise shapes give).

Only the spatial dimensions (the last two) of each noise shape change; the channel and batch entries stay. An
output size over `MAX_PIXELS` (4096 x 4096) is refused whatever the rule: `check_pixels`, also what the tools' own
`--size` flags use.
"""

from __future__ import annotations

import math
from typing import Any

from pixforge.export.errors import PixforgeError

RULES = ("divide", "pyramid")
ROUNDINGS = ("half-even",)
MAX_SIDE = 4096
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # the largest image a --size may ask for: 16.8 megapixels, 200 MB as float32 RGB


def check_pixels(size: tuple[int, int], flag: str = "--size") -> tuple[int, int]:
    """`size` (H, W) unless its area is over MAX_PIXELS: then a PixforgeError naming `flag`, before anything is
    allocated (a typo such as 100000x100000 would ask for tens of gigabytes per tensor)."""
    h, w = size
    if h * w > MAX_PIXELS:
        raise PixforgeError(f"{flag} {h}x{w}: too large, an image may have at most {MAX_PIXELS:,} pixels "
                            f"({MAX_SIDE}x{MAX_SIDE})")
    return size


def divide_sizes(factor: int, size: tuple[int, int], count: int = 1) -> list[tuple[int, int]]:
    """Rule `divide`: `count` noise maps of ceil(H / f) x ceil(W / f)."""
    return [(math.ceil(size[0] / factor), math.ceil(size[1] / factor))] * count


def pyramid_sizes(sizes: list[tuple[int, int]], size: tuple[int, int]) -> list[tuple[int, int]]:
    """Rule `pyramid`: every scale of the reference pyramid `sizes` stretched by H / H_top and W / W_top, rounded half
    to even (Python's `round`) and at least 1, the top exactly `size` (SinGAN's `scaled_sizes`, the official
    SinGAN_generate's scale_v / scale_h)."""
    top_h, top_w = sizes[-1]
    sv, sh = size[0] / top_h, size[1] / top_w
    out = [(max(1, round(h * sv)), max(1, round(w * sh))) for h, w in sizes[:-1]]
    return out + [(int(size[0]), int(size[1]))]


def check_rule(rule: Any, noise_inputs: int, where: str) -> dict[str, Any]:
    """`rule` as stored in the metadata, checked (a malformed one is a PixforgeError naming `where`)."""
    def bad(why: str) -> PixforgeError:
        return PixforgeError(f"{where} has a malformed size rule in its metadata ({why}); re-export the model")

    if not isinstance(rule, dict) or rule.get("rule") not in RULES:
        raise bad(f"'rule' must be one of {RULES}")
    for key in ("min", "default"):
        value = rule.get(key)
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(d, int) and d >= 1 for d in value)):
            raise bad(f"'{key}' must be [H, W]")
    if rule["rule"] == "divide":
        if not isinstance(rule.get("factor"), int) or rule["factor"] < 1:
            raise bad("'factor' must be a positive integer")
    else:
        sizes = rule.get("sizes")
        if not (isinstance(sizes, list) and len(sizes) == noise_inputs and all(
                isinstance(s, list) and len(s) == 2 and all(isinstance(d, int) and d >= 1 for d in s) for s in sizes)):
            raise bad(f"'sizes' must list [h, w] for each of the {noise_inputs} noise inputs")
        if rule.get("rounding", "half-even") not in ROUNDINGS:
            raise bad(f"'rounding' must be one of {ROUNDINGS}")
    return rule


def noise_sizes(rule: dict[str, Any], size: tuple[int, int], noise_inputs: int, where: str = "the model",
                flag: str = "--size") -> list[tuple[int, int]]:
    """The (h, w) of each of the `noise_inputs` noise inputs for an output of `size` (H, W), by the stored rule;
    a size below the rule's minimum, over MAX_PIXELS, or not a multiple of its factor, is a PixforgeError."""
    rule = check_rule(rule, noise_inputs, where)
    h, w = check_pixels((int(size[0]), int(size[1])), flag)
    low = rule["min"]
    if h < low[0] or w < low[1]:
        raise PixforgeError(f"{flag} {h}x{w} is below the minimum {low[0]}x{low[1]} of {where}")
    if rule["rule"] == "divide":
        f = rule["factor"]
        if h % f or w % f:
            raise PixforgeError(f"{flag} {h}x{w}: {where} draws {f}x its noise's size, so give multiples of {f}")
        return divide_sizes(f, (h, w), noise_inputs)
    return pyramid_sizes([tuple(s) for s in rule["sizes"]], (h, w))
