"""Weight norms (Notsawo et al.): ℓ0, ℓ1, ℓ2 and nuclear norms of a network's weight matrices.

The batched measures take the training engine's stacked parameters: a mapping name → tensor of
shape (R, *shape), one leading replica axis. A *weight matrix* is every parameter whose
per-replica shape is 2-D (linear weights (out, in), embeddings (vocab, d)); biases and gains are
excluded. Results are (R,) tensors on the parameters' device, computed without a Python loop over
replicas and without reading values back to the host (``torch.linalg.svdvals`` itself
synchronizes a CUDA device with the host, as PyTorch documents; everything else is asynchronous).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

L0_THRESHOLD = 1e-4  # Notsawo et al.: a weight counts towards ℓ0 when |w| > 1e-4


@torch.no_grad()
def weight_norm(model: nn.Module) -> float:
    """Total ℓ2 norm of all parameters, sqrt(Σ θ²)."""
    return float(torch.sqrt(sum((p.double() ** 2).sum() for p in model.parameters())))


def weight_matrices(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The stacked weight matrices among ``params``: entries of shape (R, m, n), in the mapping's order."""
    matrices = {name: tensor for name, tensor in params.items() if tensor.dim() == 3}
    if not matrices:
        shapes = {name: tuple(tensor.shape) for name, tensor in params.items()}
        raise ValueError(f"params: no stacked weight matrix of shape (R, m, n) among {shapes}")
    return matrices


@torch.no_grad()
def norm_measures(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ℓ0/ℓ1/ℓ2/nuclear norms of the weight matrices of R replicas, each an (R,) tensor.

    Keys: ``l0`` (number of weights with |w| > 1e-4), ``l1`` (Σ|w|), ``l2`` (sqrt Σw², not squared,
    over all matrices together), ``nuclear`` (Σ over matrices of the sum of singular values), and
    per matrix ``l2/<name>`` and ``nuclear/<name>``.
    """
    columns: dict[str, list[torch.Tensor]] = {"l0": [], "l1": [], "squares": [], "nuclear": []}
    per_matrix: dict[str, torch.Tensor] = {}
    for name, weight in weight_matrices(params).items():
        weight = weight.detach()
        magnitude = weight.abs()
        square = weight.square().sum(dim=(1, 2))
        singular_sum = torch.linalg.svdvals(weight).sum(dim=-1)
        columns["l0"].append((magnitude > L0_THRESHOLD).sum(dim=(1, 2)).to(weight.dtype))
        columns["l1"].append(magnitude.sum(dim=(1, 2)))
        columns["squares"].append(square)
        columns["nuclear"].append(singular_sum)
        per_matrix[f"l2/{name}"] = square.sqrt()
        per_matrix[f"nuclear/{name}"] = singular_sum
    total = {key: torch.stack(values).sum(dim=0) for key, values in columns.items()}
    return {
        "l0": total["l0"],
        "l1": total["l1"],
        "l2": total["squares"].sqrt(),
        "nuclear": total["nuclear"],
        **per_matrix,
    }
