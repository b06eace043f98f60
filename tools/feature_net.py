"""pixforge-core's offline feature network (pfr18): make its release asset, and measure how its distances rank images.

    python tools/feature_net.py asset RUN            # RUN = a `pixforge-spectra pretrain` run (the command: TRAIN)
    python tools/feature_net.py rank --out DIR [--n 500] [--inception pt_inception-2015-12-05-6726825d.pth]

`asset` writes shared/src/pixforge/core/assets/pfr18-64.safetensors (RUN's encoder.safetensors in float16: 22 MB)
and pfr18-64.json (the command, the run's config and last logged losses, the weights' sha256 and size).

`rank` checks the distances on sets of known, increasing degradation: --n random 256 x 256 crops of scikit-image's
colour photos as the reference set and another --n crops as the test set, the test set clean (level 0) and under
each DeeperForensics frame distortion (pixforge-forensics: CS, CC, BW, GNC, GB, JPEG) at levels 1-5. For each
distance (fd_pfr18, kd_pfr18; the same distances on a randomly initialised ResNet-18, to see what the procedural
training adds; pixel-space SWD on the 64 x 64 images the networks see; FID and KID with --inception) it reports the
values and Spearman's rho between level and distance per distortion (1 = the distance orders the six sets exactly
as their degradation), and with --inception the Kendall tau between each distance's order of all 31 sets and FID's.
DIR/rank.json holds it all.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "shared" / "src" / "pixforge" / "core" / "assets"
TRAIN = ("pixforge-spectra pretrain --data dead-leaves-shapes,spectrum-color-wmm --out RUN --arch resnet18 "
         "--method alignunif --size 64 --batch 128 --steps 450 --threads 2 --workers 1 --ckpt-every 50 "
         "--sample-every 150")
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "immunohistochemistry", "hubble_deep_field",
          "retina")  # scikit-image's colour photographs of at least 256 px (the motorcycle: both views)


def make_asset(run: str) -> None:
    """RUN's encoder as the float16 asset and its record."""
    from safetensors.torch import load_file, save_file

    run_dir = Path(run)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous()
             for k, v in load_file(str(run_dir / "encoder.safetensors")).items()}
    ASSETS.mkdir(parents=True, exist_ok=True)
    weights = ASSETS / "pfr18-64.safetensors"
    save_file(state, str(weights), metadata={"name": "pfr18-64", "arch": "resnet18", "input_size": "64"})
    config = json.loads((run_dir / "config.json").read_text())
    by_step = {r["step"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}
    records = [by_step[k] for k in sorted(by_step)]  # a resumed run logs its steps after the checkpoint again
    last = records[-1]
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(records)]
    record = {
        "name": "pfr18-64", "arch": "resnet18 (torchvision names, no fc)", "input_size": 64,
        "input": "RGB in [0, 1], resized to 64 x 64 (bilinear, antialiased), ImageNet mean / std",
        "dtype": "float16 (loaded as float32)",
        "parameters": sum(v.numel() for k, v in state.items() if not k.endswith(BUFFERS)),
        "bytes": weights.stat().st_size, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "command": TRAIN, "config": config, "steps": last["step"],
        "images_seen": last["step"] * config["global_batch"],
        "final": {k: last[k] for k in ("loss", "align", "uniform") if k in last},
        "train_s": round(sum(g for g in gaps if g < 120), 1),  # step to step, without a stop's gap
        "resumed": sum(g >= 120 for g in gaps),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
    }
    (ASSETS / "pfr18-64.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("bytes", "sha256", "steps", "images_seen", "final", "train_s")}))


def crops(n: int, seed: int, size: int = 256) -> np.ndarray:
    """n random size x size RGB crops (random scale 0.5-1 of the shorter side, then resized) of the photos."""
    from PIL import Image
    from skimage import data

    photos = []
    for name in PHOTOS:
        loaded = getattr(data, name)()
        views = loaded[:2] if name == "stereo_motorcycle" else [loaded]
        photos += [np.ascontiguousarray(img[..., :3]) for img in views]
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = photos[rng.integers(len(photos))]
        side = int(min(img.shape[:2]) * rng.uniform(0.5, 1.0))
        y, x = rng.integers(0, img.shape[0] - side + 1), rng.integers(0, img.shape[1] - side + 1)
        patch = Image.fromarray(img[y:y + side, x:x + side]).resize((size, size), Image.Resampling.BICUBIC)
        out[i] = np.asarray(patch)
    return out


def degraded_sets(test: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    """{(distortion, level): the test set under it}, level 0 = clean (shared by every distortion)."""
    from pixforge.forensics.distortions import FRAME_TYPES, LEVELS, Randomness, distort

    sets = {("clean", 0): test}
    for kind in FRAME_TYPES:
        for level in LEVELS:
            randomness = Randomness(seed=level)
            sets[(kind, level)] = np.stack([distort(frame.copy(), kind, level, randomness) for frame in test])
    return sets


def shrink(images: torch.Tensor, size: int = 64) -> torch.Tensor:
    """uint8 N x 3 x H x W -> uint8 N x 3 x size x size (bilinear, antialiased: what ProceduralFeatures does)."""
    small = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
    return small.round().clamp(0, 255).to(torch.uint8)


def distances(reference: np.ndarray, sets: dict, inception: str | None, scratch: Path) -> dict[str, dict]:
    """{distance: {set key: value}} for every distance and set."""
    from safetensors.torch import save_file

    from pixforge.core.metrics import FrechetDistance, KernelDistance
    from pixforge.core.nets.procedural import ProceduralFeatures
    from pixforge.core.nets.resnet import ResNet
    from pixforge.core.swd import SWD

    random_init = scratch / "resnet18-random-seed0.safetensors"  # torchvision's init, fed exactly as pfr18 is
    save_file(ResNet("resnet18", 0, generator=torch.Generator().manual_seed(0)).state_dict(), str(random_init))
    nets = {"pfr18": ProceduralFeatures(), "random": ProceduralFeatures(random_init)}
    if inception:
        from pixforge.core.nets.inception import InceptionFeatures
        nets["inception"] = InceptionFeatures("fid", weights=inception)
    as_tensor = {key: torch.from_numpy(images).permute(0, 3, 1, 2) for key, images in sets.items()}
    ref = torch.from_numpy(reference).permute(0, 3, 1, 2)
    results: dict[str, dict] = {}
    with torch.no_grad():
        for tag, net in nets.items():
            fd = FrechetDistance(net, reset_real_features=False)
            kd = KernelDistance(net, reset_real_features=False, subset_size=min(100, len(reference)))
            named = {fd: (fd.names[0], fd.names[0]), kd: (f"{kd.names[1]}_mean", kd.names[1])}
            if tag == "random":
                named = {fd: ("fd", "fd_random"), kd: ("kd_mean", "kd_random")}
            for metric, (key_out, name) in named.items():
                for batch in ref.split(100):
                    metric.update(batch, real=True)
                for key, images in as_tensor.items():
                    for batch in images.split(100):
                        metric.update(batch, real=False)
                    results.setdefault(name, {})[key] = metric.compute()[key_out]
                    metric.reset()
        swd = SWD(reset_real=False)  # on the 64 x 64 images the networks see (at 256 px it costs minutes a set)
        swd.update(shrink(ref), real=True)
        for key, images in as_tensor.items():
            swd.update(shrink(images), real=False)
            results.setdefault("swd", {})[key] = swd.compute()["swd"]
            swd.reset()
    return results


def rank(out: str, n: int, seed: int, inception: str | None) -> None:
    from pixforge.forensics.distortions import FRAME_TYPES, LEVELS

    start, load = time.time(), os.getloadavg()[0]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    reference, test = crops(n, seed), crops(n, seed + 1)
    sets = degraded_sets(test)
    Path(out).mkdir(parents=True, exist_ok=True)
    values = distances(reference, sets, inception, Path(out))
    summary: dict[str, dict] = {}
    for name, by_set in values.items():
        rho = {}
        for kind in FRAME_TYPES:
            ladder = [by_set[("clean", 0)]] + [by_set[(kind, level)] for level in LEVELS]
            rho[kind] = float(stats.spearmanr(range(len(ladder)), ladder).statistic)
        summary[name] = {"spearman_per_distortion": rho, "mean_spearman": float(np.mean(list(rho.values())))}
        if "fid" in values:
            keys = list(values["fid"])
            summary[name]["kendall_vs_fid"] = float(stats.kendalltau([by_set[k] for k in keys],
                                                                     [values["fid"][k] for k in keys]).statistic)
    report = {"n": n, "seed": seed, "photos": PHOTOS, "summary": summary,
              "values": {name: {f"{k[0]}-{k[1]}": v for k, v in by_set.items()} for name, by_set in values.items()},
              "wall_s": round(time.time() - start, 1), "load_before": load, "load_after": os.getloadavg()[0],
              "command": f"python tools/feature_net.py rank --out {out} --n {n} --seed {seed}"
                         + (" --inception PATH" if inception else "")}
    (Path(out) / "rank.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, row in summary.items():
        print(f"{name:12s} mean rho {row['mean_spearman']:+.3f}  "
              + "  ".join(f"{k} {v:+.2f}" for k, v in row["spearman_per_distortion"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    asset = verbs.add_parser("asset", help="make the release asset from a pretrain run")
    asset.add_argument("run")
    ranking = verbs.add_parser("rank", help="rank agreement on known degradations")
    ranking.add_argument("--out", required=True)
    ranking.add_argument("--n", type=int, default=500)
    ranking.add_argument("--seed", type=int, default=0)
    ranking.add_argument("--inception", default=None)
    args = parser.parse_args()
    if args.verb == "asset":
        make_asset(args.run)
    else:
        rank(args.out, args.n, args.seed, args.inception)


if __name__ == "__main__":
    main()
