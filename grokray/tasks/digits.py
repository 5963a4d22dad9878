"""Handwritten digits: scikit-learn's bundled 8 × 8 images (1797 examples, no download needed)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from grokray.tasks.pool import Pool

N_DIGITS = 1797


@functools.cache
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # a slow import (~2 s): only digits trials pay it, once

    data = load_digits()
    return data.data, data.target


def digits_pool(config: Mapping[str, Any]) -> Pool:
    """Inputs (1797, 64) float32 pixel intensities / 16 in [0, 1], targets the digit 0 … 9."""
    images, digits = _load_digits()
    return Pool(
        inputs=torch.from_numpy(images / 16.0).float(),
        targets=torch.from_numpy(digits).long(),
        n_outputs=10,
        input_dim=images.shape[1],
    )
