"""Weight norms."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def weight_norm(model: nn.Module) -> float:
    """Total ℓ2 norm of all parameters, sqrt(Σ θ²)."""
    return float(torch.sqrt(sum((p.double() ** 2).sum() for p in model.parameters())))
