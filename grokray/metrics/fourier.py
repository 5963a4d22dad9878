"""Fourier structure of hidden neurons (Doshi et al. 2023): inverse participation ratio and IPR pruning.

A neuron of the MLP f(a, b) = W·φ(U·e_a + V·e_b) has three weight vectors over the p residues: its
input row U_k (operand a), V_k (operand b) and its output column W_k (the p classes). Generalizing
neurons are periodic in the residue, so their DFT concentrates on a few frequencies (high IPR);
memorizing neurons are not (low IPR).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch


def ipr(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Inverse participation ratio of the one-sided DFT of ``x`` along ``dim``: Σ_f (|x̃_f| / ‖x̃‖₂)⁴.

    x̃ = ``torch.fft.rfft(x, dim=dim)``: the frequencies f = 0 … ⌊p/2⌋ of a real vector of length
    p, as in Doshi et al.'s code (``calculate_ipr(np.abs(np.fft.rfft(row)), r=2)``). Each cosine
    cos(2π f a / p) is one peak there, so a pure cosine (or a constant) has IPR 1 and two cosines of
    equal amplitude 1/2; a delta (one-hot) vector has a flat spectrum, IPR 1/(⌊p/2⌋ + 1). The
    normalization of the DFT cancels in the ratio, so the IPR is scale-free. A zero vector has IPR
    0 by convention (a pruned neuron).
    """
    spectrum = torch.fft.rfft(x, dim=dim).abs()
    norm = torch.linalg.vector_norm(spectrum, dim=dim, keepdim=True)
    return (spectrum / norm.clamp_min(torch.finfo(spectrum.dtype).tiny)).pow(4).sum(dim=dim)


def neuron_ipr(u: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-neuron IPR (R, k) and network IPR (R,) from U, V (R, k, p) and W (R, p, k).

    IPR_k = mean of the IPRs of row U_k, row V_k and column W_k (each a DFT over the p residues);
    the network's IPR is the mean of IPR_k over the k neurons. The replica axis is optional.
    """
    if u.shape != v.shape or w.shape != (*u.shape[:-2], u.shape[-1], u.shape[-2]):
        raise ValueError(
            f"neuron_ipr: expected U, V of shape (R, k, p) and W of shape (R, p, k); "
            f"got {tuple(u.shape)}, {tuple(v.shape)}, {tuple(w.shape)}"
        )
    per_neuron = (ipr(u, dim=-1) + ipr(v, dim=-1) + ipr(w, dim=-2)) / 3
    return per_neuron, per_neuron.mean(dim=-1)


_HIDDEN_WEIGHT = re.compile(r"hidden_(\d+)_weight")


def _canonical(params: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Canonical name (``hidden_0_weight``) → the name used in ``params`` (``hidden.0.weight`` works too)."""
    return {name.replace(".", "_"): name for name in params}


def _first_layer(params: Mapping[str, torch.Tensor]) -> tuple[dict[str, str], str] | None:
    names = _canonical(params)
    hidden = sorted(name for name in names if _HIDDEN_WEIGHT.fullmatch(name))
    if len(hidden) != 1 or "head_weight" not in names:
        return None
    return names, hidden[0]


@torch.no_grad()
def mlp_neuron_weights(
    params: Mapping[str, torch.Tensor], p: int, encoding: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """U, V (R, k, p) and W (R, p, k) of a depth-1 grokray MLP from its stacked parameters.

    Names as in ``ReplicaMLP`` (``hidden_0_weight``, ``head_weight``, ``embed_a_weight``, …) or as
    in ``MLP.named_parameters()`` (``hidden.0.weight``, …). One-hot inputs: the first layer's
    weight (k, 2p) splits into U = [:, :p] and V = [:, p:]. Token embeddings: U = W1[:, :d] @ E_aᵀ
    and V = W1[:, d:] @ E_bᵀ (the neuron's input as a function of the residue). W = head weight.
    Returns None when the parameters are not those of a depth-1 MLP over two operands with p
    residues and p outputs (deeper networks, other models, float-feature inputs, other shapes).
    """
    if encoding not in ("embed", "onehot", "features"):
        raise ValueError(f"encoding: got {encoding!r}; allowed: embed, onehot, features")
    found = _first_layer(params)
    if found is None or encoding == "features":
        return None
    names, hidden = found
    first = params[names[hidden]].detach()
    head = params[names["head_weight"]].detach()
    if head.shape[-2] != p:
        return None
    if encoding == "onehot":
        if first.shape[-1] != 2 * p:
            return None
        return first[..., :p], first[..., p:], head
    if "embed_a_weight" not in names or "embed_b_weight" not in names:
        return None
    embed_a = params[names["embed_a_weight"]].detach()
    embed_b = params[names["embed_b_weight"]].detach()
    d = embed_a.shape[-1]
    if embed_a.shape[-2] != p or embed_b.shape != embed_a.shape or first.shape[-1] != 2 * d:
        return None
    u = first[..., :d] @ embed_a.transpose(-1, -2)
    v = first[..., d:] @ embed_b.transpose(-1, -2)
    return u, v, head


@torch.no_grad()
def prune_by_ipr(
    params: Mapping[str, torch.Tensor], p: int, encoding: str, fraction: float
) -> dict[str, torch.Tensor]:
    """Zero the ``fraction`` of hidden neurons with the lowest IPR, per replica (Doshi's pruning).

    floor(fraction · k) neurons of each replica lose their input row, their bias and their output
    column (ties: the lower neuron index goes first). Returns a new mapping with the same names;
    the three changed tensors are new, every other one is the caller's tensor, unchanged.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction: got {fraction}; allowed: 0 ≤ fraction ≤ 1")
    weights = mlp_neuron_weights(params, p, encoding)
    found = _first_layer(params)
    if weights is None or found is None:
        raise ValueError(f"prune_by_ipr: needs a depth-1 MLP over p={p} residues with {encoding!r} inputs")
    names, hidden = found
    per_neuron, _ = neuron_ipr(*weights)
    k = per_neuron.shape[-1]
    lowest = torch.argsort(per_neuron, dim=-1, stable=True)[..., : int(fraction * k + 1e-9)]
    pruned = torch.zeros_like(per_neuron, dtype=torch.bool).scatter_(-1, lowest, True)  # (R, k)
    out = dict(params)
    out[names[hidden]] = params[names[hidden]].masked_fill(pruned.unsqueeze(-1), 0.0)
    bias = names.get(hidden.replace("_weight", "_bias"))
    if bias is not None:
        out[bias] = params[bias].masked_fill(pruned, 0.0)
    out[names["head_weight"]] = params[names["head_weight"]].masked_fill(pruned.unsqueeze(-2), 0.0)
    return out
