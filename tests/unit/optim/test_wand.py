"""WanD as Zhang et al. 2025 define it: S starts at the entropy bias, v₀ ~ N(0, k_B·T), f_WL from the
config; every expected value below is computed by hand from the paper's formulas."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch

from grokray.config import default_config
from grokray.optim.replicas import ReplicaOptimizer
from grokray.optim.wand import X_MIN, Wand

torch.set_num_threads(1)


def wand_config(**overrides: Any) -> dict[str, Any]:
    c = default_config()
    c.update(optimizer="wand", lr=0.01, weight_decay=0.0, friction=0.5, temperature=0.0, device="cpu",
             wand_beta=2.0, wand_l0=-8.0, wand_wl_height=0.0)  # fmt: skip
    c.update(overrides)
    return c


def stacked(replicas: int, *shapes: tuple[int, ...], seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(replicas, *s, generator=g)) for s in shapes]


def test_the_entropy_starts_as_the_bias_beta_times_the_squared_distance_above_l0():
    wand = Wand(stacked(2, (3,)), [wand_config(), wand_config(wand_beta=0.5, wand_l0=-4.0)])
    h = wand.spacing

    def at(value: float) -> torch.Tensor:
        return wand.entropy(torch.tensor([value, value], dtype=torch.float64))

    # replica 0: 2·(x + 8)² above −8; replica 1: 0.5·(x + 4)² above −4 (grid points: exact)
    assert at(-9.0).tolist() == [0.0, 0.0]
    assert at(-8.0).tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert at(-7.0).tolist() == pytest.approx([2.0, 0.0], abs=1e-9)
    assert at(0.0).tolist() == pytest.approx([128.0, 8.0], rel=1e-12)
    # between grid points: linear interpolation of a quadratic, off by at most β·h²/4
    assert at(1.0025).tolist() == pytest.approx([2 * 9.0025**2, 0.5 * 5.0025**2], abs=2 * h**2 / 4)
    # off the grid (x > 5, a loss above 148): the analytic bias
    assert at(10.0).tolist() == pytest.approx([2 * 18.0**2, 0.5 * 14.0**2], rel=1e-12)
    assert at(-30.0).tolist() == [0.0, 0.0]


def test_the_first_step_pushes_by_minus_lr_times_the_bias_slope_times_the_gradient_of_ln_l():
    lr, beta, l0 = 0.01, 2.0, -8.0
    params = [torch.nn.Parameter(torch.zeros(2, 4))]
    wand = Wand(params, [wand_config(lr=lr), wand_config(lr=lr, seed=1)])
    grad = torch.tensor([[1.0, -2.0, 0.5, 0.0], [3.0, 1.0, -1.0, 2.0]])
    params[0].grad = grad.clone()
    x = torch.tensor([0.5025, -9.0], dtype=torch.float64)  # a bin midpoint above L0, a point below it
    losses = x.exp()
    wand.step(losses.float())
    # T = 0: v₀ = 0, v₁ = −lr·S'(x)·g/L with S' = 2β(x − L0) (the bin pair's difference is exact at
    # its midpoint) above L0 and 0 below; θ₁ = lr·v₁
    loss0 = float(losses.float()[0])
    want = -lr * 2 * beta * (math.log(loss0) - l0) * grad[0] / loss0
    torch.testing.assert_close(wand.velocity[0][0], want, rtol=1e-5, atol=0)
    torch.testing.assert_close(params[0].detach()[0], lr * want, rtol=1e-5, atol=0)
    assert torch.count_nonzero(wand.velocity[0][1]) == 0 and torch.count_nonzero(params[0].detach()[1]) == 0


def test_the_slope_is_the_finite_difference_between_adjacent_bins():
    beta, l0 = 2.0, -8.0
    wand = Wand(stacked(1, (3,)), [wand_config()])
    h = wand.spacing
    for value in (1.0017, -3.3331, -7.9987):
        low = X_MIN + h * math.floor((value - X_MIN) / h)
        want = beta * ((low + h - l0) ** 2 - max(low - l0, 0.0) ** 2) / h
        got = wand.entropy_slope(torch.tensor([value], dtype=torch.float64)).item()
        assert got == pytest.approx(want, rel=1e-6)
        assert abs(got - 2 * beta * (value - l0)) <= beta * h + 1e-9  # the difference's error bound
    assert wand.entropy_slope(torch.tensor([9.0], dtype=torch.float64)).item() == pytest.approx(68.0)


def test_initial_velocities_are_maxwell_boltzmann_at_the_replicas_temperature():
    params = [torch.nn.Parameter(torch.zeros(3, 100_000)), torch.nn.Parameter(torch.zeros(3, 50, 2))]
    configs = [wand_config(temperature=0.5, seed=0), wand_config(temperature=0.0, seed=1),
               wand_config(temperature=2.0, seed=2)]  # fmt: skip
    wand = Wand(params, configs)
    v = wand.velocity[0]
    assert v[0].var().item() == pytest.approx(0.5, rel=0.02)
    assert v[0].mean().item() == pytest.approx(0.0, abs=0.01)
    assert v[2].var().item() == pytest.approx(2.0, rel=0.02)
    assert torch.count_nonzero(v[1]) == 0 and torch.count_nonzero(wand.velocity[1][1]) == 0
    assert wand.generators[1] is None  # T = 0 draws nothing
    # each replica's own seeded stream: the same seed draws the same velocities, another seed others
    again = Wand([torch.nn.Parameter(torch.zeros(1, 100_000)), torch.nn.Parameter(torch.zeros(1, 50, 2))],
                 [configs[0]])  # fmt: skip
    assert torch.equal(again.velocity[0][0], v[0]) and torch.equal(again.velocity[1][0], wand.velocity[1][0])
    assert not torch.equal(v[0] / math.sqrt(0.5), v[2] / math.sqrt(2.0))


def test_deposit_height_follows_the_ramp_then_one_over_t_per_replica():
    configs = [
        wand_config(wand_wl_height=0.5, wand_wl_ramp=100),
        wand_config(wand_wl_height=0.01, wand_wl_ramp=10),
        wand_config(wand_wl_height=0.2, wand_wl_ramp=0),
    ]
    wand = Wand(stacked(3, (2,)), configs)
    # F·min(t/t_WL, t_WL/t); t_WL = 0: F every step
    assert wand.f_wl(1).tolist() == pytest.approx([0.005, 0.001, 0.2])
    assert wand.f_wl(10).tolist() == pytest.approx([0.05, 0.01, 0.2])
    assert wand.f_wl(100).tolist() == pytest.approx([0.5, 0.001, 0.2])
    assert wand.f_wl(400).tolist() == pytest.approx([0.125, 0.00025, 0.2])


def test_a_deposit_adds_a_gaussian_to_the_bias_where_the_walker_was():
    params = [torch.nn.Parameter(torch.zeros(1, 3))]
    wand = Wand(params, [wand_config(wand_wl_height=0.5, wand_wl_ramp=0)])
    params[0].grad = torch.zeros(1, 3)
    x_t = -2.0
    wand.step(torch.tensor([math.exp(x_t)]))
    w, h = wand.width, wand.spacing
    x = torch.tensor([x_t], dtype=torch.float64)
    logged = math.log(float(torch.tensor(math.exp(x_t))))  # the walker's x in float32
    bias = 2.0 * (x_t + 8.0) ** 2
    assert wand.entropy(x).item() == pytest.approx(bias + 0.5, abs=2.0 * h**2 / 4 + 0.5 * h**2 / (8 * w**2))
    slope = (
        2 * 2.0 * (x_t + w + 8.0)
        - 0.5 * math.exp(-((x_t + w - logged) ** 2) / (2 * w**2)) * (x_t + w - logged) / w**2
    )
    # the bin pair's difference is off by ≤ β·h on the bias and by ≤ G'''·h²/2 on the Gaussian G
    third = 0.5 * 2 * math.exp(-0.5) / w**3
    assert wand.entropy_slope(x + w).item() == pytest.approx(slope, abs=2.0 * h + third * h**2 / 2)


def test_no_force_and_no_noise_leaves_the_parameters_where_they_are():
    params = stacked(1, (4,))
    start = params[0].detach().clone()
    wand = Wand(params, [wand_config(wand_beta=0.0)])
    params[0].grad = torch.ones(1, 4)
    for _ in range(3):
        wand.step(torch.tensor([0.7]))
    assert torch.equal(params[0].detach(), start)


def test_a_checkpoint_continues_bit_for_bit():
    configs = [
        wand_config(temperature=0.5, seed=s, wand_wl_height=0.3, wand_wl_ramp=2, lr=0.05) for s in range(3)
    ]
    shapes = ((5, 4), (5,))

    def run(wand: Wand, params: list[torch.nn.Parameter], steps: int) -> None:
        for _ in range(steps):
            loss = 0.5 * sum(p.pow(2).flatten(1).sum(dim=1) for p in params) + 0.1
            for p in params:
                p.grad = None
            loss.sum().backward()
            wand.step(loss.detach())

    params = stacked(3, *shapes)
    wand = Wand(params, configs)
    run(wand, params, 2)
    keep = torch.tensor([0, 2])
    with torch.no_grad():
        for p in params:
            p.data = p.data[keep].contiguous()
    wand.keep(keep, params)
    buffer = io.BytesIO()
    torch.save({"params": [p.detach().clone() for p in params], "wand": wand.state_dict()}, buffer)
    run(wand, params, 4)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    fresh_params = stacked(3, *shapes, seed=7)
    fresh = Wand(fresh_params, configs)  # draws its own v₀: the checkpoint replaces them
    with torch.no_grad():
        for p, value in zip(fresh_params, saved["params"], strict=True):
            p.data = value.clone()
    fresh.load_state_dict(saved["wand"], fresh_params)
    run(fresh, fresh_params, 4)
    assert all(torch.equal(a, b) for a, b in zip(fresh_params, params, strict=True))
    assert torch.equal(fresh.histogram, wand.histogram)
    assert all(torch.equal(a, b) for a, b in zip(fresh.velocity, wand.velocity, strict=True))
    assert fresh.beta == wand.beta == [2.0, 2.0] and fresh.step_count == 6


def test_replica_optimizer_builds_wand_from_the_configs_wand_values():
    params = stacked(2, (3,))
    configs = [wand_config(wand_beta=7.0, wand_l0=-6.0, wand_wl_height=0.2, wand_wl_ramp=50),
               wand_config(wand_beta=0.0, seed=3)]  # fmt: skip
    opt = ReplicaOptimizer(params, configs)
    assert opt.wand is not None
    assert (opt.wand.beta, opt.wand.l0, opt.wand.wl_height, opt.wand.wl_ramp) == (
        [7.0, 0.0],
        [-6.0, -8.0],
        [0.2, 0.0],
        [50, 1000],
    )
