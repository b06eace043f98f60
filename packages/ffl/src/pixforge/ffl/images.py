"""Reading the CLI's inputs: image groups (a file or a folder) and real/fake pairs matched by file name.

Every problem is a `PixforgeError` naming the file: missing path, non-image file, unreadable image, empty
folder, file names that do not match between two folders, sizes that differ where they must agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from pixforge.core.io import ImageFolder, image_to_tensor, list_images, read_image
from pixforge.export.errors import PixforgeError


class Group:
    """The images of one CLI argument (an image file, or a folder searched recursively), read one at a time.

    `names` are paths relative to the folder (the file name for a single file). `size` resizes each image to
    cover size x size and centre-crops it; without it images keep their own size. Tensors are 3 x H x W in [0, 1].
    """

    def __init__(self, path: str | Path, size: int | None = None):
        self.path = Path(path)
        self.files = list_images(self.path)
        base = self.path if self.path.is_dir() else self.path.parent
        self.names = [f.relative_to(base).as_posix() for f in self.files]
        self.label = (self.path.resolve().name if self.path.is_dir() else self.path.stem) or "root"
        self._folder = ImageFolder(self.path, size, value_range=(0.0, 1.0)) if size else None

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        for i, (name, path) in enumerate(zip(self.names, self.files, strict=True)):
            image = self._folder[i] if self._folder else image_to_tensor(read_image(path), (0.0, 1.0))
            yield name, image


def matched_pairs(real: str | Path, fake: str | Path) -> list[tuple[str, Path, Path]]:
    """(name, real file, fake file) for two images, or for two folders holding the same relative file names."""
    real, fake = Path(real), Path(fake)
    listings = [list_images(path) for path in (real, fake)]  # missing path, non-image file, empty folder
    if real.is_dir() != fake.is_dir():
        raise PixforgeError(f"REAL {real} and FAKE {fake} must both be image files or both be folders")
    if not real.is_dir():
        return [(fake.name, real, fake)]
    reals = {f.relative_to(real).as_posix(): f for f in listings[0]}
    fakes = {f.relative_to(fake).as_posix(): f for f in listings[1]}
    for a, b, files_a, files_b in ((real, fake, reals, fakes), (fake, real, fakes, reals)):
        unmatched = sorted(set(files_a) - set(files_b))
        if unmatched:
            more = f" and {len(unmatched) - 1} more" if len(unmatched) > 1 else ""
            raise PixforgeError(f"{a / unmatched[0]}{more} ha{'ve' if more else 's'} no file of the same name in "
                                f"{b} (real and fake images are matched by relative file name)")
    return [(name, reals[name], fakes[name]) for name in sorted(reals)]


def read_pair(real: Path, fake: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images as 1 x 3 x H x W float tensors with 0..255 values; their sizes must agree."""
    a, b = read_image(real), read_image(fake)
    if a.shape != b.shape:
        raise PixforgeError(f"{fake} is {b.shape[1]}x{b.shape[0]} but {real} is {a.shape[1]}x{a.shape[0]}: "
                            "real and fake images must have the same size")
    return image_to_tensor(a[None], (0.0, 255.0)), image_to_tensor(b[None], (0.0, 255.0))
