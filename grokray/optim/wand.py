"""WanD: underdamped Langevin dynamics with a Wang–Landau entropy bias (Zhang et al. 2025), per replica.

Loss is energy and parameters are degrees of freedom. Each full-batch step t of replica r, with its
training loss L (passed to ``step``) and the gradient g = ∂L/∂θ already in ``.grad`` (the paper's
Algorithm 1 and Eq. 5):

    x  = ln L                                        the energy coordinate
    a  = −(∂ln L/∂θ)·S'(x) = −(g / L)·S'(x)          force of the entropy landscape S(ln L(θ))
    v ← v·(1 − c_f) + a·dt + sqrt(c_f·(2 − c_f)·k_B·T)·ξ,   ξ ~ N(0, I)
    θ ← θ + v·dt,   dt = lr
    S(x) += f_WL(t)·exp(−(x − x_t)² / (2·w²))        Wang–Landau deposit at the visited energy

with, per replica from its config:

- **S starts as the entropy bias** S_bias(x) = β·(x − L0)² for x > L0 and 0 below (``wand_beta``,
  ``wand_l0``; the paper's Eq. 7, L0 = −8 its "maxTrainLossToStudy" for x + y). Above L0 the bias
  pushes the walker toward lower loss with force 2β·(x − L0)·∇ln L; below it only the deposits and
  the noise act. β = 0 starts from WL's flat S (no force at all until deposits build up).
- **x_grad = S'(x) by finite differences between adjacent bins**, as the paper computes it: S is one
  histogram on a fixed grid over x ∈ [−20, 5] (L from 2e-9 to 148, bin spacing h = 0.005, a tenth of
  a deposit's width), S'(x) = (S[i+1] − S[i]) / h on the bin pair around x. One table holds the
  whole S (bias and deposits alike), so what the walker feels is exactly the histogram a
  checkpoint stores; for the quadratic bias the difference is exact at the pair's midpoint and off
  by at most β·h anywhere, and for a deposit it is off by O(h²/w²) (0.01 %). Outside the grid the
  analytic S_bias and S_bias' stand in (a walker above x = 5 has diverged; the bias pulls it back).
- **Initial velocities v₀ ~ N(0, k_B·T)** per coordinate (unit mass, Maxwell–Boltzmann), drawn when
  the optimizer is built, from the replica's own generator (seeded from ``seed`` + ``WAND_SEED_OFFSET``)
  parameter by parameter in the model's order; the same generator then draws the Langevin kicks.
  With T = 0 the velocities start at zero and nothing is ever drawn. The kick keeps ⟨v²⟩ = k_B·T
  stationary for any c_f.
- **f_WL(t) = F_WL·min(t/t_WL, t_WL/t)** (``wand_wl_height``, ``wand_wl_ramp``; t counts steps from 1):
  a linear ramp, then the 1/t decay under which WL's estimate converges. t_WL = 0 deposits F_WL at
  every step; F_WL = 0 leaves S = S_bias for good. Deposits are Gaussians of width w = 0.05 in ln L
  added after the force of step t was computed.
- **dt = lr.** The paper runs WanD at AdamW's learning rate (3e-3). A step moves θ by v·dt, with
  |v| ≈ sqrt(k_B·T) per coordinate from the noise alone: the weights diffuse by about
  dt·sqrt(k_B·T·(2 − c_f)/c_f) per coordinate per sqrt(step). For the paper's 215k-parameter
  transformer at k_B·T = 0.5, c_f = 0.5 that takes the norm from 22 to 172 in 10k steps, the ~175 of
  its Fig. 3; an lr of 0.5 would throw every weight by ~0.35 a step: the network explodes.
- **∂ln L/∂θ = g/L** with L clamped below at the dtype's smallest normal number (an exactly zero
  loss would otherwise give inf). When the engine adds a regularizer to the loss, g includes its
  gradient while L is the data loss passed in.
- **Weight decay**, if the config sets it, is decoupled as in AdamW: θ ← θ·(1 − lr·wd) before the
  update. The paper's WanD has none, and a study resolves ``wand`` to weight_decay 0 unless it
  names one.
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


def column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-replica values shaped (R, 1, …, 1) to broadcast over a stacked parameter."""
    shape = (len(values),) + (1,) * (like.dim() - 1)
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(shape)


def entropy_bias(x: torch.Tensor, beta: torch.Tensor, l0: torch.Tensor) -> torch.Tensor:
    """S_bias(x) = β·(x − L0)² for x > L0, else 0 (elementwise, broadcasting)."""
    return beta * (x - l0).clamp_min(0.0).pow(2)


def entropy_bias_slope(x: torch.Tensor, beta: torch.Tensor, l0: torch.Tensor) -> torch.Tensor:
    """S_bias'(x) = 2β·(x − L0) for x > L0, else 0."""
    return 2.0 * beta * (x - l0).clamp_min(0.0)


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
    ) -> None:
        self.params = list(params)
        device = self.params[0].device
        self.lr = [float(c["lr"]) for c in configs]
        self.weight_decay = [float(c["weight_decay"]) for c in configs]
        self.friction = [float(c["friction"]) for c in configs]
        self.temperature = [float(c["temperature"]) for c in configs]
        self.beta = [float(c["wand_beta"]) for c in configs]
        self.l0 = [float(c["wand_l0"]) for c in configs]
        self.wl_height = [float(c["wand_wl_height"]) for c in configs]
        self.wl_ramp = [int(c["wand_wl_ramp"]) for c in configs]
        self.width = width
        self.x_min, self.spacing = x_range[0], spacing
        n_grid = round((x_range[1] - x_range[0]) / spacing) + 1
        self.grid = x_range[0] + spacing * torch.arange(n_grid, dtype=torch.float64, device=device)
        beta, l0 = self._per_replica(self.beta).unsqueeze(1), self._per_replica(self.l0).unsqueeze(1)
        self.histogram = entropy_bias(self.grid.unsqueeze(0), beta, l0)  # S on the grid, (R, n_grid)
        self.step_count = 0
        self.generators: list[torch.Generator | None] = [
            torch.Generator(device=device).manual_seed(c["seed"] + WAND_SEED_OFFSET) if t > 0 else None
            for c, t in zip(configs, self.temperature, strict=True)
        ]
        self.velocity = [torch.zeros_like(p) for p in self.params]
        with torch.no_grad():
            for p, v in zip(self.params, self.velocity, strict=True):
                for r, (t, generator) in enumerate(zip(self.temperature, self.generators, strict=True)):
                    if generator is not None:
                        v[r] = math.sqrt(t) * torch.randn(
                            p.shape[1:], generator=generator, device=p.device, dtype=p.dtype
                        )

    def _per_replica(self, values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64, device=self.grid.device)

    def f_wl(self, step: int) -> torch.Tensor:
        """Each replica's deposit height at step ``step`` (1-based), (R,) float64."""
        heights = [
            height if ramp <= 0 else height * min(step / ramp, ramp / step)
            for height, ramp in zip(self.wl_height, self.wl_ramp, strict=True)
        ]
        return self._per_replica(heights)

    def _segment(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Index i of the bin pair [grid_i, grid_i+1] around x, the position in it, and inside-grid flags."""
        n_grid = self.grid.numel()
        position = (x - self.x_min) / self.spacing
        inside = (position >= 0) & (position <= n_grid - 1)  # False for NaN (a diverged replica)
        position = position.nan_to_num(0.0)
        lower = position.clamp(0, n_grid - 1).floor().clamp(max=n_grid - 2)
        return lower.long().unsqueeze(1), (position - lower).clamp(0, 1), inside

    def entropy(self, x: torch.Tensor) -> torch.Tensor:
        """S(x) per replica for x of shape (R,) (float64): the histogram, linearly interpolated."""
        index, frac, inside = self._segment(x)
        low = self.histogram.gather(1, index).squeeze(1)
        high = self.histogram.gather(1, index + 1).squeeze(1)
        outside = entropy_bias(x, self._per_replica(self.beta), self._per_replica(self.l0))
        return torch.where(inside, low + (high - low) * frac, outside)

    def entropy_slope(self, x: torch.Tensor) -> torch.Tensor:
        """x_grad = S'(x) per replica for x of shape (R,) (float64): (S[i+1] − S[i]) / h around x."""
        index, _, inside = self._segment(x)
        difference = self.histogram.gather(1, index + 1) - self.histogram.gather(1, index)
        outside = entropy_bias_slope(x, self._per_replica(self.beta), self._per_replica(self.l0))
        return torch.where(inside, difference.squeeze(1) / self.spacing, outside)

    @torch.no_grad()
    def step(self, losses: torch.Tensor) -> None:
        self.step_count += 1
        loss = losses.detach().to(device=self.grid.device, dtype=torch.float64)
        loss = loss.clamp_min(torch.finfo(self.params[0].dtype).tiny)
        x = loss.log()
        dt_force = self.entropy_slope(x) / loss * self._per_replica(self.lr)  # a·dt = −g·(S'(x)/L)·dt
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
        heights = self.f_wl(self.step_count)
        if bool((heights > 0).any()):
            offset = self.grid - x.unsqueeze(1)
            self.histogram.add_(heights.unsqueeze(1) * torch.exp(-(offset**2) / (2 * self.width**2)))

    _PER_REPLICA = (
        "lr", "weight_decay", "friction", "temperature", "beta", "l0", "wl_height", "wl_ramp", "generators",
    )  # fmt: skip

    def keep(self, index: torch.Tensor, params: Sequence[torch.nn.Parameter]) -> None:
        rows = index.tolist()
        self.params = list(params)
        for name in self._PER_REPLICA:
            setattr(self, name, [getattr(self, name)[i] for i in rows])
        self.histogram = self.histogram[index.to(self.histogram.device)].contiguous()
        self.velocity = [v[index].contiguous() for v in self.velocity]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: list(getattr(self, name)) for name in self._PER_REPLICA[:-1]}
        state.update(
            step_count=self.step_count,
            histogram=self.histogram.clone(),
            velocity=[v.clone() for v in self.velocity],
            generators=generator_states(self.generators),
        )
        return state

    def load_state_dict(
        self, state: Mapping[str, Any], params: Sequence[torch.nn.Parameter] | None = None
    ) -> None:
        if params is not None:
            self.params = list(params)
        device = self.params[0].device
        self.step_count = state["step_count"]
        for name in self._PER_REPLICA[:-1]:
            setattr(self, name, list(state[name]))
        self.histogram = state["histogram"].to(device).clone()
        self.velocity = [v.to(device).clone() for v in state["velocity"]]
        self.generators = load_generators(state["generators"], device)
