"""Checkpoints: atomic saves, `keep_last` rotation, exact resume, and release weights.

A checkpoint is one `torch.save` file holding the step, the config, every model / EMA / optimizer /
grad-scaler state and the RNG states of Python, NumPy, torch's CPU generator and every CUDA device. It is
written to a temporary file, fsynced and renamed, so a crash mid-save leaves the previous checkpoint as the
newest valid one. Loading uses `torch.load(weights_only=True)` only: nothing is ever unpickled.

Release weights (what users ship) are `model.safetensors` + `config.json`.
"""

from __future__ import annotations

import json
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pixforge.core.distributed import barrier, is_main, unwrap
from pixforge.export.atomic import atomic_path, write_text
from pixforge.export.errors import PixforgeError

CHECKPOINT_RE = re.compile(r"^step-(\d{9})\.pt$")


def capture_rng() -> dict[str, Any]:
    """RNG states in types `torch.load(weights_only=True)` accepts (no NumPy objects)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore what `capture_rng` saved. The state tensors may sit on a GPU (a checkpoint read with
    `map_location="cuda"`); the RNG setters take CPU byte tensors only, so they are moved back first."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in saved])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _state(model: torch.nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A module's state dict (unwrapped from DDP), or a state dict as it is."""
    return dict(model) if isinstance(model, dict) else unwrap(model).state_dict()


def save_checkpoint(path: str | Path, *, step: int, models: dict[str, torch.nn.Module | dict[str, torch.Tensor]],
                    optimizers: dict[str, torch.optim.Optimizer] | None = None,
                    scaler: torch.amp.GradScaler | None = None, config: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write a full training state atomically. EMA copies are models too (name them e.g. `G_ema`); a model may also
    be given as its state dict."""
    state = {
        "format": "pixforge-checkpoint-1",
        "step": int(step),
        "models": {k: _state(m) for k, m in models.items()},
        "optimizers": {k: o.state_dict() for k, o in (optimizers or {}).items()},
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": capture_rng(),
        "config": json.loads(json.dumps(config or {})),
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def torch_file(path: str | Path, what: str = "checkpoint", map_location: str | torch.device = "cpu") -> Any:
    """`torch.load(path, weights_only=True)` with every failure turned into one PixforgeError sentence.

    The messages say what the file is (missing, empty, not a PyTorch file, truncated, holding Python objects)
    in pixforge's words; they never suggest turning the weights-only check off.
    """
    path = Path(path)
    if not path.is_file():
        raise PixforgeError(f"{what} {path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise PixforgeError(f"{what} {path} is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(4)
    is_zip, is_pickle = head.startswith(b"PK\x03\x04"), head[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise PixforgeError(f"{what} {path} is not a PyTorch weights file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if any(word in str(err) for word in ("GLOBAL", "allowlisted", "unrecognized function")):
            raise PixforgeError(f"{what} {path} holds Python objects (possibly code) besides tensors and is not a "
                                "pixforge file; pixforge never unpickles such objects") from None
        raise PixforgeError(f"{what} {path} is truncated or corrupt") from None
    except Exception:  # zip, EOF and storage errors: a damaged or foreign file
        raise PixforgeError(f"{what} {path} is truncated or corrupt") from None


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file safely (weights only); a corrupt or foreign file is a PixforgeError."""
    state = torch_file(path, "checkpoint", map_location)
    if not isinstance(state, dict) or state.get("format") != "pixforge-checkpoint-1":
        raise PixforgeError(f"{path} is not a pixforge checkpoint")
    for name, model in state.get("models", {}).items():
        check_finite(model, f"checkpoint {path} (model {name!r})")
    return state


def check_finite(state: dict[str, Any], what: str) -> None:
    """A PixforgeError naming the first floating-point tensor of `state` that holds NaN or infinity (a run that
    diverged, a damaged file): such weights would give NaN outputs without a word."""
    for key, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise PixforgeError(f"{what} holds NaN or infinite weights ({key}): the run diverged or the file is "
                                "damaged; use an earlier checkpoint")


def load_checkpoint(path: str | Path, *, models: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer] | None = None,
                    scaler: torch.amp.GradScaler | None = None, restore_rng_state: bool = True,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Restore the given objects in place from `path`; returns the checkpoint (step, config, extra)."""
    state = read_checkpoint(path, map_location)
    for name, module in models.items():
        if name not in state["models"]:
            raise PixforgeError(f"checkpoint {path} has no model {name!r} (has {sorted(state['models'])}): is it a "
                                "run of another tool or method?")
        try:
            unwrap(module).load_state_dict(state["models"][name])
        except RuntimeError as err:
            raise PixforgeError(f"checkpoint {path}: model {name!r} does not match this network "
                                f"({str(err).splitlines()[0][:200]}); was it trained with other options?") from None
    for name, opt in (optimizers or {}).items():
        opt.load_state_dict(state["optimizers"][name])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if restore_rng_state:
        restore_rng(state["rng"])
    return state


class Checkpoints:
    """A run's `checkpoints/` folder: `step-000001000.pt` files, the newest `keep_last` kept."""

    def __init__(self, directory: str | Path, keep_last: int = 3):
        if keep_last < 1:
            raise PixforgeError("--keep-last must be at least 1")
        self.directory = Path(directory)
        self.keep_last = keep_last

    def path_for(self, step: int) -> Path:
        return self.directory / f"step-{step:09d}.pt"

    def all(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if CHECKPOINT_RE.match(p.name))

    def latest(self) -> Path | None:
        found = self.all()
        return found[-1] if found else None

    def save(self, step: int, **state) -> Path:
        """`save_checkpoint` on the main rank (the newest `keep_last` kept); every rank waits until it is written."""
        path = self.path_for(step)
        if is_main():
            save_checkpoint(path, step=step, **state)
            for old in self.all()[:-self.keep_last]:
                old.unlink(missing_ok=True)
        barrier()
        return path


def save_release(directory: str | Path, model: torch.nn.Module | dict[str, torch.Tensor], config: dict,
                 name: str = "model") -> Path:
    """Release weights of a module or a state dict: `<name>.safetensors` (contiguous tensors, no pickle) and
    `<name>.json` config."""
    directory = Path(directory)
    tensors = {k: v.detach().contiguous().cpu() for k, v in _state(model).items()}
    weights = directory / f"{name}.safetensors"
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_text(directory / f"{name}.json", json.dumps(config, indent=2, sort_keys=True))
    return weights


def load_release(directory: str | Path, name: str = "model") -> tuple[dict[str, torch.Tensor], dict]:
    """Read back what `save_release` wrote: (state_dict, config)."""
    directory = Path(directory)
    weights, config = directory / f"{name}.safetensors", directory / f"{name}.json"
    for path in (weights, config):
        if not path.is_file():
            raise PixforgeError(f"release file {path} does not exist")
    try:
        state, options = load_file(str(weights)), json.loads(config.read_text())
    except Exception as err:
        raise PixforgeError(f"release weights in {directory} cannot be read "
                            f"({err.__class__.__name__}: {err})") from None
    check_finite(state, f"release weights {weights}")
    return state, options
