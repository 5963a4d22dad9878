"""The sparse-recovery and matrix-completion rows of ``make reproduce``: their smoke profile fills
every field and draws its PNG; the known results they are checked against; the shipped studies."""

from __future__ import annotations

import math

import pytest
import torch

from grokray.reproduce import Context, load_rows
from grokray.reproduce.core import study_configs
from grokray.reproduce.notsawo_sparse import minimum_norm_error, unobserved_share
from grokray.tasks import make_pool, split

ROWS = ("notsawo-sparse-l1", "notsawo-sparse-depth", "notsawo-matrix")


@pytest.mark.parametrize("key", ROWS)
def test_quick_profile_fills_the_row_and_draws_its_png(key, tmp_path):
    result = load_rows()[key](Context(out=tmp_path, quick=True, progress=lambda line: None))
    assert result.key == key and result.paper.startswith("Notsawo")
    for field in ("figure", "claim", "reference", "measured", "tolerance", "scaled", "command"):
        assert getattr(result, field), field
    assert result.command.startswith("grokray run studies/")
    assert result.values["runs"]
    assert (tmp_path / result.plot).stat().st_size > 0


def test_the_minimum_norm_interpolator_leaves_the_null_space_part_of_w():
    # A⁺y = P w* (P: projection on the row space of A), so its error is ‖(I − P) w*‖ — computed here
    # from an orthonormal basis of the null space (the SVD), independently of the pseudo-inverse
    (config,) = study_configs("sparse_recovery.py", ["regularizer=none", "depth=1"])
    pool = make_pool(config)
    train_idx, _ = split(pool, config)
    inputs, truth = pool.inputs[train_idx].double(), pool.truth.double()
    null_basis = torch.linalg.svd(inputs, full_matrices=True).Vh[len(train_idx) :]
    null_part = null_basis.T @ (null_basis @ truth)
    relative, largest = minimum_norm_error(config)
    assert relative == pytest.approx(float(null_part.norm()), rel=1e-6)
    assert largest == pytest.approx(float(null_part.abs().max()), rel=1e-6)
    assert 0.8 < relative < 0.9  # 70 of 100 directions unseen: ≈ √0.7 of a spread-out signal


def test_the_unobserved_share_is_that_of_the_held_out_entries():
    (config,) = study_configs("matrix_completion.py", ["regularizer=none", "depth=1", "seeds=1"])
    pool = make_pool(config)
    _, val_idx = split(pool, config)
    assert len(val_idx) == 20
    truth = pool.truth.double()
    held_out = sum(float(truth[int(i) // 10, int(i) % 10]) ** 2 for i in val_idx)
    assert unobserved_share(config) == pytest.approx(math.sqrt(held_out) / float(truth.norm()), rel=1e-6)


def test_the_shipped_sparse_study_is_the_papers_setting():
    configs = study_configs("sparse_recovery.py")
    arms = {(c["regularizer"], c["depth"]): c for c in configs}
    assert set(arms) == {("l1", 1), ("l1", 2), ("l1", 3), ("none", 1), ("none", 2), ("none", 3), ("l2", 1)}
    assert all(c["model"] == "diagonal" and c["dim"] == 100 and c["sparsity"] == 5 for c in configs)
    assert all(c["train_size"] == 30 and c["grok_metric"] == "recovery_error" for c in configs)
    assert all(c["grok_threshold"] == 1e-4 and c["steps"] == 1_000_000 for c in configs)
    assert arms["l1", 1]["init_scale"] == 1e-6 and arms["l1", 1]["reg_strength"] == 2e-5
    assert arms["none", 3]["init_scale"] == 1e-2 and arms["l1", 3]["init_scale"] == 1e-2
    assert arms["l2", 1]["init_scale"] == 10.0 and arms["l2", 1]["reg_strength"] == 0.1
    # ℓ1's t2 ≈ 0.78/(lr·β) (the row's measured prefactor) lies inside the budget
    assert 0.78 / (arms["l1", 1]["lr"] * arms["l1", 1]["reg_strength"]) < arms["l1", 1]["steps"]


def test_the_shipped_matrix_study_is_the_papers_setting():
    configs = study_configs("matrix_completion.py")
    arms = {(c["regularizer"], c["depth"]) for c in configs}
    assert arms == {("none", 1), ("none", 2), ("none", 3), ("nuclear", 1)}
    assert all(c["matrix_size"] == 10 and c["rank"] == 2 and c["train_size"] == 80 for c in configs)
    assert all(c["model"] == "linear" and c["grok_metric"] == "recovery_error" for c in configs)
    assert len({c["seed"] for c in configs}) == 3
