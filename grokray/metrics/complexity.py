"""Compression complexity of one network (DeMoss et al. 2024): its size after the best lossy compression
that keeps the loss within ε.

Every parameter counts: weight matrices, embeddings, biases and norm gains. One candidate
compression (τ, Δ), as in DeMoss et al.'s code (``apply_svd_truncate_quantize`` of
github.com/brantondemoss/GrokkingComplexity):

1. a 2-D tensor W (m × n, SVD W = U S Vᵀ) keeps the smallest k whose cumulative singular mass
   Σ_{i≤k} σ_i reaches τ · Σ_i σ_i. When that truncation pays (k(m + n) < mn) W is stored as its
   two factors A = U_k S_k (m × k) and B = V_kᵀ (k × n), each quantized, and the approximation is
   Â·B̂; otherwise W itself is quantized whole (full rank);
2. every other tensor (biases, gains) is quantized whole;
3. quantization to the bin Δ, one Δ for the whole network: codes = round(x / Δ), values = codes · Δ;
4. size = bytes of ``bz2.compress`` (level 9) over a header (Δ, and per tensor its shape, the rank
   kept and whether it is factored: what a decoder needs) followed by all integer codes, in the
   narrowest integer type that holds them.

Where this differs from their code, and why: their k is one less (``searchsorted`` without + 1,
so τ = 1 drops the last singular value and a rank-1 matrix keeps nothing); over a searched τ the
two rules reach the same ranks except k = 0. They pickle the quantized values as float32 arrays
before bz2; the integer codes are the same information, a tighter description (so a smaller
complexity). Their constraint is one-sided, L(θ̂) < L(θ) + ε; this one is |L(θ̂) − L(θ)| < ε.

A candidate is admissible when |loss_at(approximation) − loss_at(original)| < ε. The complexity is
the size of the smallest admissible candidate found, but never more than ``naive_bytes`` (their
naive bound: bz2 of each tensor's raw float32 bytes, summed), itself a lossless, hence admissible,
description.

The search (instead of the paper's Bayesian optimization; ~10-40 calls of ``loss_at``, one SVD per
matrix, one bz2 per τ tried):

- For a fixed τ the size falls as Δ grows, and the loss error is assumed not to fall, so the best
  Δ for τ is the largest admissible one. It is found by galloping (Δ × 4 or ÷ 4 from a start
  value) until the admissible limit is bracketed, then bisecting log Δ to 1/8 octave. Δ stays
  within [10⁻⁵·s, 2·s], s = the largest magnitude of any tensor or factor.
- τ descends a coarse grid (1, 0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5). τ = 1 starts at Δ = s/64 and
  may search the whole range; each later τ starts at the previous τ's Δ and gives up 16× below
  it. The descent stops at the first τ with no admissible Δ or whose size exceeds the best so far
  (the size is assumed unimodal in τ).
- Refinement: the midpoints between the best τ and its grid neighbours are tried the same way.
  τ values that give the same stored ranks are evaluated once.
"""

from __future__ import annotations

import bz2
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

TAU_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
DELTA_LOW = 1e-5  # smallest bin, relative to the largest magnitude
DELTA_HIGH = 2.0  # largest bin, relative to the largest magnitude (everything rounds to 0 above it)
START_DELTA = 2.0**-6  # first bin tried, relative to the largest magnitude
GALLOP = math.log(4.0)  # the search moves Δ by factors of 4 until it brackets the admissible limit
OCTAVE_RESOLUTION = 0.125  # ... then bisects log Δ to 1/8 octave (9 %)
_MASS_TOLERANCE = 1e-9  # cumulative singular mass is computed in float64


@dataclasses.dataclass
class _Tensor:
    """One parameter in float64 on the CPU; for a 2-D one also its SVD factors U S and Vᵀ."""

    original: torch.Tensor
    values: torch.Tensor
    left: torch.Tensor | None = None  # U S, (m, r)
    right: torch.Tensor | None = None  # Vᵀ, (r, n)
    mass: torch.Tensor | None = None  # cumulative singular mass, normalized to end at 1, (r,)

    @classmethod
    def of(cls, tensor: torch.Tensor) -> _Tensor:
        values = tensor.detach().to("cpu", torch.float64)
        if values.dim() != 2 or values.numel() == 0:
            return cls(tensor, values)
        u, s, vh = torch.linalg.svd(values, full_matrices=False)
        total = s.sum()
        mass = s.cumsum(0) / total if total > 0 else torch.zeros_like(s)
        return cls(tensor, values, u * s, vh, mass)

    @property
    def is_matrix(self) -> bool:
        return self.mass is not None

    @property
    def full_rank(self) -> int:
        return 0 if self.mass is None else self.mass.numel()

    @property
    def largest(self) -> float:
        parts = [t for t in (self.values, self.left, self.right) if t is not None and t.numel()]
        return max((float(t.abs().max()) for t in parts), default=0.0)

    def rank(self, tau: float) -> int:
        """The rank stored at τ: the smallest k whose cumulative singular mass reaches τ when the
        truncation to k pays (k(m + n) < mn), else the full rank (W is stored whole); 0 for the
        zero matrix."""
        if self.mass is None or self.mass[-1] == 0:
            return 0
        k = int(torch.searchsorted(self.mass, torch.tensor(tau - _MASS_TOLERANCE, dtype=torch.float64)))
        k = min(k + 1, self.full_rank)
        return k if self.factored(k) else self.full_rank

    def factored(self, k: int) -> bool:
        m, n = self.values.shape
        return 0 < k < self.full_rank and k * (m + n) < m * n

    def encode(self, k: int, delta: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The approximation (in the original dtype and device) and its integer codes."""
        if self.is_matrix and k == 0:
            return torch.zeros_like(self.original), []
        if self.is_matrix and self.factored(k):
            assert self.left is not None and self.right is not None
            left = torch.round(self.left[:, :k] / delta)
            right = torch.round(self.right[:k] / delta)
            approx = (left * delta) @ (right * delta)
            codes = [left.T, right]  # one row per singular direction
        else:
            quantized = torch.round(self.values / delta)
            approx, codes = quantized * delta, [quantized]
        return approx.to(self.original.device, self.original.dtype), codes


def _ranks(tensors: Sequence[_Tensor], tau: float) -> tuple[int, ...]:
    """The stored rank of every tensor (0 for those that are not matrices)."""
    return tuple(t.rank(tau) for t in tensors)


def _serialize(
    tensors: Sequence[_Tensor], ranks: Sequence[int], delta: float, codes: list[torch.Tensor]
) -> bytes:
    flat = torch.cat([c.reshape(-1) for c in codes]) if codes else torch.zeros(0, dtype=torch.float64)
    largest = float(flat.abs().max()) if flat.numel() else 0.0
    dtype = next(t for t in (np.int8, np.int16, np.int32, np.int64) if largest <= np.iinfo(t).max)
    header = [
        [t.values.dim(), *t.values.shape, k, int(t.is_matrix and t.factored(k))]
        for t, k in zip(tensors, ranks, strict=True)
    ]
    return (
        np.array([delta], dtype=np.float64).tobytes()
        + np.dtype(dtype).str.encode()
        + np.array([v for entry in header for v in entry], dtype=np.int64).tobytes()
        + flat.numpy().astype(dtype).tobytes()
    )


def _compress(
    tensors: Sequence[_Tensor], ranks: Sequence[int], delta: float
) -> tuple[list[torch.Tensor], int]:
    """The approximated tensors and their compressed size in bytes."""
    approx, codes = [], []
    for tensor, k in zip(tensors, ranks, strict=True):
        approximation, tensor_codes = tensor.encode(k, delta)
        approx.append(approximation)
        codes += tensor_codes
    return approx, len(bz2.compress(_serialize(tensors, ranks, delta, codes), compresslevel=9))


def _approximate(tensors: Sequence[_Tensor], ranks: Sequence[int], delta: float) -> list[torch.Tensor]:
    return [tensor.encode(k, delta)[0] for tensor, k in zip(tensors, ranks, strict=True)]


def naive_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """DeMoss et al.'s naive bound: bz2 of each tensor's raw float32 bytes, summed (30-40× looser)."""
    return sum(
        len(bz2.compress(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes(), compresslevel=9))
        for t in tensors
    )


def lossy_compress(
    tensors: Sequence[torch.Tensor], tau: float, delta: float
) -> tuple[list[torch.Tensor], int]:
    """One candidate: the approximated tensors and the compressed size in bytes (see the module doc)."""
    if delta <= 0:
        raise ValueError(f"delta: got {delta}; allowed: > 0")
    prepared = [_Tensor.of(t) for t in tensors]
    return _compress(prepared, _ranks(prepared, tau), delta)


def compressed_complexity(
    tensors: Sequence[torch.Tensor],
    loss_at: Callable[[list[torch.Tensor]], float],
    epsilon: float,
    taus: Sequence[float] = TAU_GRID,
    octave_resolution: float = OCTAVE_RESOLUTION,
    refine: bool = True,
) -> dict[str, Any]:
    """Compression complexity of ONE network's parameters (all of them) under loss tolerance ε.

    ``loss_at(approx)`` is the network's loss with its parameters replaced by ``approx`` (same
    order, shapes, dtype and device as ``tensors``). Returns ``complexity_bytes``, ``naive_bytes``,
    the chosen ``tau`` and ``delta`` (1.0 and 0.0 when the raw weights were smallest), the
    ``ranks`` stored per 2-D tensor (its full rank when it is stored whole), ``loss_change``
    |L(approx) − L(original)| of the choice and ``evaluations`` (calls of ``loss_at``).
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon: got {epsilon}; allowed: > 0")
    if not tensors:
        raise ValueError("tensors: empty")
    prepared = [_Tensor.of(t) for t in tensors]
    matrix_rows = [i for i, t in enumerate(prepared) if t.is_matrix]
    original_loss = float(loss_at(list(tensors)))
    if not math.isfinite(original_loss):
        raise ValueError(f"loss_at(tensors) is {original_loss}; the complexity needs a finite loss")
    naive = naive_bytes(tensors)
    best: dict[str, Any] = {
        "complexity_bytes": naive,
        "naive_bytes": naive,
        "tau": 1.0,
        "delta": 0.0,
        "ranks": [prepared[i].full_rank for i in matrix_rows],
        "loss_change": 0.0,
        "evaluations": 1,
    }
    scale = max(t.largest for t in prepared)
    if scale == 0.0:
        return best
    log_low, log_high = math.log(DELTA_LOW * scale), math.log(DELTA_HIGH * scale)
    resolution = octave_resolution * math.log(2.0)

    def loss_change(ranks: tuple[int, ...], log_delta: float) -> float:
        best["evaluations"] += 1
        change = abs(float(loss_at(_approximate(prepared, ranks, math.exp(log_delta)))) - original_loss)
        return change if math.isfinite(change) else math.inf

    def largest_admissible(ranks: tuple[int, ...], start: float, floor: float) -> tuple[float, float] | None:
        """(log Δ, loss change) of the largest admissible Δ ≥ e^floor, from e^start; None if none."""
        change = loss_change(ranks, start)
        if change < epsilon:  # gallop up to the first inadmissible bin
            low, low_change, high = start, change, log_high
            while low < log_high:
                candidate = min(low + GALLOP, log_high)
                candidate_change = loss_change(ranks, candidate)
                if candidate_change >= epsilon:
                    high = candidate
                    break
                low, low_change = candidate, candidate_change
            if low >= log_high:
                return low, low_change
        else:  # gallop down to the first admissible bin
            high = start
            while True:
                low = max(high - GALLOP, floor)
                low_change = loss_change(ranks, low)
                if low_change < epsilon:
                    break
                if low <= floor:
                    return None
                high = low
        while high - low > resolution:
            middle = (low + high) / 2
            middle_change = loss_change(ranks, middle)
            if middle_change < epsilon:
                low, low_change = middle, middle_change
            else:
                high = middle
        return low, low_change

    # stored ranks → (size, log Δ) of the best compression with them, None when none is admissible
    found: dict[tuple[int, ...], tuple[int, float] | None] = {}

    def visit(tau: float, start: float, floor: float) -> tuple[int, float] | None:
        ranks = _ranks(prepared, tau)
        if ranks not in found:
            limit = largest_admissible(ranks, start, floor)
            found[ranks] = None
            if limit is not None:
                log_delta, change = limit
                _, size = _compress(prepared, ranks, math.exp(log_delta))
                found[ranks] = size, log_delta
                if size < best["complexity_bytes"]:
                    best.update(
                        complexity_bytes=size,
                        tau=tau,
                        delta=math.exp(log_delta),
                        ranks=[ranks[i] for i in matrix_rows],
                        loss_change=change,
                    )
        return found[ranks]

    # Descend the τ grid. The first τ may need the whole Δ range; each later one starts at the
    # previous τ's Δ and gives up 16× below it (less singular mass should not admit a much finer bin).
    grid = sorted(set(taus), reverse=True)
    results: list[tuple[int, float] | None] = []
    start, floor = math.log(START_DELTA * scale), log_low
    for tau in grid:
        result = visit(tau, start, floor)
        results.append(result)
        if result is None or result[0] > min(r[0] for r in results if r is not None):
            break  # inadmissible, or past the minimum of the (assumed unimodal) size curve
        start, floor = result[1], result[1] - 2 * GALLOP
    admissible = [i for i, result in enumerate(results) if result is not None]
    if refine and admissible:
        center = min(admissible, key=lambda i: results[i][0])  # type: ignore[index]
        log_delta = results[center][1]  # type: ignore[index]
        for neighbour in (center - 1, center + 1):
            if 0 <= neighbour < len(grid):
                visit((grid[center] + grid[neighbour]) / 2, log_delta, log_delta - 2 * GALLOP)
    return best
