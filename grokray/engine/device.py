"""Plumbing shared by the engine and its single-model reference: the device, minibatch order,
split masks."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA where there is one, else the CPU; otherwise the device named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Batches:
    """Minibatch indices: a fresh seeded permutation per epoch; None for full batch."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.n, self.device = n, device
        self.batch_size = batch_size if 0 < batch_size < n else 0
        self.generator = torch.Generator().manual_seed(seed + 0xBA7C)
        self.order = torch.empty(0, dtype=torch.long)
        self.position = 0

    def next(self) -> torch.Tensor | None:
        if not self.batch_size:
            return None
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.position = 0
        batch = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return batch


def stack_masks(n_total: int, index_lists: Sequence[torch.Tensor]) -> torch.Tensor:
    """(R, n_total) booleans, row r true at ``index_lists[r]``."""
    mask = torch.zeros(len(index_lists), n_total, dtype=torch.bool)
    for r, index in enumerate(index_lists):
        mask[r, index] = True
    return mask
