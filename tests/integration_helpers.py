"""Shared bits of the integration tests: run pixforge commands in subprocesses."""

import os
import socket
import subprocess
import sys

import torch

TRAIN = [sys.executable, "-m", "pixforge.core.tool", "train"]
TINY = ["--size", "32", "--batch", "4", "--width", "8", "--device", "cpu", "--threads", "1"]


def env():
    return {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}


def train(out, *args, check=True):
    result = subprocess.run([*TRAIN, str(out), *TINY, *args], capture_output=True, text=True, env=env())
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return result


def checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def launcher(processes: int) -> list[str]:
    """The `python` arguments that start a command under torchrun with `processes` processes on a free port (none
    for one process: the command runs plainly)."""
    if processes == 1:
        return []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(port)]
