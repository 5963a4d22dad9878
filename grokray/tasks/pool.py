"""The pool of a task: every example, shared by all seeds (replicas) of a trial, and its per-seed split.

A trial trains R replicas that differ only in ``seed``. They share one ``Pool`` (built from the
non-seed config keys alone) and each draws its own training set from it with ``split`` and its own
corrupted labels with ``corrupt``. Generated tasks (sparse recovery, matrix completion) draw their
problem instance from the fixed ``DATA_SEED``, never from ``seed``, so every replica and every
trial of a study solves the same instance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

#: Seed of the problem instance of generated tasks (signal, matrix, measurements). Fixed on purpose:
#: replicas (seeds) and trials of one study must share the instance; only the split and init vary.
DATA_SEED = 20250101

#: The corruption generator is seeded with ``seed + CORRUPTION_SEED_OFFSET``, so its draws are not
#: the same random stream as the split permutation (seeded with ``seed``).
CORRUPTION_SEED_OFFSET = 1_000_003


@dataclasses.dataclass
class Pool:
    """Every example of a task.

    ``inputs`` are int64 token ids ((N, 2) operands for modular and matrix completion, (N, max_len)
    for text) or float32 features ((N, 64) digits, (N, dim) sparse recovery measurements).
    ``targets`` are int64 class ids, or float32 regression targets (``regression=True``).
    ``candidates`` are the indices a training set may be drawn from (None = all); whatever is not
    trained on is validation. Regression accuracy counts |ŷ − y| ≤ ``tolerance`` as correct.
    ``probe``/``truth``: the model's outputs on ``probe``, reshaped like ``truth``, are the learned
    signal, so recovery_error = ‖f(probe) − truth‖ / ‖truth‖ (sparse recovery, matrix completion).
    ``vocab_size`` counts the distinct token ids of ``inputs``, ``seq_len`` their columns and
    ``input_dim`` the float features (0 where it does not apply).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    n_outputs: int
    regression: bool = False
    candidates: torch.Tensor | None = None
    tolerance: float = 0.0
    probe: torch.Tensor | None = None
    truth: torch.Tensor | None = None
    vocab_size: int = 0
    seq_len: int = 0
    input_dim: int = 0

    def __len__(self) -> int:
        return len(self.targets)

    def to(self, device: torch.device | str) -> Pool:
        """The same pool with every tensor on ``device``."""
        moved = {
            field.name: getattr(self, field.name).to(device)
            for field in dataclasses.fields(self)
            if isinstance(getattr(self, field.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)


def train_count(pool: Pool, config: Mapping[str, Any]) -> int:
    """How many training examples ``split`` gives ``config`` (without drawing them)."""
    n_pool = len(pool.targets)
    n_candidates = len(pool.candidates) if pool.candidates is not None else n_pool
    train_size = config["train_size"]
    n_train = train_size if train_size > 0 else round(config["train_fraction"] * n_candidates)
    return max(1, min(n_train, n_candidates, n_pool - 1))


def split(pool: Pool, config: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx) of replica ``config['seed']``.

    The training set is the first n of a permutation of the candidates seeded with ``seed``,
    n = ``train_size`` if > 0 else round(``train_fraction`` · |candidates|), clamped to [1, |candidates|]
    and so that at least one example of the pool is held out. Validation is the rest of the pool:
    the unused candidates in permutation order, then the non-candidates in pool order. For a pool
    without ``candidates`` (modular) this is exactly ``modular.split_indices``.
    """
    n_pool = len(pool.targets)
    candidates = pool.candidates if pool.candidates is not None else torch.arange(n_pool)
    candidates = candidates.cpu()
    n_candidates = len(candidates)
    generator = torch.Generator().manual_seed(config["seed"])
    order = torch.randperm(n_candidates, generator=generator)
    n_train = train_count(pool, config)
    train_idx = candidates[order[:n_train]]
    val_idx = candidates[order[n_train:]]
    if pool.candidates is not None:
        is_candidate = torch.zeros(n_pool, dtype=torch.bool)
        is_candidate[candidates] = True
        val_idx = torch.cat([val_idx, torch.nonzero(~is_candidate).flatten()])
    return train_idx, val_idx


def corrupt(
    pool: Pool, train_idx: torch.Tensor, config: Mapping[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets (N,), corrupted (len(train_idx),) bool) with label corruption ξ = ``config['corruption']``.

    The first k = round(ξ · n_train) training examples, in ``train_idx`` order, get labels drawn
    uniformly from [0, n_outputs) by a generator seeded with ``seed + CORRUPTION_SEED_OFFSET`` (a
    drawn label may equal the true one; ``corrupted`` marks all k). Every other label, validation
    included, stays clean. ξ = 0 returns ``pool.targets`` itself.
    """
    xi = config["corruption"]
    corrupted = torch.zeros(len(train_idx), dtype=torch.bool)
    if xi == 0:
        return pool.targets, corrupted
    if pool.regression:
        raise ValueError(f"corruption: got {xi}; label corruption needs a classification task")
    k = round(xi * len(train_idx))
    generator = torch.Generator().manual_seed(config["seed"] + CORRUPTION_SEED_OFFSET)
    drawn = torch.randint(0, pool.n_outputs, (k,), generator=generator, dtype=pool.targets.dtype)
    targets = pool.targets.clone()
    index = train_idx[:k].to(targets.device)
    targets[index] = drawn.to(targets.device)
    corrupted[:k] = True
    return targets, corrupted.to(train_idx.device)
