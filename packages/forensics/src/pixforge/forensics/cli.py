"""`pixforge-forensics` (also `pixforge forensics`): the Fire surface over perturb, make-variants, preview, demo.

Detection models (XceptionNet, C3D, TSN, I3D, ResNet+LSTM: `extract-faces`, `train`, `evaluate`, `detect`,
`export`) come later as further verbs and modules beside these; they read the videos and meta files written here.
"""

from __future__ import annotations

from pathlib import Path

from pixforge.core.cli import PixforgeError, run
from pixforge.forensics.distortions import TYPES, check_level, check_type


def _kind(kind: str) -> str:
    return "random" if str(kind).lower() == "random" else check_type(kind)


def _level(level) -> int | str:
    return "random" if str(level).lower() == "random" else check_level(level)


def _check_encoder(crf: int, workers: int, batch_size: int) -> None:
    if not isinstance(crf, int) or not 0 <= crf <= 51:
        raise PixforgeError(f"--crf must be an integer in 0-51, got {crf!r}")
    if not isinstance(workers, int) or workers < 1:
        raise PixforgeError(f"--workers must be a positive integer, got {workers!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise PixforgeError(f"--batch-size must be a positive integer, got {batch_size!r}")


class Forensics:
    """DeeperForensics-1.0 real-world distortions (7 types x 5 levels, mixtures) for videos, and dataset variants."""

    def perturb(self, input: str, out: str, type: str = "random", level="random", mix: int = 1,
                meta: str | None = None, seed: int = 0, via_xvid: bool = False, crf: int = 18,
                preset: str = "medium", shard: str | None = None, workers: int = 1, exact_random: bool = False,
                batch_size: int = 8, overwrite: bool = False) -> str:
        """Distort a video, or every video under a folder (same relative paths under --out): --type
        CS|CC|BW|GNC|GB|JPEG|VC|random at --level 1-5|random, or --mix N (2-4 distinct random types, random
        order, random levels). Audio, size, fps and frame count are kept; outputs are atomic and finished ones
        are skipped (resume) unless --overwrite. --meta META.txt writes the official `VIDEO TYPE:LEVEL ...`
        lines. Draws depend only on (--seed, relative path): --shard K/N splits the work across jobs,
        --workers N runs N videos at a time. --via-xvid aligns with the released dataset (XVID pass, then
        libx264 CRF 23); otherwise frames are encoded with libx264 --crf/--preset (VC sets its own CRF)."""
        from pixforge.forensics.jobs import list_videos, make_job, run_jobs, summary, write_meta
        from pixforge.forensics.video import draw_steps, require_libx264

        kind, lv = _kind(type), _level(level)
        if not isinstance(mix, int) or not 1 <= mix <= 4:
            raise PixforgeError(f"--mix must be 1 (one distortion) or 2-4 (a mixture), got {mix!r}")
        _check_encoder(crf, workers, batch_size)
        src, out_dir = Path(input), Path(out)
        videos = list_videos(src)
        require_libx264()
        if out_dir.resolve() == (src if src.is_dir() else src.parent).resolve():
            raise PixforgeError(f"--out {out_dir} is the input folder: the outputs would replace the inputs")
        jobs = [make_job(v, src, out_dir, draw_steps(seed, v.name if src.is_file() else v.relative_to(src).as_posix(),
                                                     kind, lv, mix), seed) for v in videos]
        done, skipped, failures = run_jobs(jobs, shard=shard, workers=workers, overwrite=overwrite, crf=crf,
                                           preset=preset, via_xvid=via_xvid, exact_random=exact_random,
                                           batch_size=batch_size)
        if failures and len(jobs) == 1:
            raise PixforgeError(failures[0])
        finished = done + skipped
        meta_file = write_meta(Path(meta), finished, shard) if meta and finished else None
        return summary(done, skipped, failures, out_dir, meta_file)

    def make_variants(self, src_dir: str, out: str, variants: str = "all", seed: int = 0, plan: bool = False,
                      via_xvid: bool = False, crf: int = 18, preset: str = "medium", shard: str | None = None,
                      workers: int = 1, batch_size: int = 8, overwrite: bool = False) -> str:
        """Build the DeeperForensics-1.0 variants of a folder of manipulated videos under --out:
        manipulated_videos/end_to_end (raw), end_to_end_level_1..5 (random type at each level),
        end_to_end_random_level, end_to_end_mix_2/3/4_distortions, each with its meta file under
        lists/manipulated_videos_distortions_meta/. --variants a,b picks some; --plan prints what would be
        written and the disk it takes, writing nothing. Resumable, --shard K/N, --workers N as in perturb."""
        from pixforge.forensics.variants import describe_plan, make_variants, plan_jobs, select

        names = select(variants)
        _check_encoder(crf, workers, batch_size)
        src, out_dir = Path(src_dir), Path(out)
        if not src.is_dir():
            raise PixforgeError(f"input folder {src} does not exist or is not a folder")
        if out_dir.resolve() == src.resolve():
            raise PixforgeError(f"--out {out_dir} is the input folder: choose another one")
        if plan:
            return describe_plan(*plan_jobs(src, out_dir, names, seed), out_dir, crf=crf, preset=preset,
                                 via_xvid=via_xvid)
        return make_variants(src, out_dir, names, seed, shard=shard, workers=workers, overwrite=overwrite,
                             crf=crf, preset=preset, via_xvid=via_xvid, batch_size=batch_size)

    def preview(self, image: str, out: str = "preview", tile: int = 256, work: int = 512, seed: int = 0,
                overwrite: bool = False) -> str:
        """One contact sheet of all 7 x 5 distortions (rows: types; columns: original, levels 1-5) of IMAGE, or
        of a video's first frame, written to OUT/<name>_distortions.png."""
        from pixforge.forensics.preview import write_preview

        return f"contact sheet: {write_preview(image, out, tile=tile, work=work, seed=seed, overwrite=overwrite)}"

    def types(self) -> str:
        """The distortion types and their official parameters at levels 1-5."""
        from pixforge.forensics.distortions import NAMES, PARAMS

        return "\n".join(f"{k:5s} {NAMES[k]:45s} {', '.join(str(p) for p in PARAMS[k])}" for k in TYPES)

    def demo(self, out: str = "demo-out/forensics", overwrite: bool = True) -> str:
        """The contact sheet of scikit-image's astronaut, and a 3-second video made from embedded photos (with a
        tone as audio) perturbed with a 3-distortion mixture; prints where they are (under a minute on 2 cores)."""
        from pixforge.forensics.demo import run_demo

        return run_demo(Path(out), overwrite)


def main() -> None:
    run(Forensics, name="pixforge-forensics")


if __name__ == "__main__":
    main()
