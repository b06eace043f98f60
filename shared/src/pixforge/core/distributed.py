"""torchrun / DDP: process-group setup, rank helpers and rank-0 I/O.

Launch multi-GPU or multi-node training with `torchrun --nproc_per_node G -m <tool> train ...`; without
torchrun every helper here degrades to a single process. Bulk jobs split with `--shard K/N` (pixforge.export.shard).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device, timeout_s: int = 1800) -> DistInfo:
    """Initialise the process group when launched by torchrun: NCCL on CUDA, gloo on the CPU."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
    return info()


def info() -> DistInfo:
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size())


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if info().enabled:
        dist.barrier()


def is_main() -> bool:
    return info().is_main


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over all ranks (the tensor itself when not distributed)."""
    if not info().enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info().world_size


def all_reduce_grads(params, sanitize: bool = True) -> None:
    """Average the gradients of `params` over all ranks with one flat all-reduce (what DDP does, for loops that
    differentiate twice, where DDP cannot follow); `sanitize`: NaN -> 0 and +-inf -> +-1e5 as NVlabs' trainers."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if info().enabled:
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= info().world_size
        for g, new in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(new.view_as(g))
    if sanitize:
        for g in grads:
            torch.nan_to_num(g, nan=0.0, posinf=1e5, neginf=-1e5, out=g)


def wrap_ddp(module: torch.nn.Module, device: torch.device, **kwargs) -> torch.nn.Module:
    """DistributedDataParallel around `module` when running distributed, the module itself otherwise."""
    if not info().enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, **kwargs)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module
