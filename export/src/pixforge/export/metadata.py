"""The pixforge ONNX metadata schema: what an exported model says about its inputs and outputs.

`pixforge.core.onnx.export_onnx` writes these keys into the model's `metadata_props`; the runtime reads
them so that it can pre- and post-process with no torch and no guessing:

| key | value |
|---|---|
| `pixforge.schema` | schema version (`"1"`) |
| `pixforge.package`, `pixforge.version` | the distribution that exported the model, and its version |
| `pixforge.task` | what the model does, e.g. `image-to-image`, `style-transfer`, `classify` |
| `pixforge.inputs`, `pixforge.outputs` | JSON lists of `TensorSpec` (one per graph input / output, same names) |
| `pixforge.extra` | JSON object, free-form (training config summary, labels, ...) |

An image tensor maps uint8 pixels `p` to network values `x = lo + (hi - lo) * p / 255`, then
`x = (x - mean) / std` when `mean`/`std` are given; outputs are mapped back the same way, clipped and
rounded. `multiple` asks that H and W be multiples of it (the runtime reflect-pads bottom/right and crops back);
`size` = (H, W) fixes the size (the runtime resizes, and resizes outputs back). `mean` / `std` are per
network channel, in the network's channel order (BGR for BGR models). `channels` follows `color` (1 for
GRAY, 3 for RGB/BGR; 4 means RGBA). Non-image inputs: `noise` (standard normal, shape from `shape`, where
the first entry may be `"N"` and others `"H/k"` or `"W/k"` relative to the first image input),
`scalar` (a float with a `default`, set with `--set name=value`) and `labels` (a label map: one channel of class
ids read from a PNG's pixel values or palette indices, fed as float32 ids exactly as stored; `num_classes` K says
which ids are valid, 0..K-1, plus the `dontcare` id when one is set, which the model maps to its extra class K,
with the ids above `dontcare` moving down by one, e.g. `dontcare` 255 for SPADE's datasets, 0 for ADE20K's; the
runtime resizes label maps with nearest-neighbour and one-hot encoding, if any, happens inside the graph; without
`num_classes` any integer ids below 2^24 in magnitude (exact in float32) pass, e.g. instance maps);
`tensor` inputs cannot be fed by the runtime. A secondary image or labels input is one file for every item, unless
it is `paired`: then it belongs to each item (pixel-aligned with the primary input, e.g. the instance map of each
label map), the runtime takes a folder, feeds each item the file of the same relative name, which must have the
item's size, and fits it exactly as the primary input (same padding or resizing). Every output has a leading batch
dimension. `dtype` records the exported precision; the runtime follows the graph's declared types.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pixforge.export.errors import PixforgeError

SCHEMA_VERSION = "1"
KEYS = ("pixforge.schema", "pixforge.package", "pixforge.version", "pixforge.task",
        "pixforge.inputs", "pixforge.outputs")
KINDS = ("image", "labels", "noise", "scalar", "tensor")
PIXEL_KINDS = ("image", "labels")  # inputs read from picture files
COLORS = ("RGB", "BGR", "GRAY")


@dataclass
class TensorSpec:
    """How one graph input or output is laid out and scaled."""

    name: str
    kind: str = "image"
    layout: str = "NCHW"
    channels: int | None = None
    color: str = "RGB"
    range: tuple[float, float] = (0.0, 1.0)
    mean: list[float] | None = None
    std: list[float] | None = None
    size: tuple[int, int] | None = None
    multiple: int = 1
    shape: list[int | str] | None = None
    default: float | None = None
    dtype: str = "float32"
    description: str = ""
    num_classes: int | None = None
    dontcare: int | None = None
    paired: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"TensorSpec {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.paired and self.kind not in PIXEL_KINDS:
            raise ValueError(f"TensorSpec {self.name!r}: only image and labels inputs can be paired with the items")
        if self.kind == "labels":
            if self.num_classes is not None and (not isinstance(self.num_classes, int) or self.num_classes < 1):
                raise ValueError(f"TensorSpec {self.name!r}: num_classes of a labels input must be >= 1 (or None)")
            if self.dontcare is not None and self.num_classes is None:
                raise ValueError(f"TensorSpec {self.name!r}: dontcare needs num_classes")
            if self.dontcare is not None and not 0 <= self.dontcare <= 65535:
                raise ValueError(f"TensorSpec {self.name!r}: dontcare must be a label id 0..65535")
            if self.channels not in (None, 1):
                raise ValueError(f"TensorSpec {self.name!r}: a labels input has one channel")
            self.channels, self.color = 1, "GRAY"
        if self.kind in PIXEL_KINDS:
            if self.layout not in ("NCHW", "NHWC"):
                raise ValueError(f"TensorSpec {self.name!r}: layout must be NCHW or NHWC, got {self.layout!r}")
            if self.color not in COLORS:
                raise ValueError(f"TensorSpec {self.name!r}: color must be one of {COLORS}, got {self.color!r}")
            lo, hi = self.range
            if not hi > lo:
                raise ValueError(f"TensorSpec {self.name!r}: range must be (low, high) with high > low")
            if self.multiple < 1:
                raise ValueError(f"TensorSpec {self.name!r}: multiple must be >= 1")
        if self.kind == "image":
            implied = 1 if self.color == "GRAY" else 3
            if self.channels is None:
                self.channels = implied
            elif self.channels != implied and not (self.channels == 4 and self.color == "RGB"):
                raise ValueError(f"TensorSpec {self.name!r}: {self.channels} channels do not fit color {self.color}")
        if self.kind == "noise" and not self.shape:
            raise ValueError(f"TensorSpec {self.name!r}: a noise input needs a shape")
        if self.kind == "scalar" and self.default is None:
            raise ValueError(f"TensorSpec {self.name!r}: a scalar input needs a default")
        self.range = (float(self.range[0]), float(self.range[1]))
        if self.size is not None:
            self.size = (int(self.size[0]), int(self.size[1]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class ModelMeta:
    """Everything the runtime needs to know about an exported pixforge model."""

    package: str
    version: str
    task: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    extra: dict[str, Any] = field(default_factory=dict)

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name)

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name)

    @property
    def image_inputs(self) -> list[TensorSpec]:
        """The inputs read from picture files (kinds image and labels); the first is the primary one."""
        return [s for s in self.inputs if s.kind in PIXEL_KINDS]


def _by_name(specs: list[TensorSpec], name: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(name)


def build_metadata(package: str, version: str, task: str, inputs: list[TensorSpec],
                   outputs: list[TensorSpec], extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The `metadata_props` dictionary (all values strings) for an exported model."""
    props = {
        "pixforge.schema": SCHEMA_VERSION,
        "pixforge.package": package,
        "pixforge.version": version,
        "pixforge.task": task,
        "pixforge.inputs": json.dumps([s.to_dict() for s in inputs]),
        "pixforge.outputs": json.dumps([s.to_dict() for s in outputs]),
    }
    if extra:
        props["pixforge.extra"] = json.dumps(extra)
    return props


def parse_metadata(props: dict[str, str], source: str) -> ModelMeta:
    """Read `metadata_props` back; `source` (the model's path) names the file in errors."""
    missing = [k for k in KEYS if k not in props]
    if len(missing) == len(KEYS):
        raise PixforgeError(f"{source} has no pixforge metadata (no 'pixforge.*' keys): export it with "
                            "pixforge (pixforge.core.onnx.export_onnx or a tool's 'export' verb)")
    if missing:
        raise PixforgeError(f"{source} has incomplete pixforge metadata: missing {', '.join(missing)}")
    if props["pixforge.schema"] != SCHEMA_VERSION:
        raise PixforgeError(f"{source} uses pixforge metadata schema {props['pixforge.schema']!r}; this "
                            f"pixforge-export reads schema {SCHEMA_VERSION!r}: upgrade pixforge-export")
    try:
        inputs = [TensorSpec.from_dict(d) for d in json.loads(props["pixforge.inputs"])]
        outputs = [TensorSpec.from_dict(d) for d in json.loads(props["pixforge.outputs"])]
        extra = json.loads(props.get("pixforge.extra", "{}"))
    except (ValueError, TypeError) as err:
        raise PixforgeError(f"{source} has malformed pixforge metadata: {err}") from None
    return ModelMeta(props["pixforge.package"], props["pixforge.version"], props["pixforge.task"],
                     inputs, outputs, extra)


def resolve_shape(shape: list[int | str], batch: int, height: int, width: int) -> list[int]:
    """Turn a noise/tensor shape such as `["N", 64, "H/128", "W/128"]` into integers."""
    dims = []
    for dim in shape:
        if isinstance(dim, int):
            dims.append(dim)
            continue
        name, _, div = str(dim).partition("/")
        base = {"N": batch, "H": height, "W": width}.get(name.strip())
        if base is None:
            raise ValueError(f"bad dimension {dim!r} in shape {shape}: use an int, 'N', 'H/k' or 'W/k'")
        dims.append(max(1, base // int(div)) if div else base)
    return dims
