"""Shared test set-up.

Keras must see ``KERAS_BACKEND`` before it is first imported, so it is set here, at the top of
the first module pytest loads. The numpy backend is the one whose numbers the parity tests quote.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "numpy")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator per test: every test sees the same numbers on every run."""
    return np.random.default_rng(20240607)
