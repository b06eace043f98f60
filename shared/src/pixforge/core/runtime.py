"""Device choice, precision flags and seeding.

`resolve_device("auto" | "cpu" | "cuda" | "cuda:N")` is the one place that turns a user's `--device`
into a `torch.device`; asking for CUDA where there is none is a user error, not a silent CPU run.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from pixforge.export.errors import PixforgeError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` -> the local CUDA device (per LOCAL_RANK under torchrun) when available, else CPU."""
    spec = str(device).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise PixforgeError(f"--device {device} was requested but no CUDA GPU is available "
                                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'})")
        index = int(spec.split(":")[1]) if ":" in spec else int(os.environ.get("LOCAL_RANK", 0))
        if index >= torch.cuda.device_count():
            raise PixforgeError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        return torch.device("cuda", index)
    raise PixforgeError(f"--device {device!r} is not a device: use auto, cpu, cuda or cuda:N")


def configure(device: torch.device, tf32: bool = True, benchmark: bool = True, deterministic: bool = False) -> None:
    """Set the CUDA math flags: TF32 matmuls/convolutions, cuDNN autotuning, or full determinism."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = tf32 and not deterministic
    torch.backends.cudnn.allow_tf32 = tf32 and not deterministic
    torch.backends.cudnn.benchmark = benchmark and not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def autocast_dtype(device: torch.device, amp: bool | str = True) -> torch.dtype | None:
    """The autocast dtype for `--amp`: bf16 where the GPU supports it, else fp16; None when AMP is off.

    `amp` may also name the dtype (`"bf16"`, `"fp16"`). On the CPU AMP is off unless bf16 is named.
    """
    if isinstance(amp, str):
        amp = amp.lower()
    if amp is False or amp in ("off", "none", "no", "false", None):
        return None
    if amp in ("bf16", "bfloat16"):
        return torch.bfloat16
    if amp in ("fp16", "float16"):
        if device.type != "cuda":
            raise PixforgeError("--amp fp16 needs a CUDA device; use --amp bf16 on the CPU")
        return torch.float16
    if amp not in (True, "on", "auto", "yes", "true"):
        raise PixforgeError(f"--amp {amp!r}: use --amp alone (or true / false), bf16 or fp16")
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """`torch.autocast` for `dtype`, or a disabled one when `dtype` is None."""
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
