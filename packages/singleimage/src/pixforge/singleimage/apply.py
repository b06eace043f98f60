"""The applications of a trained run: `harmonize`, `edit`, `paint2image`, `upscale`.

    SinGAN   (Shaham et al., Sec. 4; official `harmonization.py`, `editing.py`, `paint2image.py`, `SR.py`): the user
             image, resized to the training size, is downsampled to the pyramid scale `--scale` and injected there in
             place of the generated image; the generators of that scale and above add their details (noise drawn
             from `--seed`). harmonize / edit then keep the user image outside the mask: mask * out + (1 - mask) *
             image. upscale applies the finest generator repeatedly, enlarging by 1/r each time (zero noise, as its
             z_opt), until the factor is reached.
    PetsGAN  (Zhang et al., Sec. 4 "Image manipulation tasks": DIPNet alone): F(c) = IR(PT(c)) with c the user image
             at the layout size; harmonize / edit blend with the mask as above; upscale is F applied to the image
             itself (x `downscale`).

Images are read as RGB and resized to the run's training size; a mask is read as grey levels (white = the region
to generate) and must have the size of the image it goes with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from pixforge.core.cli import output_file
from pixforge.core.io import image_to_tensor, read_image, tensor_to_image, write_image
from pixforge.export.errors import PixforgeError
from pixforge.export.sizing import check_pixels
from pixforge.singleimage.data import load_image, resize
from pixforge.singleimage.sample import load_model

# ----------------------------------------------------------------------------------------------------------------
# The methods.

def singan_inject(model, image: torch.Tensor, scale: int, seed: int = 0) -> torch.Tensor:
    """SinGAN_generate from `scale` on: `image` (at the training size) resized to that scale's size replaces the
    output of the scales below; each generator from there adds amp * noise (official harmonization/editing)."""
    if not 0 <= scale < len(model.gens):
        raise PixforgeError(f"--scale must be in 0..{len(model.gens) - 1} for this run, got {scale}")
    out = resize(image, model.sizes[scale])
    with torch.no_grad():
        for n in range(scale, len(model.gens)):
            size = model.sizes[n]
            prev = resize(out, size)
            z = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed * 1000 + n))
            out = model.gens[n](model.amps[n] * z + prev, prev)
    return out.clamp(-1, 1)


def singan_upscale(model, image: torch.Tensor, factor: float) -> torch.Tensor:
    """The finest generator applied ceil(log factor / log(1/r)) times, each enlarging by factor ** (1 / times) with
    zero noise (the finest scales' z_opt is zero)."""
    (h0, w0), (h1, w1) = model.sizes[-2], model.sizes[-1]
    step = math.sqrt(h1 * w1 / (h0 * w0))  # 1 / r
    times = max(1, math.ceil(math.log(factor) / math.log(step) - 1e-9))
    out = image
    with torch.no_grad():
        for i in range(1, times + 1):
            size = (round(image.shape[-2] * factor ** (i / times)), round(image.shape[-1] * factor ** (i / times)))
            prev = resize(out, size)
            out = model.gens[-1](prev, prev)
    return out.clamp(-1, 1)


def petsgan_dipnet(model, c: torch.Tensor) -> torch.Tensor:
    """F(c) = IR(PT(c)): x `downscale` (DIPNet alone, PT at the sampling temperature)."""
    from pixforge.singleimage.petsgan_model import TAU_JOINT

    with torch.no_grad():
        return model.IR(model.PT(c, model.ref, TAU_JOINT)[0]).clamp(-1, 1)


def petsgan_restore(model, image: torch.Tensor) -> torch.Tensor:
    """F(c) with c = `image` at 1 / downscale of the training size, cropped to the training size."""
    h, w = model.sizes[-1]
    c = resize(image, (math.ceil(h / model.factor), math.ceil(w / model.factor)))
    return petsgan_dipnet(model, c)[..., :h, :w]


# ----------------------------------------------------------------------------------------------------------------
# Shared plumbing.

def _is_singan(model) -> bool:
    return hasattr(model, "gens")


def _generate(model, image: torch.Tensor, scale: int | None, seed: int) -> torch.Tensor:
    """The run's method applied to the user image: SinGAN injection at --scale (default 1), PetsGAN's F."""
    if _is_singan(model):
        return singan_inject(model, image, 1 if scale is None else scale, seed)
    if scale is not None:
        raise PixforgeError("--scale is for SinGAN runs (PetsGAN applies DIPNet to the image at its layout size)")
    return petsgan_restore(model, image)


def _user_image(path: str, what: str, size: tuple[int, int] | None) -> torch.Tensor:
    """An RGB image as 1 x 3 x H x W in [-1, 1], resized to `size` when given."""
    if not Path(path).is_file():
        raise PixforgeError(f"{what} {path} does not exist or is not a file")
    image = load_image(path)
    return image if size is None else resize(image, size)


def _mask(path: str, image_path: str) -> torch.Tensor:
    """The mask (1 x 1 x H x W in [0, 1], white = generate); it must have the size of the image at `image_path`."""
    if not Path(path).is_file():
        raise PixforgeError(f"--mask {path} does not exist or is not a file")
    mask = image_to_tensor(read_image(path, "GRAY"), (0.0, 1.0))[None]
    image_size = tuple(read_image(image_path, "RGB").shape[:2])
    if tuple(mask.shape[-2:]) != image_size:
        raise PixforgeError(f"--mask {path} is {mask.shape[-2]}x{mask.shape[-1]} but the image {image_path} is "
                            f"{image_size[0]}x{image_size[1]}: they must have the same size")
    return mask


def _out(run: str, out: str | None, name: str, overwrite: bool, *inputs: str | None) -> Path:
    """The .png to write (default RUN/NAME.png): never one of the `inputs` (the image, the mask) nor a run file."""
    return output_file(out or Path(run) / f"{name}.png", ".png", overwrite=overwrite, inputs=[*inputs, run])


def _write(path: Path, image: torch.Tensor) -> Path:
    write_image(path, tensor_to_image(image[0]))
    return path


def _blend(model, run: str, image_path: str, mask_path: str, out: str | None, name: str, scale: int | None,
           seed: int, overwrite: bool) -> Path:
    """harmonize / edit: generate from the image, keep the image outside the mask."""
    target = _out(run, out, name, overwrite, image_path, mask_path)
    mask = _mask(mask_path, image_path)
    size = tuple(model.sizes[-1])
    image = _user_image(image_path, "--image", size)
    generated = _generate(model, image, scale, seed)
    mask = resize(mask, size).clamp(0, 1)
    return _write(target, mask * generated + (1 - mask) * image)


# ----------------------------------------------------------------------------------------------------------------
# The verbs.

def harmonize(run: str, paste: str, mask: str, out: str | None = None, scale: int | None = None, seed: int = 0,
              overwrite: bool = False) -> Path:
    """Harmonize an object pasted into the training image: PASTE (the naive paste) and MASK (white where the object
    is, the size of PASTE) -> --out (default RUN/harmonize.png), at the training size. SinGAN injects PASTE at pyramid
    --scale (default 1); PetsGAN restores it through DIPNet. Outside the mask the paste is kept."""
    return _blend(load_model(run), run, paste, mask, out, "harmonize", scale, seed, overwrite)


def edit(run: str, image: str, mask: str, out: str | None = None, scale: int | None = None, seed: int = 0,
         overwrite: bool = False) -> Path:
    """Blend an edit (e.g. a region moved or copied in IMAGE) into the training image's texture: IMAGE and MASK
    (white over the edited region, the size of IMAGE) -> --out (default RUN/edit.png), as harmonize."""
    return _blend(load_model(run), run, image, mask, out, "edit", scale, seed, overwrite)


def paint2image(run: str, paint: str, out: str | None = None, scale: int | None = None, seed: int = 0,
                overwrite: bool = False) -> Path:
    """Turn a clip-art painting PAINT (flat colours of the training image's regions) into a realistic image ->
    --out (default RUN/paint2image.png), at the training size: SinGAN injects it at --scale (default 1), PetsGAN
    restores it through DIPNet."""
    model = load_model(run)
    target = _out(run, out, "paint2image", overwrite, paint)
    painting = _user_image(paint, "PAINT", tuple(model.sizes[-1]))
    return _write(target, _generate(model, painting, scale, seed))


def upscale(run: str, image: str | None = None, factor: float | None = None, out: str | None = None,
            overwrite: bool = False) -> Path:
    """Enlarge IMAGE (default: the run's training image at its training size) by --factor -> --out (default
    RUN/upscale.png). SinGAN: the finest generator applied repeatedly (factor default 4, as the SinGAN paper);
    PetsGAN: DIPNet's x downscale restoration (the only factor it has). The result may have at most 4096x4096 pixels
    in area."""
    model = load_model(run)
    if image is None:
        image = json.loads((Path(run) / "config.json").read_text()).get("image", "")
        picture = _user_image(image, "the training image", tuple(model.sizes[-1]))
    else:
        picture = _user_image(image, "--image", None)
    if _is_singan(model):
        factor = 4.0 if factor is None else factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 1:
            raise PixforgeError(f"--factor must be a number > 1, got {factor!r}")
    elif factor in (None, model.factor):
        factor = model.factor
    else:
        raise PixforgeError(f"--factor must be {model.factor} for this PetsGAN run (DIPNet's factor), got {factor!r}")
    check_pixels(tuple(round(d * factor) for d in picture.shape[-2:]), f"{image} enlarged x{factor:g} gives")
    target = _out(run, out, "upscale", overwrite, image)
    enlarged = singan_upscale(model, picture, float(factor)) if _is_singan(model) else petsgan_dipnet(model, picture)
    return _write(target, enlarged)
