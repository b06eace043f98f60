"""`--shard K/N`: the one way every bulk job splits its work (torch-free, so pixforge-run can use it too).

K is 1-based. Without `--shard`, a job started by torchrun takes its rank's share (RANK / WORLD_SIZE from the
environment), so any scheduler (Slurm arrays, Kubernetes jobs, torchrun ranks) can spread the same command.
"""

from __future__ import annotations

import os

from pixforge.export.errors import PixforgeError


def parse_shard(shard: str | None) -> tuple[int, int]:
    """`"K/N"` (1-based K) -> (K-1, N); None -> the torchrun rank and world size (or 0/1)."""
    if shard is None or shard == "":
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        k, n = (int(x) for x in str(shard).split("/"))
    except ValueError:
        raise PixforgeError(f"--shard {shard!r} is not K/N (e.g. 2/8)") from None
    if not 1 <= k <= n:
        raise PixforgeError(f"--shard {shard}: K must be between 1 and N")
    return k - 1, n


def shard_indices(total: int, index: int, count: int) -> range:
    """The items of shard `index` (0-based) of `count`: contiguous, sizes differing by at most one."""
    start = total * index // count
    return range(start, total * (index + 1) // count)
