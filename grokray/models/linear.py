"""Deep linear networks (Notsawo et al. 2025): a product of ``depth`` matrices, no bias, no activation.

On features (sparse recovery, digits): f(x) = W_depth ⋯ W_1 x, hidden width ``width``, so the
network's end-to-end map is one matrix and its outputs on the identity are its weights. On a
matrix (matrix completion): M̂ = W_depth ⋯ W_1 (m × width ⋯ width × m, or m × m for depth 1)
and f(i, j) = M̂[i, j]. Each factor has ``nn.Linear``'s default init.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn


class DeepLinear(nn.Module):
    """``depth`` bias-free linear maps; ``matrix_size`` > 0 switches to entry lookup of their product."""

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int, matrix_size: int = 0) -> None:
        super().__init__()
        if matrix_size:
            in_dim = out_dim = matrix_size
        self.matrix_size = matrix_size
        dims = [in_dim] + [width] * (depth - 1) + [out_dim]
        self.layers = nn.ModuleList(
            nn.Linear(fan_in, fan_out, bias=False) for fan_in, fan_out in itertools.pairwise(dims)
        )

    def end_to_end(self) -> torch.Tensor:
        """The product W_depth ⋯ W_1, (out_dim, in_dim)."""
        product = self.layers[0].weight
        for layer in self.layers[1:]:
            product = layer.weight @ product
        return product

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.matrix_size:
            return self.end_to_end()[inputs[:, 0], inputs[:, 1]].unsqueeze(-1)
        x = inputs
        for layer in self.layers:
            x = layer(x)
        return x
