"""Repository-wide pytest hooks: `cuda` tests are skipped where no GPU is usable.

torch is only imported when installed: pixforge-export's tests run in a venv without it.
"""

import importlib.util

import pytest


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if item.get_closest_marker("cuda") is not None]
    if marked and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in marked:
            item.add_marker(skip)
