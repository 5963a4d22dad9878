"""Progress measures: hand-computed values on tiny tensors, and batched == per-replica."""

from __future__ import annotations

import math
import time

import pytest
import torch

from grokray.metrics import (
    compressed_complexity,
    effective_rank,
    ipr,
    is_log_step,
    lossy_compress,
    mlp_neuron_weights,
    naive_bytes,
    neuron_ipr,
    norm_measures,
    prune_by_ipr,
    spectral_entropy,
    spectral_entropy_penalty,
    spectral_measures,
)
from grokray.models.mlp import MLP
from grokray.models.replicas import ReplicaMLP
from grokray.outcomes import DOSHI_PHASES, doshi_phase

D = torch.float64


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, rtol: float | None = None, atol: float | None = None
):
    """torch.testing.assert_close's check and tolerances, without its slow first import."""
    double = actual.dtype == torch.float64
    rtol = (1e-7 if double else 1.3e-6) if rtol is None else rtol
    atol = (1e-7 if double else 1e-5) if atol is None else atol
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), f"{actual} != {expected}"


def stacked(*replicas: dict[str, list]) -> dict[str, torch.Tensor]:
    """Stack per-replica parameter dicts (nested lists) on a leading replica axis."""
    return {name: torch.stack([torch.tensor(r[name], dtype=D) for r in replicas]) for name in replicas[0]}


def per_replica(params: dict[str, torch.Tensor], r: int) -> dict[str, torch.Tensor]:
    return {name: tensor[r : r + 1] for name, tensor in params.items()}


def random_params(replicas: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "embed_a_weight": torch.randn(replicas, 7, 4, generator=g, dtype=D),
        "hidden_0_weight": torch.randn(replicas, 5, 8, generator=g, dtype=D),
        "hidden_0_bias": torch.randn(replicas, 5, generator=g, dtype=D),
        "head_weight": torch.randn(replicas, 7, 5, generator=g, dtype=D),
    }


# ---------------------------------------------------------------- norms


def test_norm_measures_by_hand():
    # A = diag(2, -1): σ = (2, 1). B = [[3, 4]]: σ = 5. C holds one weight below the ℓ0 threshold.
    # The bias is not a weight matrix. Replica 1 is replica 0 times 3 (C's weight becomes 1.5e-4 > 1e-4).
    one = {
        "A": [[2.0, 0.0], [0.0, -1.0]],
        "B": [[3.0, 4.0]],
        "C": [[5e-5, 0.0], [0.0, 0.0]],
        "bias": [7.0, 7.0],
    }
    three = {name: (torch.tensor(value, dtype=D) * 3).tolist() for name, value in one.items()}
    out = norm_measures(stacked(one, three))
    expected = {
        "l0": [4, 5],
        "l1": [3 + 7 + 5e-5, 3 * (3 + 7 + 5e-5)],
        "l2": [math.sqrt(5 + 25 + 25e-10), 3 * math.sqrt(5 + 25 + 25e-10)],
        "nuclear": [3 + 5 + 5e-5, 3 * (3 + 5 + 5e-5)],
        "l2/A": [math.sqrt(5), 3 * math.sqrt(5)],
        "nuclear/A": [3, 9],
        "l2/B": [5, 15],
        "nuclear/B": [5, 15],
        "l2/C": [5e-5, 1.5e-4],
        "nuclear/C": [5e-5, 1.5e-4],
    }
    assert set(out) == set(expected)
    for key, value in expected.items():
        assert out[key].shape == (2,)
        assert_close(out[key], torch.tensor(value, dtype=D), rtol=1e-12, atol=1e-15)


def test_norm_measures_batched_equal_per_replica():
    params = random_params()
    batched = norm_measures(params)
    for r in range(3):
        alone = norm_measures(per_replica(params, r))
        for key, value in alone.items():
            assert_close(batched[key][r : r + 1], value)


def test_norm_measures_needs_a_matrix():
    with pytest.raises(ValueError, match="no stacked weight matrix"):
        norm_measures({"bias": torch.ones(2, 3)})


# ---------------------------------------------------------------- spectral entropy


def test_rank_one_matrix_has_entropy_zero_and_effective_rank_one():
    u, v = torch.tensor([1.0, -2.0, 0.5], dtype=D), torch.tensor([3.0, 1.0, 0.0, 2.0], dtype=D)
    w = torch.outer(u, v).unsqueeze(0)
    assert_close(spectral_entropy(w), torch.zeros(1, dtype=D), atol=1e-12, rtol=0)
    assert_close(effective_rank(w), torch.ones(1, dtype=D), atol=1e-12, rtol=0)


def test_identity_has_effective_rank_n():
    w = torch.stack([torch.eye(5, dtype=D), 3 * torch.eye(5, dtype=D)])
    assert_close(spectral_entropy(w), torch.full((2,), math.log(5), dtype=D))
    assert_close(effective_rank(w), torch.full((2,), 5.0, dtype=D))


def test_spectral_entropy_of_a_two_value_spectrum_and_of_zero():
    # σ = (3, 1): p = (3/4, 1/4), H = −(3/4 ln 3/4 + 1/4 ln 1/4) = 0.5623351446188083
    w = torch.stack([torch.diag(torch.tensor([3.0, 1.0], dtype=D)), torch.zeros(2, 2, dtype=D)])
    assert_close(spectral_entropy(w), torch.tensor([0.5623351446188083, 0.0], dtype=D))


def test_spectral_measures_are_means_over_matrices():
    params = {
        "eye": torch.eye(4, dtype=D).unsqueeze(0),
        "rank1": torch.outer(torch.ones(3, dtype=D), torch.arange(1.0, 4.0, dtype=D)).unsqueeze(0),
        "bias": torch.ones(1, 4, dtype=D),
    }
    out = spectral_measures(params)
    assert_close(out["spectral_entropy"], torch.tensor([math.log(4) / 2], dtype=D))
    assert_close(out["effective_rank"], torch.tensor([2.5], dtype=D))


def test_spectral_penalty_is_differentiable_and_matches_the_measure():
    params = {k: v.clone().requires_grad_(True) for k, v in random_params().items()}
    params["low_rank"] = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]] * 3, dtype=D, requires_grad=True)
    penalty = spectral_entropy_penalty(params)
    assert penalty.shape == (3,)
    assert_close(penalty.detach(), spectral_measures(params)["spectral_entropy"])
    penalty.sum().backward()
    for name in ("hidden_0_weight", "head_weight", "low_rank"):
        assert torch.isfinite(params[name].grad).all()
    assert params["hidden_0_weight"].grad.abs().sum() > 0
    assert params["hidden_0_bias"].grad is None  # biases are not penalized
    # gradient against finite differences, on a well-conditioned matrix
    w = torch.randn(2, 4, 3, dtype=D, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: spectral_entropy_penalty({"w": x}), (w,))


def test_spectral_measures_batched_equal_per_replica():
    params = random_params()
    batched = spectral_measures(params)
    for r in range(3):
        for key, value in spectral_measures(per_replica(params, r)).items():
            assert_close(batched[key][r : r + 1], value)


# ---------------------------------------------------------------- Fourier IPR

P = 7


def residues() -> torch.Tensor:
    return torch.arange(P, dtype=D)


def cosine(f: int) -> torch.Tensor:
    return torch.cos(2 * math.pi * f * residues() / P)


def delta(at: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(at), P).to(D)


ONE_SIDED = P // 2 + 1  # frequencies 0 … ⌊p/2⌋ of the rfft


def test_ipr_of_a_cosine_is_one_and_of_a_delta_is_flat_over_the_one_sided_spectrum():
    # Doshi's code takes the rfft: cos(2πfa/p) is one peak (IPR 1); a delta is flat over ⌊p/2⌋ + 1 bins
    assert float(ipr(cosine(2))) == pytest.approx(1.0, abs=1e-12)
    assert float(ipr(cosine(3))) == pytest.approx(1.0, abs=1e-12)
    assert float(ipr(delta(3))) == pytest.approx(1 / ONE_SIDED, abs=1e-12)
    # a constant is one peak; two cosines of equal amplitude are two peaks (2 · (1/√2)⁴)
    assert float(ipr(torch.ones(P, dtype=D))) == pytest.approx(1.0, abs=1e-12)
    assert float(ipr(cosine(1) + cosine(3))) == pytest.approx(0.5, abs=1e-12)
    # amplitudes 1 and 2: peaks (1, 2)/√5 → (1 + 16) / 25
    assert float(ipr(cosine(1) + 2 * cosine(2))) == pytest.approx(17 / 25, abs=1e-12)
    assert float(ipr(torch.zeros(P, dtype=D))) == 0.0
    # scale-free, and taken along the given dim
    x = torch.stack([cosine(2), delta(0)], dim=1)  # (P, 2): columns
    assert_close(ipr(-5 * x, dim=0), torch.tensor([1.0, 1 / ONE_SIDED], dtype=D))


def doshi_calculate_ipr(array, r):
    """``utils/data_processing.calculate_ipr`` of github.com/d-doshi/Grokking, verbatim."""
    import numpy as np

    return np.power(array / np.sqrt((array**2).sum()), 2 * r).sum()


@pytest.mark.parametrize("p", [7, 10, 97])
def test_ipr_equals_doshis_code_on_random_weights(p):
    import numpy as np

    # their phase_diagrams_wd.py: calculate_ipr(np.absolute(np.fft.rfft(U[k])), r=2) per neuron k
    rows = np.random.default_rng(p).standard_normal((5, p))
    theirs = [doshi_calculate_ipr(np.absolute(np.fft.rfft(row)), 2) for row in rows]
    expected = torch.tensor(theirs, dtype=D)
    assert_close(ipr(torch.from_numpy(rows)), expected, rtol=1e-12, atol=1e-12)
    assert_close(ipr(torch.from_numpy(rows.T.copy()), dim=0), expected, rtol=1e-12, atol=1e-12)


def test_neuron_ipr_by_hand():
    # neuron 0: periodic (cosines, IPR 1, 1 and 1/2); neuron 1: a lookup table (deltas, flat spectra)
    u = torch.stack([cosine(1), delta(2)]).unsqueeze(0)  # (1, k=2, p)
    v = torch.stack([cosine(3), delta(5)]).unsqueeze(0)
    w = torch.stack([cosine(2) + cosine(1), delta(0)], dim=1).unsqueeze(0)  # (1, p, k=2)
    per_neuron, network = neuron_ipr(u, v, w)
    periodic = (1 + 1 + 0.5) / 3
    assert_close(per_neuron, torch.tensor([[periodic, 1 / ONE_SIDED]], dtype=D))
    assert_close(network, torch.tensor([(periodic + 1 / ONE_SIDED) / 2], dtype=D))
    with pytest.raises(ValueError, match=r"\(R, k, p\)"):
        neuron_ipr(u, v, u)


def test_neuron_ipr_batched_equal_per_replica():
    g = torch.Generator().manual_seed(2)
    u, v, w = (
        torch.randn(4, 6, P, generator=g),
        torch.randn(4, 6, P, generator=g),
        torch.randn(4, P, 6, generator=g),
    )
    per_neuron, network = neuron_ipr(u, v, w)
    assert per_neuron.shape == (4, 6) and network.shape == (4,)
    for r in range(4):
        alone = neuron_ipr(u[r], v[r], w[r])
        assert_close(per_neuron[r], alone[0])
        assert_close(network[r], alone[1])


def replica_mlp(encoding: str, depth: int = 1, bias: bool = True) -> ReplicaMLP:
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(MLP(p=P, width=6, depth=depth, embed_dim=3, bias=bias, encoding=encoding))
    return ReplicaMLP(models)


def params_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: parameter.detach() for name, parameter in model.named_parameters()}


@pytest.mark.parametrize("encoding", ["onehot", "embed"])
def test_mlp_neuron_weights_are_the_neurons_functions_of_the_residues(encoding):
    model = replica_mlp(encoding, bias=False)
    u, v, w = mlp_neuron_weights(params_of(model), P, encoding)
    assert u.shape == v.shape == (2, 6, P) and w.shape == (2, P, 6)
    # the first layer's pre-activation of neuron k on (a, b) is U[k, a] + V[k, b]; W[:, k] its output column
    pairs = torch.cartesian_prod(torch.arange(P), torch.arange(P))
    if encoding == "embed":
        x = torch.cat([model.embed_a_weight[:, pairs[:, 0]], model.embed_b_weight[:, pairs[:, 1]]], dim=-1)
    else:
        x = (
            torch.cat([torch.nn.functional.one_hot(pairs[:, i], P) for i in (0, 1)], dim=-1)
            .float()
            .expand(2, -1, -1)
        )
    pre = (x @ model.hidden_0_weight.transpose(1, 2)).detach()  # (R, P², k)
    expected = u[:, :, pairs[:, 0]] + v[:, :, pairs[:, 1]]
    assert_close(pre.transpose(1, 2), expected)
    assert_close(w, model.head_weight.detach())


def test_mlp_neuron_weights_only_for_depth_one_two_operand_mlps():
    assert mlp_neuron_weights(params_of(replica_mlp("onehot", depth=2)), P, "onehot") is None
    assert mlp_neuron_weights(params_of(replica_mlp("onehot")), P + 1, "onehot") is None
    assert mlp_neuron_weights(params_of(replica_mlp("onehot")), P, "features") is None
    with pytest.raises(ValueError, match="encoding"):
        mlp_neuron_weights(params_of(replica_mlp("onehot")), P, "bytes")
    # MLP.named_parameters() names (with dots) work as well as ReplicaMLP's
    torch.manual_seed(0)
    plain = MLP(p=P, width=6, depth=1, embed_dim=3, encoding="onehot")
    dotted = {name: t.detach().unsqueeze(0) for name, t in plain.named_parameters()}
    u, _, w = mlp_neuron_weights(dotted, P, "onehot")
    assert_close(u[0], plain.hidden[0].weight.detach()[:, :P])
    assert_close(w[0], plain.head.weight.detach())


def test_prune_by_ipr_zeroes_exactly_the_lowest_ipr_neurons():
    # neuron kinds, with their IPR: constant 1, cosine 1, two cosines 1/2, delta 1/4
    kinds = {
        "const": torch.ones(P, dtype=D),
        "cos": cosine(2),
        "two": cosine(1) + cosine(3),
        "delta": delta(4),
    }
    orders = [["const", "delta", "cos", "two"], ["two", "cos", "delta", "const"]]  # per replica
    replicas = []
    for order in orders:
        rows = torch.stack([kinds[name] for name in order])  # (k, P)
        replicas.append(
            {
                "hidden_0_weight": torch.cat([rows, 2 * rows], dim=1).tolist(),
                "hidden_0_bias": [1.0, 2.0, 3.0, 4.0],
                "head_weight": rows.T.tolist(),
                "head_bias": [0.5] * P,
            }
        )
    params = stacked(*replicas)
    before = {name: tensor.clone() for name, tensor in params.items()}
    pruned = prune_by_ipr(params, P, "onehot", 0.5)
    lowest = [{1, 3}, {0, 2}]  # delta and two cosines
    for r in range(2):
        for k in range(4):
            gone = k in lowest[r]
            assert bool((pruned["hidden_0_weight"][r, k] == 0).all()) == gone
            assert bool(pruned["hidden_0_bias"][r, k] == 0) == gone
            assert bool((pruned["head_weight"][r, :, k] == 0).all()) == gone
            if not gone:
                assert_close(pruned["hidden_0_weight"][r, k], params["hidden_0_weight"][r, k])
                assert_close(pruned["head_weight"][r, :, k], params["head_weight"][r, :, k])
    assert pruned["head_bias"] is params["head_bias"]
    for name, tensor in params.items():  # the input is untouched
        assert_close(tensor, before[name])
    # a pruned neuron has IPR 0, so pruning more keeps the earlier choice; fraction 0 and 1
    per_neuron, _ = neuron_ipr(*mlp_neuron_weights(pruned, P, "onehot"))
    assert (per_neuron[0, [1, 3]] == 0).all() and (per_neuron[1, [0, 2]] == 0).all()
    assert_close(prune_by_ipr(params, P, "onehot", 0.0)["hidden_0_weight"], params["hidden_0_weight"])
    assert (prune_by_ipr(params, P, "onehot", 1.0)["head_weight"] == 0).all()
    quarter = prune_by_ipr(params, P, "onehot", 0.25)["hidden_0_weight"]  # one neuron: the delta
    assert (quarter[0, 1] == 0).all() and (quarter[1, 2] == 0).all() and (quarter != 0).any(dim=-1).sum() == 6
    with pytest.raises(ValueError, match="fraction"):
        prune_by_ipr(params, P, "onehot", 1.5)
    with pytest.raises(ValueError, match="depth-1"):
        prune_by_ipr(params_of(replica_mlp("onehot", depth=2)), P, "onehot", 0.5)


# ---------------------------------------------------------------- compression complexity


def relative_error_loss(matrices: list[torch.Tensor]):
    """loss_at for a synthetic 'network': the relative squared reconstruction error of its matrices."""
    total = sum(float(m.square().sum()) for m in matrices)

    def loss_at(approx: list[torch.Tensor]) -> float:
        return sum(float((a - m).square().sum()) for a, m in zip(approx, matrices, strict=True)) / total

    return loss_at


def test_rank_one_matrix_compresses_far_smaller_than_a_random_one():
    g = torch.Generator().manual_seed(0)
    rank_one = [torch.outer(torch.randn(48, generator=g), torch.randn(32, generator=g))]
    random = [torch.randn(48, 32, generator=g)]
    epsilon = 1e-3
    results = {}
    for name, matrices in (("rank_one", rank_one), ("random", random)):
        loss_at = relative_error_loss(matrices)
        result = compressed_complexity(matrices, loss_at, epsilon)
        results[name] = result
        assert result["complexity_bytes"] <= result["naive_bytes"] == naive_bytes(matrices)
        # the loss constraint holds for the returned (τ, Δ), and the size is that candidate's
        approx, size = lossy_compress(matrices, result["tau"], result["delta"])
        assert abs(loss_at(approx) - loss_at(matrices)) < epsilon
        assert result["loss_change"] == pytest.approx(abs(loss_at(approx) - loss_at(matrices)))
        assert size == result["complexity_bytes"]
        assert 1 < result["evaluations"] < 60
    assert results["rank_one"]["ranks"] == [1]
    assert results["random"]["ranks"][0] > 16
    assert results["rank_one"]["complexity_bytes"] * 4 < results["random"]["complexity_bytes"]


def test_a_coarser_tolerance_never_costs_more_bytes():
    g = torch.Generator().manual_seed(3)
    matrices = [torch.randn(20, 30, generator=g), torch.randn(10, 20, generator=g)]
    loss_at = relative_error_loss(matrices)
    sizes = [compressed_complexity(matrices, loss_at, eps)["complexity_bytes"] for eps in (1e-4, 1e-2, 0.3)]
    assert sizes[0] > sizes[1] > sizes[2]


def test_no_admissible_compression_falls_back_to_the_raw_weights():
    matrices = [torch.randn(8, 8, generator=torch.Generator().manual_seed(4))]
    result = compressed_complexity(matrices, relative_error_loss(matrices), epsilon=1e-30)
    assert result["complexity_bytes"] == result["naive_bytes"]
    assert result["delta"] == 0.0 and result["tau"] == 1.0 and result["ranks"] == [8]


def test_complexity_keeps_the_loss_of_a_real_network_and_is_fast():
    # a 2-layer width-128 MLP on modular addition, p = 97, loss = cross-entropy on 40 % of the pairs;
    # init scaled by 4 (as init_scale does) so that the loss is sensitive to every weight
    torch.manual_seed(0)
    model = MLP(p=97, width=128, depth=1, embed_dim=128, encoding="onehot")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(4.0)
    pairs = torch.cartesian_prod(torch.arange(97), torch.arange(97))
    pairs = pairs[torch.randperm(len(pairs))[: len(pairs) * 2 // 5]]
    targets = pairs.sum(dim=1) % 97
    names = ["hidden.0.weight", "head.weight"]
    params = {name: parameter.detach() for name, parameter in model.named_parameters()}
    matrices = [params[name] for name in names]
    cpu_in_loss = [0.0]

    @torch.no_grad()
    def loss_at(approx: list[torch.Tensor]) -> float:
        start = time.process_time()
        logits = torch.func.functional_call(
            model, {**params, **dict(zip(names, approx, strict=True))}, (pairs,)
        )
        loss = float(torch.nn.functional.cross_entropy(logits, targets))
        cpu_in_loss[0] += time.process_time() - start
        return loss

    # CPU time of one thread rather than wall time: the test machine is shared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        result = compressed_complexity(matrices, loss_at, epsilon=0.01)
        overhead = time.process_time() - start - cpu_in_loss[0]
    finally:
        torch.set_num_threads(threads)
    approx, _ = lossy_compress(matrices, result["tau"], result["delta"])
    assert 0 < abs(loss_at(approx) - loss_at(matrices)) < 0.01
    assert result["complexity_bytes"] * 3 < result["naive_bytes"]
    assert overhead < 0.5, f"compression search took {overhead:.2f} s of CPU besides loss_at"


def payload_bytes(delta: float, header: list[int], codes: list[int]) -> int:
    """bz2 size of the serialization the module doc describes, built by hand (int8 codes)."""
    import bz2

    import numpy as np

    raw = (
        np.array([delta], dtype=np.float64).tobytes()
        + b"|i1"
        + np.array(header, dtype=np.int64).tobytes()
        + np.array(codes, dtype=np.int8).tobytes()
    )
    return len(bz2.compress(raw, compresslevel=9))


def test_bytes_of_a_known_all_zero_payload():
    # a zero matrix stores rank 0 and no codes; the zero bias stores its three codes, all 0
    tensors = [torch.zeros(3, 3), torch.zeros(3)]
    approx, size = lossy_compress(tensors, tau=1.0, delta=0.5)
    assert size == payload_bytes(0.5, [2, 3, 3, 0, 0, 1, 3, 0, 0], [0, 0, 0])
    assert all(torch.equal(a, t) for a, t in zip(approx, tensors, strict=True))
    import bz2

    assert naive_bytes(tensors) == len(bz2.compress(bytes(36))) + len(bz2.compress(bytes(12)))


def test_a_rank_one_matrix_keeps_k_1_stored_as_u_s_and_v_transposed():
    # W = diag(3, 0, 0, 0): σ = (3, 0, 0, 0); k = 1 at every τ (a rank-1 matrix keeps its one
    # direction) and pays (1·(4 + 4) < 16): stored as A = U₁S₁ = ±3·e₁, B = V₁ᵀ = ±e₁ᵀ. At Δ = 1 the
    # codes are exact: Â·B̂ = W (the balanced split √S would round √3 to 2 and give 4).
    weight = torch.diag(torch.tensor([3.0, 0.0, 0.0, 0.0]))
    sign = 1 if float(torch.linalg.svd(weight.double())[0][0, 0]) > 0 else -1
    for tau in (1.0, 0.5, 0.01):
        approx, size = lossy_compress([weight], tau=tau, delta=1.0)
        assert torch.equal(approx[0], weight)
        assert size == payload_bytes(1.0, [2, 4, 4, 1, 1], [3 * sign, 0, 0, 0, sign, 0, 0, 0])


def test_a_truncation_that_does_not_pay_stores_the_matrix_whole():
    # diag(2, 1) at τ = 0.5: k = 1 (mass 2/3 ≥ 0.5) but 1·(2 + 2) = 4 is not < 4: W is quantized
    # whole, untruncated (as in their code), header rank 2, not factored
    weight = torch.diag(torch.tensor([2.0, 1.0]))
    approx, size = lossy_compress([weight], tau=0.5, delta=1.0)
    assert torch.equal(approx[0], weight)
    assert size == payload_bytes(1.0, [2, 2, 2, 2, 0], [2, 0, 0, 1])
    # diag(4, 1, 0) at τ = 0.7: k = 1 (mass 0.8) pays (1·6 < 9): the truncation drops σ₂ = 1
    approx, _ = lossy_compress([torch.diag(torch.tensor([4.0, 1.0, 0.0]))], tau=0.7, delta=1.0)
    assert torch.equal(approx[0], torch.diag(torch.tensor([4.0, 0.0, 0.0])))


def test_every_parameter_counts_biases_are_quantized_and_cost_bytes():
    g = torch.Generator().manual_seed(5)
    weight, bias = torch.randn(12, 10, generator=g), torch.randn(12, generator=g)
    approx, with_bias = lossy_compress([weight, bias], tau=1.0, delta=0.25)
    assert torch.equal(approx[1], torch.round(bias / 0.25) * 0.25)
    _, without_bias = lossy_compress([weight], tau=1.0, delta=0.25)
    assert with_bias > without_bias
    # the search sees (and the loss constrains) the bias too
    loss_alone = relative_error_loss([weight])
    seen: list[int] = []

    def loss_with_bias(approx: list[torch.Tensor]) -> float:
        seen.append(len(approx))
        return loss_alone(approx[:1]) + float((approx[1] - bias).square().sum())

    alone = compressed_complexity([weight], loss_alone, epsilon=0.01)
    both = compressed_complexity([weight, bias], loss_with_bias, epsilon=0.01)
    assert set(seen) == {2}
    assert len(both["ranks"]) == 1  # ranks are per matrix; the bias is quantized whole
    assert both["complexity_bytes"] > alone["complexity_bytes"]
    assert both["naive_bytes"] == naive_bytes([weight]) + naive_bytes([bias])


def mlp_loss(p: int = 23, seed: int = 0, scale: float = 3.0):
    """All parameters of a small embedding MLP on x + y mod p and the loss on 40 % of the pairs."""
    torch.manual_seed(seed)
    model = MLP(p=p, width=32, depth=1, embed_dim=8)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    pairs = torch.cartesian_prod(torch.arange(p), torch.arange(p))
    pairs = pairs[torch.randperm(len(pairs))[: len(pairs) * 2 // 5]]
    targets = pairs.sum(dim=1) % p
    names = [name for name, _ in model.named_parameters()]
    params = {name: parameter.detach() for name, parameter in model.named_parameters()}

    @torch.no_grad()
    def loss_at(approx: list[torch.Tensor]) -> float:
        logits = torch.func.functional_call(model, dict(zip(names, approx, strict=True)), (pairs,))
        return float(torch.nn.functional.cross_entropy(logits, targets))

    return [params[n] for n in names], loss_at


def test_a_larger_tolerance_never_gives_more_bytes_over_the_papers_range():
    # DeMoss et al. show ε from 1/16 to 4; on every network the sizes must not grow with ε
    for seed in (0, 1):
        tensors, loss_at = mlp_loss(seed=seed)
        assert any(t.dim() == 1 for t in tensors)  # biases are in
        sizes = [compressed_complexity(tensors, loss_at, 2.0**k)["complexity_bytes"] for k in range(-4, 3)]
        assert sizes == sorted(sizes, reverse=True)
        assert sizes[0] > sizes[-1]


def test_complexity_rejects_bad_input():
    with pytest.raises(ValueError, match="epsilon"):
        compressed_complexity([torch.ones(2, 2)], lambda m: 0.0, epsilon=0.0)
    with pytest.raises(ValueError, match="finite"):
        compressed_complexity([torch.ones(2, 2)], lambda m: math.nan, epsilon=0.1)
    zero = compressed_complexity([torch.zeros(3, 3)], lambda m: 1.0, epsilon=0.1)
    assert zero["complexity_bytes"] == zero["naive_bytes"]


# ---------------------------------------------------------------- Doshi phases


@pytest.mark.parametrize(
    ("train_acc", "val_acc", "corruption", "ever", "phase"),
    [
        (1.0, 1.0, 0.3, True, "coexistence"),
        (0.9, 0.9, 0.3, True, "coexistence"),  # 90 % is inclusive on both
        (0.8999, 0.95, 0.3, True, "partial_inversion"),
        (0.75, 0.95, 0.3, True, "partial_inversion"),  # exactly 100(1.05 − 0.3) % = 75 %
        (0.7499, 0.95, 0.3, True, "full_inversion"),
        (0.6, 1.0, 0.5, True, "partial_inversion"),  # threshold 55 %
        (0.5, 1.0, 0.5, True, "full_inversion"),
        (0.89, 0.95, 0.1, True, "full_inversion"),  # ξ ≤ 0.15: threshold ≥ 90 %, no partial inversion
        (1.0, 0.8999, 0.3, True, "memorization"),
        (0.9, 0.0, 0.0, False, "memorization"),
        (0.5, 0.5, 0.3, True, "forgetting"),
        (0.8999, 0.8999, 0.3, True, "forgetting"),
        (0.5, 0.5, 0.3, False, "confusion"),
        (0.0, 0.0, 0.0, False, "confusion"),
    ],
)
def test_doshi_phase(train_acc, val_acc, corruption, ever, phase):
    assert doshi_phase(train_acc, val_acc, corruption, ever) == phase
    assert phase in DOSHI_PHASES


def test_doshi_phase_rejects_percentages():
    with pytest.raises(ValueError, match="train_acc"):
        doshi_phase(95.0, 0.9, 0.1, True)
    with pytest.raises(ValueError, match="corruption"):
        doshi_phase(0.9, 0.9, -0.1, True)


# ---------------------------------------------------------------- log schedule


def test_log_schedule_steps():
    # evaluation indices nearest to 2^(j/2): 1, 1.41, 2, 2.83, 4, 5.66, 8, 11.3, 16, 22.6, 32, …
    chosen = [n for n in range(300) if is_log_step(n * 50, 50)]
    assert chosen == [0, 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256]
    assert [n for n in range(100) if is_log_step(n, 1, per_octave=1)] == [0, 1, 2, 4, 8, 16, 32, 64]
    assert not is_log_step(75, 50) and not is_log_step(-50, 50)
    # O(log steps) calls: about per_octave per doubling
    assert sum(is_log_step(n, 1, per_octave=2) for n in range(1 << 14)) <= 2 * 14 + 3
    with pytest.raises(ValueError):
        is_log_step(0, 0)
