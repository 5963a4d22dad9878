"""Explicit regularizers, weight noise and a norm constraint for R stacked replicas.

- ``Regularizer``: β_r · penalty_r added to replica r's loss (Notsawo et al. 2025; DeMoss et al. 2024).
  Penalties are taken over the *weight matrices*: parameters whose per-replica shape is 2-D
  (linear weights and embedding tables; biases and norm gains are excluded):
  ``l1`` Σ_W Σ|W_ij|; ``l2`` Σ_W ‖W‖_F (non-squared, so its gradient is W/‖W‖_F); ``nuclear``
  Σ_W Σ_i σ_i(W); ``spectral_entropy`` mean_W H(σ(W)/Σσ(W)), H(p) = −Σ p_i ln p_i.
- ``WeightNoise``: the forward/backward pass at θ + δ_r·N(0, I) (DeMoss); parameters restored
  exactly afterwards, so the gradient taken at the perturbed point updates the clean weights.
- ``NormConstraint``: after each step, rescale replica r so its global ℓ2 norm over all its
  parameters is c_r (Zhang et al. 2025 hold it at 30); c_r = 0 leaves the replica untouched.

Each follows the replica engine's life cycle (see ``grokray.optim.replicas``): ``keep(index,
params)``, ``state_dict()``, ``load_state_dict(state, params)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from grokray.config import REGULARIZERS
from grokray.metrics import spectral
from grokray.optim.seeded import PerReplicaNoise

WEIGHT_NOISE_SEED_OFFSET = 0x401CE


def weight_matrices(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The stacked parameters whose per-replica shape is 2-D: (R, m, n); none is no error here (a
    diagonal network has only vectors), unlike ``grokray.metrics.norms.weight_matrices``."""
    return [p for p in params if p.dim() == 3]


def l1_penalty(matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(w.abs().flatten(1).sum(dim=1) for w in matrices)  # type: ignore[return-value]


def l2_penalty(matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(torch.linalg.matrix_norm(w) for w in matrices)  # type: ignore[return-value]


def nuclear_penalty(matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(torch.linalg.svdvals(w).sum(dim=1) for w in matrices)  # type: ignore[return-value]


def spectral_entropy_penalty(matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    return spectral.spectral_entropy_penalty(dict(enumerate(matrices)))


PENALTIES = {
    "l1": l1_penalty,
    "l2": l2_penalty,
    "nuclear": nuclear_penalty,
    "spectral_entropy": spectral_entropy_penalty,
}


class Regularizer:
    """``regularizer(params)`` → (R,) = reg_strength_r · penalty_r(weight matrices of replica r).

    The kind may differ between replicas; each kind's penalty is computed only on the replicas
    that use it with a positive strength (so a replica's gradient never depends on another's
    settings). ``active`` is False when no replica has a penalty: then the call returns zeros and
    the engine can skip it.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], configs: Sequence[Mapping[str, Any]]) -> None:
        for c in configs:
            if c["regularizer"] not in REGULARIZERS:
                raise ValueError(f"regularizer: got {c['regularizer']!r}; allowed: {', '.join(REGULARIZERS)}")
        self.params = list(params)
        self.kinds = [str(c["regularizer"]) for c in configs]
        self.strengths = [float(c["reg_strength"]) for c in configs]
        if any(k != "none" for k in self.kinds) and not weight_matrices(self.params):
            raise ValueError("regularizer: the model has no weight matrices (2-D parameters) to penalize")

    @property
    def active(self) -> bool:
        return any(k != "none" and s > 0 for k, s in zip(self.kinds, self.strengths, strict=True))

    def __call__(self, params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        params = self.params if params is None else list(params)
        first = params[0]
        total = torch.zeros(first.shape[0], dtype=first.dtype, device=first.device)
        if not self.active:
            return total
        matrices = weight_matrices(params)
        for kind, penalty in PENALTIES.items():
            rows = [
                r
                for r, (k, s) in enumerate(zip(self.kinds, self.strengths, strict=True))
                if k == kind and s > 0
            ]
            if not rows:
                continue
            strength = torch.tensor([self.strengths[r] for r in rows], dtype=first.dtype, device=first.device)
            if len(rows) == len(self.kinds):
                total = total + strength * penalty(matrices)
            else:
                index = torch.tensor(rows, device=first.device)
                value = strength * penalty([w[index] for w in matrices])
                total = total.index_add(0, index, value)
        return total

    def keep(self, index: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> None:
        rows = index.tolist()
        self.params = list(params)
        self.kinds = [self.kinds[i] for i in rows]
        self.strengths = [self.strengths[i] for i in rows]

    def state_dict(self) -> dict[str, Any]:
        return {"kinds": list(self.kinds), "strengths": list(self.strengths)}

    def load_state_dict(
        self, state: Mapping[str, Any], params: Sequence[torch.nn.Parameter] | None = None
    ) -> None:
        if params is not None:
            self.params = list(params)
        self.kinds, self.strengths = list(state["kinds"]), list(state["strengths"])


class WeightNoise(PerReplicaNoise):
    """Forward at θ + δ_r·ξ, ξ ~ N(0, I) from replica r's own generator; ``restore`` puts θ back.

    ``handle = perturb(params)`` adds the noise in place and returns the clean values (None when
    every δ is 0: nothing is drawn or copied); after ``backward``, ``restore(params, handle)``
    copies them back bit for bit, leaving in ``.grad`` the gradient taken at the perturbed point.
    Replica r draws parameter by parameter in the model's order, independent of other replicas.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], configs: Sequence[Mapping[str, Any]]) -> None:
        scales = [float(c["weight_noise"]) for c in configs]
        super().__init__(params, scales, [c["seed"] + WEIGHT_NOISE_SEED_OFFSET for c in configs])

    @property
    def active(self) -> bool:
        return any(self.scales)

    @torch.no_grad()
    def perturb(self, params: Sequence[torch.nn.Parameter] | None = None) -> list[torch.Tensor] | None:
        params = self.params if params is None else list(params)
        if not self.active:
            return None
        clean = [p.detach().clone() for p in params]
        for r, (scale, generator) in enumerate(zip(self.scales, self.generators, strict=True)):
            if generator is None:
                continue
            for p in params:
                noise = torch.randn(p.shape[1:], generator=generator, device=p.device, dtype=p.dtype)
                p[r].add_(noise, alpha=scale)
        return clean

    @torch.no_grad()
    def restore(self, params: Sequence[torch.nn.Parameter] | None, handle: list[torch.Tensor] | None) -> None:
        if handle is None:
            return
        params = self.params if params is None else list(params)
        for p, clean in zip(params, handle, strict=True):
            p.copy_(clean)


class NormConstraint:
    """Rescale replica r so that sqrt(Σ over all its parameters of θ²) = c_r; c_r = 0 → untouched.

    The norm is summed in float64; replicas with c_r = 0 are multiplied by exactly 1 (bit-identical);
    an all-zero replica stays zero.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], configs: Sequence[Mapping[str, Any]]) -> None:
        self.params = list(params)
        self.targets = [float(c["norm_constraint"]) for c in configs]

    @property
    def active(self) -> bool:
        return any(self.targets)

    @torch.no_grad()
    def __call__(self, params: Sequence[torch.nn.Parameter] | None = None) -> None:
        params = self.params if params is None else list(params)
        if not self.active:
            return
        norms = torch.sqrt(sum(p.detach().double().pow(2).flatten(1).sum(dim=1) for p in params))
        targets = torch.tensor(self.targets, dtype=torch.float64, device=norms.device)
        factor = torch.where(targets > 0, targets / norms.clamp_min(1e-300), torch.ones_like(norms))
        for p in params:
            p.mul_(factor.to(p.dtype).view((-1,) + (1,) * (p.dim() - 1)))

    def keep(self, index: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> None:
        self.params = list(params)
        self.targets = [self.targets[i] for i in index.tolist()]

    def state_dict(self) -> dict[str, Any]:
        return {"targets": list(self.targets)}

    def load_state_dict(
        self, state: Mapping[str, Any], params: Sequence[torch.nn.Parameter] | None = None
    ) -> None:
        if params is not None:
            self.params = list(params)
        self.targets = list(state["targets"])
