"""Official stylegan2-ada-pytorch (and DeceiveD) `.pkl` snapshots -> plain state dicts, without running their code.

A snapshot is a pickle of `{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}` whose networks are
`torch_utils.persistence` objects: each is pickled as a call `_reconstruct_persistent_obj(meta)` where `meta`
holds the source code of the module that defined the class (`module_src`), which NVlabs' loader `exec`s, the
`class_name`, and `state` (the module's `__dict__`: `_parameters`, `_buffers`, `_modules`, `_init_kwargs`, ...).
Tensors are `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` calls over storages pickled as
`torch.storage._load_from_bytes(<bytes of a torch.save>)`.

`load_official_pickle` reads such a file with an unpickler that resolves only the few globals listed in
`ALLOWED_GLOBALS`, each to a function of ours: a persistent object becomes a plain `PersistentRecord` (its source
code is dropped unread, never executed), storages are read with `torch.load(weights_only=True)`, NVlabs'
`EasyDict` becomes a dict. Any other global (`os.system`, `builtins.eval`, a class of the official code, ...) is
refused before anything is called.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixforge.export.errors import PixforgeError

__all__ = ["load_official_pickle", "generator_kwargs", "PersistentRecord", "ALLOWED_GLOBALS", "NETWORK_CLASSES",
           "DROPPED_GENERATOR_KWARGS"]

# the class each entry of a snapshot must be
NETWORK_CLASSES = {"G": "Generator", "D": "Discriminator", "G_ema": "Generator", "augment_pipe": "AugmentPipe"}


@dataclass
class PersistentRecord:
    """What `_reconstruct_persistent_obj(meta)` stands for: the class name and the pickled `__dict__`."""

    class_name: str
    state: dict = field(repr=False)
    version: Any = None


# ---------------------------------------------------------------------------------------------------------------
# The replacements of the allowed globals


def _persistent_record(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise ValueError("a persistent object whose meta is not {type: 'class', class_name, state}")
    state = meta.get("state")
    state = {} if state is None else state
    if not isinstance(state, dict):
        raise ValueError(f"persistent {meta['class_name']} has a state that is not a dict")
    return PersistentRecord(meta["class_name"], state, meta.get("version"))


def _ints(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise ValueError(f"tensor {what} must be a tuple of ints >= 0")
    return tuple(values)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise ValueError("a tensor whose storage is not a torch storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise ValueError("a tensor with a bad storage offset")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise ValueError("a tensor whose size and stride differ in length")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation
        dtype = storage.dtype if isinstance(storage, torch.TypedStorage) else torch.uint8
        untyped = storage.untyped() if isinstance(storage, torch.TypedStorage) else storage
    return torch.empty((0,), dtype=dtype).set_(untyped, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                       state: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise ValueError("a parameter whose data is not a tensor")
    return data.detach()


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise ValueError("a NumPy scalar that is not plain numeric data")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str):
        raise ValueError("a NumPy dtype that is not named by a string")
    dtype = np.dtype(spec)
    if dtype.hasobject:
        raise ValueError("a NumPy object dtype")
    return dtype


def _encode(text: Any, encoding: Any = "latin1") -> bytes:  # protocol-2 pickles spell bytes this way
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError("a _codecs.encode call that is not latin-1 text")
    return text.encode("latin-1")


def _torch_size(dims: Any = ()) -> torch.Size:
    return torch.Size(_ints(dims, "size"))


LOAD_STORAGE = object()  # placeholder: the unpickler binds its own storage reader (it names the file in errors)

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): LOAD_STORAGE,
    ("torch", "Size"): _torch_size,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): dict,
    ("dnnlib", "EasyDict"): dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _encode,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class _SnapshotUnpickler(pickle.Unpickler):
    def __init__(self, fh, path: Path):
        super().__init__(fh)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        target = ALLOWED_GLOBALS.get((module, name))
        if target is LOAD_STORAGE:
            return self.load_storage
        if target is not None:
            return target
        hint = ""
        if module.startswith("dnnlib.tflib"):
            hint = " (a TensorFlow-era pickle; convert it with NVlabs' legacy.py first)"
        raise PixforgeError(f"{self.path} refers to the Python global {module}.{name}, which is not part of an "
                            f"official StyleGAN2 snapshot; refusing to load it{hint}")

    def persistent_load(self, pid: Any) -> Any:
        raise PixforgeError(f"{self.path} uses pickle persistent ids, which official StyleGAN2 snapshots never do")

    def load_storage(self, data: Any) -> Any:
        if not isinstance(data, (bytes, bytearray)):
            raise ValueError("a storage that is not bytes")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
        except Exception:
            raise PixforgeError(f"{self.path} holds a tensor storage that is not plain weights data") from None
        if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
            raise PixforgeError(f"{self.path} holds a tensor storage that is not plain weights data")
        return storage


# ---------------------------------------------------------------------------------------------------------------
# Loading


def _read(path: Path) -> Any:
    if not path.is_file():
        raise PixforgeError(f"snapshot {path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise PixforgeError(f"snapshot {path} is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(2)
        if head[:1] != b"\x80" or head[1:2] not in (b"\x02", b"\x03", b"\x04", b"\x05"):
            kind = "a zip (a PyTorch checkpoint?)" if head == b"PK" else "not a Python pickle"
            raise PixforgeError(f"snapshot {path} is {kind}, not an official StyleGAN2 .pkl snapshot")
        fh.seek(0)
        try:
            return _SnapshotUnpickler(fh, path).load()
        except PixforgeError:
            raise
        except (EOFError, pickle.UnpicklingError) as err:
            if isinstance(err, EOFError) or "truncated" in str(err) or "EOF" in str(err):
                raise PixforgeError(f"snapshot {path} is truncated (an incomplete download or copy?)") from None
            raise PixforgeError(f"snapshot {path} is a corrupt pickle ({err})") from None
        except RecursionError:
            raise PixforgeError(f"snapshot {path} is nested too deeply to be a StyleGAN2 snapshot") from None
        except Exception as err:  # anything a malformed stream makes the unpickler or our rebuilders raise
            raise PixforgeError(f"snapshot {path} is corrupt or not an official StyleGAN2 snapshot "
                                f"({err.__class__.__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})"
                                ) from None


def _plain(value: Any, depth: int = 0) -> Any:
    """kwargs as plain dicts / lists / scalars (records and tensors are not kwargs)."""
    if depth > 50:
        raise ValueError("kwargs nested too deeply")
    if isinstance(value, dict):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, depth + 1) for v in value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return value


def _collect(record: PersistentRecord, prefix: str, out: dict[str, torch.Tensor], seen: set[int]) -> None:
    if id(record) in seen:
        raise ValueError(f"module {prefix.rstrip('.') or 'root'} contains itself")
    seen.add(id(record))
    state = record.state
    skip = state.get("_non_persistent_buffers_set") or set()
    for key in ("_parameters", "_buffers"):
        entries = state.get(key) or {}
        if not isinstance(entries, dict):
            raise ValueError(f"{prefix}{key} is not a dict")
        for name, tensor in entries.items():
            if tensor is None or (key == "_buffers" and name in skip):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(f"{prefix}{name} is not a tensor")
            out[f"{prefix}{name}"] = tensor
    modules = state.get("_modules") or {}
    if not isinstance(modules, dict):
        raise ValueError(f"{prefix}_modules is not a dict")
    for name, sub in modules.items():
        if sub is None:
            continue
        if not isinstance(sub, PersistentRecord):
            raise ValueError(f"submodule {prefix}{name} is not a persistent module")
        _collect(sub, f"{prefix}{name}.", out, seen)


def _network(path: Path, key: str, record: Any) -> dict[str, Any]:
    expected = NETWORK_CLASSES[key]
    if not isinstance(record, PersistentRecord):
        raise PixforgeError(f"snapshot {path}: {key} is a {type(record).__name__}, not a persistent {expected} "
                            "module")
    if record.class_name != expected:
        raise PixforgeError(f"snapshot {path}: {key} is a {record.class_name}, not the {expected} expected")
    state_dict: dict[str, torch.Tensor] = {}
    try:
        _collect(record, "", state_dict, set())
        init_kwargs = _plain(record.state.get("_init_kwargs") or {})
    except ValueError as err:
        raise PixforgeError(f"snapshot {path}: {key} is malformed ({err})") from None
    if not isinstance(init_kwargs, dict):
        raise PixforgeError(f"snapshot {path}: {key} has init kwargs that are not a dict")
    return {"class_name": record.class_name, "init_kwargs": init_kwargs, "state_dict": state_dict}


def load_official_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Read an official stylegan2-ada-pytorch / DeceiveD snapshot safely (no code from it runs).

    Returns `{"G": net, "D": net, "G_ema": net}`, each net `{"class_name", "init_kwargs", "state_dict"}` with
    NVlabs' parameter and buffer names (`mapping.fc0.weight`, `synthesis.b4.const`, ...), plus `"augment_p"`
    (float) when the snapshot has an augment pipe and `"training_set_kwargs"` (dict) when it has them.
    """
    path = Path(path)
    data = _read(path)
    if not isinstance(data, dict):
        raise PixforgeError(f"snapshot {path} holds a {type(data).__name__}, not the dict of networks of an "
                            "official StyleGAN2 snapshot")
    missing = [k for k in ("G", "D", "G_ema") if data.get(k) is None]
    if missing:
        raise PixforgeError(f"snapshot {path} has no {', '.join(missing)} network"
                            f"{'s' if len(missing) > 1 else ''} (has {', '.join(sorted(map(str, data))) or 'nothing'})")
    result: dict[str, Any] = {key: _network(path, key, data[key]) for key in ("G", "D", "G_ema")}
    pipe = data.get("augment_pipe")
    if pipe is not None:
        net = _network(path, "augment_pipe", pipe)
        p = net["state_dict"].get("p")
        if p is None or p.numel() != 1:
            raise PixforgeError(f"snapshot {path}: the augment pipe has no probability buffer p")
        result["augment_p"] = float(p.reshape(()))
    kwargs = data.get("training_set_kwargs")
    if kwargs is not None:
        if not isinstance(kwargs, dict):
            raise PixforgeError(f"snapshot {path}: training_set_kwargs is not a dict")
        result["training_set_kwargs"] = _plain(kwargs)
    return result


# ---------------------------------------------------------------------------------------------------------------
# NVlabs kwargs -> ours

DROPPED_GENERATOR_KWARGS = ("num_fp16_res", "use_fp16", "fp16_channels_last", "channels_last")
_MAPPING_KWARGS = ("num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta")
_SYNTHESIS_KWARGS = ("channel_base", "channel_max", "architecture", "resample_filter", "conv_clamp", "kernel_size",
                     "use_noise", "activation")


def generator_kwargs(init_kwargs: dict[str, Any]) -> dict[str, Any]:
    """NVlabs' `Generator(**init_kwargs)` -> the kwargs of `pixforge.core.nets.stylegan2.Generator`.

    z_dim, c_dim, w_dim, img_resolution and img_channels carry over; `mapping_kwargs` keep num_layers,
    embed_features, layer_features, activation, lr_multiplier, w_avg_beta; `synthesis_kwargs` keep
    channel_base, channel_max, architecture, resample_filter, conv_clamp, kernel_size, use_noise, activation.

    Dropped, as they only choose how the official code computes (the weights are the same): `num_fp16_res`,
    `use_fp16`, `fp16_channels_last`, `channels_last` (pixforge runs FP32 or under autocast; images then differ
    from the official FP16 ones by rounding only). Any other option, or the 'resnet' generator architecture,
    is a PixforgeError naming it.
    """
    if not isinstance(init_kwargs, dict):
        raise PixforgeError("the generator's init kwargs are not a dict")
    top = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
    unknown = [k for k in init_kwargs if k not in (*top, "mapping_kwargs", "synthesis_kwargs")]
    missing = [k for k in top if k not in init_kwargs]
    if missing:
        raise PixforgeError(f"the generator's init kwargs lack {', '.join(missing)}")
    mapping = dict(init_kwargs.get("mapping_kwargs") or {})
    synthesis = dict(init_kwargs.get("synthesis_kwargs") or {})
    unknown += [f"mapping_kwargs.{k}" for k in mapping if k not in _MAPPING_KWARGS]
    unknown += [f"synthesis_kwargs.{k}" for k in synthesis
                if k not in _SYNTHESIS_KWARGS and k not in DROPPED_GENERATOR_KWARGS]
    if unknown:
        raise PixforgeError(f"the official generator uses option(s) {', '.join(unknown)}, which pixforge's "
                            "StyleGAN2 Generator does not support")
    if synthesis.get("architecture", "skip") not in ("orig", "skip"):
        raise PixforgeError(f"the official generator uses the {synthesis['architecture']!r} architecture; pixforge's "
                            "StyleGAN2 Generator supports 'skip' and 'orig' only")
    synthesis = {k: v for k, v in synthesis.items() if k not in DROPPED_GENERATOR_KWARGS}
    if isinstance(synthesis.get("resample_filter"), list):
        synthesis["resample_filter"] = tuple(synthesis["resample_filter"])
    out = {k: init_kwargs[k] for k in top}
    out.update(mapping_kwargs=mapping, synthesis_kwargs=synthesis)
    return out
