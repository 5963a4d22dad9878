"""WanD: underdamped Langevin dynamics with a Wang–Landau entropy bias (Zhang et al. 2025), per replica.

Loss is energy and parameters are degrees of freedom. Each full-batch step of replica r, with its
training loss L (passed to ``step``) and the gradient g = ∂L/∂θ already in ``.grad``:

    x  = ln L                                        the energy coordinate
    a  = −(∂ln L/∂θ)·S'(x) = −(g / L)·S'(x)          force of the entropy-biased potential S(ln L(θ))
    v ← v·(1 − c_f) + a·dt + sqrt(c_f·(2 − c_f)·k_B·T)·ξ,   ξ ~ N(0, I)
    θ ← θ + v·dt,   dt = lr
    S(x) += f_WL(t)·exp(−(x − x_t)² / (2·w²))        Wang–Landau deposit at the visited energy

Choices made where the paper's text leaves room (all constructor arguments, defaults below):

- **S starts as S(x) = x**, so S'(x) = 1: at the start the dynamics is plain underdamped Langevin
  on ln L at temperature T. A flat S (WL's usual S = 0) would exert no force at all and the
  network would only diffuse. S is stored as x + B(x), with B, the accumulated deposits, and its
  derivative B' (deposited analytically) on a fixed grid over x ∈ [−20, 5] (L from 2e-9 to 148,
  spacing 0.005, a tenth of a deposit's width); S'(x) = 1 + B'(x), B' linearly interpolated at x;
  outside the grid B = B' = 0.
- **Deposits** are Gaussians of width w = 0.05 in ln L and peak height f_WL(t), added after the
  force of step t was computed (a deposit centred on x_t exerts no force at x_t anyway). Raising S
  where the walker has been pushes it away from visited energies, which is how WL escapes traps.
- **f_WL(t) = f_max·min(t/t_ramp, t_ramp/t)**: a linear ramp over the first t_ramp = 1000 steps
  (a random initial energy should not be frozen into S), then a 1/t decay, the schedule under
  which WL's estimate converges; f_max = 0.01. ``f_max=0`` keeps S' ≡ 1.
- **dt = lr.** The velocity is per unit mass with equipartition ⟨v²⟩ = k_B·T per coordinate
  (the noise term keeps it stationary for any c_f). In the overdamped limit c_f = 1 a step is
  θ ← θ − lr²·g/L + lr·sqrt(k_B·T)·ξ: wand's lr is a time step, much larger than Adam's
  (0.1–1 rather than 1e-3).
- **∂ln L/∂θ = g/L** with L clamped below at the dtype's smallest normal number (an exactly zero
  loss would otherwise give inf). When the engine adds a regularizer to the loss, g includes its
  gradient while L is the data loss passed in.
- **Weight decay**, if the config sets it, is decoupled as in AdamW: θ ← θ·(1 − lr·wd) before the
  update (the paper's WanD uses none: set ``weight_decay=0``).
- **Noise** comes from a generator per replica seeded from ``seed`` (offset ``WAND_SEED_OFFSET``),
  drawn parameter by parameter in the model's order; replicas with T = 0 draw nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from grokray.optim.seeded import generator_states, load_generators

WAND_SEED_OFFSET = 0x3A7D
X_MIN, X_MAX, X_SPACING = -20.0, 5.0, 0.005
DEPOSIT_WIDTH = 0.05
F_MAX = 0.01
RAMP_STEPS = 1000


def column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-replica values shaped (R, 1, …, 1) to broadcast over a stacked parameter."""
    shape = (len(values),) + (1,) * (like.dim() - 1)
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(shape)


class Wand:
    """The WanD update for R stacked replicas; ``ReplicaOptimizer(kind="wand")`` drives it."""

    def __init__(
        self,
        params: Sequence[torch.nn.Parameter],
        configs: Sequence[Mapping[str, Any]],
        *,
        x_range: tuple[float, float] = (X_MIN, X_MAX),
        spacing: float = X_SPACING,
        width: float = DEPOSIT_WIDTH,
        f_max: float = F_MAX,
        ramp_steps: int = RAMP_STEPS,
    ) -> None:
        self.params = list(params)
        device = self.params[0].device
        self.lr = [float(c["lr"]) for c in configs]
        self.weight_decay = [float(c["weight_decay"]) for c in configs]
        self.friction = [float(c["friction"]) for c in configs]
        self.temperature = [float(c["temperature"]) for c in configs]
        self.width, self.f_max, self.ramp_steps = width, f_max, ramp_steps
        self.x_min, self.spacing = x_range[0], spacing
        n_grid = round((x_range[1] - x_range[0]) / spacing) + 1
        self.grid = x_range[0] + spacing * torch.arange(n_grid, dtype=torch.float64, device=device)
        self.bias = torch.zeros(len(configs), n_grid, dtype=torch.float64, device=device)  # B on the grid
        self.bias_slope = torch.zeros_like(self.bias)  # B' on the grid
        self.velocity = [torch.zeros_like(p) for p in self.params]
        self.step_count = 0
        self.generators: list[torch.Generator | None] = [
            torch.Generator(device=device).manual_seed(c["seed"] + WAND_SEED_OFFSET) if t > 0 else None
            for c, t in zip(configs, self.temperature, strict=True)
        ]

    def f_wl(self, step: int) -> float:
        """Deposit height at step ``step`` (1-based): linear ramp, then 1/t decay."""
        if self.ramp_steps <= 0:
            return self.f_max
        return self.f_max * min(step / self.ramp_steps, self.ramp_steps / step)

    def entropy_slope(self, x: torch.Tensor) -> torch.Tensor:
        """S'(x) = 1 + B'(x) per replica, for x of shape (R,) (float64)."""
        return 1.0 + self._interpolate(self.bias_slope, x)

    def entropy(self, x: torch.Tensor) -> torch.Tensor:
        """S(x) = x + B(x) per replica, for x of shape (R,) (float64)."""
        return x + self._interpolate(self.bias, x)

    def _interpolate(self, table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Row r of ``table`` (R, grid) linearly interpolated at x_r; 0 outside the grid."""
        n_grid = self.grid.numel()
        position = (x - self.x_min) / self.spacing
        inside = (position >= 0) & (position <= n_grid - 1)
        position = position.clamp(0, n_grid - 1)
        lower = position.clamp(max=n_grid - 2).floor()
        frac = (position - lower).unsqueeze(1)
        lower_index = lower.long().unsqueeze(1)
        value = table.gather(1, lower_index) * (1 - frac) + table.gather(1, lower_index + 1) * frac
        return torch.where(inside, value.squeeze(1), torch.zeros_like(x))

    @torch.no_grad()
    def step(self, losses: torch.Tensor) -> None:
        self.step_count += 1
        loss = losses.detach().to(device=self.bias.device, dtype=torch.float64)
        loss = loss.clamp_min(torch.finfo(self.params[0].dtype).tiny)
        x = loss.log()
        lr64 = torch.tensor(self.lr, dtype=torch.float64, device=x.device)
        dt_force = self.entropy_slope(x) / loss * lr64  # a·dt = −g·(S'(x)/L)·dt
        kicks = [
            math.sqrt(c_f * (2.0 - c_f) * t) for c_f, t in zip(self.friction, self.temperature, strict=True)
        ]
        for p, v in zip(self.params, self.velocity, strict=True):
            if p.grad is None:
                continue
            lr = column(self.lr, p)
            if any(self.weight_decay):
                p.mul_(1 - lr * column(self.weight_decay, p))
            v.mul_(1 - column(self.friction, p)).sub_(p.grad * dt_force.to(p.dtype).view(lr.shape))
            for r, (kick, generator) in enumerate(zip(kicks, self.generators, strict=True)):
                if generator is None:
                    continue
                noise = torch.randn(p.shape[1:], generator=generator, device=p.device, dtype=p.dtype)
                v[r].add_(noise, alpha=kick)
            p.add_(v * lr)
        height = self.f_wl(self.step_count)
        if height:
            offset = self.grid - x.unsqueeze(1)
            deposit = height * torch.exp(-(offset**2) / (2 * self.width**2))
            self.bias.add_(deposit)
            self.bias_slope.sub_(deposit * offset / self.width**2)

    def keep(self, index: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> None:
        rows = index.tolist()
        self.params = list(params)
        for name in ("lr", "weight_decay", "friction", "temperature", "generators"):
            setattr(self, name, [getattr(self, name)[i] for i in rows])
        self.bias = self.bias[index.to(self.bias.device)].contiguous()
        self.bias_slope = self.bias_slope[index.to(self.bias.device)].contiguous()
        self.velocity = [v[index].contiguous() for v in self.velocity]

    def state_dict(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            "lr": list(self.lr),
            "weight_decay": list(self.weight_decay),
            "friction": list(self.friction),
            "temperature": list(self.temperature),
            "bias": self.bias.clone(),
            "bias_slope": self.bias_slope.clone(),
            "velocity": [v.clone() for v in self.velocity],
            "generators": generator_states(self.generators),
        }

    def load_state_dict(
        self, state: Mapping[str, Any], params: Sequence[torch.nn.Parameter] | None = None
    ) -> None:
        if params is not None:
            self.params = list(params)
        device = self.params[0].device
        self.step_count = state["step_count"]
        for name in ("lr", "weight_decay", "friction", "temperature"):
            setattr(self, name, list(state[name]))
        self.bias = state["bias"].to(device).clone()
        self.bias_slope = state["bias_slope"].to(device).clone()
        self.velocity = [v.to(device).clone() for v in state["velocity"]]
        self.generators = load_generators(state["generators"], device)
