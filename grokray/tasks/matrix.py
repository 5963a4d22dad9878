"""Low-rank matrix completion (Notsawo et al. 2025): recover an m × m rank-r matrix from some entries.

M* = U Vᵀ / √r with U, V ∈ R^{m×r} of N(0, 1) entries drawn from a generator seeded with
``DATA_SEED`` (the same matrix for every seed and trial). The pool is every entry (i, j) in
row-major order; a replica observes ``train_size`` of them (the paper: 80 of 100) and is tested on
the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from grokray.tasks.pool import DATA_SEED, Pool

#: An entry within this share of the RMS entry of M* counts as correct.
TOLERANCE_FRACTION = 0.05


def low_rank_matrix(size: int, rank: int) -> torch.Tensor:
    """The fixed ground truth M* (size, size) of rank ``rank``."""
    if not 1 <= rank <= size:
        raise ValueError(f"rank: got {rank}; allowed: 1 … matrix_size={size}")
    rng = np.random.default_rng([DATA_SEED, 3])
    left, right = rng.standard_normal((size, rank)), rng.standard_normal((size, rank))
    return torch.from_numpy(left @ right.T / math.sqrt(rank)).float()


def matrix_pool(config: Mapping[str, Any]) -> Pool:
    """Inputs (m², 2) int64 (row i, column j), targets M*_ij; probe = every entry, truth = M*."""
    size = config["matrix_size"]
    truth = low_rank_matrix(size, config["rank"])
    rows = torch.arange(size).repeat_interleave(size)
    cols = torch.arange(size).repeat(size)
    rms = float(truth.pow(2).mean().sqrt())
    inputs = torch.stack([rows, cols], dim=1)
    return Pool(
        inputs=inputs,
        targets=truth.flatten(),
        n_outputs=1,
        regression=True,
        tolerance=TOLERANCE_FRACTION * rms,
        probe=inputs,
        truth=truth,
        vocab_size=size,
        seq_len=2,
    )
