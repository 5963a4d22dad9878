"""The diagonal network (Notsawo et al.'s depth for sparse recovery): forward and gradient against
hand-computed values, init, the replica engine, the regularizers, and what depth does to recovery."""

from __future__ import annotations

import itertools

import pytest
import torch

from grokray.config import default_config
from grokray.engine import train_replicas
from grokray.models import Diagonal, build_model
from grokray.models.replicas import VmapReplicas
from grokray.optim.regularizers import Regularizer
from grokray.tasks import make_pool


def set_factors(model: Diagonal, **branches: list[list[float]]) -> None:
    with torch.no_grad():
        for branch, rows in branches.items():
            for parameter, values in zip(getattr(model, branch), rows, strict=True):
                parameter.copy_(torch.tensor([values]))


def depth_two() -> Diagonal:
    """w = [1, 2, .5]⊙[3, 1, 2] − [1, 1, 1]⊙[.5, 4, 1] = [2.5, −2, 0]."""
    model = Diagonal(3, 2)
    set_factors(model, positive=[[1, 2, 0.5], [3, 1, 2]], negative=[[1, 1, 1], [0.5, 4, 1]])
    return model


X = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]])


def test_forward_depth_one_is_the_plain_linear_model():
    model = Diagonal(3, 1)
    set_factors(model, factors=[[1, -2, 3]])
    assert [name for name, _ in model.named_parameters()] == ["factors.0"]
    torch.testing.assert_close(model(X), torch.tensor([[2.0], [-1.0]]))


def test_forward_depth_two_and_three_by_hand():
    torch.testing.assert_close(depth_two().end_to_end(), torch.tensor([[2.5, -2.0, 0.0]]))
    torch.testing.assert_close(depth_two()(X), torch.tensor([[0.5], [5.0]]))
    model = Diagonal(3, 3)  # [1,2,1]⊙[2,1,1]⊙[1,1,-1] − [1,1,1]⊙[1,1,1]⊙[3,0,1] = [-1, 2, -2]
    set_factors(
        model, positive=[[1, 2, 1], [2, 1, 1], [1, 1, -1]], negative=[[1, 1, 1], [1, 1, 1], [3, 0, 1]]
    )
    torch.testing.assert_close(model(X), torch.tensor([[-1.0], [0.0]]))


def test_gradient_of_depth_two_at_a_known_point():
    # loss (f(x) − y)² at x = [2, 0, −1], y = 1: f = 5, ∂L/∂w = 2·4·x = [16, 0, −8];
    # ∂L/∂u₊⁽¹⁾ = ∂L/∂w ⊙ u₊⁽²⁾, ∂L/∂u₋⁽¹⁾ = −∂L/∂w ⊙ u₋⁽²⁾, and likewise for the second factors
    model = depth_two()
    (model(X[1:]) - 1.0).pow(2).sum().backward()
    grads = {name: p.grad.flatten().tolist() for name, p in model.named_parameters()}
    assert grads == {
        "positive.0": [48.0, 0.0, -16.0],
        "positive.1": [16.0, 0.0, -4.0],
        "negative.0": [-8.0, 0.0, 8.0],
        "negative.1": [-16.0, 0.0, 8.0],
    }


def sparse_config(**overrides):
    c = default_config()
    c.update(
        task="sparse_recovery", model="diagonal", dim=16, sparsity=3, train_size=10, test_size=50,
        loss="mse", optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=0.1, device="cpu",
        measures="none",
    )  # fmt: skip
    c.update(overrides)
    return c


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_init_is_ones_times_init_scale_and_w_starts_at_zero_from_depth_two(depth):
    model = build_model(sparse_config(depth=depth, init_scale=1e-3))
    params = dict(model.named_parameters())
    assert len(params) == (1 if depth == 1 else 2 * depth)
    for name, p in params.items():
        assert p.shape == (1, 16), name  # 2-D: each factor is a weight matrix to the regularizers
        assert torch.equal(p, torch.full((1, 16), 1e-3)), name
    expected = torch.full((1, 16), 1e-3) if depth == 1 else torch.zeros(1, 16)
    assert torch.equal(model.end_to_end(), expected)


def test_fits_sparse_recovery_only():
    with pytest.raises(ValueError, match="diagonal: sparse_recovery"):
        build_model(default_config() | {"model": "diagonal", "task": "matrix_completion", "device": "cpu"})


@pytest.mark.parametrize("loop", [True, False])
def test_replica_engine_equals_one_by_one(loop):
    c = sparse_config(depth=2)
    pool = make_pool(c)
    models = [build_model(c, pool) for _ in range(3)]
    for r, model in enumerate(models):  # distinct replicas: w = 1 − (0.5 + 0.1·r)²
        with torch.no_grad():
            for p in model.negative:
                p.mul_(0.5 + 0.1 * r)
    stacked = VmapReplicas(models, loop=loop)
    assert stacked.names == ["positive_0", "positive_1", "negative_0", "negative_1"]
    expected = torch.stack([m(pool.inputs) for m in models])
    torch.testing.assert_close(stacked(pool.inputs, shared=True), expected)
    stacked(pool.inputs, shared=True).sum().backward()
    assert all(getattr(stacked, n).grad is not None for n in stacked.names)


def test_l1_penalizes_every_factor():
    # depth 2 on 16 features at α = 0.5: four factors of sixteen entries 0.5 → Σ‖u‖₁ = 32; β = 0.1
    c = sparse_config(depth=2, init_scale=0.5, regularizer="l1", reg_strength=0.1)
    stacked = VmapReplicas([build_model(c)])
    penalty = Regularizer(list(stacked.parameters()), [c])()
    torch.testing.assert_close(penalty, torch.tensor([3.2]))


def recovery(depth: int, init_scale: float, steps: int) -> float:
    c = sparse_config(depth=depth, init_scale=init_scale, steps=steps, eval_every=steps)
    (outcome,) = train_replicas([c], stop_on_grok=False, batched=True)
    return outcome["history"][-1]["recovery_error"]


def test_depth_recovers_the_signed_sparse_signal_and_depth_one_does_not():
    # w* (16 features, 3 non-zeros, one negative: -0.05) from 10 measurements: gradient descent on
    # w from ~0 ends at the minimum-norm interpolator; the diagonal network at small init finds w*
    assert (make_pool(sparse_config()).truth < 0).any()
    assert recovery(depth=1, init_scale=1e-4, steps=1500) > 0.3
    assert recovery(depth=2, init_scale=1e-4, steps=1500) < 1e-2


def first_held(records: list[dict], name: str, threshold: float) -> int:
    """The first step of two consecutive evaluations with ``name`` ≤ threshold (patience 2)."""
    return next(
        a["step"] for a, b in itertools.pairwise(records) if a[name] <= threshold and b[name] <= threshold
    )


def test_the_engine_onset_reads_the_named_curves():
    c = sparse_config(
        depth=2, init_scale=1e-4, steps=1500, eval_every=50, grok_metric="recovery_error",
        grok_threshold=1e-2, memorize_metric="train_loss", memorize_threshold=1e-4,
    )  # fmt: skip
    (outcome,) = train_replicas([c], stop_on_grok=True, batched=True)
    history = outcome["history"]
    assert outcome["grokking_step"] == first_held(history, "recovery_error", 1e-2)
    assert outcome["memorization_step"] == first_held(history, "train_loss", 1e-4)
    assert outcome["stop_reason"] == "grokked"
    assert history[-1]["step"] == outcome["grokking_step"] + 50  # stopped once confirmed
    assert 0 < outcome["memorization_step"] < outcome["grokking_step"]
