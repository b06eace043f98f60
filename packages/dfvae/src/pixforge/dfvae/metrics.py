"""`metrics`: how a swap of a source identity into a target video scores (JSON).

The target is swapped exactly as `swap` does it (in memory, nothing written but the optional JSON), then per frame
with a face (the largest):

* identity: dlib's 128-d face embedding (`pixforge.core.faces`, the backend's `embed`) of the swapped face, of the
  target's own face, and of the source (the mean embedding of its reference crops), all three from aligned crops at
  the model's size, landmarks fitted on the same fixed box (a 64-px crop of a face sits about 0.17 from the
  full-resolution embedding of the same face: embedding the swap and the target from the frames would favour the
  target); reported as cosine similarity (higher: more alike) and as euclidean distance (dlib's scale: the same
  person below about 0.6). A swap should be closer to the source than to the target; with an untrained or barely
  trained model it is not.
* expression and pose kept: 68 landmarks re-fitted (dlib's predictor, same box) on the swapped and on the original
  frame, mean point distance divided by the target's inter-ocular distance (outer eye corners, points 36 and 45).
* temporal flicker: mean absolute difference (0..255) between consecutive frames inside the swap's mask (the pasted
  blurred face mask above 0.5 in both frames), for the swap and for the target itself; their ratio.
* reconstruction: the network given the target face as its own reference (self-reenactment: structure and
  appearance from the target), without the colour match (it would move the output's colours to the very crop it is
  scored against), PSNR (dB) and SSIM (`pixforge.core.metrics`) against the aligned target crop over the face
  (m^b > 0.5; the rest of the crop is the target's own background, copied by the fusion).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pixforge.export.errors import PixforgeError

LEFT_EYE, RIGHT_EYE = 36, 45


def _box(points: np.ndarray, grow: float = 0.1) -> tuple[float, float, float, float]:
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    w, h = x1 - x0, y1 - y0
    return (float(x0 - grow * w), float(y0 - grow * h), float(x1 + grow * w), float(y1 + grow * h))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def metrics(run: str | None = None, target: str | None = None, source_id: str | None = None,
            out: str | None = None, model: str | None = None, source_images: str | None = None, reference: int = 0,
            batch: int = 16, detect_every: int = 5, max_side: int = 640, detector: str = "hog",
            max_frames: int | None = None, device: str = "auto", overwrite: bool = False,
            quiet: bool = False) -> str:
    """Score the swap of --source-id (default: the run's first identity) into the video --target (as `swap` makes
    it, nothing written): identity similarity of the swap to the source and to the target (dlib 128-d embeddings:
    cosine similarity and euclidean distance), landmark error to the target (normalised by the inter-ocular
    distance), flicker inside the mask against the target's own, PSNR/SSIM of self-reconstructions. JSON on stdout
    and, with --out FILE.json, in that file. --max-frames: only the first N frames."""
    from pixforge.dfvae.model import load
    from pixforge.dfvae.swap import check_beside_inputs, plan_swap, provenance
    from pixforge.export.atomic import write_text
    from pixforge.export.options import check_numbers
    from pixforge.export.video import is_video_path

    check_numbers({"max_frames": max_frames}, integers={"max_frames": 1})
    if target is None:
        raise PixforgeError("--target VIDEO is required")
    if Path(target).is_dir() or not is_video_path(target):
        raise PixforgeError(f"--target {target} must be a video (metrics measure flicker over frames)")
    dest = Path(out) if out is not None else None
    if dest is not None:
        if dest.suffix.lower() != ".json":
            raise PixforgeError(f"--out {dest} must end in .json")
        if dest.resolve() == Path(target).resolve():
            raise PixforgeError(f"--out {dest} is the target")
        check_beside_inputs(dest, run=run, model=model, source_images=source_images)
        if dest.exists() and not overwrite:
            raise PixforgeError(f"{dest} already exists: pass --overwrite to replace it")
    if source_id is None and source_images is None and run is not None:
        known = load(run).identities
        source_id = known[0] if known else None
    # plan_swap checks everything; its output path is a placeholder that is never written
    plan = plan_swap(target, run=run, source_id=source_id, out=str(Path(target).with_name(".metrics-unused.mp4")),
                     model=model, source_images=source_images, reference=reference, batch=batch,
                     detect_every=detect_every, max_side=max_side, detector=detector, device=device,
                     overwrite=True)
    report = score(plan, batch=batch, max_frames=max_frames, quiet=quiet)
    report.update(run=str(run) if run else None, model=str(model) if model else None, target=str(target),
                  provenance=provenance(plan.identity))
    text = json.dumps(report, indent=2)
    if dest is not None:
        write_text(dest, text + "\n")
    return text


def score(plan, *, batch: int = 16, max_frames: int | None = None, quiet: bool = False) -> dict:
    """The metrics of `plan` (a checked `SwapPlan` of a video)."""
    import torch
    from tqdm import tqdm

    from pixforge.core.faces import paste_back
    from pixforge.core.metrics import psnr, ssim
    from pixforge.dfvae.pipeline import Aligner, FrameFaces, Swapper, Timings
    from pixforge.export.video import VideoReader

    backend = plan.backend
    aligner = Aligner(plan.size, plan.padding)
    swapper = Swapper(plan.session, plan.reference)
    plain = Swapper(plan.session, plan.reference, color_match=False)
    faces = FrameFaces(backend, aligner, plan.fps, plan.detect_every, plan.max_side)
    source = _source_embedding(plan, backend)
    rows: dict[str, list[float]] = {k: [] for k in ("cos_source", "cos_target", "dist_source", "dist_target",
                                                    "landmarks", "flicker_swap", "flicker_target", "psnr", "ssim")}
    frames = with_face = 0
    previous = None  # (original, swapped, alpha) of the frame before

    def frames_of(reader):
        count = 0
        for chunk in reader:
            for frame in chunk:
                if max_frames is not None and count >= max_frames:
                    return
                count += 1
                yield frame

    pending = []

    def flush():
        nonlocal frames, with_face, previous
        jobs = [j for _, _, js in pending for j in js]
        crops = swapper.crops(jobs)
        selves = plain.crops(jobs, own=True)
        k = 0
        for _, frame, js in pending:
            frames += 1
            if not js:
                previous = None
                continue
            with_face += 1
            job, self_crop = js[0], selves[k]
            k += len(js)
            swapped = Swapper.paste(frame, js, crops[k - len(js):k])
            swapped_crop = crops[k - len(js)]
            points = job.frame_landmarks
            box = _box(points)
            original_lm = backend.landmarks(frame, box)
            swapped_lm = backend.landmarks(swapped, box)
            iod = np.linalg.norm(original_lm[LEFT_EYE] - original_lm[RIGHT_EYE])
            rows["landmarks"].append(float(np.linalg.norm(swapped_lm - original_lm, axis=1).mean() / max(iod, 1e-6)))
            e_swap, e_target = _crop_embedding(backend, swapped_crop), _crop_embedding(backend, job.crop)
            rows["cos_source"].append(_cosine(e_swap, source))
            rows["cos_target"].append(_cosine(e_swap, e_target))
            rows["dist_source"].append(float(np.linalg.norm(e_swap - source)))
            rows["dist_target"].append(float(np.linalg.norm(e_swap - e_target)))
            alpha = paste_back(np.zeros((*frame.shape[:2], 1), np.uint8), 255 * job.mask[..., None], job.matrix,
                               job.mask, premultiplied=True)[..., 0] > 127  # the warped m^b above 0.5
            if previous is not None:
                inside = alpha & previous[2]
                if inside.any():
                    rows["flicker_swap"].append(float(np.abs(swapped.astype(np.int16) - previous[1])[inside].mean()))
                    rows["flicker_target"].append(float(np.abs(frame.astype(np.int16) - previous[0])[inside].mean()))
            previous = (frame.astype(np.int16), swapped.astype(np.int16), alpha)
            a = torch.from_numpy(self_crop).permute(2, 0, 1)[None].float() / 255
            b = torch.from_numpy(job.crop).permute(2, 0, 1)[None].float() / 255
            face = torch.from_numpy(job.mask > 0.5)[None, None]
            rows["psnr"].append(float(psnr(a, b, mask=face)))
            rows["ssim"].append(float(ssim(a, b, mask=face)))
        pending.clear()

    with VideoReader(plan.target, batch_size=8) as reader, \
            tqdm(total=max_frames or reader.info.frame_count, desc="pixforge-dfvae metrics", unit="frame",
                 disable=quiet) as bar:
        for item in faces(frames_of(reader), Timings()):
            pending.append(item)
            if len(pending) >= batch:
                bar.update(len(pending))
                flush()
        bar.update(len(pending))
        flush()
    if with_face == 0:
        raise PixforgeError(f"{plan.target}: no face found in any of its {frames} frames")
    cos_s, cos_t = _mean(rows["cos_source"]), _mean(rows["cos_target"])
    flicker_s, flicker_t = _mean(rows["flicker_swap"]), _mean(rows["flicker_target"])
    return {
        "source_id": plan.identity, "frames": frames, "frames_with_face": with_face,
        "identity": {"embedding": "dlib face-recognition ResNet, 128-d (pixforge.core.faces)",
                     "cosine_to_source": cos_s, "cosine_to_target": cos_t,
                     "distance_to_source": _mean(rows["dist_source"]),
                     "distance_to_target": _mean(rows["dist_target"]),
                     "closer_to": "source" if cos_s > cos_t else "target",
                     "crops": "all three embedded from aligned crops at the model's size",
                     "note": "cosine similarity: higher is more alike; euclidean distance: dlib's same-person "
                             "threshold is 0.6"},
        "landmarks": {"error": _mean(rows["landmarks"]),
                      "normalised_by": "inter-ocular distance (outer eye corners, points 36-45) of the target",
                      "predictor": "dlib 68-point, re-fitted on the same box in the swapped and the original frame"},
        "flicker": {"swap": flicker_s, "target": flicker_t,
                    "ratio": flicker_s / flicker_t if flicker_s is not None and flicker_t else None,
                    "unit": "mean |frame t - frame t-1| (0..255) inside the pasted mask"},
        "reconstruction": {"psnr": _mean(rows["psnr"]), "ssim": _mean(rows["ssim"]),
                           "what": "the network with the target crop as its own reference, against the crop, over "
                                   "the face (blurred mask above 0.5), no colour match"},
    }


def _crop_embedding(backend, crop: np.ndarray) -> np.ndarray:
    """dlib's embedding of an aligned crop, landmarks fitted on a fixed box (the face's place in every crop)."""
    size = crop.shape[0]
    box = (0.2 * size, 0.2 * size, 0.8 * size, 0.85 * size)
    return backend.embed(crop, backend.landmarks(crop, box))


def _source_embedding(plan, backend) -> np.ndarray:
    """The mean embedding of the source's reference crop(s)."""
    crops = plan.references if getattr(plan, "references", None) is not None else plan.reference[None]
    return np.mean([_crop_embedding(backend, crop) for crop in crops], axis=0)
