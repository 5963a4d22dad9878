"""The replica engine's optimizers and regularizers on a tiny hand-written stacked network.

Each replica is a 2-layer net  out = W2·relu(W1·x + b1)  with its parameters stacked on axis 0,
trained by the engine's step order (weight noise → loss + regularizer → backward → restore →
Grokfast → optimizer (+ Langevin) → norm constraint). Expected values are computed by hand.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from grokray.config import default_config
from grokray.metrics.spectral import spectral_entropy
from grokray.optim.grokfast import Grokfast
from grokray.optim.regularizers import NormConstraint, Regularizer, WeightNoise
from grokray.optim.replicas import ReplicaOptimizer
from grokray.optim.wand import Wand

torch.set_num_threads(1)


def cfg(**overrides: Any) -> dict[str, Any]:
    c = default_config()
    c.update(lr=1e-2, weight_decay=0.1, device="cpu")
    c.update(overrides)
    return c


def make_params(replicas: int, seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 4), (5,), (3, 5)]  # W1, b1, W2
    return [torch.nn.Parameter(torch.randn(replicas, *s, generator=g) * 0.7) for s in shapes]


def make_data(replicas: int, n: int = 7, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(replicas, n, 4, generator=g), torch.randn(replicas, n, 3, generator=g)


def data_losses(params: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    w1, b1, w2 = params
    hidden = torch.relu(torch.bmm(x, w1.transpose(1, 2)) + b1.unsqueeze(1))
    out = torch.bmm(hidden, w2.transpose(1, 2))
    return (out - y).pow(2).mean(dim=(1, 2))


class Engine:
    """The engine's step (``ReplicaRun._train_step``) over the tiny network."""

    def __init__(self, params: list[torch.nn.Parameter], configs: list[dict[str, Any]]) -> None:
        self.params = params
        self.optimizer = ReplicaOptimizer(params, configs)
        self.regularizer = Regularizer(params, configs)
        self.weight_noise = WeightNoise(params, configs)
        self.grokfast = Grokfast(params, configs)
        self.norm_constraint = NormConstraint(params, configs)

    @property
    def parts(self) -> list[Any]:
        return [self.optimizer, self.regularizer, self.weight_noise, self.grokfast, self.norm_constraint]

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        params = self.params
        handle = self.weight_noise.perturb(params)
        losses = data_losses(params, x, y)
        self.optimizer.zero_grad()
        total = losses + self.regularizer(params) if self.regularizer.active else losses
        total.sum().backward()
        self.weight_noise.restore(params, handle)
        self.grokfast(params)
        self.optimizer.step(losses=losses.detach())
        self.norm_constraint(params)

    def keep(self, index: torch.Tensor) -> None:
        with torch.no_grad():
            for p in self.params:
                p.data = p.data[index].contiguous()
                p.grad = None
        for part in self.parts:
            part.keep(index, self.params)


def everything_on(kind: str, regularizer: str, seed: int, **overrides: Any) -> dict[str, Any]:
    c = cfg(
        optimizer=kind,
        seed=seed,
        lr=0.3 if kind == "wand" else 1e-2,
        temperature=1e-4,
        friction=0.5,
        regularizer=regularizer,
        reg_strength=0.05,
        grokfast_lambda=2.0,
        grokfast_alpha=0.9,
        weight_noise=1e-2,
        norm_constraint=4.0 + seed,
    )
    c.update(overrides)
    return c


def all_equal(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def snapshot(params: Sequence[torch.Tensor], rows: Sequence[int] | None = None) -> list[torch.Tensor]:
    return [p.detach().clone() if rows is None else p.detach()[list(rows)].clone() for p in params]


# ---- the bare optimizer: extras off are exactly nothing ----------------------------------------


def test_extras_off_equal_the_bare_optimizer_and_torch_adamw():
    configs = [cfg(seed=0), cfg(seed=1, lr=3e-3, weight_decay=1.0)]
    x, y = make_data(2)
    engine_params, bare_params = make_params(2), make_params(2)
    engine = Engine(engine_params, configs)
    assert not engine.regularizer.active and not engine.weight_noise.active
    assert not engine.grokfast.active and not engine.norm_constraint.active
    bare = ReplicaOptimizer(bare_params, configs)
    singles = [[torch.nn.Parameter(p.detach()[r].clone()) for p in make_params(2)] for r in range(2)]
    torch_opts = [
        torch.optim.AdamW(ps, lr=c["lr"], weight_decay=c["weight_decay"], betas=(c["beta1"], c["beta2"]))
        for ps, c in zip(singles, configs, strict=True)
    ]
    for _ in range(6):
        engine.step(x, y)
        bare.zero_grad()
        data_losses(bare_params, x, y).sum().backward()
        bare.step()
        for r, (ps, opt) in enumerate(zip(singles, torch_opts, strict=True)):
            opt.zero_grad()
            data_losses([p.unsqueeze(0) for p in ps], x[r : r + 1], y[r : r + 1]).sum().backward()
            opt.step()
    assert all_equal(engine_params, bare_params)
    for r, ps in enumerate(singles):
        for stacked, single in zip(engine_params, ps, strict=True):
            torch.testing.assert_close(stacked.detach()[r], single.detach(), rtol=1e-5, atol=1e-7)


# ---- regularizers: penalties and their gradients by hand ---------------------------------------


def test_l1_penalty_value_and_gradient_is_strength_times_sign():
    params = make_params(3)
    reg = Regularizer(params, [cfg(regularizer="l1", reg_strength=s) for s in (0.3, 0.0, 0.7)])
    penalty = reg(params)
    w1, _, w2 = (p.detach() for p in params)
    want = torch.tensor([0.3, 0.0, 0.7]) * (w1.abs().sum(dim=(1, 2)) + w2.abs().sum(dim=(1, 2)))
    torch.testing.assert_close(penalty.detach(), want)
    penalty.sum().backward()
    strength = torch.tensor([0.3, 0.0, 0.7]).view(3, 1, 1)
    assert torch.equal(params[0].grad, strength * torch.sign(w1))
    assert torch.equal(params[2].grad, strength * torch.sign(w2))
    assert params[1].grad is None  # biases are not weight matrices


def test_l2_penalty_is_the_sum_of_frobenius_norms_and_its_gradient_w_over_norm():
    params = make_params(2)
    reg = Regularizer(params, [cfg(regularizer="l2", reg_strength=s) for s in (0.5, 2.0)])
    penalty = reg(params)
    w1, w2 = params[0].detach(), params[2].detach()
    n1, n2 = w1.pow(2).sum(dim=(1, 2)).sqrt(), w2.pow(2).sum(dim=(1, 2)).sqrt()
    torch.testing.assert_close(penalty.detach(), torch.tensor([0.5, 2.0]) * (n1 + n2))
    penalty.sum().backward()
    strength = torch.tensor([0.5, 2.0]).view(2, 1, 1)
    torch.testing.assert_close(params[0].grad, strength * w1 / n1.view(2, 1, 1))
    torch.testing.assert_close(params[2].grad, strength * w2 / n2.view(2, 1, 1))


def test_nuclear_norm_of_a_diagonal_matrix_is_the_sum_of_absolute_diagonal_entries():
    w = torch.zeros(2, 3, 4)
    w[0, [0, 1, 2], [0, 1, 2]] = torch.tensor([3.0, -2.0, 0.5])
    w[1, [0, 1, 2], [0, 1, 2]] = torch.tensor([-1.0, 0.0, 4.0])
    params = [torch.nn.Parameter(w), torch.nn.Parameter(torch.ones(2, 3))]
    reg = Regularizer(params, [cfg(regularizer="nuclear", reg_strength=1.0)] * 2)
    torch.testing.assert_close(reg(params).detach(), torch.tensor([5.5, 5.0]))


def test_spectral_entropy_by_hand():
    u, v = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.3, 1.0, 2.0, -1.0])
    rank_one = torch.outer(u, v).unsqueeze(0)
    assert spectral_entropy(rank_one).item() == pytest.approx(0.0, abs=1e-5)
    assert spectral_entropy(torch.eye(4).unsqueeze(0)).item() == pytest.approx(math.log(4), rel=1e-6)
    # σ = (2, 1, 1): p = (1/2, 1/4, 1/4), H = ½ ln 2 + ½ ln 4 = 1.5 ln 2
    assert spectral_entropy(torch.diag(torch.tensor([1.0, 2.0, 1.0])).unsqueeze(0)).item() == pytest.approx(
        1.5 * math.log(2), rel=1e-6
    )
    # the penalty is β times the mean over matrices: (0 + ln 3) / 2
    params = [torch.nn.Parameter(rank_one[:, :, :3].clone()), torch.nn.Parameter(torch.eye(3).unsqueeze(0))]
    reg = Regularizer(params, [cfg(regularizer="spectral_entropy", reg_strength=0.1)])
    penalty = reg(params)
    assert penalty.item() == pytest.approx(0.1 * math.log(3) / 2, rel=1e-4)
    penalty.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in params)


def test_no_regularizer_is_zeros_and_inactive():
    params = make_params(2)
    reg = Regularizer(
        params, [cfg(regularizer="l1", reg_strength=0.0), cfg(regularizer="none", reg_strength=1.0)]
    )
    assert not reg.active
    assert torch.equal(reg(params), torch.zeros(2))
    with pytest.raises(ValueError, match="regularizer"):
        Regularizer(params, [cfg(regularizer="l3")])


# ---- Grokfast ------------------------------------------------------------------------------------


def test_grokfast_adds_lambda_times_the_gradient_ema():
    params = make_params(2)
    grok = Grokfast(params, [cfg(grokfast_lambda=2.0, grokfast_alpha=0.98), cfg(grokfast_lambda=0.0)])
    g1 = [torch.randn(p.shape) for p in params]
    for p, g in zip(params, g1, strict=True):
        p.grad = g.clone()
    grok(params)
    for p, g in zip(params, g1, strict=True):
        torch.testing.assert_close(p.grad[0], g[0] + 2 * 0.02 * g[0])  # first step: EMA = 0.02·g
        assert torch.equal(p.grad[1], g[1])  # λ = 0: untouched
    g2 = [torch.randn(p.shape) for p in params]
    for p, g in zip(params, g2, strict=True):
        p.grad = g.clone()
    grok(params)
    for p, a, b in zip(params, g1, g2, strict=True):
        ema = 0.98 * 0.02 * a[0] + 0.02 * b[0]
        torch.testing.assert_close(p.grad[0], b[0] + 2 * ema)


def test_grokfast_with_lambda_zero_is_a_no_op():
    params = make_params(2)
    grok = Grokfast(params, [cfg(grokfast_lambda=0.0)] * 2)
    grads = [torch.randn(p.shape) for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    grok(params)
    assert not grok.active and all(p.grad is g for p, g in zip(params, grads, strict=True))
    assert all(e is None for e in grok.ema)


# ---- norm constraint and weight noise --------------------------------------------------------------


def test_norm_constraint_sets_the_global_norm_and_skips_zero_targets():
    params = make_params(3)
    before = snapshot(params)
    NormConstraint(params, [cfg(norm_constraint=c) for c in (2.5, 0.0, 30.0)])(params)
    norms = torch.sqrt(sum(p.detach().double().pow(2).flatten(1).sum(dim=1) for p in params))
    assert norms[0].item() == pytest.approx(2.5, rel=1e-6)
    assert norms[2].item() == pytest.approx(30.0, rel=1e-6)
    assert all(torch.equal(p.detach()[1], b[1]) for p, b in zip(params, before, strict=True))
    # a pure rescaling: the direction is unchanged
    torch.testing.assert_close(
        params[0].detach()[0] / params[2].detach()[0, 0, 0], before[0][0] / before[2][0, 0, 0]
    )


def test_weight_noise_perturbs_then_restores_exactly_and_changes_the_gradient():
    x, y = make_data(2)
    params = make_params(2)
    clean = snapshot(params)
    data_losses(params, x, y).sum().backward()
    clean_grads = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None

    noise = WeightNoise(params, [cfg(weight_noise=1e-2, seed=0), cfg(weight_noise=0.0, seed=1)])
    handle = noise.perturb(params)
    moved = [(p.detach() - c)[0] for p, c in zip(params, clean, strict=True)]
    assert all(m.abs().max() > 0 for m in moved)
    assert 0.005 < torch.cat([m.flatten() for m in moved]).std().item() < 0.02  # δ = 1e-2
    assert all(torch.equal(p.detach()[1], c[1]) for p, c in zip(params, clean, strict=True))
    data_losses(params, x, y).sum().backward()
    noise.restore(params, handle)
    assert all_equal(params, clean)
    assert any(not torch.equal(p.grad[0], g[0]) for p, g in zip(params, clean_grads, strict=True))
    assert all(torch.equal(p.grad[1], g[1]) for p, g in zip(params, clean_grads, strict=True))
    # the same seed draws the same noise; δ = 0 everywhere draws and copies nothing
    again = WeightNoise(make_params(2), [cfg(weight_noise=1e-2, seed=0), cfg(weight_noise=0.0, seed=1)])
    params2 = again.params
    start = snapshot(params2)
    again.perturb(params2)
    assert all(torch.equal((p.detach() - s)[0], m) for p, s, m in zip(params2, start, moved, strict=True))
    assert WeightNoise(params, [cfg(weight_noise=0.0)] * 2).perturb(params) is None


# ---- WanD ----------------------------------------------------------------------------------------


def quadratic_grads(params: Sequence[torch.nn.Parameter]) -> torch.Tensor:
    """L_r = ½ Σ θ_r² + 1 per replica, its gradient θ in .grad; returns L (R,)."""
    for p in params:
        p.grad = None
    loss = 0.5 * sum(p.pow(2).flatten(1).sum(dim=1) for p in params) + 1.0
    loss.sum().backward()
    return loss.detach()


def test_wand_at_zero_temperature_and_full_friction_is_a_gradient_step_on_the_entropy_bias():
    params = make_params(2)
    start = [p.detach().double().clone() for p in params]
    configs = [
        cfg(optimizer="wand", lr=0.3, weight_decay=0.0, friction=1.0, temperature=0.0, seed=s,
            wand_beta=0.5, wand_l0=-8.0, wand_wl_height=0.0) for s in (0, 1)
    ]  # fmt: skip
    opt = ReplicaOptimizer(params, configs)
    losses = quadratic_grads(params)
    x = losses.double().log()
    assert opt.wand is not None
    slope = opt.wand.entropy_slope(x)  # S_bias' = 2β(x − L0), by finite differences within β·h
    torch.testing.assert_close(slope, 2 * 0.5 * (x + 8.0), rtol=0, atol=0.5 * opt.wand.spacing)
    opt.step(losses=losses)
    # c_f = 1: v = a·dt = −dt·S'·g/L, θ ← θ + v·dt: θ₁ = θ₀ − lr²·S'·θ₀/L (g = θ for ½θ²)
    loss64 = 0.5 * sum(s.pow(2).flatten(1).sum(dim=1) for s in start) + 1.0
    for p, s in zip(params, start, strict=True):
        shape = (-1,) + (1,) * (s.dim() - 1)
        want = s - 0.09 * slope.view(shape) * s / loss64.view(shape)
        torch.testing.assert_close(p.detach().double(), want, rtol=1e-6, atol=1e-7)


def test_wand_underdamped_two_steps_by_hand():
    params = make_params(1)
    dt, c_f, beta, l0 = 0.2, 0.5, 0.3, -8.0
    config = cfg(optimizer="wand", lr=dt, weight_decay=0.0, friction=c_f, temperature=0.0,
                 wand_beta=beta, wand_l0=l0, wand_wl_height=0.0)  # fmt: skip
    wand = Wand(params, [config])
    h = wand.spacing
    theta = [p.detach().double().clone() for p in params]
    velocity = [torch.zeros_like(t) for t in theta]
    for _ in range(2):
        loss = 0.5 * sum(t.pow(2).sum() for t in theta) + 1.0
        # S' by finite differences of S_bias = β(x − L0)² between the grid points around x = ln L
        low = -20.0 + h * math.floor((math.log(loss) + 20.0) / h)
        slope = beta * ((low + h - l0) ** 2 - (low - l0) ** 2) / h
        velocity = [v * (1 - c_f) - dt * slope * t / loss for v, t in zip(velocity, theta, strict=True)]
        theta = [t + dt * v for t, v in zip(theta, velocity, strict=True)]
        wand.step(quadratic_grads(params))
    for p, t in zip(params, theta, strict=True):
        torch.testing.assert_close(p.detach().double(), t, rtol=1e-5, atol=1e-7)


def test_wand_wang_landau_deposits_raise_the_entropy_where_the_walker_was():
    params = make_params(1)
    config = cfg(
        optimizer="wand", lr=1e-3, temperature=0.0, wand_beta=0.0, wand_wl_height=1.0, wand_wl_ramp=0
    )
    wand = Wand(params, [config])
    losses = quadratic_grads(params)
    x = losses.double().log()
    wand.step(losses)
    w, h = wand.width, wand.spacing
    # β = 0: S = exp(−(x − x_t)²/2w²) after one deposit: S(x_t) = 1 (up to linear interpolation on the
    # grid, ≤ h²/8w²), S'(x_t ± w) = ∓ e^{−1/2}/w
    assert wand.entropy(x).item() == pytest.approx(1.0, abs=h**2 / (8 * w**2) + 1e-9)
    assert wand.entropy(x + 10 * w).item() == pytest.approx(0.0, abs=1e-9)
    slope = math.exp(-0.5) / w
    assert wand.entropy_slope(x + w).item() == pytest.approx(-slope, rel=2e-3)
    assert wand.entropy_slope(x - w).item() == pytest.approx(slope, rel=2e-3)
    assert wand.entropy_slope(x + 10 * w).item() == pytest.approx(0.0, abs=1e-9)
    assert wand.entropy_slope(torch.tensor([40.0], dtype=torch.float64)).item() == 0.0  # off the grid


def test_wand_deposit_height_ramps_up_then_decays_like_one_over_t():
    wand = Wand(make_params(1), [cfg(optimizer="wand", wand_wl_height=0.5, wand_wl_ramp=100)])
    heights = [wand.f_wl(t).item() for t in (1, 50, 100, 200, 1000)]
    assert heights == pytest.approx([0.005, 0.25, 0.5, 0.25, 0.05])


def test_wand_noise_has_the_underdamped_langevin_scale():
    big = [torch.nn.Parameter(torch.zeros(2, 100_000))]
    configs = [
        cfg(optimizer="wand", lr=0.1, friction=0.5, temperature=0.5, seed=0),
        cfg(optimizer="wand", lr=0.1, friction=0.5, temperature=0.0, seed=1),
    ]
    opt = ReplicaOptimizer(big, configs)
    big[0].grad = torch.zeros_like(big[0])
    opt.step(losses=torch.ones(2))
    # v₀ ~ N(0, T), v₁ = (1 − c_f)·v₀ + sqrt(c_f(2 − c_f)·T)·ξ has variance T again; θ = dt·v₁
    assert big[0].detach()[0].std().item() == pytest.approx(0.1 * math.sqrt(0.5), rel=0.02)
    assert torch.count_nonzero(big[0].detach()[1]) == 0
    with pytest.raises(ValueError, match="losses"):
        opt.step()


# ---- the engine: independence, keep, checkpoints -------------------------------------------------

CASES = [("adamw", "l1"), ("adam", "l2"), ("sgd", "nuclear"), ("wand", "spectral_entropy")]


@pytest.mark.parametrize(("kind", "regularizer"), CASES)
def test_a_replicas_hyperparameters_only_affect_that_replica(kind, regularizer):
    x, y = make_data(2)
    first = everything_on(kind, regularizer, seed=0)
    runs = []
    for other in (
        everything_on(kind, regularizer, seed=1),
        everything_on(kind, regularizer, seed=5, lr=first["lr"] / 3, weight_decay=0.0, temperature=0.0,
                      friction=0.9, reg_strength=0.0, grokfast_lambda=0.0, weight_noise=0.0,
                      norm_constraint=0.0),
    ):  # fmt: skip
        params = make_params(2)
        engine = Engine(params, [first, other])
        for _ in range(5):
            engine.step(x, y)
        runs.append(snapshot(params))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(*runs, strict=True))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(*runs, strict=True))


@pytest.mark.parametrize(("kind", "regularizer"), CASES)
def test_keep_then_continue_equals_continuing_without_the_dropped_replica(kind, regularizer):
    configs = [everything_on(kind, regularizer, seed=s) for s in range(3)]
    x, y = make_data(3)
    reference_params = make_params(3)
    reference = Engine(reference_params, configs)
    for _ in range(6):
        reference.step(x, y)
    params = make_params(3)
    engine = Engine(params, configs)
    for _ in range(3):
        engine.step(x, y)
    keep = torch.tensor([0, 2])
    engine.keep(keep)
    for _ in range(3):
        engine.step(x[keep], y[keep])
    assert all_equal(params, snapshot(reference_params, rows=[0, 2]))


@pytest.mark.parametrize(("kind", "regularizer"), CASES)
def test_state_dict_round_trip_continues_bit_for_bit(kind, regularizer):
    configs = [everything_on(kind, regularizer, seed=s) for s in range(3)]
    x, y = make_data(3)
    keep = torch.tensor([0, 2])
    params = make_params(3)
    engine = Engine(params, configs)
    for _ in range(2):
        engine.step(x, y)
    engine.keep(keep)
    x, y = x[keep], y[keep]
    engine.step(x, y)
    buffer = io.BytesIO()
    torch.save({"params": snapshot(params), "parts": [part.state_dict() for part in engine.parts]}, buffer)
    for _ in range(3):
        engine.step(x, y)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    fresh_params = make_params(3)  # a fresh run of the same configs, shrunk to the saved rows
    fresh = Engine(fresh_params, configs)
    with torch.no_grad():
        for p, value in zip(fresh_params, saved["params"], strict=True):
            p.data = value.clone()
    for part, state in zip(fresh.parts, saved["parts"], strict=True):
        part.load_state_dict(state, fresh_params)
    for _ in range(3):
        fresh.step(x, y)
    assert all_equal(fresh_params, params)
    for a, b in zip(fresh.parts, engine.parts, strict=True):
        assert repr(a.state_dict().keys()) == repr(b.state_dict().keys())


def test_replicas_must_share_the_optimizer_and_wand_checkpoints_do_not_load_into_adamw():
    params = make_params(2)
    with pytest.raises(ValueError, match="optimizer"):
        ReplicaOptimizer(params, [cfg(optimizer="adamw"), cfg(optimizer="wand")])
    wand_state = ReplicaOptimizer(params, [cfg(optimizer="wand")] * 2).state_dict()
    with pytest.raises(ValueError, match="checkpoint"):
        ReplicaOptimizer(params, [cfg()] * 2).load_state_dict(wand_state)
