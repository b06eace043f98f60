"""Shared helpers: one torch thread per test (tiny networks run faster without intra-op threading on a busy 2-core
machine) and synthetic 68-point face layouts."""

import math

import pytest
import torch

from pixforge.core.datagen import single_thread as one_thread


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def synthetic_landmarks():
    """`synthetic_landmarks(n, size, seed=0)`: see `_synthetic_landmarks`."""
    return _synthetic_landmarks


def _synthetic_landmarks(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """(n, 68, 2) plausible iBUG-68 layouts in a size x size crop: jaw on the lower half of an ellipse, brows above
    the eyes, nose, eyes and mouth inside, each face jittered in position and scale."""
    g = torch.Generator().manual_seed(seed)
    faces = []
    for _ in range(n):
        cx, cy = size * (0.5 + 0.04 * (torch.rand(1, generator=g).item() - 0.5)), size * 0.45
        r = size * (0.32 + 0.04 * torch.rand(1, generator=g).item())
        jaw = [(cx - r * math.cos(math.pi * i / 16), cy + 1.2 * r * math.sin(math.pi * i / 16)) for i in range(17)]
        brows = [(cx - r * (0.8 - 0.15 * i), cy - 0.45 * r - 0.05 * r * (2 - abs(i - 2))) for i in range(5)]
        brows += [(cx + r * (0.2 + 0.15 * i), cy - 0.45 * r - 0.05 * r * (2 - abs(i - 2))) for i in range(5)]
        nose = [(cx, cy - 0.2 * r + 0.12 * r * i) for i in range(4)] + [(cx + 0.1 * r * (i - 2), cy + 0.35 * r)
                                                                          for i in range(5)]
        eye = [(math.cos(2 * math.pi * i / 6), 0.4 * math.sin(2 * math.pi * i / 6)) for i in range(6)]
        eyes = [(cx - 0.4 * r + 0.15 * r * x, cy - 0.2 * r + 0.15 * r * y) for x, y in eye]
        eyes += [(cx + 0.4 * r + 0.15 * r * x, cy - 0.2 * r + 0.15 * r * y) for x, y in eye]
        ring = [(math.cos(2 * math.pi * i / 20), math.sin(2 * math.pi * i / 20)) for i in range(20)]
        mouth = [(cx + 0.35 * r * x, cy + 0.7 * r + 0.12 * r * y) for x, y in ring]
        faces.append(jaw + brows + nose + eyes + mouth)
    return torch.tensor(faces, dtype=torch.float32)
