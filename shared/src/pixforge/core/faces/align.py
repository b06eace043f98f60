"""Similarity alignment of a face to a fixed template, the inverse warp that pastes a crop back, masks and boxes.

The template is dlib's mean face, as `dlib.get_face_chip_details` uses it (dlib/image_transforms/interpolation.h):
the mean positions of iBUG-300W points 17..67 in a unit square, fitted on the eyes, nose and outer mouth (dlib
ignores the eyebrows and the lower lip, which move with expression), and for the 5-point predictor dlib's five
mean positions (eye corners, nose base). `padding` is dlib's: the margin on each side as a fraction of that unit
square, so `align(frame, landmarks, size, padding)` gives the same crop as `dlib.get_face_chip(..., size, padding)`.
Sizes 128/256/512 (`SIZES`) are the ones tools offer as `--size`; any size works.

A transform `M` is a 2 x 3 float64 matrix mapping frame pixel coordinates to crop pixel coordinates (pixel
centres at integers, as landmarks). Warps are bilinear (kornia) over the region of the frame the crop covers only,
so aligning or pasting a face in a 720p or 4K frame costs about the same; downscaling crops are pre-blurred
(antialiased) so small crops of large faces do not alias.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import warp_affine
from PIL import Image, ImageDraw
from torch.nn.functional import avg_pool2d

from pixforge.core.faces.face import Box

SIZES = (128, 256, 512)

# dlib's mean face shape (get_face_chip_details): iBUG-300W points 17..67, x and y in a unit square.
_MEAN_X = (0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124, 0.904991, 0.98004,
           0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036, 0.490127, 0.554217, 0.613373, 0.121737,
           0.187122, 0.265825, 0.334606, 0.260918, 0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751,
           0.719335, 0.254149, 0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
           0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874, 0.553364, 0.490127,
           0.42689)
_MEAN_Y = (0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915,
           0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345, 0.587326,
           0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423,
           0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
           0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746, 0.784792, 0.824182,
           0.831803, 0.824182)
MEAN_FACE_68 = np.stack([_MEAN_X, _MEAN_Y], axis=1)  # row k is point 17 + k
FIT_68 = tuple(i for i in range(27, 68) if not (55 <= i <= 59 or 65 <= i <= 67))  # the points dlib fits on
# dlib's 5-point predictor: right eye outer/inner corner, left eye outer/inner corner, nose base
MEAN_FACE_5 = np.array([(0.8595674595992, 0.2134981538014), (0.6460604764104, 0.2289674387677),
                        (0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242),
                        (0.4901123135679, 0.6277975316475)])


def umeyama(src: np.ndarray, dst: np.ndarray, scale: bool = True) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, translation; never a reflection) taking `src` points
    to `dst` points, as a 2 x 3 matrix (Umeyama 1991, "Least-squares estimation of transformation parameters
    between two point patterns"). `scale=False` fits a rigid transform."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"umeyama needs two (N, 2) point sets of the same shape, N >= 2: {src.shape}, {dst.shape}")
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    u, sigma, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ d @ vt
    c = float(np.trace(np.diag(sigma) @ d) / (src_c**2).sum(axis=1).mean()) if scale else 1.0
    return np.concatenate([c * rotation, (mu_dst - c * rotation @ mu_src)[:, None]], axis=1)


def template(points: int, size: int = 256, padding: float = 0.25) -> tuple[tuple[int, ...], np.ndarray]:
    """(landmark indices, their template positions in a `size` crop) for 68- or 5-point landmarks."""
    if points == 68:
        index, unit = FIT_68, MEAN_FACE_68[np.array(FIT_68) - 17]
    elif points == 5:
        index, unit = tuple(range(5)), MEAN_FACE_5
    else:
        raise ValueError(f"alignment needs 68 or 5 landmarks, got {points}")
    return index, (unit + padding) / (1 + 2 * padding) * size - 0.5  # the unit square spans the whole canvas


def alignment_matrix(landmarks: np.ndarray, size: int = 256, padding: float = 0.25) -> np.ndarray:
    """The 2 x 3 similarity taking frame pixels to a `size` x `size` crop where the face sits on the template.

    Fitted from the template to the landmarks and inverted, as dlib does (a least-squares fit is not symmetric:
    fitting the other way round gives a slightly smaller face when the landmarks do not match the template).
    """
    landmarks = np.asarray(landmarks, np.float64)
    index, dst = template(len(landmarks), size, padding)
    return invert_affine(umeyama(dst, landmarks[list(index)]))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 2) points mapped by a 2 x 3 affine matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2 x 3 affine matrix."""
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))
    return inverse[:2]


def warp(image: np.ndarray, matrix: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """`image` (uint8 H x W x C) resampled onto a `size` (int, or (height, width)) canvas: out(M p) = image(p).

    Only the part of `image` the canvas covers is read; outside the image is black. Downscaling warps are
    antialiased with a Gaussian of sigma (1/s - 1)/2, s the scale, as skimage's `rescale` does; below s = 1/4 the
    region is first averaged over k x k blocks (k = floor(1/(2s))) and blurred by what the blocks leave of that
    variance, so a large face costs about what a small one does.
    """
    height, width = (size, size) if isinstance(size, int) else size
    out = np.zeros((height, width, image.shape[2]), np.uint8)
    corners = transform_points(_corners(height, width), invert_affine(matrix))
    region = _region(corners, image.shape[:2], margin=2)
    if region is None:
        return out
    x0, y0, x1, y1 = region
    # channel-first while still uint8: the transpose moves a quarter of the bytes the float one would
    src = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1])).permute(2, 0, 1)[None].contiguous().float()
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, :2] @ np.array([x0, y0], np.float64)
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    sigma = (1 / scale - 1) / 2 if 0 < scale < 1 else 0.0
    block = max(1, math.floor(1 / (2 * scale))) if scale > 0 else 1
    if block > 1:  # block j's centre is source pixel j k + (k - 1) / 2; the blocks' own variance is (k^2 - 1) / 12
        src = avg_pool2d(src, block, ceil_mode=True)
        shifted[:, 2] += shifted[:, :2] @ np.full(2, (block - 1) / 2)
        shifted[:, :2] *= block
        sigma = math.sqrt(max(sigma**2 - (block**2 - 1) / 12, 0.0)) / block
    if sigma > 0.3:
        src = _blur(src, sigma)
    warped = warp_affine(src, torch.from_numpy(shifted).float()[None], (height, width), align_corners=True)
    return warped[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def align(frame: np.ndarray, landmarks: np.ndarray, size: int = 256,
          padding: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """(the aligned `size` x `size` face crop, the 2 x 3 matrix M taking frame pixels to crop pixels)."""
    matrix = alignment_matrix(landmarks, size, padding)
    return warp(frame, matrix, size), matrix


def square_box(box: Box, scale: float = 1.3) -> Box:
    """The square box `scale` times the longer side of `box`, same centre (DeeperForensics' 1.3x face crops)."""
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0) / 2
    return (cx - half, cy - half, cx + half, cy + half)


def box_matrix(box: Box, size: int | tuple[int, int]) -> np.ndarray:
    """The 2 x 3 matrix taking the frame region `box` (pixel edges) onto a `size` crop (no rotation)."""
    height, width = (size, size) if isinstance(size, int) else size
    x0, y0, x1, y1 = box
    sx, sy = width / (x1 - x0), height / (y1 - y0)
    return np.array([[sx, 0.0, (0.5 - x0) * sx - 0.5], [0.0, sy, (0.5 - y0) * sy - 0.5]])


def crop_box(frame: np.ndarray, box: Box, size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(the frame region `box` resampled to `size`, black where it leaves the frame; its 2 x 3 matrix)."""
    matrix = box_matrix(box, size)
    return warp(frame, matrix, size), matrix


def hull_mask(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """float32 mask of `shape[:2]`: 1 inside the convex hull of `points` (pixel-centre coordinates), else 0."""
    height, width = shape[:2]
    canvas = Image.new("L", (width, height), 0)
    hull = _convex_hull(np.asarray(points, np.float64))
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in hull], fill=255, outline=255)
    return np.asarray(canvas, np.float32) / 255.0


def square_mask(size: int, margin: float = 0.1) -> np.ndarray:
    """The default paste-back mask: a square eroded by `margin` x `size` on each side, feathered to 0 at the edge."""
    border = max(1, round(margin * size))
    mask = np.zeros((size, size), np.float32)
    mask[border:size - border, border:size - border] = 1.0
    return feather(mask, border / 3)


def feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """`mask` (H x W float) blurred by a Gaussian of `sigma` pixels: a soft edge for blending."""
    if sigma <= 0:
        return np.asarray(mask, np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(mask, np.float32))[None, None]
    return _blur(tensor, sigma)[0, 0].numpy()


def paste_back(frame: np.ndarray, crop: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None = None,
               premultiplied: bool = False) -> np.ndarray:
    """A copy of `frame` with `crop` (aligned by `matrix`, as `align` returns it) warped back in and blended.

    `mask` is crop-sized, float in [0, 1] (1 = take the crop); default `square_mask(size)`. For a face swap, the
    feathered hull of the crop-space landmarks is the usual choice:
    `feather(hull_mask(transform_points(landmarks, matrix), crop.shape), sigma=size / 32)`.
    `premultiplied`: `crop` (float) is already mask x colour, as `c - (1 - mask) x background` is for a crop `c` that
    was blended over its own aligned background: the frame then gets mask x colour + (1 - mask) x its own pixels,
    the mask applied once and no resampled copy of the frame mixed in.
    Pixels where the warped mask is 0 are returned unchanged, bit for bit.
    """
    height, width = crop.shape[:2]
    mask = square_mask(height) if mask is None else np.asarray(mask, np.float32)
    if mask.shape != (height, width):
        raise ValueError(f"paste_back: mask {mask.shape} does not match the crop {crop.shape[:2]}")
    inverse = invert_affine(matrix)
    region = _region(transform_points(_corners(height, width), inverse), frame.shape[:2], margin=1)
    out = frame.copy()
    if region is None:
        return out
    x0, y0, x1, y1 = region
    back = inverse.copy()
    back[:, 2] -= (x0, y0)
    src = torch.from_numpy(np.concatenate([crop.astype(np.float32), mask[..., None]], axis=2)).permute(2, 0, 1)
    warped = warp_affine(src[None], torch.from_numpy(back).float()[None], (y1 - y0, x1 - x0), align_corners=True)
    pixels, alpha = warped[0, :-1].permute(1, 2, 0), warped[0, -1:].permute(1, 2, 0).clamp(0, 1)
    under = torch.from_numpy(frame[y0:y1, x0:x1].astype(np.float32))
    if premultiplied:
        blended = torch.where(alpha > 0, under * (1 - alpha) + pixels, under)
    else:
        blended = under * (1 - alpha) + pixels * alpha
    out[y0:y1, x0:x1] = blended.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _corners(height: int, width: int) -> np.ndarray:
    """The outer corners of a height x width canvas in pixel-centre coordinates."""
    return np.array([(-0.5, -0.5), (width - 0.5, -0.5), (-0.5, height - 0.5), (width - 0.5, height - 0.5)])


def _region(points: np.ndarray, shape: tuple[int, int], margin: int) -> tuple[int, int, int, int] | None:
    """The integer box around `points` grown by `margin`, clipped to `shape`; None when it is empty."""
    x0 = max(0, math.floor(points[:, 0].min()) - margin)
    y0 = max(0, math.floor(points[:, 1].min()) - margin)
    x1 = min(shape[1], math.ceil(points[:, 0].max()) + margin + 1)
    y1 = min(shape[0], math.ceil(points[:, 1].max()) + margin + 1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _blur(tensor: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    return gaussian_blur2d(tensor, 2 * radius + 1, (sigma, sigma), border_type="replicate")


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """The convex hull of 2-D points, counter-clockwise (Andrew's monotone chain)."""
    pts = sorted(map(tuple, np.unique(points, axis=0)))
    if len(pts) < 3:
        return np.array(pts)

    def half(seq):
        chain: list[tuple[float, float]] = []
        for p in seq:
            while len(chain) >= 2 and ((chain[-1][0] - chain[-2][0]) * (p[1] - chain[-2][1])
                                       - (chain[-1][1] - chain[-2][1]) * (p[0] - chain[-2][0])) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    return np.array(half(pts) + half(reversed(pts)))
