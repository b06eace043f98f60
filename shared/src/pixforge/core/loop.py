"""Training-loop pieces: EMA weights, a progress bar, metric logs, and a graceful stop on signals.

Loops stay explicit in each tool's `train.py`; these are the parts they all need.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from pixforge.core.distributed import is_main, unwrap
from pixforge.export.errors import PixforgeError


class EMA(torch.nn.Module):
    """Exponential moving average of a model's parameters (buffers are copied as they are).

    `ema.update(model)` after each optimizer step; `ema.module` is the averaged network to sample or
    export with. `decay_from_halflife` gives StyleGAN's form: the half-life in images seen.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        super().__init__()
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)
        self.decay = decay

    @staticmethod
    def decay_from_halflife(batch_size: int, halflife_images: float) -> float:
        return 0.5 ** (batch_size / max(halflife_images, 1e-8))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, decay: float | None = None) -> None:
        beta = self.decay if decay is None else decay
        source = unwrap(model)
        for ema_p, p in zip(self.module.parameters(), source.parameters(), strict=True):
            ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - beta)
        for ema_b, b in zip(self.module.buffers(), source.buffers(), strict=True):
            ema_b.copy_(b)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def progress(total: int, initial: int = 0, desc: str = "train", unit: str = "step", **kwargs) -> tqdm:
    """A tqdm bar shown on the main rank only (other ranks get a disabled one)."""
    disable = kwargs.pop("disable", False) or not is_main()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, disable=disable, **kwargs)


class MetricLogger:
    """Scalars to `metrics.jsonl` (one JSON object per line, always) and to TensorBoard when installed.

    Only the main rank writes. Values may be floats or 0-d tensors. `start`: the step a resumed run continues from;
    the records of later steps (logged by the stopped process after its last checkpoint, about to be logged again)
    are dropped first, from the file and from TensorBoard (`purge_step`), so that every step is logged once.
    """

    def __init__(self, path: str | Path, tensorboard_dir: str | Path | None = None, start: int = 0):
        self.path = Path(path)
        self.enabled = is_main()
        self._tb = None
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if start and self.path.is_file():
                drop_records_after(self.path, start)
            self._fh = open(self.path, "a", encoding="utf-8")
            if tensorboard_dir is not None:
                self._tb = _tensorboard_writer(tensorboard_dir, start + 1 if start else None)

    def log(self, step: int, **scalars: Any) -> dict[str, float]:
        values = {k: float(v.item() if isinstance(v, torch.Tensor) else v) for k, v in scalars.items()}
        if not self.enabled:
            return values
        record = {"step": int(step), "time": round(time.time(), 3)}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)
        return values

    def close(self) -> None:
        if self.enabled:
            self._fh.close()
            if self._tb is not None:
                self._tb.close()

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tensorboard_writer(directory: str | Path, purge_step: int | None = None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an extra: pixforge-core[tensorboard]
        return None
    return SummaryWriter(str(directory), purge_step=purge_step)


def drop_records_after(path: Path, last: float, key: str = "step") -> None:
    """Rewrite the log `path` (atomically) without the records whose `key` is above `last` (what a stopped run logged
    after its last checkpoint, about to be logged again), and without a last line cut off by a kill; a damaged line
    is a PixforgeError (`read_metrics`)."""
    from pixforge.export.atomic import write_bytes

    records = read_metrics(path, {key: (int, float)})
    lines = [line for line in path.read_bytes().splitlines(keepends=True) if line.strip()][:len(records)]
    kept = b"".join(line for line, record in zip(lines, records, strict=True) if record[key] <= last)
    if kept != path.read_bytes():
        write_bytes(path, kept)


def read_metrics(path: str | Path, fields: dict[str, type | tuple[type, ...]] | None = None) -> list[dict[str, Any]]:
    """Read a JSON-lines log (`metrics.jsonl`, `stats.jsonl`) back: one JSON object per line, each holding `fields`
    (name -> type). A last line without its newline (still being written, or cut off by a kill) is skipped; any
    other line that is not such a record is a PixforgeError naming the file and the line."""
    records = []
    data = Path(path).read_bytes()
    lines = data.splitlines()
    if lines and not data.endswith(b"\n"):
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:  # not JSON, or not UTF-8
            record = None
        if not isinstance(record, dict) or not all(isinstance(record.get(k), t) for k, t in (fields or {}).items()):
            needs = f" with {' and '.join(fields)}" if fields else ""
            raise PixforgeError(f"{path} line {number} is not a log record (a JSON object{needs}): the file is "
                                "damaged; repair or delete that line")
        records.append(record)
    return records


class GracefulStop:
    """Catch SIGINT / SIGTERM during training so the loop can checkpoint, then exit.

    with GracefulStop() as stop:
        for step in ...:
            ...
            if stop.requested:
                save(); break

    A second signal while stopping exits at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            sys.exit(128 + signum)
        self.requested, self.signum = True, signum
        print(f"\n{signal.Signals(signum).name} received: saving a checkpoint, then stopping "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> GracefulStop:
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
