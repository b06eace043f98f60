"""Self-blended images (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022): training
fakes made from real faces alone, so a detector trains without a fake dataset.

    from pixforge.forensics.sbi import self_blend
    out = self_blend(face, landmarks, seed=(7, 123))     # uint8 H x W x 3 RGB face crop, (68, 2) crop landmarks
    out.target, out.blended, out.mask                   # the real sample, its fake, the blend weight map (H x W)

One real face plays both parts, as the official `SBI_Dataset.self_blending` does:

1. **Mask**: the landmarks' hull, one of Face X-ray's four kinds (`DeepFakeMask.py`, which SBI's
   `random_get_hull` calls) drawn at random: `facehull`: all 68 points; `dfl_full`: DeepFaceLab's union of three
   hulls (jaw and mouth, nose ridge, brows and eyes); `components`: the union of eight part hulls (jaw halves,
   cheeks, nose ridge, eye regions, nose); `extended`: `components` with the brows pushed up, away from the tops of
   the eyes, by half their distance to them.
2. **Colour / quality** (``source_transforms``) on the source or, with probability 1/2, on the target instead:
   RGB shift +-20 per channel (p 0.3), hue / saturation / value +-0.3 (on OpenCV's 8-bit H, S, V scales, as the
   official limits read: less than one level, so nearly the identity), brightness and contrast +-0.1
   (``x * (1 + c) + 255 b``), then either a down-scale by 2 or 4 (nearest) and back up (bilinear), or a sharpen
   (alpha 0.2-0.5, lightness 0.5-1).
3. **Geometry** on the source and the mask: scale 0.95-1/0.95 about the centre, drawn for x and y apart
   (albumentations' `Affine` without `keep_ratio`), translation +-3 % of the width and +-1.5 % of the height
   (bilinear image, nearest mask, black outside); then an elastic warp of the mask only (`ElasticTransform(alpha
   50, sigma 7)`, exact mode: uniform noise in [-1, 1] blurred as scipy's `gaussian_filter` does, sigma 7 px to
   4 sigma, mirrored border, times 50 px).
4. **Blend mask** (``get_blend_mask``): the mask resized to 192-256 x 192-256, blurred by an odd 5-25 kernel,
   normalised by its maximum and cut to where it is 1 (an erosion), blurred again by an odd 5-25 kernel with
   sigma 5-45, normalised, resized back; times a ratio r drawn from {0.25, 0.5, 0.75, 1, 1, 1}.
5. **Blend**: ``blended = source * m + target * (1 - m)`` with ``m = mask * r``, truncated to uint8 as the official
   ``astype(np.uint8)``: where ``m`` is 0 the fake equals the target bit for bit.

Every draw comes from `numpy.random.default_rng(seed)` (an int or a tuple such as (seed, index)), so a sample is a
pure function of its seed. Colour, blur and warp steps are kornia / torch on the CPU; the two mask resizes and the
down-scale are OpenCV's, as in the official code. The official uses dlib's 81-point model (68 + forehead) for a
quarter of the samples; pixforge's faces give 68 points.

`SelfBlendedFaces(folder)` serves (real, fake) pairs from `extract-faces` output: a detector trains on real videos
alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
ELASTIC_SIGMA = 7.0
HULLS = ("dfl_full", "extended", "components", "facehull")


@dataclass
class SelfBlend:
    """One self-blended sample: `blended` is the fake made of `source` pasted on `target` with weights `mask`."""

    target: np.ndarray     # uint8 H x W x 3: the real sample (colour-jittered when the draw put it there)
    source: np.ndarray     # uint8 H x W x 3: the jittered copy that is blended in
    mask: np.ndarray       # float32 H x W in [0, 1]: the blend weights m = blurred mask x ratio
    ratio: float
    blended: np.ndarray    # uint8 H x W x 3
    hull: str
    draws: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- the landmark mask

def _parts(lm: np.ndarray) -> list[np.ndarray]:
    """Face X-ray's `components` hull parts (jaw halves, cheeks, nose ridge, eye regions, nose)."""
    chin = lm[8:9]
    return [np.concatenate([lm[0:9], lm[17:18]]), np.concatenate([lm[8:17], lm[26:27]]),
            np.concatenate([lm[17:20], chin]), np.concatenate([lm[24:27], chin]), np.concatenate([lm[19:25], chin]),
            np.concatenate([lm[17:22], lm[27:28], lm[31:36], chin]),
            np.concatenate([lm[22:27], lm[27:28], lm[31:36], chin]), np.concatenate([lm[27:31], lm[31:36]])]


def landmark_mask(landmarks: np.ndarray, shape: Sequence[int], kind: str) -> np.ndarray:
    """float32 0/1 mask of `shape[:2]` of hull `kind` (see `HULLS`) of 68 landmarks (pixel-centre coordinates), as
    Face X-ray's `DeepFakeMask.py` builds it (its int32 landmarks and `//` halvings are float here)."""
    from pixforge.core.faces import hull_mask

    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"self-blending needs 68 landmarks, got an array of shape {lm.shape}")
    if kind == "facehull":
        return hull_mask(lm, shape)
    if kind == "dfl_full":
        parts = [np.concatenate([lm[0:17], lm[48:68], lm[[0, 8, 16]]]), np.concatenate([lm[27:31], lm[33:34]]),
                 np.concatenate([lm[17:27], lm[[0, 27, 16, 33]]])]
    elif kind in ("components", "extended"):
        if kind == "extended":  # each brow moved away from the top of its eye by half their distance
            left_mid, right_mid = (lm[36] + lm[0]) / 2, (lm[16] + lm[45]) / 2
            eye_tops = np.concatenate([[(lm[36] + left_mid) / 2], lm[36:40], lm[42:46], [(lm[45] + right_mid) / 2]])
            lm = lm.copy()
            lm[17:27] += (lm[17:27] - eye_tops) / 2
        parts = _parts(lm)
    else:
        raise ValueError(f"unknown hull {kind!r}: choose one of {', '.join(HULLS)}")
    mask = np.zeros(tuple(shape[:2]), np.float32)
    for part in parts:
        mask = np.maximum(mask, hull_mask(part, shape))
    return mask


# ------------------------------------------------------------------------------------------------ colour / quality

def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0


def _to_uint8(tensor: torch.Tensor) -> np.ndarray:
    return (tensor[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def colour_transform(image: np.ndarray, rng: np.random.Generator, draws: dict) -> np.ndarray:
    """SBI's ``source_transforms`` (module docstring, step 2) on a uint8 RGB image; the draws are recorded."""
    import kornia

    x = image.astype(np.float32)
    if rng.random() < 0.3:
        shift = rng.uniform(-20, 20, 3)
        draws["rgb_shift"] = shift.tolist()
        x = np.clip(x + shift.astype(np.float32), 0, 255)
    hue, sat, val = rng.uniform(-0.3, 0.3, 3)  # on OpenCV's 8-bit scales: H in [0, 180), S and V in [0, 255]
    brightness, contrast = rng.uniform(-0.1, 0.1, 2)
    draws.update(hsv=[float(hue), float(sat), float(val)], brightness=float(brightness), contrast=float(contrast))
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None] / 255.0
    hsv = kornia.color.rgb_to_hsv(t)  # h in [0, 2 pi), s, v in [0, 1]
    h = torch.remainder(hsv[:, :1] + float(hue) * (2 * np.pi / 180.0), 2 * np.pi)
    s = (hsv[:, 1:2] + float(sat) / 255.0).clamp(0, 1)
    v = (hsv[:, 2:3] + float(val) / 255.0).clamp(0, 1)
    t = kornia.color.hsv_to_rgb(torch.cat([h, s, v], dim=1)).clamp(0, 1)
    t = (t * (1.0 + float(contrast)) + float(brightness)).clamp(0, 1)  # albumentations: x * alpha + beta * max
    if rng.random() < 0.5:  # SBI's RandomDownScale: nearest down by 2 or 4, bilinear back up
        factor = int(rng.choice([2, 4]))
        draws["downscale"] = factor
        out = _to_uint8(t)
        height, width = out.shape[:2]
        small = cv2.resize(out, (int(width / factor), int(height / factor)), interpolation=cv2.INTER_NEAREST)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    alpha, lightness = float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.5, 1.0))
    draws["sharpen"] = [alpha, lightness]
    effect = torch.tensor([[-1.0, -1, -1], [-1, 8 + lightness, -1], [-1, -1, -1]])
    identity = torch.zeros(3, 3)
    identity[1, 1] = 1.0
    kernel = ((1 - alpha) * identity + alpha * effect)[None]
    return _to_uint8(kornia.filters.filter2d(t, kernel, border_type="reflect"))


# -------------------------------------------------------------------------------------------------------- geometry

def affine_matrix(height: int, width: int, sx: float, sy: float, tx: float, ty: float) -> torch.Tensor:
    """1 x 2 x 3: scale by (sx, sy) about the image centre, then translate by (tx, ty) pixels."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return torch.tensor([[[sx, 0.0, cx - sx * cx + tx], [0.0, sy, cy - sy * cy + ty]]])


def random_affine(source: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                  draws: dict) -> tuple[np.ndarray, np.ndarray]:
    """SBI's ``randaffine``: the source and mask scaled / shifted together, then the mask elastically warped."""
    import kornia

    height, width = mask.shape
    sx, sy = (float(v) for v in rng.uniform(0.95, 1 / 0.95, 2))
    tx, ty = float(rng.uniform(-0.03, 0.03) * width), float(rng.uniform(-0.015, 0.015) * height)
    draws.update(scale=[sx, sy], translate=[tx, ty])
    matrix = affine_matrix(height, width, sx, sy, tx, ty)
    src = kornia.geometry.transform.warp_affine(_to_tensor(source), matrix, (height, width), mode="bilinear",
                                                align_corners=True)
    m = kornia.geometry.transform.warp_affine(torch.from_numpy(mask)[None, None], matrix, (height, width),
                                              mode="nearest", align_corners=True)
    # elastic warp of the mask: uniform noise blurred (albumentations' exact mode) and scaled to alpha = 50 px
    noise = rng.uniform(-1, 1, (2, height, width))
    flow = torch.from_numpy(np.stack([gaussian_filter(n, ELASTIC_SIGMA) for n in noise]).astype(np.float32))[None]
    flow = flow * 50.0
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    gx = (xs + flow[0, 0]) / max(width - 1, 1) * 2 - 1
    gy = (ys + flow[0, 1]) / max(height - 1, 1) * 2 - 1
    m = torch.nn.functional.grid_sample(m, torch.stack([gx, gy], dim=-1)[None], mode="nearest",
                                        padding_mode="zeros", align_corners=True)
    return _to_uint8(src), m[0, 0].numpy()


def gaussian_filter(image: np.ndarray, sigma: float) -> np.ndarray:
    """scipy.ndimage.gaussian_filter(image, sigma) of a 2-D float64 array (taps to 4 sigma, border 'reflect', i.e.
    d c b a | a b c d), computed by OpenCV: the same kernel and border (cv2.BORDER_REFLECT), equal to 1e-16."""
    taps = 2 * int(4.0 * sigma + 0.5) + 1
    return cv2.GaussianBlur(np.asarray(image, np.float64), (taps, taps), sigma, borderType=cv2.BORDER_REFLECT)


# ------------------------------------------------------------------------------------------------------ blend mask

def _cv2_sigma(kernel: int) -> float:
    """The sigma OpenCV's GaussianBlur uses for sigma 0."""
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


def blend_mask(mask: np.ndarray, rng: np.random.Generator, draws: dict) -> np.ndarray:
    """SBI's ``get_blend_mask`` (module docstring, step 4) of a 0/1 mask: float32 H x W in [0, 1]."""
    import kornia

    height, width = mask.shape
    size_h, size_w = int(rng.integers(192, 257)), int(rng.integers(192, 257))
    k1, k2 = int(rng.choice(np.arange(5, 26, 2))), int(rng.choice(np.arange(5, 26, 2)))
    sigma2 = float(rng.integers(5, 46))
    draws.update(blend_size=[size_h, size_w], kernels=[k1, k2], sigma=sigma2)
    small = cv2.resize(mask.astype(np.float32), (size_w, size_h))
    t = torch.from_numpy(small)[None, None]
    t = kornia.filters.gaussian_blur2d(t, (k1, k1), (_cv2_sigma(k1),) * 2)
    if t.max() > 0:
        t = t / t.max()
        t = torch.where(t >= 1.0 - 1e-6, 1.0, 0.0)  # the official `mask[mask < 1] = 0`, robust to float rounding
    t = kornia.filters.gaussian_blur2d(t, (k2, k2), (sigma2, sigma2))
    if t.max() > 0:
        t = t / t.max()
    return np.clip(cv2.resize(t[0, 0].numpy(), (width, height)), 0.0, 1.0).astype(np.float32)


def blend(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``source * m + target * (1 - m)`` per pixel (m: H x W in [0, 1]), truncated to uint8 as the official."""
    m = weights.astype(np.float32)[..., None]
    out = m * source.astype(np.float32) + (1.0 - m) * target.astype(np.float32)
    return np.where(m > 0, out, target).astype(np.uint8)


# ------------------------------------------------------------------------------------------------------------ SBI

def self_blend(image: np.ndarray, landmarks: np.ndarray, seed: int | Sequence[int] = 0,
               hull: str | None = None) -> SelfBlend:
    """A self-blended fake of the face `image` (uint8 H x W x 3 RGB crop) with its 68 `landmarks` (crop pixel
    coordinates): the whole draw is a function of `seed` (e.g. (run seed, sample index)); `hull` fixes the mask
    kind (default: drawn)."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"self_blend expects a uint8 H x W x 3 RGB image, got {image.dtype} {image.shape}")
    rng = np.random.default_rng(list(seed) if isinstance(seed, (tuple, list)) else seed)
    draws: dict = {}
    kind = hull if hull is not None else HULLS[int(rng.integers(len(HULLS)))]
    mask = landmark_mask(landmarks, image.shape, kind)
    source, target = image.copy(), image.copy()
    if rng.random() < 0.5:
        draws["jittered"] = "source"
        source = colour_transform(source, rng, draws)
    else:
        draws["jittered"] = "target"
        target = colour_transform(target, rng, draws)
    source, mask = random_affine(source, mask, rng, draws)
    weights = blend_mask(mask, rng, draws)
    ratio = BLEND_RATIOS[int(rng.integers(len(BLEND_RATIOS)))]
    weights = (weights * np.float32(ratio)).astype(np.float32)
    return SelfBlend(target=target, source=source, mask=weights, ratio=ratio, blended=blend(source, target, weights),
                     hull=kind, draws=draws)


# ------------------------------------------------------------------------------------------ faces from extract-faces

class SelfBlendedFaces(torch.utils.data.Dataset):
    """Real faces and their self-blended fakes from `extract-faces` output folders (the crops and the
    ``crop_landmarks`` of each ``track.json``): item ``i`` is ``{"real": 3 x H x W uint8, "fake": 3 x H x W uint8,
    "mask": 1 x H x W float32, "ratio": float, "key": "<video>/<file>"}``, the fake drawn from
    ``seed=(seed, i, epoch)``, so a run is reproducible and each epoch sees new fakes (`set_epoch`)."""

    def __init__(self, root: str | os.PathLike, seed: int = 0) -> None:
        from pixforge.export.errors import PixforgeError

        self.root, self.seed, self.epoch = Path(root), int(seed), 0
        self.items: list[tuple[Path, np.ndarray]] = []
        for track_file in sorted(self.root.rglob("track.json")):
            if any(part.startswith(".") for part in track_file.relative_to(self.root).parts):  # unfinished
                continue
            track = json.loads(track_file.read_text())
            for name, landmarks in zip(track["files"], track["crop_landmarks"], strict=True):
                self.items.append((track_file.parent / name, np.asarray(landmarks, np.float32)))
        if not self.items:
            raise PixforgeError(f"{self.root} holds no extract-faces output (no track.json below it)")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        path, landmarks = self.items[index]
        with Image.open(path) as image:
            face = np.asarray(image.convert("RGB"))
        out = self_blend(face, landmarks, seed=(self.seed, index, self.epoch))

        def chw(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))

        return {"real": chw(out.target), "fake": chw(out.blended), "mask": torch.from_numpy(out.mask)[None],
                "ratio": out.ratio, "key": path.relative_to(self.root).as_posix()}
