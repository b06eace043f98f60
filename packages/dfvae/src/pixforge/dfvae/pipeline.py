"""The per-frame pieces of DF-VAE's face swap (`swap` drives them): faces tracked, smoothed and aligned per frame
(`FrameFaces`, `Aligner`), the network on batches of faces with one reference crop, colour match, paste back
(`Swapper`), stage timings, and a background thread with a bounded queue for decode + faces.

Per face: the landmarks of its track smoothed online (One Euro, as `prepare` smooths the training data), the face
aligned to dlib's mean face at the model's size with the training data's padding; in the crop the landmark heatmaps
ŷ_t (structure) and the blurred face mask m^b; the network (`export.SwapGraph`) through a `ModelSession` (the torch
graph or an ONNX file); the result colour-matched to the target crop inside the mask (mask-weighted mean and standard
deviation per RGB channel), warped back and blended with m^b (`paste_back`: pixels where the warped mask is 0 keep
the target's values bit for bit). With an occluder (`occluder.Occluder`), m^b is multiplied by its mask first.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

STAGES = ("decode", "detect", "landmarks", "align", "occlude", "network", "paste", "encode")
QUEUE_FRAMES = 32  # frames decoded and aligned ahead of the network (bounds memory)


class Timings(defaultdict):
    """Seconds per stage (each stage is timed in the thread that runs it)."""

    def __init__(self):
        super().__init__(float)

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self[stage] += now - since
        return now


class TimedBackend:
    """A face backend whose detect / landmarks calls are timed into `timings`."""

    def __init__(self, backend, timings: Timings):
        self.backend, self.timings = backend, timings
        self.name, self.landmark_count = backend.name, backend.landmark_count

    def detect(self, image):
        t = time.perf_counter()
        faces = self.backend.detect(image)
        self.timings.add("detect", t)
        return faces

    def landmarks(self, image, box):
        t = time.perf_counter()
        points = self.backend.landmarks(image, box)
        self.timings.add("landmarks", t)
        return points

    def embed(self, image, landmarks):
        return self.backend.embed(image, landmarks)


@dataclass
class FaceJob:
    """One face of one frame, aligned: what the network and the paste-back need."""

    track: int
    matrix: np.ndarray  # (2, 3) frame pixels -> crop pixels
    crop: np.ndarray  # (S, S, 3) uint8
    landmarks: np.ndarray  # (68, 2) crop pixels (smoothed)
    frame_landmarks: np.ndarray  # (68, 2) frame pixels (smoothed)
    heatmaps: np.ndarray = field(repr=False, default=None)  # (68, S, S) float32 (in memory S x S x 68, see Aligner)
    mask: np.ndarray = field(repr=False, default=None)  # (S, S) float32 m^b


class Aligner:
    """Smoothed landmarks -> aligned crop, crop landmarks, heatmaps and blurred mask at the model's size. The
    heatmaps are a (68, S, S) view of S x S x 68 memory (channels last, as the torch session reads them: the
    transposition is not paid in the network's thread). `occluder`: an `occluder.Occluder` whose mask `occlude`
    multiplies into the jobs' m^b."""

    def __init__(self, size: int, padding: float, occluder=None):
        self.size, self.padding, self.occluder = size, padding, occluder
        self.sigma, self.blur = 2.0 * size / 128, size / 32

    def __call__(self, frame: np.ndarray, landmarks: np.ndarray, track: int = 0) -> FaceJob:
        import torch

        from pixforge.core.faces import align, transform_points
        from pixforge.dfvae.heatmaps import landmark_heatmaps
        from pixforge.dfvae.masks import blur_mask, face_mask

        crop, matrix = align(frame, landmarks, self.size, self.padding)
        points = transform_points(landmarks, matrix).astype(np.float32)
        lm = torch.from_numpy(points)[None]
        heatmaps = landmark_heatmaps(lm, self.size, self.sigma, channels_last=True)[0].numpy()
        mask = blur_mask(face_mask(lm, self.size), self.blur)[0, 0].numpy()
        return FaceJob(track, matrix, crop, points, np.asarray(landmarks, np.float32), heatmaps, mask)

    def occlude(self, jobs: list[FaceJob]) -> list[FaceJob]:
        """The jobs with m^b times the occluder's mask of their crops (one call for all), or as they are."""
        if self.occluder is not None and jobs:
            for job, visible in zip(jobs, self.occluder(np.stack([j.crop for j in jobs])), strict=True):
                job.mask = job.mask * visible
        return jobs


class Swapper:
    """Batches of `FaceJob`s through the network session with one reference crop, colour match, paste back."""

    def __init__(self, session, reference: np.ndarray, color_match: bool = True):
        self.session, self.color_match = session, color_match
        self.reference = (reference.astype(np.float32) / 127.5 - 1).transpose(2, 0, 1)[None]

    def crops(self, jobs: list[FaceJob], own: bool = False) -> list[np.ndarray]:
        """The swapped crops (uint8 S x S x 3) of `jobs`, in one network call; `own`: each face with itself as the
        reference (a self-reconstruction, for metrics)."""
        if not jobs:
            return []
        target = np.stack([j.crop for j in jobs]).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1
        mask = np.stack([j.mask for j in jobs])[:, None]
        if getattr(self.session, "channels_last", False):  # a (N, 68, S, S) view of N x S x S x 68 memory
            heatmaps = np.stack([j.heatmaps.transpose(1, 2, 0) for j in jobs]).transpose(0, 3, 1, 2)
        else:
            heatmaps = np.stack([j.heatmaps for j in jobs])
        feeds = {"target": target, "heatmaps": heatmaps,
                 "reference": target if own else np.repeat(self.reference, len(jobs), axis=0), "mask": mask}
        out = self.session.run(feeds)["swapped"]
        if self.color_match:
            out = match_colours(out, target, mask)
        return [((o.transpose(1, 2, 0) + 1) * 127.5).round().clip(0, 255).astype(np.uint8) for o in out]

    @staticmethod
    def paste(frame: np.ndarray, jobs: list[FaceJob], crops: list[np.ndarray]) -> np.ndarray:
        """The swapped crops into the frame. A crop is m^b·face + (1 - m^b)·aligned target (the network's fusion):
        its face part, crop - (1 - m^b)·aligned target (kept in [0, 255 m^b]: the uint8 rounding), goes back
        premultiplied, so the frame gets m^b·face + (1 - m^b)·frame, the thesis' one blend (not m^b twice, nor the
        aligned target resampled back)."""
        from pixforge.core.faces import paste_back

        for job, crop in zip(jobs, crops, strict=True):
            mask = job.mask[..., None]
            face = np.clip(crop.astype(np.float32) - (1 - mask) * job.crop.astype(np.float32), 0, 255 * mask)
            frame = paste_back(frame, face, job.matrix, job.mask, premultiplied=True)
        return frame


def match_colours(swapped: np.ndarray, target: np.ndarray, mask: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Per image and RGB channel, `swapped`'s mask-weighted mean and standard deviation moved to `target`'s, applied
    with the mask's weight (so nothing changes where the mask is 0). NCHW arrays, mask N x 1 x H x W."""
    total = mask.sum(axis=(2, 3), keepdims=True) + eps
    mean_s = (mask * swapped).sum(axis=(2, 3), keepdims=True) / total
    mean_t = (mask * target).sum(axis=(2, 3), keepdims=True) / total
    std_s = np.sqrt((mask * (swapped - mean_s) ** 2).sum(axis=(2, 3), keepdims=True) / total + eps)
    std_t = np.sqrt((mask * (target - mean_t) ** 2).sum(axis=(2, 3), keepdims=True) / total + eps)
    matched = (swapped - mean_s) / std_s * std_t + mean_t
    return np.clip(swapped + mask * (matched - swapped), -1, 1).astype(np.float32)


class FrameFaces:
    """Frames -> (index, frame, [FaceJob]): tracking (detection every k-th frame), online One Euro smoothing per
    track, alignment. `all_faces`: every tracked face, else the largest of each frame.

    The tracker carries a face between detection runs on landmarks re-fitted to its predicted box, also after the
    face has left the picture (a cut, a title card, the camera turned away). So the frames after a detection run
    are held until the next run (at most `detect_every` frames): a carried face is swapped only when the runs
    before and after it both found its track, or the video ended first."""

    def __init__(self, backend, aligner: Aligner, fps: float, detect_every: int = 5, max_side: int = 640,
                 all_faces: bool = False):
        self.backend, self.aligner, self.fps = backend, aligner, fps
        self.detect_every, self.max_side, self.all_faces = detect_every, max_side, all_faces

    def __call__(self, frames, timings: Timings):
        from pixforge.core.faces import FaceTracker, OneEuroFilter, track_faces

        filters: dict[int, OneEuroFilter] = {}
        seen: dict[int, int] = {}
        held: list[np.ndarray] = []

        def keep(source):  # track_faces takes an iterator of frames; remember each to hand it on
            for frame in source:
                held.append(frame)
                yield frame

        def release(items, found_next):
            """The held frames since a detection run (`items[0]`), carried faces checked against both runs."""
            found = set(items[0][2])
            for index, frame, by_track in items:
                t = time.perf_counter()
                vouched = by_track if index == items[0][0] else {
                    i: f for i, f in by_track.items() if i in found and (found_next is None or i in found_next)}
                jobs = []
                for track_id, face in sorted(vouched.items(), key=lambda kv: -kv[1].size):
                    if track_id not in filters or index - seen.get(track_id, index) > 1:
                        filters[track_id] = OneEuroFilter()
                    seen[track_id] = index
                    smooth = filters[track_id](face.landmarks, index / self.fps)
                    if self.all_faces or not jobs:
                        jobs.append(self.aligner(frame, smooth, track_id))
                for stale in [i for i, last in seen.items() if index - last > 30]:
                    del filters[stale], seen[stale]
                t = timings.add("align", t)
                self.aligner.occlude(jobs)
                timings.add("occlude", t)
                yield index, frame, jobs

        pending: list = []
        for index, by_track in track_faces(keep(frames), TimedBackend(self.backend, timings),
                                           detect_every=self.detect_every, tracker=FaceTracker(),
                                           max_side=self.max_side):
            if index % self.detect_every == 0 and pending:
                yield from release(pending, set(by_track))
                pending = []
            pending.append((index, held.pop(0), by_track))
        if pending:
            yield from release(pending, None)


def timed_frames(reader, timings: Timings):
    while True:
        t = time.perf_counter()
        try:
            batch = next(reader)
        except StopIteration:
            return
        timings.add("decode", t)
        yield from batch


def background(iterator, maxsize: int):
    """Run `iterator` in a thread, handing its items over a bounded queue (errors re-raised here)."""
    items: queue.Queue = queue.Queue(maxsize)
    done, stop = object(), threading.Event()

    def work():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            items.put(err)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
