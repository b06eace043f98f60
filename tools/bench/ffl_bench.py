"""Focal Frequency Loss, forward + backward: pixforge-ffl vs the official focal-frequency-loss 0.3.0, L1 as the floor.

For each device (CPU; CUDA when present), image size and batch, the three losses run on the same float32
inputs (N x 3 x S x S, gradient to the prediction) in the same process, interleaved iteration by iteration
so that load from other processes hits them alike. One JSON line per case:

    name, device, size, batch, threads, median_s, throughput (images/s), reference, reference_median_s,
    ratio (reference / pixforge: > 1 means pixforge is faster), l1_median_s, cost_vs_l1 (pixforge / L1),
    reference_cost_vs_l1, peak_mib / reference_peak_mib / l1_peak_mib (memory torch allocates during one
    forward + backward beyond the inputs: CPU from the profiler's allocation events, CUDA from
    max_memory_allocated), rel_diff (value) and grad_rel_diff (gradient) between the two FFLs, iters, and the
    1-minute load average before and after the case.

    python tools/bench/ffl_bench.py [--sizes 64,256,512] [--batches 8,32] [--threads N] [--budget-s 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from pixforge.ffl import FocalFrequencyLoss

REFERENCE = "focal-frequency-loss 0.3.0"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(loss_fn, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred.grad = None
    loss = loss_fn(pred, target)
    loss.backward()
    return loss


def _peak_mib(loss_fn, pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak bytes torch allocates during one forward + backward, beyond what is already allocated."""
    if pred.device.type == "cuda":
        _sync(pred.device)
        torch.cuda.reset_peak_memory_stats(pred.device)
        before = torch.cuda.memory_allocated(pred.device)
        _step(loss_fn, pred, target)
        _sync(pred.device)
        return (torch.cuda.max_memory_allocated(pred.device) - before) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _step(loss_fn, pred, target)
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    current = peak = 0
    for event in events:
        current += event.nbytes()
        peak = max(peak, current)
    return peak / 2**20


def _agreement(ours, reference, pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Relative difference of the two losses' values and of their gradients (max-norm)."""
    value, grad = float(_step(ours, pred, target)), pred.grad.clone()
    ref_value, ref_grad = float(_step(reference, pred, target)), pred.grad.clone()
    return (abs(value - ref_value) / abs(ref_value),
            float((grad - ref_grad).abs().max() / ref_grad.abs().max()))


def bench_case(device: torch.device, size: int, batch: int, budget_s: float) -> dict:
    from focal_frequency_loss import FocalFrequencyLoss as OfficialFFL

    load_before = round(os.getloadavg()[0], 2)
    gen = torch.Generator().manual_seed(size * 1000 + batch)
    pred = torch.rand(batch, 3, size, size, generator=gen).to(device).requires_grad_()
    target = torch.rand(batch, 3, size, size, generator=gen).to(device)
    losses = {"pixforge": FocalFrequencyLoss(), "reference": OfficialFFL(), "l1": F.l1_loss}
    rel_diff, grad_rel_diff = _agreement(losses["pixforge"], losses["reference"], pred, target)
    peaks = {name: _peak_mib(fn, pred, target) for name, fn in losses.items()}
    start = time.perf_counter()
    for fn in losses.values():  # warm-up, and a first timing to size the run
        _step(fn, pred, target)
    _sync(device)
    iters = max(3, min(50, int(budget_s / max(time.perf_counter() - start, 1e-6))))
    times = {name: [] for name in losses}
    names = list(losses)
    for i in range(iters):
        for name in names[i % 3:] + names[:i % 3]:  # rotate the order every iteration
            _sync(device)
            t0 = time.perf_counter()
            _step(losses[name], pred, target)
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        "name": "ffl_forward_backward",
        "device": "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device),
        "size": size, "batch": batch, "threads": torch.get_num_threads(),
        "median_s": round(median["pixforge"], 6), "throughput": round(batch / median["pixforge"], 1),
        "reference": REFERENCE, "reference_median_s": round(median["reference"], 6),
        "ratio": round(median["reference"] / median["pixforge"], 2),
        "l1_median_s": round(median["l1"], 6),
        "cost_vs_l1": round(median["pixforge"] / median["l1"], 2),
        "reference_cost_vs_l1": round(median["reference"] / median["l1"], 2),
        "peak_mib": round(peaks["pixforge"], 1), "reference_peak_mib": round(peaks["reference"], 1),
        "l1_peak_mib": round(peaks["l1"], 1),
        "rel_diff": float(f"{rel_diff:.2e}"), "grad_rel_diff": float(f"{grad_rel_diff:.2e}"), "iters": iters,
        "load_before": load_before, "load_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,256,512", help="image sides, comma-separated")
    parser.add_argument("--batches", default="8,32", help="batch sizes, comma-separated")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--budget-s", type=float, default=4.0, help="about how long to time each loss per case")
    parser.add_argument("--devices", default=None, help="cpu,cuda (default: cpu, and cuda when present)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for size in (int(s) for s in args.sizes.split(",")):
            for batch in (int(b) for b in args.batches.split(",")):
                print(json.dumps(bench_case(torch.device(device), size, batch, args.budget_s)), flush=True)


if __name__ == "__main__":
    main()
