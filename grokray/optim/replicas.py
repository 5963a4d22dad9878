"""AdamW / Adam / SGD over parameters stacked on a replica axis, with per-replica lr and decay.

The arithmetic follows ``torch.optim``'s single-tensor implementations step for step, with lr and
weight decay as (R, 1, …) tensors instead of scalars, so a replica matches its unbatched run to
float tolerance. Langevin noise is drawn per replica from the unbatched path's generator seed,
in the same order and shapes, so T > 0 runs match too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch


def _column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-replica values shaped (R, 1, …, 1) to broadcast over a stacked parameter."""
    shape = (len(values),) + (1,) * (like.dim() - 1)
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(shape)


class ReplicaOptimizer:
    """One optimizer step for R stacked networks (``kind``: adamw, adam or sgd)."""

    def __init__(self, params: Sequence[torch.nn.Parameter], configs: Sequence[Mapping[str, Any]]) -> None:
        kinds = {c["optimizer"] for c in configs}
        if len(kinds) != 1:
            raise ValueError(f"optimizer: replicas must share one optimizer, got {sorted(kinds)}")
        for name in ("beta1", "beta2", "momentum"):
            if len({c[name] for c in configs}) != 1:
                raise ValueError(f"{name}: replicas must share it")
        self.kind = kinds.pop()
        self.params = list(params)
        self.beta1, self.beta2 = configs[0]["beta1"], configs[0]["beta2"]
        self.momentum = configs[0]["momentum"]
        self.eps = 1e-8
        self.lr = [float(c["lr"]) for c in configs]
        self.weight_decay = [float(c["weight_decay"]) for c in configs]
        self.step_count = 0
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        for p, state in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            lr, wd = _column(self.lr, p), _column(self.weight_decay, p)
            grad = p.grad
            if self.kind == "sgd":
                if any(self.weight_decay):
                    grad = grad.add(p * wd)
                if self.momentum:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = grad.clone()
                    else:
                        buf.mul_(self.momentum).add_(grad)
                    grad = buf
                p.sub_(lr * grad)
                continue
            if self.kind == "adamw":
                p.mul_(1 - lr * wd)
            elif any(self.weight_decay):  # adam: coupled L2
                grad = grad.add(p * wd)
            if not state:
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - self.beta1)
            exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            bias_correction1 = 1 - self.beta1**self.step_count
            bias_correction2_sqrt = math.sqrt(1 - self.beta2**self.step_count)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.sub_((lr / bias_correction1) * exp_avg / denom)

    def keep(self, index: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> None:
        """Follow ``ReplicaMLP.keep``: slice the per-replica state and hyperparameters."""
        rows = index.tolist()
        self.params = list(params)
        self.lr = [self.lr[i] for i in rows]
        self.weight_decay = [self.weight_decay[i] for i in rows]
        for state in self.state:
            for key, value in state.items():
                state[key] = value[index].contiguous()


class ReplicaNoise:
    """Langevin noise θ_r ← θ_r + sqrt(2·lr_r·T_r)·ξ per replica, as ``LangevinNoise`` draws it."""

    def __init__(self, params: Sequence[torch.nn.Parameter], configs: Sequence[Mapping[str, Any]]) -> None:
        self.params = list(params)
        self.scales = [math.sqrt(2.0 * c["lr"] * c["temperature"]) for c in configs]
        device = self.params[0].device
        self.generators = [
            torch.Generator(device=device).manual_seed(c["seed"] + 0x5EED) if s > 0 else None
            for c, s in zip(configs, self.scales, strict=True)
        ]

    @torch.no_grad()
    def __call__(self) -> None:
        for r, (scale, generator) in enumerate(zip(self.scales, self.generators, strict=True)):
            if generator is None:
                continue
            for p in self.params:
                noise = torch.randn(p.shape[1:], generator=generator, device=p.device, dtype=p.dtype)
                p[r].add_(noise, alpha=scale)

    def keep(self, index: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> None:
        rows = index.tolist()
        self.params = list(params)
        self.scales = [self.scales[i] for i in rows]
        self.generators = [self.generators[i] for i in rows]
