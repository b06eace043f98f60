"""Many videos at once: a list of jobs, split by `--shard K/N`, every source checked before anything is written,
run in worker processes with a progress bar, resumable (finished outputs, which are written atomically, are
skipped), with the official meta file. Torch-free: the CPU video path never imports it (seconds, ~200 MB)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pixforge.export.atomic import write_text
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_outside, whole_number
from pixforge.export.shard import parse_shard, shard_indices
from pixforge.export.video import VideoInfo, is_video_path
from pixforge.forensics import options
from pixforge.forensics.video import (
    Steps,
    check_input,
    draw_steps,
    format_meta,
    perturb_video,
    require_libx264,
    video_seed,
)


@dataclass(frozen=True)
class Job:
    """One output video: `steps` applied to `src`; `key` names it for seeding and in the meta file."""

    src: Path
    dst: Path
    key: str
    steps: tuple[tuple[str, int], ...]
    seed: int


def list_videos(root: Path) -> list[Path]:
    """The videos under a folder (recursive, sorted, hidden files skipped), or the one video given."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise PixforgeError(f"input {root} does not exist")
    videos = sorted(p for p in root.rglob("*") if p.is_file() and is_video_path(p)
                    and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not videos:
        raise PixforgeError(f"input folder {root} holds no videos")
    return videos


def plan_perturb(input: str, out: str, kind: str, level, mix: int, meta: str | None,
                 seed: int) -> tuple[list[Job], Path, Path | None]:
    """`perturb`'s jobs, its output folder and meta file, every option and path checked (nothing written)."""
    kind, level = options.distortion(kind), options.level(level)
    whole_number("--mix", mix, 1, 4)
    src, out_dir, meta_path = Path(input), options.out_folder(out), options.meta_file(meta)
    videos = list_videos(src)
    require_libx264()
    if out_dir.resolve() == (src if src.is_dir() else src.parent).resolve():
        raise PixforgeError(f"--out {out_dir} is the input folder: the outputs would replace the inputs")
    check_outside(out_dir, [src if src.is_dir() else None])  # inside it: the next run would read them back
    if meta_path and meta_path.resolve() == out_dir.resolve():
        raise PixforgeError(f"--meta {meta_path} is the --out folder: give the meta file's path")
    jobs = [make_job(v, src, out_dir, draw_steps(seed, v.name if src.is_file() else v.relative_to(src).as_posix(),
                                                 kind, level, mix), seed) for v in videos]
    if meta_path:
        check_outside(meta_path, [src if src.is_dir() else None, *videos, *(j.dst for j in jobs)], "--meta")
    return jobs, out_dir, meta_path


def make_job(src: Path, root: Path, out: Path, steps: Steps, seed: int, prefix: str = "") -> Job:
    rel = src.name if root.is_file() else src.relative_to(root).as_posix()
    key = f"{prefix}{rel}"
    return Job(src, out / rel, key, tuple(steps), video_seed(seed, key))


def check_sources(jobs: Sequence[Job], variable_rate: bool = False, even_size: bool = False) -> dict[Path, VideoInfo]:
    """Probe every distinct source (`check_input`; `variable_rate`: accept variable-frame-rate videos; `even_size`:
    refuse odd sizes, for --via-xvid) before any output is written; all problems in one line."""
    infos, problems = {}, []
    for src in dict.fromkeys(job.src for job in jobs):
        try:
            infos[src] = check_input(src, variable_rate, even_size)
        except PixforgeError as err:
            problems.append(str(err))
    if len(problems) == 1 and not infos:
        raise PixforgeError(problems[0])
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PixforgeError(f"{len(problems)} of {len(infos) + len(problems)} input videos are unusable, so nothing "
                            f"was written: {problems[0]}{more}")
    return infos


def _run(job: Job, options: dict) -> str:
    if options.pop("single_thread", False):  # workers share the cores: one BLAS / OpenMP / OpenCV thread each
        import cv2
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        cv2.setNumThreads(1)
    perturb_video(job.src, job.dst, list(job.steps), job.seed, **options)
    return job.key


def run_jobs(jobs: Sequence[Job], *, shard: str | None = None, workers: int = 1, overwrite: bool = False,
             desc: str = "perturb", infos: dict[Path, VideoInfo] | None = None,
             **options) -> tuple[list[Job], list[Job], list[str]]:
    """Run this shard's jobs, once all their sources passed `check_sources` (or were checked by the caller:
    `infos`); returns (done now, already done before, failures as one line each)."""
    k, n = parse_shard(shard)
    mine = [jobs[i] for i in shard_indices(len(jobs), k, n)]
    for job in mine:
        if job.dst.resolve() == job.src.resolve():
            raise PixforgeError(f"the output {job.dst} is the input video: choose another --out")
    todo = [j for j in mine if overwrite or not j.dst.exists()]
    skipped = [j for j in mine if j not in todo]
    infos = infos if infos is not None else check_sources(todo, even_size=options.get("via_xvid", False))
    done, failures = [], []
    bar = tqdm(total=len(mine), initial=len(skipped), desc=desc, unit="video", dynamic_ncols=True,
               disable=len(todo) <= 1)
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_run, job, dict(options, single_thread=True, info=infos[job.src])): job
                       for job in todo}
            for future in as_completed(futures):
                _collect(futures[future], future.exception, done, failures)
                bar.update(1)
    else:
        for job in todo:  # a single video shows its frames instead
            _collect(job, lambda job=job: _call(job, dict(options, info=infos[job.src], progress=len(todo) == 1)),
                     done, failures)
            bar.update(1)
    bar.close()
    return done, skipped, failures


def _call(job: Job, options: dict) -> BaseException | None:
    try:
        _run(job, options)
    except PixforgeError as err:
        return err
    return None


def _collect(job: Job, error, done: list, failures: list) -> None:
    err = error()
    if err is None:
        done.append(job)
    elif isinstance(err, PixforgeError):
        failures.append(str(err))
    else:
        raise err


def write_meta(path: Path, jobs: Sequence[Job], shard: str | None, base: Path | None = None) -> Path:
    """The official meta file (`<video> TYPE:LEVEL ...`), paths relative to `base` (default: the meta file's
    folder); one file per shard (`meta.K-of-N.txt`) when sharded, so shards never write the same file."""
    if shard:
        k, n = parse_shard(shard)
        path = path.with_name(f"{path.stem}.{k + 1}-of-{n}{path.suffix}")
    lines = [format_meta(Path(os.path.relpath(j.dst, base or path.parent)).as_posix(), list(j.steps))
             for j in sorted(jobs, key=lambda j: j.key)]
    write_text(path, "".join(line + "\n" for line in lines))
    return path


def summary(done: list[Job], skipped: list[Job], failures: list[str], out: Path, meta: Path | None) -> str:
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise PixforgeError(f"{len(failures)} of {len(done) + len(skipped) + len(failures)} videos failed: "
                            f"{failures[0]}{more}")
    text = f"wrote {len(done)} video(s) to {out}" + (f", {len(skipped)} already done" if skipped else "")
    return text + (f"; meta: {meta}" if meta else "")
