"""The DeeperForensics-1.0 dataset variants of a folder of manipulated videos (dataset/README.md, thesis ch. 3):

    end_to_end                      the raw videos (standard set), copied
    end_to_end_level_{1..5}         one random-type distortion at level 1..5 per video
    end_to_end_random_level         one distortion, random type and random level
    end_to_end_mix_{2,3,4}_distortions  2, 3 or 4 distinct random types in random order, random levels
                                    (together the 3,000-video "mixed" set of the paper)

Written to OUT/manipulated_videos/<variant>/<same relative path>, with the meta files the dataset ships:
OUT/lists/manipulated_videos_distortions_meta/manipulated_videos_<variant>_meta.txt (paths relative to
OUT/manipulated_videos). Every draw depends only on (seed, variant, video path).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pixforge.export.atomic import atomic_path
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_outside
from pixforge.export.shard import parse_shard, shard_indices
from pixforge.forensics.estimate import SAMPLE_FRAMES, signature, size_ratios
from pixforge.forensics.jobs import Job, check_sources, list_videos, make_job, run_jobs, write_meta
from pixforge.forensics.video import draw_steps

RAW = "end_to_end"
VARIANTS = (RAW, *(f"end_to_end_level_{i}" for i in range(1, 6)), "end_to_end_random_level",
            *(f"end_to_end_mix_{j}_distortions" for j in (2, 3, 4)))


def _spec(variant: str) -> dict:
    if variant.startswith("end_to_end_level_"):
        return {"level": int(variant[-1])}
    if variant.startswith("end_to_end_mix_"):
        return {"mix": int(variant.split("_")[4])}
    return {}


def select(variants: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if variants is None or variants == "all":
        return list(VARIANTS)
    names = [v.strip() for v in (variants.split(",") if isinstance(variants, str) else variants) if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise PixforgeError(f"unknown variant(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(VARIANTS)}")
    return names


def plan_jobs(src: Path, out: Path, variants: list[str], seed: int) -> tuple[list[Path], dict[str, list[Job]]]:
    videos = list_videos(src)
    check_outside(out, [src if src.is_dir() else None])  # inside it: the next run would read the variants back
    root = out / "manipulated_videos"
    jobs = {}
    for variant in variants:
        if variant == RAW:
            jobs[variant] = [make_job(v, src, root / variant, [], seed, f"{variant}/") for v in videos]
        else:
            jobs[variant] = [make_job(v, src, root / variant,
                                      draw_steps(seed, f"{variant}/{_rel(v, src)}", **_spec(variant)), seed,
                                      f"{variant}/") for v in videos]
    return videos, jobs


def _rel(video: Path, src: Path) -> str:
    return video.name if src.is_file() else video.relative_to(src).as_posix()


def meta_path(out: Path, variant: str) -> Path:
    return out / "lists" / "manipulated_videos_distortions_meta" / f"manipulated_videos_{variant}_meta.txt"


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e3:.1f} kB"


def describe_plan(videos: list[Path], jobs: dict[str, list[Job]], out: Path, *, crf: int = 18,
                  preset: str = "medium", via_xvid: bool = False) -> str:
    """What `make-variants` would write and how much disk it takes: raw copies at their size, perturbed
    outputs at their source's size times the output/source ratio measured on a sample (see `estimate`)."""
    size = sum(v.stat().st_size for v in videos)
    todo = {variant: [j for j in items if not j.dst.exists()] for variant, items in jobs.items()}
    sigs = {j: signature(j.steps, crf, via_xvid) for variant, items in todo.items() if variant != RAW for j in items}
    sample = sorted(videos, key=lambda v: v.stat().st_size)[len(videos) // 2]
    ratios = size_ratios(sample, sigs.values(), preset) if sigs else {}
    lines = [f"{len(videos)} source video(s), {_size(size)}; under {out}:"]
    total = 0.0
    for variant, items in jobs.items():
        need = sum(j.src.stat().st_size * (ratios[sigs[j]] if variant != RAW else 1.0) for j in todo[variant])
        total += need
        lines.append(f"  manipulated_videos/{variant}: {len(items)} video(s), {len(items) - len(todo[variant])} "
                     f"done, ~{_size(need)} to write; meta {meta_path(out, variant).relative_to(out)}")
    lines.append(f"total ~{_size(total)} to write (perturbed sizes measured on the first {SAMPLE_FRAMES} "
                 f"frames of {sample.name}: {len(set(sigs.values()))} distinct final passes)")
    return "\n".join(lines)


def copy_raw(jobs: list[Job], overwrite: bool) -> None:
    """The standard (raw) variant: the sources copied as they are (atomically)."""
    for job in jobs:
        if job.dst.resolve() == job.src.resolve():
            raise PixforgeError(f"the output {job.dst} is the input video: choose another --out")
        if overwrite or not job.dst.exists():
            with atomic_path(job.dst) as tmp:
                shutil.copyfile(job.src, tmp)


def make_variants(src: Path, out: Path, variants: list[str], seed: int, *, shard: str | None, workers: int,
                  overwrite: bool, **options) -> str:
    _, jobs = plan_jobs(src, out, variants, seed)
    lines, failures = [], []
    k, n = parse_shard(shard)
    infos = check_sources([items[i] for items in jobs.values() for i in shard_indices(len(items), k, n)],
                          even_size=options.get("via_xvid", False))
    for variant, items in jobs.items():
        mine = [items[i] for i in shard_indices(len(items), k, n)]
        if variant == RAW:
            done = [j for j in mine if overwrite or not j.dst.exists()]
            copy_raw(done, overwrite=True)
            skipped, failed = [j for j in mine if j not in done], []
        else:
            done, skipped, failed = run_jobs(items, shard=shard, workers=workers, overwrite=overwrite,
                                             desc=variant, infos=infos, **options)
        failures += failed
        meta = write_meta(meta_path(out, variant), [j for j in mine if j.dst.exists()], shard,
                          out / "manipulated_videos")
        lines.append(f"{variant}: {len(done)} written, {len(skipped)} already done; meta {meta}")
    if failures:
        raise PixforgeError(f"{len(failures)} video(s) failed: {failures[0]}")
    return "\n".join(lines)
