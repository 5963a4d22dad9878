"""ReplicaMLP's first layer as a table gather (T[a] + T[p + b]) against the obvious network."""

import pytest
import torch

from grokray.models.mlp import MLP
from grokray.models.replicas import PairGather, ReplicaMLP, pair_gather_grad

P = 7


def networks(encoding: str, depth: int, bias: bool, activation: str = "relu") -> list[MLP]:
    models = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        models.append(
            MLP(p=P, width=5, depth=depth, embed_dim=3, bias=bias, encoding=encoding, activation=activation)
        )
    return models


@pytest.mark.parametrize("encoding", ["onehot", "embed"])
@pytest.mark.parametrize(
    ("depth", "bias", "activation"), [(1, True, "relu"), (1, False, "quadratic"), (2, True, "gelu")]
)
def test_each_replica_computes_its_own_network_with_the_same_gradients(encoding, depth, bias, activation):
    models = networks(encoding, depth, bias, activation)
    batched = ReplicaMLP(models)
    # each replica its own rows (a different subset of the pairs, as replicas' splits are)
    g = torch.Generator().manual_seed(0)
    pairs = torch.randint(0, P, (3, 11, 2), generator=g)
    out = batched(pairs)
    assert out.shape == (3, 11, P)
    weights = torch.randn(3, 11, P, generator=g)
    (out * weights).sum().backward()
    for r, model in enumerate(models):
        alone = model(pairs[r])
        torch.testing.assert_close(out[r], alone, rtol=1e-5, atol=1e-6)
        (alone * weights[r]).sum().backward()
        for name, parameter in model.named_parameters():
            stacked = getattr(batched, name.replace(".", "_"))
            torch.testing.assert_close(stacked.grad[r], parameter.grad, rtol=1e-5, atol=1e-6)


def test_a_replica_computes_the_same_numbers_in_any_batch():
    """The arithmetic of one replica does not depend on the others (how ``grokray trial``
    reproduces a replica of a pack)."""
    models = networks("onehot", 1, True)
    pairs = torch.randint(0, P, (3, 9, 2), generator=torch.Generator().manual_seed(1))
    together = ReplicaMLP(models)(pairs)
    alone = ReplicaMLP(models[2:])(pairs[2:])
    assert torch.equal(together[2], alone[0])


def test_the_gather_gradient_by_hand_and_both_of_its_paths():
    # 2 replicas, tables of 3 rows; flat rows of replica 1 are 3, 4, 5
    # output rows: replica 0 gathers (0, 2), (1, 2), (0, 0); replica 1 (5, 5), (4, 3), (3, 4)
    first, second = torch.tensor([0, 1, 0, 5, 4, 3]), torch.tensor([2, 2, 0, 5, 3, 4])
    grad = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    shape = torch.Size([2, 3, 2])
    expected_first = torch.tensor(
        [[[5.0, 50.0], [2.0, 20.0], [0.0, 0.0]], [[5.0, 6.0], [3.0, 4.0], [1.0, 2.0]]]
    )
    expected_second = torch.tensor(
        [[[4.0, 40.0], [0.0, 0.0], [3.0, 30.0]], [[3.0, 4.0], [5.0, 6.0], [1.0, 2.0]]]
    )
    for dense in (False, True):
        assert torch.equal(pair_gather_grad(grad, first, shape, dense=dense), expected_first)
        assert torch.equal(pair_gather_grad(grad, second, shape, dense=dense), expected_second)
    tables = (
        torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda a, b: PairGather.apply(a, b, first, second), tables)
    flat_a, flat_b = (t.reshape(6, 2) for t in tables)
    assert torch.equal(PairGather.apply(*tables, first, second), flat_a[first] + flat_b[second])
