"""pixforge-run (onnxruntime through pixforge.export.session) vs PyTorch eager on the same model.

Model: the core's reference denoiser at width 64 (3x3 convolutions, LeakyReLU), exported with
pixforge.core.onnx.export_onnx. For each device (CPU, and CUDA when present) and batch size it times the
network call alone on the same inputs in the same process, and prints one JSON line per case:
name, device, size, batch, median_s, throughput (images/s), reference (torch eager) median_s, ratio
(torch time / runtime time: > 1 means pixforge-run is faster).

    python tools/bench/runtime_bench.py [--size 256] [--width 64] [--iters 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from benchlib import median_time

from pixforge.core.checkpoint import save_release
from pixforge.core.toy import Denoiser, export
from pixforge.export.session import open_session


def _eager(net: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        net(x).cpu()  # both sides hand back host memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=15)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = Denoiser(args.width).eval()
    with tempfile.TemporaryDirectory() as tmp:
        save_release(Path(tmp), model, {"arch": "Denoiser", "width": args.width, "sigma": 0.2, "step": 0})
        path = export(Path(tmp), Path(tmp) / "denoiser.onnx")
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            try:
                session = open_session(path, device=device)
            except Exception as err:  # e.g. the CPU onnxruntime build on a GPU machine
                print(json.dumps({"name": "runtime", "device": device, "skipped": str(err)}), file=sys.stderr)
                continue
            net = model.to(device)
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            for batch in args.batches:
                x = torch.rand(batch, 3, args.size, args.size) * 2 - 1
                feeds = {"image": x.numpy()}
                xd = x.to(device)

                ref = median_time(lambda n=net, x=xd: _eager(n, x), args.iters, args.warmup, sync)
                got = median_time(lambda s=session, f=feeds: s.run(f), args.iters, args.warmup)
                print(json.dumps({"name": "denoiser_forward", "device": device, "provider": session.provider,
                                  "size": args.size, "batch": batch, "median_s": round(got, 6),
                                  "throughput": round(batch / got, 2), "reference": "torch eager",
                                  "reference_median_s": round(ref, 6), "ratio": round(ref / got, 3),
                                  "torch_threads": torch.get_num_threads()}), flush=True)
            diff = np.abs(session.run(feeds)["image_out"] - net(xd).detach().cpu().numpy()).max()
            print(json.dumps({"name": "denoiser_parity", "device": device, "max_abs_diff": float(diff)}))


if __name__ == "__main__":
    main()
