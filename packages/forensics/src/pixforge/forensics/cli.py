"""`pixforge-forensics` (also `pixforge forensics`): the Fire surface over perturb, make-variants, preview, demo,
extract-faces, and the detectors' train, evaluate, detect and export (which read the face folders extract-faces
writes).
"""

from __future__ import annotations

from pathlib import Path

from pixforge.core.cli import run
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_outside, whole_number
from pixforge.export.shard import parse_shard, shard_indices
from pixforge.forensics.distortions import TYPES
from pixforge.forensics.options import check_encoding, out_folder


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
        from pixforge.forensics.jobs import plan_perturb, run_jobs, summary, write_meta

        check_encoding(crf, workers, batch_size, preset, seed, shard)
        jobs, out_dir, meta_path = plan_perturb(input, out, type, level, mix, meta, seed)
        done, skipped, failures = run_jobs(jobs, shard=shard, workers=workers, overwrite=overwrite, crf=crf,
                                           preset=preset, via_xvid=via_xvid, exact_random=exact_random,
                                           batch_size=batch_size)
        if failures and len(jobs) == 1:
            raise PixforgeError(failures[0])
        finished = done + skipped
        meta_file = write_meta(meta_path, finished, shard) if meta_path and finished else None
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
        check_encoding(crf, workers, batch_size, preset, seed, shard)
        src, out_dir = Path(src_dir), out_folder(out)
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

        whole_number("--work", work, whole_number("--tile", tile, 16))
        whole_number("--seed", seed, 0)
        sheet = write_preview(image, out_folder(out), tile=tile, work=work, seed=seed, overwrite=overwrite)
        return f"contact sheet: {sheet}"

    def extract_faces(self, videos: str, out: str, frames: int = 32, scale: float = 1.3, size: int = 299,
                      boxes_from: str | None = None, detect_every: int = 1, detector: str = "hog",
                      max_side: int = 640, upsample: str | int = "auto", shard: str | None = None,
                      workers: int = 1, overwrite: bool = False) -> str:
        """Face crops for the detectors: per video (VIDEOS: a video or a folder of them), --frames frames sampled
        evenly (0: all), the main face track (pixforge.core.faces; detection every --detect-every sampled frames,
        --detector hog|cnn (dlib) or mediapipe (in its own environment) on frames downsized to --max-side,
        --upsample N times doubled: auto = once for frames under 320 px, whose faces HOG misses), the samples from
        the face's first to its last sighting, its boxes smoothed, squared x --scale (1.3) and cropped to --size
        (299 for Xception, 224 for the ResNet-based models, 112 for C3D):
        OUT/<video>/<frame>.png + track.json (frames, boxes, landmarks, probe info). --boxes-from REAL_OUT
        cuts each fake at its real video's frames and boxes (matched by name: 000_M101 -> 000). Finished videos
        are skipped (resume); --shard K/N, --workers N; OUT/contact_sheet.png shows one crop per video. Needs
        the faces extra: pip install 'pixforge-forensics[faces]'."""
        from pixforge.forensics.extract import ExtractOptions, contact_sheet, plan_jobs, run_extract, summary
        from pixforge.forensics.jobs import list_videos

        whole_number("--frames", frames, 0)
        whole_number("--size", size, 16, 4096)
        whole_number("--detect-every", detect_every, 1)
        whole_number("--max-side", max_side, 64)
        whole_number("--workers", workers)
        if str(upsample) != "auto":
            whole_number("--upsample", upsample, 0, 3)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 1.0 <= scale <= 4.0:
            raise PixforgeError(f"--scale must be a number from 1 to 4 (the crop side over the face box's), got "
                                f"{scale!r}")
        from pixforge.core.faces import DETECTORS  # the faces module (torch, kornia): only for this verb

        if detector not in DETECTORS:
            raise PixforgeError(f"--detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
        k, n = parse_shard(shard)
        src, out_dir = Path(videos), out_folder(out)
        video_list = list_videos(src)
        if out_dir.resolve() == (src if src.is_dir() else src.parent).resolve():
            raise PixforgeError(f"--out {out_dir} is the input folder: choose another one")
        check_outside(out_dir, [src if src.is_dir() else None, boxes_from])
        jobs = plan_jobs(video_list, src, out_dir, Path(boxes_from) if boxes_from is not None else None)
        options = ExtractOptions(frames=frames, scale=float(scale), size=size, detect_every=detect_every,
                                 detector=detector, max_side=max_side,
                                 upsample=None if str(upsample) == "auto" else int(upsample))
        done, skipped, failures = run_extract(jobs, options, shard=shard, workers=workers, overwrite=overwrite)
        if failures and len(done) + len(skipped) == 0 and len(failures) == 1:
            raise PixforgeError(failures[0])
        name = f"contact_sheet.{k + 1}-of-{n}.png" if shard else "contact_sheet.png"
        mine = [jobs[i] for i in shard_indices(len(jobs), k, n)]
        sheet = contact_sheet(mine, out_dir / name)
        return summary(done, skipped, failures, out_dir, sheet)

    def train(self, real: str | None = None, fake: str | None = None, model: str = "xception", out: str | None = None,
              size: int | None = None, clip: int | None = None, batch: int = 8, steps: int | None = None,
              epochs: float | None = None, lr: float | None = None, optimizer: str = "auto", momentum: float = 0.9,
              weight_decay: float | None = None, clip_grad: float | None = None, weights: str | None = None,
              distort_p: float = 0.0, distort_fake_only: bool = False, val_real: str | None = None,
              val_fake: str | None = None, val_every: int = 1000, val_items: int = 2000, seed: int = 0,
              workers: int = 0, ckpt_every: int = 1000, sample_every: int = 1000, keep_last: int = 3,
              device: str = "auto", amp: bool | str = False, threads: int | None = None, resume: bool = False,
              overwrite: bool = False, quiet: bool = False) -> str:
        """Train a detector on extract-faces folders: --real DIR --fake DIR|sbi --model xception|c3d|tsn|i3d|
        resnet-lstm --out RUN [--size] [--clip] [--batch 8] [--steps N | --epochs E] [--lr] [--optimizer
        auto|adam|sgd] [--weights PATH] [--distort-p 0.5 [--distort-fake-only]] [--val-real DIR --val-fake DIR|sbi]
        [--amp] [--resume] [--workers N]. See `pixforge.forensics.train.train` for every option and the recipes."""
        from pixforge.forensics.train import train

        options = {k: v for k, v in locals().items() if k not in ("self", "train")}
        return f"run: {train(**options)}"

    def evaluate(self, run: str | None = None, real: str | None = None, fake: str | None = None,
                 out: str | None = None, variant: str | None = None, distort: str | None = None,
                 per_distortion: bool = False, distort_fake_only: bool = False, batch: int = 16, workers: int = 0,
                 seed: int = 0, device: str = "auto", limit: int | None = None, overwrite: bool = False) -> str:
        """Evaluate --run on --real DIR --fake DIR|sbi (extract-faces folders) into --out REPORT: frame- and
        video-level ACC, AUC, log loss, EER (report.json, predictions.json, roc.png); --variant std,single-level,
        random,mixed (make-variants folders below --fake), --distort TYPE:LEVEL (on the fly), --per-distortion
        (7 types x 5 levels table)."""
        from pixforge.forensics.evaluate import evaluate

        options = {k: v for k, v in locals().items() if k not in ("self", "evaluate")}
        report = evaluate(**options)
        lines = [f"{name}: frame ACC {s['frame']['acc']:.4f} AUC {s['frame']['auc']:.4f}, video ACC "
                 f"{s['video']['acc']:.4f} AUC {s['video']['auc']:.4f}" for name, s in report["sets"].items()]
        return "\n".join(lines + [f"report: {Path(out) / 'report.json'}"])

    def detect(self, videos: str | None = None, run: str | None = None, out: str | None = None, frames: int = 32,
               detect_every: int = 1, batch: int = 16, overlay: bool = True, device: str = "auto",
               overwrite: bool = False) -> str:
        """P(fake) of VIDEO or of every video under DIR with --run's detector: OUT/<video>.json (per-frame
        probabilities) and OUT/<video>.overlay.mp4 (box + probability, audio kept); --frames 32 evenly sampled (0:
        all), the face detected on every --detect-every-th and tracked in between; no face: 0.5 and a warning."""
        from pixforge.forensics.detect import detect

        options = {k: v for k, v in locals().items() if k not in ("self", "detect")}
        results = detect(**options)
        return "\n".join(f"{key}: P(fake) {p:.4f}" for key, p in results.items())

    def export(self, run: str | None = None, out: str | None = None, overwrite: bool = False,
               check: bool = True) -> str:
        """Export --run's detector to ONNX --out M.onnx (input `clip`: N x 3 x H x W for Xception, N x 3 x T x H x
        W for clip models, RGB 0-255, normalisation inside; metadata: layout, clip length, sampling,
        normalisation), checked against PyTorch (--nocheck: skip)."""
        from pixforge.forensics.export import export

        return f"model: {export(run=run, out=out, overwrite=overwrite, check=check)}"

    def types(self) -> str:
        """The distortion types and their official parameters at levels 1-5."""
        from pixforge.forensics.distortions import NAMES, PARAMS

        return "\n".join(f"{k:5s} {NAMES[k]:45s} {', '.join(str(p) for p in PARAMS[k])}" for k in TYPES)

    def demo(self, out: str = "demo-out/forensics", overwrite: bool = True) -> str:
        """The contact sheet of scikit-image's astronaut, and a 3-second video made from embedded photos (with a
        tone as audio) perturbed with a 3-distortion mixture; prints where they are (under a minute on 2 cores)."""
        from pixforge.forensics.demo import run_demo

        return run_demo(out_folder(out), overwrite)


def main() -> None:
    run(Forensics, name="pixforge-forensics")


if __name__ == "__main__":
    main()
