import pytest
import torch

from grokray.tasks.modular import all_pairs, make_modular, n_train_for


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("+", lambda a, b, p: (a + b) % p),
        ("-", lambda a, b, p: (a - b) % p),
        ("*", lambda a, b, p: (a * b) % p),
    ],
)
def test_ops_match_hand_computed(op, expected):
    p = 7
    inputs, labels = all_pairs(p, op)
    assert len(labels) == p * p
    for (a, b), y in zip(inputs.tolist(), labels.tolist(), strict=True):
        assert y == expected(a, b, p)


def test_division_is_inverse_of_multiplication():
    p = 11
    inputs, labels = all_pairs(p, "/")
    assert len(labels) == p * (p - 1)  # b != 0
    assert (inputs[:, 1] != 0).all()
    for (a, b), c in zip(inputs.tolist(), labels.tolist(), strict=True):
        assert (c * b) % p == a
    # hand-computed: 3 / 4 mod 11 = 3 * 3 = 9 since 4 * 3 = 12 = 1 mod 11
    index = next(i for i, (a, b) in enumerate(inputs.tolist()) if (a, b) == (3, 4))
    assert labels[index] == 9


def test_split_is_a_partition_and_deterministic():
    data = make_modular(13, "+", 0.3, 0, seed=5)
    again = make_modular(13, "+", 0.3, 0, seed=5)
    other = make_modular(13, "+", 0.3, 0, seed=6)
    assert data.n_train == round(0.3 * 169) and data.n_total == 169
    pairs = {tuple(x) for x in torch.cat([data.train_inputs, data.val_inputs]).tolist()}
    assert len(pairs) == 169
    train = {tuple(x) for x in data.train_inputs.tolist()}
    assert not train & {tuple(x) for x in data.val_inputs.tolist()}
    assert torch.equal(data.train_inputs, again.train_inputs)
    assert not torch.equal(data.train_inputs, other.train_inputs)
    # labels travel with their inputs
    assert torch.equal(data.train_labels, (data.train_inputs[:, 0] + data.train_inputs[:, 1]) % 13)


def test_train_size_and_fraction_bounds():
    assert n_train_for(100, 0.5, 0) == 50
    assert n_train_for(100, 0.5, 30) == 30  # train_size wins
    assert n_train_for(100, 1.0, 0) == 99  # at least one held out
    assert n_train_for(100, 0.001, 0) == 1
