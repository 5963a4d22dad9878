"""Sparse recovery (Notsawo et al. 2025): recover an s-sparse w* ∈ R^dim from Gaussian measurements.

y_i = <a_i, w*>, a_i ~ N(0, I_dim). The signal (support uniform without replacement, non-zero
values N(0, 1) rescaled to ‖w*‖ = 1, so y ~ N(0, 1) whatever dim and sparsity), the test
measurements and the candidate (trainable) measurements come from three generators seeded from
``DATA_SEED``, so the instance is the same for every seed and trial, and a larger ``train_size``
keeps the smaller one's measurements as its first rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from grokray.tasks.pool import DATA_SEED, Pool

#: A prediction within this share of ‖w*‖ = 1 (the RMS of y over random measurements) counts as correct.
TOLERANCE_FRACTION = 0.05


def sparse_signal(dim: int, sparsity: int) -> torch.Tensor:
    """The fixed s-sparse signal w* of shape (dim,), unit ℓ2 norm."""
    if not 1 <= sparsity <= dim:
        raise ValueError(f"sparsity: got {sparsity}; allowed: 1 … dim={dim}")
    rng = np.random.default_rng([DATA_SEED, 0])
    support = rng.choice(dim, size=sparsity, replace=False)
    signal = np.zeros(dim)
    values = rng.standard_normal(sparsity)
    signal[support] = values / np.linalg.norm(values)
    return torch.from_numpy(signal).float()


def measurements(n: int, dim: int, stream: int) -> torch.Tensor:
    """n Gaussian measurement vectors (n, dim) of stream 1 (test) or 2 (candidates)."""
    rng = np.random.default_rng([DATA_SEED, stream])
    return torch.from_numpy(rng.standard_normal((n, dim))).float()


def sparse_pool(config: Mapping[str, Any]) -> Pool:
    """Candidates first (``train_size`` measurements, or ``dim`` if train_size is 0, of which
    ``train_fraction`` are trained), then ``test_size`` test measurements. probe = I (dim × dim), so
    a bias-free linear model's outputs on it are its weights; truth = w*."""
    dim, sparsity = config["dim"], config["sparsity"]
    n_candidates = config["train_size"] if config["train_size"] > 0 else dim
    signal = sparse_signal(dim, sparsity)
    inputs = torch.cat([measurements(n_candidates, dim, 2), measurements(config["test_size"], dim, 1)])
    return Pool(
        inputs=inputs,
        targets=inputs @ signal,
        n_outputs=1,
        regression=True,
        candidates=torch.arange(n_candidates),
        tolerance=TOLERANCE_FRACTION * float(signal.norm()),
        probe=torch.eye(dim),
        truth=signal,
        input_dim=dim,
    )
