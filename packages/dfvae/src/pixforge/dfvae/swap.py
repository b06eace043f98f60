"""`swap`: a source identity's face into every frame of a target video (or into images), DF-VAE's inference.

Per target frame: faces tracked (`pixforge.core.faces.track_faces`: detection on every `--detect-every`-th frame,
landmarks re-fitted on the tracks' predicted boxes in between), each track's landmarks smoothed online (One Euro,
as `prepare` smooths the training data), the face aligned to dlib's mean face at the model's size with the padding
the model was trained with; in the crop: landmark heatmaps ŷ_t (structure) and the blurred face mask m^b; the
network (`export.SwapGraph`: E_α(ŷ_t), E_β(x'), D_γ, MAdaIN with y_t's face statistics, D_δ, blend) runs on a
batch of faces with x' a reference crop of the source identity (appearance); the result is colour-matched to the
target crop inside the mask (mask-weighted mean and standard deviation per RGB channel), warped back into the
frame and blended with m^b (`paste_back`: pixels where the warped mask is 0 are the target's, bit for bit).

Video: decode, face tracking and alignment run in a background thread feeding a bounded queue; the main thread
batches faces through the network, pastes back and encodes (ffmpeg runs decoder and encoder in their own
processes), so memory is constant in the video's length. Audio is kept; every output carries provenance metadata
(`provenance`): the video's `comment` tag, a PNG's `Comment` text chunk.

The network runs through a `ModelSession`: the exported graph run by torch (`export.session`) or an ONNX file run
by onnxruntime (`--model`), one code path.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixforge.dfvae.pipeline import (
    QUEUE_FRAMES,
    STAGES,
    Aligner,
    FaceJob,
    FrameFaces,
    Swapper,
    Timings,
    background,
    timed_frames,
)
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_outside


def provenance(identity: str) -> dict:
    """What every output says about itself."""
    from pixforge.dfvae import __version__

    return {"synthetic": True, "tool": "pixforge-dfvae", "version": __version__,
            "method": "DF-VAE face swap (DeeperForensics-1.0)", "source_identity": identity}


def swap_video(target: Path, out: Path, faces: FrameFaces, swapper: Swapper, *, batch: int = 16,
               preview: Path | None = None, comment: str = "", crf: int = 18, preset: str = "medium",
               quiet: bool = False, overlap: bool = True) -> dict:
    """Swap every frame of the video `target` into `out` (audio kept, `comment` metadata); a report with frame
    counts and seconds per stage. Raises (nothing written) when no frame has a face."""
    from tqdm import tqdm

    from pixforge.export.video import VideoReader, VideoWriter, probe_video

    info = probe_video(target)
    rate = info.playback_fps_fraction  # a variable-frame-rate video's mean rate keeps its duration (and audio)
    timings = Timings()
    extra = ["-metadata", f"comment={comment}"] if comment else []
    options = dict(crf=crf, preset=preset, audio_from=target, extra_args=extra)
    frames = with_face = faces_swapped = 0
    start = time.perf_counter()
    with VideoReader(target, batch_size=8, info=info) as reader, \
            VideoWriter(out, rate, **options) as writer, \
            (VideoWriter(preview, rate, **options) if preview else _Null()) as side, \
            tqdm(total=info.frame_count, desc="pixforge-dfvae swap", unit="frame", disable=quiet) as bar:
        items = faces(timed_frames(iter(reader), timings), timings)
        if overlap:
            items = background(items, QUEUE_FRAMES)
        pending: list[tuple[int, np.ndarray, list[FaceJob]]] = []

        def flush():
            nonlocal frames, with_face, faces_swapped
            jobs = [j for _, _, js in pending for j in js]
            t = time.perf_counter()
            crops = swapper.crops(jobs)
            t = timings.add("network", t)
            results, k = [], 0
            for _, frame, js in pending:
                results.append(Swapper.paste(frame, js, crops[k:k + len(js)]))
                k += len(js)
            t = timings.add("paste", t)
            writer.write(np.stack(results))
            if preview:
                side.write(np.stack([np.concatenate([f, r], axis=1) for (_, f, _), r in
                                     zip(pending, results, strict=True)]))
            timings.add("encode", t)
            frames += len(pending)
            with_face += sum(bool(js) for _, _, js in pending)
            faces_swapped += len(jobs)
            bar.update(len(pending))
            pending.clear()

        for item in items:
            pending.append(item)
            if sum(len(js) for _, _, js in pending) >= batch or len(pending) >= batch:
                flush()
        if pending:
            flush()
        if frames == 0:
            raise PixforgeError(f"{target} has no frames")
        if with_face == 0:
            raise PixforgeError(f"{target}: no face found in any of its {frames} frames (nothing written)")
        t = time.perf_counter()
    # the writers closed (encoding finished, audio muxed) on leaving the block
    timings.add("encode", t)
    wall = time.perf_counter() - start
    return {"frames": frames, "frames_with_face": with_face, "faces": faces_swapped, "seconds": wall,
            "fps": frames / wall, "stages": {s: round(timings[s], 4) for s in STAGES},
            "width": info.width, "height": info.height, "has_audio": info.has_audio}


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def write_png(path: Path, image: np.ndarray, meta: dict) -> Path:
    """A PNG (atomic) with the provenance in its `Comment` text chunk (and `Software`)."""
    from PIL import Image, PngImagePlugin

    from pixforge.export.atomic import atomic_path

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", json.dumps(meta))
    info.add_text("Software", f"{meta['tool']} {meta['version']}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", pnginfo=info)
    return path


def swap_images(files: list[tuple[Path, Path]], backend, aligner: Aligner, swapper: Swapper, meta: dict, *,
                preview: bool = False, all_faces: bool = False, max_side: int = 640, quiet: bool = False) -> dict:
    """Each (image, output PNG) pair: faces detected (no tracking), swapped, written with provenance. Every image is
    read and searched before anything is written; one without a face is an error naming it."""
    from tqdm import tqdm

    from pixforge.core.faces import detect_faces
    from pixforge.export.images import read_image

    found = {}
    for path, _ in files:
        faces = detect_faces(read_image(path), backend, max_side=max_side)
        found[path] = [f.landmarks for f in sorted(faces, key=lambda f: -f.size)]
    missing = [str(p) for p, f in found.items() if not f]
    if missing:
        raise PixforgeError(f"no face found in {len(missing)} of {len(files)} image(s): "
                            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    count = 0
    for path, dest in tqdm(files, desc="pixforge-dfvae swap", unit="image", disable=quiet or len(files) < 2):
        image = read_image(path)
        faces = found[path][:None if all_faces else 1]
        jobs = aligner.occlude([aligner(image, landmarks, i) for i, landmarks in enumerate(faces)])
        result = Swapper.paste(image, jobs, swapper.crops(jobs))
        write_png(dest, result, meta)
        if preview:
            write_png(dest.with_name(f"{dest.stem}-preview.png"), np.concatenate([image, result], axis=1), meta)
        count += len(jobs)
    return {"images": len(files), "faces": count}


def swap(target: str | None = None, run: str | None = None, source_id: str | None = None, out: str | None = None,
         model: str | None = None, source_images: str | None = None, reference: int = 0, batch: int = 16,
         detect_every: int = 5, max_side: int = 640, detector: str = "hog", all_faces: bool = False,
         color_match: bool = True, occluder: str | None = None, preview: bool = False, crf: int = 18,
         preset: str = "medium", device: str = "auto", amp: bool | str = False, overwrite: bool = False,
         quiet: bool = False) -> str:
    """Swap the face of --source-id (an identity of the --run) into TARGET (a video, an image or a folder of images)
    -> --out (a video for a video, a .png for an image, a folder for a folder); audio kept; provenance metadata in
    every output. Faces tracked (--detector hog|cnn: dlib; mediapipe: in its own environment; detection every
    --detect-every frames on frames shrunk to --max-side, landmarks re-fitted between, One Euro smoothing), aligned
    as the model's training data,
    --batch faces per network call, colour-matched in the mask (--nocolor-match: off), pasted back with the
    blurred face mask; the largest face per frame (--all-faces: every face). --occluder MODEL.onnx: a face
    segmentation model (XSeg convention: BGR crops in [0, 1], mask 1 where the face is visible) whose mask keeps
    hands, microphones and the like in front of the face from being swapped. The source's appearance: reference
    crop --reference N (0: the most typical pose) of the run's references/ (kept at the end of training), or of
    --source-images DIR (aligned crops of the source, e.g. a prepared clip's crops; sorted by name). --model
    MODEL.onnx runs the exported network with onnxruntime instead of torch (references from --run or
    --source-images). --preview: also OUT-preview (target | swap side by side). Video encoding: --crf, --preset."""
    plan = plan_swap(target, run=run, source_id=source_id, out=out, model=model, source_images=source_images,
                     reference=reference, batch=batch, detect_every=detect_every, max_side=max_side, detector=detector,
                     crf=crf, preset=preset, device=device, amp=amp, overwrite=overwrite, preview=preview,
                     occluder=occluder)
    return run_swap(plan, batch=batch, all_faces=all_faces, color_match=color_match, crf=crf, preset=preset,
                    quiet=quiet)


@dataclass
class SwapPlan:
    """Everything a swap needs, checked: the target, where results go, the network session, the reference crop."""

    kind: str  # video | image | folder
    target: Path
    out: Path
    files: list[tuple[Path, Path]]  # (image, output PNG) for stills
    preview: Path | None
    session: object
    reference: np.ndarray
    identity: str
    size: int
    padding: float
    backend: object
    fps: float
    detect_every: int
    max_side: int
    want_preview: bool = False
    references: np.ndarray | None = None  # every reference crop of the source (metrics embed them all)
    occluder: object | None = None  # an occluder.Occluder, or None


def plan_swap(target, *, run=None, source_id=None, out=None, model=None, source_images=None, reference=0, batch=16,
              detect_every=5, max_side=640, detector="hog", crf=18, device="auto", amp=False, overwrite=False,
              preset="medium", preview=False, occluder=None) -> SwapPlan:
    """Every check of `swap` (options, target, outputs, model, identity, references, the faces extra), before
    anything is written."""
    from pixforge.export.images import is_image_path, list_images
    from pixforge.export.options import check_numbers
    from pixforge.export.video import check_preset, is_video_path, probe_video

    check_numbers(dict(reference=reference, batch=batch, detect_every=detect_every, max_side=max_side, crf=crf),
                  integers={"reference": 0, "batch": 1, "detect_every": 1, "max_side": 64, "crf": 0})
    check_preset(preset)
    if detect_every > 11:
        raise PixforgeError(f"--detect-every must be at most 11 (the tracker's gap), got {detect_every}")
    if target is None or out is None:
        raise PixforgeError("swap needs a TARGET (video, image or folder of images) and --out")
    if run is None and model is None:
        raise PixforgeError("--run RUN (a pixforge-dfvae run) or --model MODEL.onnx is required")
    target, dest = Path(target), Path(out)
    if not target.exists():
        raise PixforgeError(f"target {target} does not exist")
    files: list[tuple[Path, Path]] = []
    if target.is_dir():
        kind = "folder"
        if dest.exists() and not dest.is_dir():
            raise PixforgeError(f"--out {dest} exists and is not a folder (the target is a folder)")
        if dest.resolve() == target.resolve() or target.resolve() in dest.resolve().parents:
            raise PixforgeError(f"--out {dest} is inside the target folder: choose another folder")
        files = [(p, dest / p.relative_to(target).with_suffix(".png")) for p in list_images(target)]
        names = [d for _, d in files]
        twice = next((d for d in names if names.count(d) > 1), None)
        if twice is not None:
            raise PixforgeError(f"two images of {target} would both be written to {twice} (same name, another "
                                "suffix): rename one")
    elif is_video_path(target):
        kind = "video"
        if not is_video_path(dest):
            raise PixforgeError(f"--out {dest} must be a video file (e.g. .mp4) for the video {target}")
    elif is_image_path(target):
        kind = "image"
        if dest.suffix.lower() != ".png":
            raise PixforgeError(f"--out {dest} must be a .png (the image keeps its provenance in a PNG text chunk)")
        files = [(target, dest)]
    else:
        raise PixforgeError(f"target {target} is not a video, an image or a folder")
    side = None
    if preview and kind == "video":
        side = dest.with_name(f"{dest.stem}-preview{dest.suffix}")
    outputs = [dest, *([side] if side else [])] if kind == "video" else \
        [p for _, d in files for p in (d, *([d.with_name(f"{d.stem}-preview.png")] if preview else []))]
    inputs = {target.resolve(), *(p.resolve() for p, _ in files)}
    for path in outputs:
        if path.resolve() in inputs:
            raise PixforgeError(f"{path} is an input: choose an --out that does not write over the target")
        check_beside_inputs(path, run=run, model=model, source_images=source_images, occluder=occluder)
        if path.exists() and not overwrite:
            raise PixforgeError(f"{path} already exists: pass --overwrite to replace it")
    fps = 25.0
    if kind == "video":
        info = probe_video(target)
        if info.frame_count == 0:
            raise PixforgeError(f"video {target} has no frames")
        fps = info.playback_fps
    session, identity, refs, size, padding = _network(run, model, source_id, source_images, device, amp)
    if reference >= len(refs):
        raise PixforgeError(f"--reference {reference}: there are {len(refs)} reference crops (0..{len(refs) - 1})")
    from pixforge.core.faces import open_detector

    backend = open_detector(detector)
    masker = None
    if occluder is not None:
        from pixforge.dfvae.occluder import Occluder

        masker = Occluder(occluder, device if model is not None else "auto")  # torch's GPU: onnxruntime's if it has one
    return SwapPlan(kind, target, dest, files, side, session, refs[reference], identity, size, padding, backend, fps,
                    detect_every, max_side, bool(preview), refs, masker)


def check_beside_inputs(path: Path, *, run=None, model=None, source_images=None, occluder=None) -> None:
    """An output never replaces the model, the occluder or a file of the run, and never lands among the source
    images (the next swap would read it as one)."""
    check_outside(path, [source_images, model, occluder])
    if run is not None and path.exists():
        check_outside(path, [run])


def _network(run, model, source_id, source_images, device, amp):
    """(session, identity, reference crops (K, S, S, 3), size, padding)."""
    trained = None
    if run is not None:
        from pixforge.dfvae.model import load

        trained = load(run)
    if model is not None:
        from pixforge.export.session import open_session

        session = open_session(model, device, notice=False)
        meta = session.meta
        if meta.package != "pixforge-dfvae" or meta.task != "face-swap":
            raise PixforgeError(f"--model {model} is a {meta.package} {meta.task} model, not a pixforge-dfvae "
                                "face-swap model")
        size, padding = meta.input("target").size[0], float(meta.extra.get("padding", 0.25))
        identities = list(meta.extra.get("identities") or [])
        if trained is not None and trained.size != size:
            raise PixforgeError(f"--model {model} works at {size} px but --run {run} at {trained.size} px")
    else:
        import torch  # noqa: F401

        from pixforge.core.runtime import autocast_dtype, resolve_device
        from pixforge.dfvae.export import session as torch_session

        dev = resolve_device(device)
        session = torch_session(trained, dev, autocast_dtype(dev, amp))
        size, padding, identities = trained.size, trained.padding, trained.identities
    if source_images is not None:
        identity = str(source_id) if source_id is not None else Path(source_images).name
        return session, identity, _image_references(source_images, size), size, padding
    if source_id is None or str(source_id) not in identities:
        what = "--source-id is required" if source_id is None else f"unknown identity {source_id!r}"
        raise PixforgeError(f"{what}: the model knows {', '.join(identities) or 'none'}")
    if trained is None:
        raise PixforgeError("--model needs --run RUN (for the source's reference crops) or --source-images DIR")
    from pixforge.dfvae.model import load_references

    return session, str(source_id), load_references(trained, str(source_id))[0], size, padding


def _image_references(folder, size: int) -> np.ndarray:
    """Aligned crops of the source (sorted by name), resized to the model's size."""
    from PIL import Image

    from pixforge.export.images import list_images, read_image

    crops = []
    for path in list_images(folder):
        image = read_image(path)
        height, width = image.shape[:2]
        if height != width or height < 16:
            raise PixforgeError(f"--source-images: {path} is {width}x{height}; aligned face crops are square, at "
                                "least 16 px")
        if image.shape[:2] != (size, size):
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
        crops.append(image)
    return np.stack(crops)


def run_swap(plan: SwapPlan, *, batch: int = 16, all_faces: bool = False, color_match: bool = True, crf: int = 18,
             preset: str = "medium", quiet: bool = False) -> str:
    """Carry out a checked `SwapPlan`; a summary line (and the per-stage seconds for a video)."""
    meta = provenance(plan.identity)
    aligner = Aligner(plan.size, plan.padding, plan.occluder)
    swapper = Swapper(plan.session, plan.reference, color_match)
    if plan.kind == "video":
        faces = FrameFaces(plan.backend, aligner, plan.fps, plan.detect_every, plan.max_side, all_faces)
        report = swap_video(plan.target, plan.out, faces, swapper, batch=batch, preview=plan.preview,
                            comment=json.dumps(meta), crf=crf, preset=preset, quiet=quiet)
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in report["stages"].items())
        lines = [f"swapped {plan.identity} into {report['frames_with_face']} of {report['frames']} frames "
                 f"({report['faces']} faces, {report['fps']:.2f} frames/s) -> {plan.out}",
                 f"  stages: {stages}"]
        if plan.preview:
            lines.append(f"  preview: {plan.preview}")
        return "\n".join(lines)
    report = swap_images(plan.files, plan.backend, aligner, swapper, meta, preview=plan.want_preview,
                         all_faces=all_faces, max_side=plan.max_side, quiet=quiet)
    return f"swapped {plan.identity} into {report['faces']} face(s) of {report['images']} image(s) -> {plan.out}"
