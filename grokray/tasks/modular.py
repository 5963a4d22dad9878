"""Modular arithmetic ``a op b mod p``: all pairs, split by a seeded permutation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch

from grokray.tasks.pool import Pool

BINARY_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "+": lambda a, b, p: (a + b) % p,
    "-": lambda a, b, p: (a - b) % p,
    "*": lambda a, b, p: (a * b) % p,
    # a / b = a * b^(p-2) mod p (Fermat), defined for prime p and b != 0
    "/": lambda a, b, p: (a * _mod_pow(b, p - 2, p)) % p,
    "x^2+y^2": lambda a, b, p: (a * a + b * b) % p,
    "x^2+xy+y^2": lambda a, b, p: (a * a + a * b + b * b) % p,
    # x³ + x·y² + y: reduce x² and y² first so int64 never overflows (p ≤ 1000 anyway)
    "x^3+xy^2+y": lambda a, b, p: (a * ((a * a) % p) + a * ((b * b) % p) + b) % p,
}


def _mod_pow(base: torch.Tensor, exponent: int, modulus: int) -> torch.Tensor:
    result = torch.ones_like(base)
    base = base % modulus
    while exponent:
        if exponent & 1:
            result = (result * base) % modulus
        base = (base * base) % modulus
        exponent >>= 1
    return result


@dataclasses.dataclass
class ModularData:
    """Train/val tensors of one split. ``inputs`` are (n, 2) operand indices, ``labels`` (n,)."""

    p: int
    op: str
    train_inputs: torch.Tensor
    train_labels: torch.Tensor
    val_inputs: torch.Tensor
    val_labels: torch.Tensor

    @property
    def n_total(self) -> int:
        return len(self.train_labels) + len(self.val_labels)

    @property
    def n_train(self) -> int:
        return len(self.train_labels)

    def to(self, device: torch.device) -> ModularData:
        return dataclasses.replace(
            self,
            train_inputs=self.train_inputs.to(device),
            train_labels=self.train_labels.to(device),
            val_inputs=self.val_inputs.to(device),
            val_labels=self.val_labels.to(device),
        )


def all_pairs(p: int, op: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (a, b) with a, b in [0, p) (b != 0 for division) and its label, in a fixed order."""
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    if op == "/":
        keep = b != 0
        a, b = a[keep], b[keep]
    labels = BINARY_OPS[op](a, b, p)
    return torch.stack([a, b], dim=1), labels


def n_train_for(n_total: int, train_fraction: float, train_size: int) -> int:
    """Training-set size: ``train_size`` if set, else round(fraction * total); keeps >= 1 held out."""
    n = train_size if train_size > 0 else round(train_fraction * n_total)
    return max(1, min(n, n_total - 1))


def split_indices(
    n_total: int, train_fraction: float, train_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and val indices into the pair table: a permutation seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_total, generator=generator)
    n_train = n_train_for(n_total, train_fraction, train_size)
    return order[:n_train], order[n_train:]


def make_modular(p: int, op: str, train_fraction: float, train_size: int, seed: int) -> ModularData:
    """All pairs split into train/val by a permutation seeded with ``seed``."""
    if op not in BINARY_OPS:
        raise ValueError(f"op: got {op!r}; allowed: {', '.join(BINARY_OPS)}")
    inputs, labels = all_pairs(p, op)
    train, val = split_indices(len(labels), train_fraction, train_size, seed)
    return ModularData(p, op, inputs[train], labels[train], inputs[val], labels[val])


def modular_pool(config: Mapping[str, Any]) -> Pool:
    """Every pair of ``a op b mod p`` as one pool, in ``all_pairs`` order; val = the pairs not trained on."""
    p, op = config["p"], config["op"]
    if op not in BINARY_OPS:
        raise ValueError(f"op: got {op!r}; allowed: {', '.join(BINARY_OPS)}")
    inputs, labels = all_pairs(p, op)
    return Pool(inputs=inputs, targets=labels, n_outputs=p, vocab_size=p, seq_len=2)
