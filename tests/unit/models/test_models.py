"""Every model: output shape, init_scale, vmap over stacked replicas, and the masks of attention."""

import copy

import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from grokray.config import default_config
from grokray.models import MLP, Encoder, Transformer, build_model
from grokray.tasks import make_pool

SMALL = {"width": 16, "depth": 2, "heads": 2, "embed_dim": 4, "p": 7, "device": "cpu"}

# (name, config overrides): every model on every task it fits
CASES = {
    "mlp-modular": {"task": "modular", "model": "mlp"},
    "mlp-onehot-quadratic": {
        "task": "modular",
        "model": "mlp",
        "encoding": "onehot",
        "activation": "quadratic",
    },
    "mlp-digits": {"task": "digits", "model": "mlp", "activation": "gelu"},
    "mlp-sparse": {"task": "sparse_recovery", "model": "mlp", "dim": 12, "sparsity": 2, "train_size": 6},
    "mlp-matrix": {"task": "matrix_completion", "model": "mlp", "matrix_size": 5},
    "transformer-modular": {"task": "modular", "model": "transformer"},
    "transformer-1-layer": {"task": "modular", "model": "transformer", "depth": 1, "bias": False},
    "transformer-matrix": {"task": "matrix_completion", "model": "transformer", "matrix_size": 5},
    "linear-sparse": {
        "task": "sparse_recovery",
        "model": "linear",
        "dim": 12,
        "sparsity": 2,
        "train_size": 6,
    },
    "linear-matrix": {"task": "matrix_completion", "model": "linear", "matrix_size": 5, "depth": 3},
    "linear-digits": {"task": "digits", "model": "linear", "depth": 1},
    "encoder-text": {"task": "text", "model": "encoder", "data_path": "data/text_sample.csv", "max_len": 12},
    "encoder-modular": {"task": "modular", "model": "encoder", "depth": 1},
}
_POOLS: dict[str, object] = {}


def setup(case, **overrides):
    c = default_config()
    c.update(SMALL, test_size=5, **CASES[case])
    c.update(overrides)
    key = repr(sorted((k, v) for k, v in c.items() if k not in ("init_scale", "seed")))
    if key not in _POOLS:
        _POOLS[key] = make_pool(c)
    return c, _POOLS[key]


def inputs_of(pool, n=9):
    return pool.inputs[torch.linspace(0, len(pool) - 1, n).long()]


@pytest.mark.parametrize("case", list(CASES))
def test_output_shape(case):
    c, pool = setup(case)
    torch.manual_seed(0)
    out = build_model(c, pool)(inputs_of(pool))
    assert out.shape == (9, pool.n_outputs) and torch.isfinite(out).all()


@pytest.mark.parametrize("case", list(CASES))
def test_init_scale_multiplies_every_parameter(case):
    c, pool = setup(case)
    torch.manual_seed(1)
    base = build_model(c, pool)
    torch.manual_seed(1)
    scaled = build_model({**c, "init_scale": 10.0}, pool)
    pairs = list(zip(base.named_parameters(), scaled.named_parameters(), strict=True))
    assert pairs
    for (name, a), (_, b) in pairs:
        assert a.dim() in (1, 2), name  # stackable and shaped for per-matrix norms
        assert torch.equal(b, 10.0 * a), name


def test_init_scale_reaches_embeddings_norm_gains_and_biases():
    c, pool = setup("encoder-text")
    torch.manual_seed(0)
    model = build_model({**c, "init_scale": 3.0}, pool)
    names = dict(model.named_parameters())
    assert torch.equal(names["embed_norm.weight"], torch.full((16,), 3.0))
    assert "token_embed.weight" in names and "layers.0.norm_ffn.bias" in names
    no_bias = build_model({**c, "bias": False}, pool)
    assert not any(name.endswith("bias") for name, _ in no_bias.named_parameters())


def stacked_call(models, x, in_dims):
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def call(p, b, inputs):
        return functional_call(base, (p, b), (inputs,))

    return vmap(call, in_dims=(0, 0, in_dims))(params, buffers, x)


@pytest.mark.parametrize("case", list(CASES))
def test_vmap_over_stacked_replicas_equals_one_by_one(case):
    c, pool = setup(case)
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model({**c, "seed": seed, "init_scale": 2.0}, pool))
    shared = inputs_of(pool)
    expected = torch.stack([m(shared) for m in models])
    torch.testing.assert_close(stacked_call(models, shared, None), expected, atol=1e-5, rtol=1e-5)
    # every replica its own batch (minibatches per seed)
    own = torch.stack(
        [inputs_of(pool)[torch.randperm(9, generator=torch.Generator().manual_seed(r))] for r in range(3)]
    )
    expected = torch.stack([m(x) for m, x in zip(models, own, strict=True)])
    torch.testing.assert_close(stacked_call(models, own, 0), expected, atol=1e-5, rtol=1e-5)
    # gradients flow through the stacked call (what the trainer differentiates)
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    out = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), in_dims=(0, 0, None))(
        params, buffers, shared
    )
    out.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in params.values())


def test_transformer_attention_is_causal():
    c, pool = setup("transformer-modular")
    torch.manual_seed(0)
    model = build_model(c, pool)
    assert isinstance(model, Transformer)
    tokens = torch.tensor([[3, 4], [3, 5]])  # same a, different b
    hidden = model.hidden_states(tokens)  # positions a, b, "="
    assert hidden.shape == (2, 3, 16)
    torch.testing.assert_close(hidden[0, 0], hidden[1, 0], atol=0, rtol=0)  # a cannot see b
    assert not torch.allclose(hidden[0, 1], hidden[1, 1]) and not torch.allclose(hidden[0, 2], hidden[1, 2])
    other_a = model.hidden_states(torch.tensor([[2, 4]]))
    assert not torch.allclose(other_a[0, 1], hidden[0, 1])  # b sees a


def demoss_transformer(**overrides) -> Transformer:
    """DeMoss et al.'s network at toy size: post-LayerNorm, GELU, no causal mask."""
    kwargs = {"layer_norm": "post", "causal": False, "activation": "gelu", **overrides}
    torch.manual_seed(0)
    return Transformer(vocab_size=7, seq_len=2, n_outputs=7, width=16, depth=1, heads=2, **kwargs)


def test_post_layer_norm_transformer_is_demoss_decoder_layer_by_hand():
    model = demoss_transformer()
    block = model.blocks[0]
    assert isinstance(block.mlp[1], torch.nn.GELU) and isinstance(model.norm, torch.nn.Identity)
    tokens = torch.tensor([[3, 4], [1, 6]])
    x = model.token_embed(torch.cat([tokens, torch.full((2, 1), 7)], dim=1)) + model.position_embed.weight[:3]
    layer_norm = torch.nn.functional.layer_norm
    attention, mlp = block.norm_attention, block.norm_mlp
    x = layer_norm(x + block.attention(x), (16,), attention.weight, attention.bias)
    x = layer_norm(x + block.mlp[2](torch.nn.functional.gelu(block.mlp[0](x))), (16,), mlp.weight, mlp.bias)
    torch.testing.assert_close(model.hidden_states(tokens), x)
    torch.testing.assert_close(model(tokens), model.unembed(x[:, -1]))
    hidden = model.hidden_states(tokens)  # at init (gain 1, bias 0) every position is normalized
    torch.testing.assert_close(hidden.mean(dim=-1), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden.var(dim=-1, unbiased=False), torch.ones(2, 3), atol=1e-3, rtol=0)


def test_transformer_without_causal_mask_lets_a_see_b():
    tokens = torch.tensor([[3, 4], [3, 5]])  # same a, different b
    open_a = demoss_transformer().hidden_states(tokens)[:, 0]
    assert not torch.allclose(open_a[0], open_a[1])
    masked_a = demoss_transformer(causal=True).hidden_states(tokens)[:, 0]
    torch.testing.assert_close(masked_a[0], masked_a[1], atol=0, rtol=0)


@pytest.mark.parametrize("loop", [False, True])
def test_post_layer_norm_transformer_runs_as_stacked_replicas(loop):
    from grokray.models.replicas import VmapReplicas

    models = [demoss_transformer(), demoss_transformer(layer_norm="post")]
    with torch.no_grad():
        models[1].unembed.weight.mul_(2.0)
    tokens = torch.tensor([[3, 4], [1, 6], [0, 0]])
    out = VmapReplicas(models, loop=loop)(tokens, shared=True)
    for r, model in enumerate(models):
        torch.testing.assert_close(out[r], model(tokens))


def test_transformer_layer_norm_placements():
    pre, none = demoss_transformer(layer_norm="pre"), demoss_transformer(layer_norm="none", activation="relu")
    assert isinstance(pre.norm, torch.nn.LayerNorm)
    assert isinstance(pre.blocks[0].norm_attention, torch.nn.LayerNorm)
    assert isinstance(none.norm, torch.nn.Identity) and isinstance(none.blocks[0].mlp[1], torch.nn.ReLU)
    assert not any("norm" in name for name, _ in none.named_parameters())
    with pytest.raises(ValueError, match="layer_norm: got 'middle'; allowed: none, pre, post"):
        demoss_transformer(layer_norm="middle")
    with pytest.raises(ValueError, match="activation: got 'tanh'"):
        demoss_transformer(activation="tanh")


def test_encoder_ignores_padded_positions():
    c, pool = setup("encoder-text")
    torch.manual_seed(0)
    model = build_model(c, pool)
    assert isinstance(model, Encoder)
    tokens = pool.inputs[:4]
    padded = tokens == 0
    assert padded.any(dim=1).all()
    before = model(tokens)
    with torch.no_grad():  # change what a pad position would contribute if it were attended to
        positions = padded.all(dim=0).nonzero()[:, 0]  # padded in every row
        assert len(positions) >= 3
        model.position_embed.weight[positions] += torch.randn(len(positions), 16)  # not a constant: LN
    torch.testing.assert_close(model(tokens), before, atol=1e-6, rtol=1e-6)
    with torch.no_grad():
        model.position_embed.weight[1] += torch.randn(16)  # a real token position does matter
    assert (model(tokens) - before).abs().max() > 1e-4


def test_mlp_is_the_same_network_with_or_without_a_pool():
    c, pool = setup("mlp-modular")
    torch.manual_seed(5)
    with_pool = build_model(c, pool)
    torch.manual_seed(5)
    direct = MLP(p=7, width=16, depth=2, embed_dim=4)  # the constructor the trainer has always used
    torch.manual_seed(5)
    from_config = build_model(c)
    for (name, a), (name_b, b), (_, d) in zip(
        with_pool.named_parameters(), from_config.named_parameters(), direct.named_parameters(), strict=True
    ):
        assert name == name_b and torch.equal(a, b) and torch.equal(a, d), name
    assert [n for n, _ in direct.named_parameters()] == [
        "embed_a.weight", "embed_b.weight", "hidden.0.weight", "hidden.0.bias",
        "hidden.2.weight", "hidden.2.bias", "head.weight", "head.bias",
    ]  # fmt: skip


def test_onehot_mlp_matches_f_one_hot_and_quadratic_squares():
    c, pool = setup("mlp-onehot-quadratic", depth=1, bias=False)
    torch.manual_seed(0)
    model = build_model(c, pool)
    pairs = inputs_of(pool)
    onehot = torch.cat([torch.nn.functional.one_hot(pairs[:, i], 7) for i in (0, 1)], dim=1).float()
    hidden = onehot @ model.hidden[0].weight.T
    assert torch.equal(model(pairs), (hidden * hidden) @ model.head.weight.T)


class DoshiFcn(torch.nn.Module):
    """``fcn`` of github.com/d-doshi/Grokking (utils/models.py): its layers and init, verbatim."""

    def __init__(self, in_size: int, h_size: int, out_size: int) -> None:
        import numpy as np

        super().__init__()
        self.fc1 = torch.nn.Linear(in_size, h_size, bias=False)
        self.fc2 = torch.nn.Linear(h_size, out_size, bias=False)
        torch.nn.init.normal_(self.fc1.weight, mean=0.0, std=0.25**0.5 / np.power(2 * h_size, 1 / 3))
        torch.nn.init.normal_(self.fc2.weight, mean=0.0, std=0.25**0.5 / np.power(2 * h_size, 1 / 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) ** 2)


def doshi_mlp(p: int, width: int, **overrides) -> MLP:
    kwargs = {"activation": "quadratic", "bias": False, "encoding": "onehot", "init": "doshi", **overrides}
    return MLP(p=p, width=width, depth=1, embed_dim=4, **kwargs)


def test_doshi_init_is_their_network_under_the_same_seed():
    torch.manual_seed(1)  # the seed of their phase_diagrams_*.py
    theirs = DoshiFcn(2 * 11, 40, 11)
    torch.manual_seed(1)
    ours = doshi_mlp(11, 40)
    assert torch.equal(ours.hidden[0].weight, theirs.fc1.weight)
    assert torch.equal(ours.head.weight, theirs.fc2.weight)
    pairs = torch.cartesian_prod(torch.arange(11), torch.arange(11))
    onehot = torch.cat([torch.nn.functional.one_hot(pairs[:, i], 11) for i in (0, 1)], dim=1).float()
    torch.testing.assert_close(ours(pairs), theirs(onehot))


def test_doshi_init_statistics_at_the_papers_width():
    from grokray.models.mlp import doshi_init_std

    assert doshi_init_std(500) == pytest.approx(0.05, rel=1e-12)  # √0.25 / 1000^(1/3)
    torch.manual_seed(0)
    model = doshi_mlp(97, 500)
    for weight in (model.hidden[0].weight, model.head.weight):  # 97,000 draws each
        values = weight.detach().double().flatten()
        assert float(values.std()) == pytest.approx(0.05, rel=0.02)
        assert abs(float(values.mean())) < 4 * 0.05 / len(values) ** 0.5
        kurtosis = float(((values - values.mean()) ** 4).mean() / values.var() ** 2)
        assert kurtosis == pytest.approx(3.0, abs=0.1)  # Gaussian (a uniform draw has 1.8)
    torch.manual_seed(0)
    default = doshi_mlp(97, 500, init="default")
    assert float(default.hidden[0].weight.detach().std()) == pytest.approx(1 / (3 * 194) ** 0.5, rel=0.02)


def test_doshi_init_is_refused_off_their_network():
    for overrides in ({"bias": True}, {"encoding": "embed"}):
        with pytest.raises(ValueError, match=r"init: 'doshi'.*depth=1, bias=false and encoding=onehot"):
            doshi_mlp(7, 8, **overrides)
    with pytest.raises(ValueError, match=r"init: 'doshi'.*got depth=2"):
        MLP(p=7, width=8, depth=2, embed_dim=4, bias=False, encoding="onehot", init="doshi")
    with pytest.raises(ValueError, match="init: got 'xavier'; allowed: default, doshi"):
        doshi_mlp(7, 8, init="xavier")


def test_a_model_that_does_not_fit_the_task_is_refused():
    c, pool = setup("encoder-text")
    with pytest.raises(ValueError, match="model: 'transformer' does not fit task 'text'"):
        build_model({**c, "model": "transformer"}, pool)
    with pytest.raises(ValueError, match="heads: got 3; must divide width=16"):
        build_model({**c, "heads": 3}, pool)


@pytest.mark.parametrize("case", list(CASES))
def test_looped_replicas_are_each_model_exactly(case):
    """``VmapReplicas(loop=True)``, the CPU engine off the MLP: each replica is its own module's
    forward bit for bit, on shared and on per-replica inputs, and gradients reach every slice."""
    from grokray.models.replicas import VmapReplicas

    c, pool = setup(case)
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model({**c, "seed": seed, "init_scale": 2.0}, pool))
    looped = VmapReplicas(models, loop=True)
    shared = inputs_of(pool)
    assert torch.equal(looped(shared, shared=True), torch.stack([m(shared) for m in models]))
    own = torch.stack(
        [inputs_of(pool)[torch.randperm(9, generator=torch.Generator().manual_seed(r))] for r in range(3)]
    )
    assert torch.equal(looped(own), torch.stack([m(x) for m, x in zip(models, own, strict=True)]))
    looped(shared, shared=True).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum(dim=tuple(range(1, p.dim()))).gt(0).all()
               for p in looped.parameters() if p.dim() > 1)  # fmt: skip
