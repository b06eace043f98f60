"""One torch thread per test process: the models do many small per-image ops (as `generate` runs them)."""

import pytest

from pixforge.core.datagen import single_thread


@pytest.fixture(autouse=True)
def _single_thread():
    with single_thread():
        yield
