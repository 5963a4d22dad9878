"""Spectral entropy and effective rank of weight matrices (DeMoss et al.; Roy & Vetterli's effective rank).

For a matrix with singular values σ_i: p_i = σ_i / Σ_j σ_j, H = −Σ_i p_i log p_i (natural log,
0·log 0 = 0) and effective rank = exp(H). A rank-1 matrix has H = 0 and effective rank 1; the n×n
identity has H = log n and effective rank n. The all-zero matrix has no spectrum: H = 0 by
convention (every p_i is taken as 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from grokray.metrics.norms import weight_matrices


def _entropy_of_spectrum(singular_values: torch.Tensor) -> torch.Tensor:
    """H over the last axis. Differentiable, with finite gradients also where some σ_i = 0."""
    tiny = torch.finfo(singular_values.dtype).tiny
    total = singular_values.sum(dim=-1, keepdim=True)
    shares = singular_values / total.clamp_min(tiny)
    # p·log(max(p, tiny)) is 0 at p = 0 and its gradient there is finite, unlike xlogy's −inf.
    return -(shares * shares.clamp_min(tiny).log()).sum(dim=-1)


def spectral_entropy(weight: torch.Tensor) -> torch.Tensor:
    """Spectral entropy H of each matrix of a batch (R, m, n) → (R,); differentiable."""
    if weight.dim() < 2:
        raise ValueError(f"weight: expected a (..., m, n) batch of matrices, got shape {tuple(weight.shape)}")
    return _entropy_of_spectrum(torch.linalg.svdvals(weight))


def effective_rank(weight: torch.Tensor) -> torch.Tensor:
    """exp(spectral entropy) of each matrix of a batch (R, m, n) → (R,)."""
    return spectral_entropy(weight).exp()


def spectral_entropy_penalty(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean spectral entropy over the weight matrices, per replica (R,), differentiable.

    DeMoss et al.'s regularizer adds β times this to the loss (β = 0.1 in the paper); the weight
    matrices are the parameters whose per-replica shape is 2-D.
    """
    return torch.stack([spectral_entropy(w) for w in weight_matrices(params).values()]).mean(dim=0)


@torch.no_grad()
def spectral_measures(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean ``spectral_entropy`` H and mean ``effective_rank`` exp(H) over the weight matrices, (R,) each."""
    entropies = torch.stack([spectral_entropy(w.detach()) for w in weight_matrices(params).values()])
    return {"spectral_entropy": entropies.mean(dim=0), "effective_rank": entropies.exp().mean(dim=0)}
