"""A contact sheet of all 7 x 5 distortions on one image (or a video's first frame): what a user looks at first.

Rows are the types, columns the original and levels 1-5. Distortions run on the image at up to `work` px on its
long side (BW needs >= 256 px to draw anything), tiles are shown at `tile` px. VC on a still image is the
first (intra) frame of a libx264 encode at the level's CRF.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pixforge.export.errors import PixforgeError
from pixforge.export.images import read_image, write_image
from pixforge.export.video import VideoReader, VideoWriter, is_video_path
from pixforge.forensics.distortions import LEVELS, NAMES, TYPES, Randomness, distort, parameter


def load_frame(path: Path) -> np.ndarray:
    """An image file, or the first frame of a video, as uint8 RGB."""
    if is_video_path(path):
        with VideoReader(path, batch_size=1) as reader:
            for batch in reader:
                return batch[0]
        raise PixforgeError(f"{path} has no video frames")
    return read_image(path)


def compress_frame(frame: np.ndarray, crf: int) -> np.ndarray:
    """`frame` after a libx264 encode at `crf` (even-sized; odd edges are padded and cropped back)."""
    h, w = frame.shape[:2]
    padded = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frame.mp4"
        with VideoWriter(path, 25, crf=crf) as writer:
            writer.write(padded)
        with VideoReader(path, batch_size=1) as reader:
            return next(iter(reader))[0][:h, :w]


def _fit(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = size / max(h, w)
    if scale >= 1:
        return frame
    return np.asarray(Image.fromarray(frame).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                    Image.Resampling.BICUBIC))


def contact_sheet(frame: np.ndarray, tile: int = 256, work: int = 512, seed: int = 0) -> np.ndarray:
    """The 7 x 6 sheet (original + 5 levels per type) with labels, as uint8 RGB."""
    base = _fit(frame, work)
    label_h, pad = 18, 4
    th, tw = _fit(base, tile).shape[:2]
    sheet = Image.new("RGB", (6 * (tw + pad) + pad, len(TYPES) * (th + label_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, kind in enumerate(TYPES):
        randomness = Randomness(seed)
        for col, level in enumerate((0, *LEVELS)):
            if level == 0:
                out, label = base, f"{kind}: original"
            else:
                out = (compress_frame(base, int(parameter(kind, level))) if kind == "VC"
                       else distort(base, kind, level, randomness))
                label = f"{kind} {level} ({parameter(kind, level)})"
            x, y = pad + col * (tw + pad), pad + row * (th + label_h + pad)
            draw.text((x + 2, y + 3), label if level else f"{kind} - {NAMES[kind]}"[:40], fill=(0, 0, 0))
            sheet.paste(Image.fromarray(_fit(out, tile)), (x, y + label_h))
    return np.asarray(sheet)


def write_preview(image: str, out: str, tile: int = 256, work: int = 512, seed: int = 0,
                  overwrite: bool = False) -> Path:
    src = Path(image)
    if not src.is_file():
        raise PixforgeError(f"input {src} does not exist or is not a file")
    dst = Path(out) / f"{src.stem}_distortions.png"
    if dst.exists() and not overwrite:
        raise PixforgeError(f"{dst} exists: pass --overwrite to replace it")
    return write_image(dst, contact_sheet(load_frame(src), tile, work, seed))
