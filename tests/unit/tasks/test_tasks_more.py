"""Pools, splits and label corruption of every task, against hand-computed values."""

import pytest
import torch

from grokray.config import default_config
from grokray.models import build_model
from grokray.tasks import DATA_SEED, corrupt, make_pool, split
from grokray.tasks.modular import BINARY_OPS, all_pairs, split_indices
from grokray.tasks.pool import CORRUPTION_SEED_OFFSET
from grokray.tasks.text import TEST_FRACTION, build_vocabulary, encode, words


def config(**overrides):
    c = default_config()
    c.update(overrides)
    return c


# -- modular -------------------------------------------------------------------------------------

HAND = {
    "+": lambda a, b, p: (a + b) % p,
    "-": lambda a, b, p: (a - b) % p,
    "*": lambda a, b, p: (a * b) % p,
    "/": lambda a, b, p: next(c for c in range(p) if (c * b) % p == a),
    "x^2+y^2": lambda a, b, p: (a**2 + b**2) % p,
    "x^2+xy+y^2": lambda a, b, p: (a**2 + a * b + b**2) % p,
    "x^3+xy^2+y": lambda a, b, p: (a**3 + a * b**2 + b) % p,
}


def test_every_op_of_the_contract_is_built():
    assert set(BINARY_OPS) == set(HAND)


@pytest.mark.parametrize("op", list(HAND))
def test_op_labels_match_hand_computed(op):
    p = 7
    inputs, labels = all_pairs(p, op)
    assert len(labels) == (p * (p - 1) if op == "/" else p * p)
    for (a, b), y in zip(inputs.tolist(), labels.tolist(), strict=True):
        assert y == HAND[op](a, b, p), (a, b)


def test_new_ops_on_a_few_pairs_by_hand():
    def label(op, a, b, p):
        inputs, labels = all_pairs(p, op)
        return int(labels[inputs.tolist().index([a, b])])

    assert label("x^2+y^2", 3, 5, 7) == 6  # 9 + 25 = 34 = 4·7 + 6
    assert label("x^2+xy+y^2", 3, 5, 7) == 0  # 9 + 15 + 25 = 49
    assert label("x^3+xy^2+y", 2, 3, 7) == 1  # 8 + 18 + 3 = 29 = 4·7 + 1
    # large p: the reduction order inside the op must not change the value (996 ≡ −1, 995 ≡ −2)
    big = BINARY_OPS["x^3+xy^2+y"](torch.tensor([996]), torch.tensor([995]), 997)
    assert int(big) == ((-1) ** 3 + (-1) * 4 + 995) % 997


@pytest.mark.parametrize(
    ("fraction", "train_size", "seed"), [(0.3, 0, 0), (0.5, 0, 7), (0.3, 20, 3), (1.0, 0, 1)]
)
def test_modular_split_equals_split_indices(fraction, train_size, seed):
    c = config(task="modular", p=11, op="/", train_fraction=fraction, train_size=train_size, seed=seed)
    pool = make_pool(c)
    assert pool.n_outputs == 11 and pool.vocab_size == 11 and not pool.regression
    inputs, labels = all_pairs(11, "/")
    assert torch.equal(pool.inputs, inputs) and torch.equal(pool.targets, labels)
    train_idx, val_idx = split(pool, c)
    expected_train, expected_val = split_indices(len(labels), fraction, train_size, seed)
    assert torch.equal(train_idx, expected_train) and torch.equal(val_idx, expected_val)


# -- corruption ------------------------------------------------------------------------------------


def test_corruption_relabels_exactly_the_first_share_of_training_examples():
    c = config(task="modular", p=13, train_fraction=0.5, seed=4, corruption=0.3)
    pool = make_pool(c)
    train_idx, val_idx = split(pool, c)
    targets, corrupted = corrupt(pool, train_idx, c)
    k = round(0.3 * len(train_idx))  # 0.3 · 84 = 25.2 → 25
    assert k == 25
    generator = torch.Generator().manual_seed(4 + CORRUPTION_SEED_OFFSET)
    drawn = torch.randint(0, 13, (k,), generator=generator)
    assert torch.equal(targets[train_idx[:k]], drawn)
    assert torch.equal(targets[train_idx[k:]], pool.targets[train_idx[k:]])
    assert torch.equal(targets[val_idx], pool.targets[val_idx])
    assert corrupted.tolist() == [True] * k + [False] * (len(train_idx) - k)
    assert not torch.equal(targets, pool.targets)  # 25 uniform draws all equal to the truth: ~1e-28
    assert torch.equal(pool.targets, make_pool(c).targets)  # the pool itself is untouched


def test_no_corruption_returns_the_pool_targets_and_regression_refuses():
    c = config(task="modular", p=7, seed=0)
    pool = make_pool(c)
    train_idx, _ = split(pool, c)
    targets, corrupted = corrupt(pool, train_idx, c)
    assert targets is pool.targets and not corrupted.any() and len(corrupted) == len(train_idx)
    sparse = config(task="sparse_recovery", dim=10, sparsity=2, train_size=5, test_size=5, corruption=0.2)
    sparse_pool = make_pool(sparse)
    with pytest.raises(ValueError, match="corruption"):
        corrupt(sparse_pool, split(sparse_pool, sparse)[0], sparse)


# -- sparse recovery -------------------------------------------------------------------------------


def test_sparse_recovery_pool():
    c = config(task="sparse_recovery", dim=100, sparsity=5, train_size=30, test_size=200, seed=3)
    pool = make_pool(c)
    assert pool.regression and pool.n_outputs == 1 and pool.input_dim == 100
    assert pool.inputs.shape == (230, 100) and pool.inputs.dtype == torch.float32
    assert torch.count_nonzero(pool.truth) == 5 and pool.truth.shape == (100,)
    assert torch.allclose(pool.targets, pool.inputs @ pool.truth)
    assert float(pool.truth.norm()) == pytest.approx(1.0) and pool.tolerance == pytest.approx(0.05)
    train_idx, val_idx = split(pool, c)
    assert sorted(train_idx.tolist()) == list(range(30))  # every candidate measurement is trained on
    assert val_idx.tolist() == list(range(30, 230))  # the fresh test measurements
    # the instance comes from DATA_SEED, not from seed or from the other sizes
    other = make_pool(
        config(task="sparse_recovery", dim=100, sparsity=5, train_size=40, test_size=50, seed=9)
    )
    assert torch.equal(other.truth, pool.truth)
    assert torch.equal(other.inputs[:30], pool.inputs[:30])  # more measurements extend the fewer
    assert torch.equal(other.inputs[40:], pool.inputs[30:80])  # test measurements are their own stream
    assert DATA_SEED == 20250101


def test_sparse_recovery_with_a_fraction_of_dim_candidates():
    c = config(task="sparse_recovery", dim=50, sparsity=3, train_size=0, train_fraction=0.4, test_size=10)
    pool = make_pool(c)
    train_idx, val_idx = split(pool, c)
    assert len(pool) == 60 and len(train_idx) == 20 and len(val_idx) == 40
    assert set(train_idx.tolist()) < set(range(50)) and set(range(50, 60)) <= set(val_idx.tolist())
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(60))


def test_linear_model_outputs_on_the_probe_are_its_weights():
    c = config(task="sparse_recovery", model="linear", depth=1, dim=20, sparsity=3, train_size=8, test_size=4)
    pool = make_pool(c)
    torch.manual_seed(0)
    model = build_model(c, pool)
    recovered = model(pool.probe).reshape(pool.truth.shape)
    assert torch.allclose(recovered, model.layers[0].weight[0])
    deep = build_model({**c, "depth": 3, "width": 7}, pool)
    assert torch.allclose(deep(pool.probe).reshape(pool.truth.shape), deep.end_to_end()[0], atol=1e-6)


# -- matrix completion -----------------------------------------------------------------------------


def test_matrix_completion_pool():
    c = config(task="matrix_completion", matrix_size=10, rank=2, train_size=80, seed=1)
    pool = make_pool(c)
    assert pool.truth.shape == (10, 10) and int(torch.linalg.matrix_rank(pool.truth)) == 2
    assert pool.inputs.shape == (100, 2) and pool.inputs.dtype == torch.long
    assert pool.inputs[13].tolist() == [1, 3]  # row-major
    for (i, j), y in zip(pool.inputs.tolist(), pool.targets.tolist(), strict=True):
        assert y == pytest.approx(float(pool.truth[i, j]))
    assert torch.equal(pool.probe, pool.inputs)
    train_idx, val_idx = split(pool, c)
    assert len(train_idx) == 80 and len(val_idx) == 20
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(100))
    assert torch.equal(make_pool(config(task="matrix_completion", seed=5)).truth, pool.truth)
    for model, depth in (("linear", 1), ("linear", 3)):
        torch.manual_seed(0)
        net = build_model({**c, "model": model, "depth": depth, "width": 6}, pool)
        assert torch.allclose(net(pool.probe).reshape(pool.truth.shape), net.end_to_end(), atol=1e-6)


# -- digits ----------------------------------------------------------------------------------------


def test_digits_pool():
    c = config(task="digits", train_size=500, seed=2)
    pool = make_pool(c)
    assert pool.inputs.shape == (1797, 64) and pool.inputs.dtype == torch.float32
    assert pool.inputs.min() == 0 and pool.inputs.max() == 1
    assert pool.n_outputs == 10 and set(pool.targets.tolist()) == set(range(10)) and pool.input_dim == 64
    train_idx, val_idx = split(pool, c)
    assert len(train_idx) == 500 and len(val_idx) == 1297


# -- text ------------------------------------------------------------------------------------------


def write_csv(tmp_path, body):
    path = tmp_path / "reviews.csv"
    path.write_text(body)
    return str(path)


def test_text_tokenizer_on_a_three_line_csv_by_hand(tmp_path):
    path = write_csv(
        tmp_path,
        'text,label,split\n"Good movie, GOOD!",pos,train\nBad movie,neg,train\ngood plot,pos,train\n'
        "plot twist,neg,test\n",
    )
    pool = make_pool(config(task="text", data_path=path, vocab_size=3, max_len=4))
    # train rows' counts: good 3, movie 2, bad 1, plot 1 → good 3, movie 4, bad 5 (alphabetical tie)
    assert pool.inputs.tolist() == [[2, 3, 4, 3], [2, 5, 4, 0], [2, 3, 1, 0], [2, 1, 1, 0]]
    assert pool.candidates.tolist() == [0, 1, 2]
    assert pool.targets.tolist() == [1, 0, 1, 0]  # sorted labels: neg 0, pos 1
    assert pool.n_outputs == 2 and pool.vocab_size == 6 and pool.seq_len == 4
    assert words("Don't STOP, it's fine_ok") == ["don't", "stop", "it's", "fine_ok"]
    vocabulary = build_vocabulary(["b a", "a c b"], 10)
    assert vocabulary == {"a": 3, "b": 4, "c": 5}
    assert encode(["c a z"], vocabulary, 6).tolist() == [[2, 5, 3, 1, 0, 0]]


def test_text_vocabulary_comes_from_the_rows_that_can_be_training_rows(tmp_path):
    # "zebra" is the most frequent word of the file but appears only in the held-out test rows
    body = "text,label,split\n" + "good fun,1,train\nbad dull,0,train\n" * 3 + "zebra zebra good,1,test\n" * 4
    pool = make_pool(config(task="text", data_path=write_csv(tmp_path, body), vocab_size=100, max_len=4))
    assert pool.vocab_size == 3 + 4  # bad, dull, fun, good: no zebra
    assert pool.inputs[-1].tolist() == [2, 1, 1, 6]  # zebra → unknown (1); good → 6
    assert pool.candidates.tolist() == list(range(6))
    for seed in range(3):  # every seed trains inside the candidates and validates on the test rows
        train_idx, val_idx = split(pool, config(task="text", seed=seed, train_size=4))
        assert set(train_idx.tolist()) <= set(range(6)) and set(range(6, 10)) <= set(val_idx.tolist())
    with pytest.raises(ValueError, match=r"data_path: .*split column with no 'test' rows"):
        make_pool(config(task="text", data_path=write_csv(tmp_path, "text,label,split\na,0,train\nb,1,x\n")))


def test_text_without_split_column_holds_out_a_fixed_test_part():
    pool = make_pool(config(task="text", data_path="data/text_sample.csv", max_len=32))
    n_test = round(TEST_FRACTION * 300)
    assert len(pool.candidates) == 300 - n_test and pool.candidates.unique().numel() == 300 - n_test
    again = make_pool(config(task="text", data_path="data/text_sample.csv", max_len=32, seed=7))
    assert torch.equal(pool.candidates, again.candidates)  # the same test part for every seed
    known = set(pool.inputs[pool.candidates].flatten().tolist())
    assert pool.vocab_size == len(known | {0, 1, 2})  # the candidates' words + pad, unknown, cls


def test_text_errors_name_data_path(tmp_path):
    with pytest.raises(ValueError, match=r"data_path: .*lacks column.*label"):
        make_pool(config(task="text", data_path=write_csv(tmp_path, "text,stars\ngood,5\nbad,1\n")))
    with pytest.raises(ValueError, match="data_path: no such file"):
        make_pool(config(task="text", data_path=str(tmp_path / "missing.parquet")))
    with pytest.raises(ValueError, match="data_path: is empty"):
        make_pool(config(task="text", data_path=""))


def test_shipped_text_sample_csv_and_parquet_agree():
    csv = make_pool(config(task="text", data_path="data/text_sample.csv", max_len=32))
    parquet = make_pool(config(task="text", data_path="data/text_sample.parquet", max_len=32))
    assert torch.equal(csv.inputs, parquet.inputs) and torch.equal(csv.targets, parquet.targets)
    assert len(csv) == 300 and int(csv.targets.sum()) == 150
    assert (csv.inputs[:, 0] == 2).all() and (csv.inputs != 1).all()  # cls first; every word known
    assert (csv.inputs[:, -1] == 0).all()  # nothing truncated at 32 tokens


def test_pool_to_moves_every_tensor():
    pool = make_pool(config(task="matrix_completion"))
    moved = pool.to("cpu")
    assert moved.probe is not None and moved.truth is not None and moved.tolerance == pool.tolerance
