"""AdamW / Adam / SGD / WanD over parameters stacked on a replica axis, with per-replica hyperparameters.

The arithmetic of adamw, adam and sgd follows ``torch.optim``'s single-tensor implementations step
for step, with lr and weight decay as (R, 1, …) tensors instead of scalars, so a replica matches
its unbatched run to float tolerance. Langevin noise (``temperature``) is part of the step: it is
drawn per replica from the unbatched path's generator seed, in the same order and shapes as
``grokray.optim.LangevinNoise``, so T > 0 runs match too, and T = 0 draws nothing (plain AdamW bit
for bit). ``wand`` (``grokray.optim.wand``) carries its own temperature: its initial velocities
and its thermostat, from each replica's ``wand_*`` values (entropy bias, Wang–Landau schedule).

Every part of the replica engine (this optimizer, ``Regularizer``, ``WeightNoise``, ``Grokfast``,
``NormConstraint``) has the same life cycle: built from ``(params, configs)``; ``keep(index,
params)`` when replicas leave the batch; ``state_dict()`` / ``load_state_dict(state, params)``
holding everything per replica (hyperparameters, moments, generator states), so that a fresh part
built from the original configs continues a checkpoint bit for bit even after replicas left.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from grokray.config import OPTIMIZERS
from grokray.optim.seeded import PerReplicaNoise
from grokray.optim.wand import Wand, column

KINDS = OPTIMIZERS  # the config contract's optimizers
LANGEVIN_SEED_OFFSET = 0x5EED  # the plain loop's ``LangevinNoise`` offset: same draws


class ReplicaNoise(PerReplicaNoise):
    """Langevin noise θ_r ← θ_r + sqrt(2·lr_r·T_r)·ξ per replica, as ``LangevinNoise`` draws it.

    Replicas with T = 0 (and every replica of ``wand``, whose temperature enters its velocity
    update instead) have no generator and draw nothing.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], configs: Sequence[Mapping[str, Any]]) -> None:
        scales = [
            0.0 if c["optimizer"] == "wand" else math.sqrt(2.0 * c["lr"] * c["temperature"]) for c in configs
        ]
        super().__init__(params, scales, [c["seed"] + LANGEVIN_SEED_OFFSET for c in configs])

    @torch.no_grad()
    def __call__(self) -> None:
        for r, (scale, generator) in enumerate(zip(self.scales, self.generators, strict=True)):
            if generator is None:
                continue
            for p in self.params:
                noise = torch.randn(p.shape[1:], generator=generator, device=p.device, dtype=p.dtype)
                p[r].add_(noise, alpha=scale)


class ReplicaOptimizer:
    """One optimizer step for R stacked networks (``kind``: adamw, adam, sgd or wand).

    ``step(losses)`` takes each replica's training loss, (R,): wand needs it (its force is the
    gradient of ln L), the others ignore it. After the update, Langevin noise is added for
    replicas with T > 0 (adamw, adam, sgd).
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], configs: Sequence[Mapping[str, Any]]) -> None:
        kinds = {c["optimizer"] for c in configs}
        if len(kinds) != 1:
            raise ValueError(f"optimizer: replicas must share one optimizer, got {sorted(kinds)}")
        for name in ("beta1", "beta2", "momentum"):
            if len({c[name] for c in configs}) != 1:
                raise ValueError(f"{name}: replicas must share it")
        self.kind = kinds.pop()
        if self.kind not in KINDS:
            raise ValueError(f"optimizer: got {self.kind!r}; allowed: {', '.join(KINDS)}")
        self.params = list(params)
        self.beta1, self.beta2 = configs[0]["beta1"], configs[0]["beta2"]
        self.momentum = configs[0]["momentum"]
        self.eps = 1e-8
        self.lr = [float(c["lr"]) for c in configs]
        self.weight_decay = [float(c["weight_decay"]) for c in configs]
        self.step_count = 0
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]
        self.noise = ReplicaNoise(self.params, configs)
        self.wand = Wand(self.params, configs) if self.kind == "wand" else None
        self._columns: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _hyper(self, i: int, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """lr, weight decay and AdamW's decay factor 1 - lr·wd of parameter ``i`` as (R, 1, …)
        columns: the same tensors every step until replicas leave or a checkpoint loads (made
        once, not 2 small tensors and 2 ops per parameter and step)."""
        if i not in self._columns:
            lr, wd = column(self.lr, p), column(self.weight_decay, p)
            self._columns[i] = (lr, wd, 1 - lr * wd)
        return self._columns[i]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, losses: torch.Tensor | None = None) -> None:
        self.step_count += 1
        if self.wand is not None:
            if losses is None:
                raise ValueError("optimizer: wand needs each replica's training loss: step(losses=...)")
            self.wand.step(losses)
            return
        if self.kind == "sgd":
            self._sgd()
        else:
            self._adam()
        self.noise()

    def _sgd(self) -> None:
        for i, (p, state) in enumerate(zip(self.params, self.state, strict=True)):
            if p.grad is None:
                continue
            lr, wd, _ = self._hyper(i, p)
            grad = p.grad
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

    def _adam(self) -> None:
        """AdamW (decoupled decay) or Adam (coupled L2) as ``torch.optim``'s single-tensor step,
        each operation applied to every parameter by one ``torch._foreach_*`` call (the same
        kernels, tensor by tensor: the same numbers as an op per parameter, a tenth of the calls)."""
        rows = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not rows:
            return
        params = [self.params[i] for i in rows]
        grads = [p.grad for p in params]
        hyper = [self._hyper(i, self.params[i]) for i in rows]
        if self.kind == "adamw":
            torch._foreach_mul_(params, [h[2] for h in hyper])
        elif any(self.weight_decay):  # adam: coupled L2
            grads = torch._foreach_add(grads, torch._foreach_mul(params, [h[1] for h in hyper]))
        for i, p in zip(rows, params, strict=True):
            if not self.state[i]:
                self.state[i]["exp_avg"] = torch.zeros_like(p)
                self.state[i]["exp_avg_sq"] = torch.zeros_like(p)
        exp_avg = [self.state[i]["exp_avg"] for i in rows]
        exp_avg_sq = [self.state[i]["exp_avg_sq"] for i in rows]
        torch._foreach_lerp_(exp_avg, grads, 1 - self.beta1)
        torch._foreach_mul_(exp_avg_sq, self.beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - self.beta2)
        bias_correction1 = 1 - self.beta1**self.step_count
        bias_correction2_sqrt = math.sqrt(1 - self.beta2**self.step_count)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_mul(exp_avg, torch._foreach_div([h[0] for h in hyper], bias_correction1))
        torch._foreach_div_(update, denom)
        torch._foreach_sub_(params, update)

    def keep(self, index: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> None:
        """Follow the model's ``keep``: slice the per-replica state and hyperparameters."""
        rows = index.tolist()
        self.params = list(params)
        self._columns.clear()
        self.lr = [self.lr[i] for i in rows]
        self.weight_decay = [self.weight_decay[i] for i in rows]
        for state in self.state:
            for key, value in state.items():
                state[key] = value[index].contiguous()
        self.noise.keep(index, params)
        if self.wand is not None:
            self.wand.keep(index, params)

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "step_count": self.step_count,
            "lr": list(self.lr),
            "weight_decay": list(self.weight_decay),
            "state": [{k: v.clone() for k, v in st.items()} for st in self.state],
            "noise": self.noise.state_dict(),
            "wand": self.wand.state_dict() if self.wand is not None else None,
        }

    def load_state_dict(
        self, state: Mapping[str, Any], params: Sequence[torch.nn.Parameter] | None = None
    ) -> None:
        if state["kind"] != self.kind:
            raise ValueError(f"optimizer: checkpoint is {state['kind']!r}, this run is {self.kind!r}")
        if params is not None:
            self.params = list(params)
        device = self.params[0].device
        self._columns.clear()
        self.step_count = state["step_count"]
        self.lr = list(state["lr"])
        self.weight_decay = list(state["weight_decay"])
        self.state = [{k: v.to(device).clone() for k, v in st.items()} for st in state["state"]]
        self.noise.load_state_dict(state["noise"], self.params)
        if self.wand is not None:
            self.wand.load_state_dict(state["wand"], self.params)
