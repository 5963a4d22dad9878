"""Diagonal linear networks (Notsawo et al. 2025; Woodworth et al. 2020): depth by element-wise products.

f(x) = <x, w> with, at depth D,

- D = 1: w = u, the plain linear model (the paper's depth-1 run: subgradient descent on w itself);
- D ≥ 2: w = u₊⁽¹⁾ ⊙ ⋯ ⊙ u₊⁽ᴰ⁾ − u₋⁽¹⁾ ⊙ ⋯ ⊙ u₋⁽ᴰ⁾, two branches of D factors each.

Why two branches: a single product u⁽¹⁾ ⊙ ⋯ ⊙ u⁽ᴰ⁾ started from equal factors (the paper's "identity"
init) keeps them equal, so at even D it is u², never negative, and started from unequal factors its
implicit bias depends on the draw. With the two branches every factor starts at 1 (times
``init_scale``), so w starts at exactly 0 at every depth; each branch stays ≥ 0 under gradient flow
(a factor's velocity is proportional to the product of the other factors, which vanishes as the
branch does), and w = branch₊ − branch₋ takes any sign. At a small init this is the rich regime
whose gradient descent implicitly minimizes an ℓ1-like norm, i.e. prefers sparse w; at depth 1
there is no such bias (gradient descent from 0 finds the minimum ℓ2-norm interpolator).

Every factor is a (1, dim) parameter, so the explicit penalties of ``grokray.optim.regularizers``
(taken over 2-D parameters) see each factor as one weight matrix: ℓ1 = Σ_k ‖u⁽ᵏ⁾‖₁, ℓ2 = Σ_k ‖u⁽ᵏ⁾‖₂,
as the paper's deep runs penalize each factor. The default init is all ones, the same for every
seed: ``init_scale`` α multiplies it (every factor α, so w ∝ α^D in each branch).
"""

from __future__ import annotations

import functools
import operator

import torch
from torch import nn


def _product(factors: nn.ParameterList) -> torch.Tensor:
    return functools.reduce(operator.mul, list(factors))


class Diagonal(nn.Module):
    """A diagonal network on ``dim`` features with ``depth`` factors per branch; one output."""

    def __init__(self, dim: int, depth: int) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth: got {depth}; allowed: 1 or more")
        self.depth = depth

        def ones() -> nn.ParameterList:
            return nn.ParameterList(nn.Parameter(torch.ones(1, dim)) for _ in range(depth))

        if depth == 1:
            self.factors = ones()
        else:
            self.positive, self.negative = ones(), ones()

    def end_to_end(self) -> torch.Tensor:
        """The linear map w, (1, dim)."""
        if self.depth == 1:
            return self.factors[0]
        return _product(self.positive) - _product(self.negative)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs @ self.end_to_end().T
