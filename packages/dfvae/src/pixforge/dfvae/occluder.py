"""Occlusion masks: what lies in front of the face (a hand, a microphone, glasses) stays the target's.

The landmark outline m_t covers whatever is in front of the face, so without an occlusion mask a hand raised to the
mouth is painted over with skin. `swap --occluder MODEL.onnx` runs a face-segmentation model on every aligned crop
and multiplies m^b by its mask, so MAdaIN's statistics, the in-crop blend, the colour match and the paste-back all
leave the occluder to the target. No such model ships (nothing downloads); the convention is that of the XSeg
occluders DeepFaceLab users train and FaceFusion distributes (`xseg_1/2/3.onnx`, `face_masker.py`):

* input: the crop resized (bilinear) to the model's fixed input size, float32 in [0, 1], channels **BGR** (both
  tools feed OpenCV frames), laid out N x H x W x 3 (N x 3 x H x W is read from the input's shape too);
* output: N x H x W x 1, N x 1 x H x W or N x H x W, 1 where the face is visible, resized back to the crop;
* softened as FaceFusion does: clipped to [0, 1], Gaussian blur (σ 5 px at 256 px, scaled with the crop), then
  (clip(0.5, 1) - 0.5) x 2, which pulls the mask's edge half a blur into the face.

A model whose batch dimension is fixed runs one crop per call; one with a dynamic batch takes every crop of a call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixforge.export.errors import PixforgeError

SIGMA_AT_256 = 5.0  # FaceFusion's blur of the occluder's mask, in crop pixels at 256 px


class Occluder:
    """`Occluder(path, device)(crops)`: (N, S, S, 3) uint8 RGB aligned crops -> (N, S, S) float32 masks in [0, 1],
    1 where the face is visible. Every check (file, ONNX, one image input, one mask output) in the constructor."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        from pixforge.export.session import ort_session

        self.path = Path(path)
        if not self.path.is_file():
            raise PixforgeError(f"--occluder {self.path} does not exist or is not a file")
        self.session, _ = ort_session(self.path, device, notice=False)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise PixforgeError(f"--occluder {self.path} must take one image input, N x H x W x 3 or N x 3 x H x W "
                                f"(it takes {', '.join(f'{i.name} {i.shape}' for i in inputs)})")
        self.channels_last = shape[3] == 3
        hw = shape[1:3] if self.channels_last else shape[2:4]
        self.size = tuple(hw) if all(isinstance(d, int) and d > 0 for d in hw) else None  # None: any size
        self.batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None  # None: any batch
        out = list(outputs[0].shape)
        if len(outputs) != 1 or not (len(out) == 3 or (len(out) == 4 and 1 in (out[1], out[3]))):
            raise PixforgeError(f"--occluder {self.path} must give one mask output, N x H x W (x 1) or N x 1 x H x W "
                                f"(it gives {', '.join(f'{o.name} {o.shape}' for o in outputs)})")
        self.input = inputs[0].name

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from pixforge.dfvae.masks import blur_mask

        side = crops.shape[1:3]
        x = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).permute(0, 3, 1, 2).float() / 255  # BGR
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, self.size, mode="bilinear", align_corners=False)
        x = x.permute(0, 2, 3, 1) if self.channels_last else x
        step = self.batch or len(x)
        try:
            masks = [self.session.run(None, {self.input: x[i:i + step].contiguous().numpy()})[0]
                     for i in range(0, len(x), step)]
        except Exception as err:  # noqa: BLE001 - onnxruntime's errors, to one line
            raise PixforgeError(f"--occluder {self.path}: onnxruntime could not run it on {len(x)} crop(s) "
                                f"({str(err).splitlines()[0]})") from None
        mask = torch.from_numpy(np.concatenate(masks)).float()
        mask = mask.permute(0, 3, 1, 2) if mask.ndim == 4 and mask.shape[1] != 1 else mask.reshape(
            len(mask), 1, *mask.shape[-2:])
        mask = F.interpolate(mask.clamp(0, 1), side, mode="bilinear", align_corners=False).clamp(0, 1)
        mask = blur_mask(mask, SIGMA_AT_256 * side[0] / 256)
        return ((mask.clamp(0.5, 1) - 0.5) * 2)[:, 0].numpy()
