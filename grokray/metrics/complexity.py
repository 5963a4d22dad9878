"""Compression complexity of one network (DeMoss et al. 2024): its size after the best lossy compression
that keeps the loss within ε.

One candidate compression (τ, Δ) of the weight matrices, per matrix W (m × n, SVD W = U S Vᵀ):

1. keep the smallest k with cumulative singular mass Σ_{i≤k} σ_i ≥ τ · Σ_i σ_i;
2. quantize to the bin Δ (codes = round(x / Δ), values = codes · Δ). As in DeMoss et al.'s code,
   a truncation that pays (k(m + n) < mn) is stored as its two factors A = U_k √S_k (m × k) and
   B = √S_k V_kᵀ (k × n), each quantized, and the approximation is Â·B̂; otherwise the
   reconstruction U_k S_k V_kᵀ (W itself at full rank) is quantized whole. ``factored=False``
   always quantizes the reconstruction.
3. size = bytes of ``bz2.compress`` (level 9) over a header (Δ, and per matrix m, n, k and whether it
   is factored: what a decoder needs) followed by all integer codes, in the narrowest integer type
   that holds them.

A candidate is admissible when |loss_at(approximation) − loss_at(original)| < ε. The complexity is
the size of the smallest admissible candidate found, but never more than ``naive_bytes`` (bz2 of
the raw float32 weights), which is itself a lossless, hence admissible, description.

The search (instead of the paper's Bayesian optimization; ~10-40 calls of ``loss_at``, one SVD per
matrix, one bz2 per τ tried):

- For a fixed τ the size falls as Δ grows, and the loss error is assumed not to fall, so the best
  Δ for τ is the largest admissible one. It is found by galloping (Δ × 4 or ÷ 4 from a start
  value) until the admissible limit is bracketed, then bisecting log Δ to 1/8 octave. Δ stays
  within [10⁻⁵·s, 2·s], s = the largest magnitude of any matrix or factor.
- τ descends a coarse grid (1, 0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5). τ = 1 starts at Δ = s/64 and
  may search the whole range; each later τ starts at the previous τ's Δ and gives up 16× below
  it. The descent stops at the first τ with no admissible Δ or whose size exceeds the best so far
  (the size is assumed unimodal in τ).
- Refinement: the midpoints between the best τ and its grid neighbours are tried the same way.
  τ values that give the same ranks are evaluated once.
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
class _Matrix:
    """One weight matrix and its balanced SVD factors, in float64 on the CPU."""

    original: torch.Tensor
    weight: torch.Tensor
    left: torch.Tensor  # U √S, (m, r)
    right: torch.Tensor  # √S Vᵀ, (r, n)
    mass: torch.Tensor  # cumulative singular mass, normalized to end at 1, (r,)

    @classmethod
    def of(cls, matrix: torch.Tensor) -> _Matrix:
        if matrix.dim() != 2:
            raise ValueError(f"matrices: expected 2-D tensors, got shape {tuple(matrix.shape)}")
        weight = matrix.detach().to("cpu", torch.float64)
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        root = s.sqrt()
        total = s.sum()
        mass = s.cumsum(0) / total if total > 0 else torch.zeros_like(s)
        return cls(matrix, weight, u * root, root.unsqueeze(1) * vh, mass)

    @property
    def full_rank(self) -> int:
        return self.mass.numel()

    def rank(self, tau: float) -> int:
        """Smallest k whose cumulative singular mass reaches τ (0 for the zero matrix)."""
        if self.mass.numel() == 0 or self.mass[-1] == 0:
            return 0
        k = int(torch.searchsorted(self.mass, torch.tensor(tau - _MASS_TOLERANCE, dtype=torch.float64)))
        return min(k + 1, self.full_rank)

    def factored(self, k: int) -> bool:
        m, n = self.weight.shape
        return 0 < k < self.full_rank and k * (m + n) < m * n

    def encode(self, k: int, delta: float, factored: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The approximation (in the original dtype and device) and its integer codes."""
        if k == 0:
            return torch.zeros_like(self.original), []
        if factored and self.factored(k):
            left = torch.round(self.left[:, :k] / delta)
            right = torch.round(self.right[:k] / delta)
            approx = (left * delta) @ (right * delta)
            codes = [left.T, right]  # one row per singular direction
        else:
            reconstruction = self.weight if k == self.full_rank else self.left[:, :k] @ self.right[:k]
            quantized = torch.round(reconstruction / delta)
            approx, codes = quantized * delta, [quantized]
        return approx.to(self.original.device, self.original.dtype), codes


def _serialize(
    matrices: Sequence[_Matrix], ranks: Sequence[int], delta: float, factored: bool, codes: list[torch.Tensor]
) -> bytes:
    flat = torch.cat([c.reshape(-1) for c in codes]) if codes else torch.zeros(0, dtype=torch.float64)
    largest = float(flat.abs().max()) if flat.numel() else 0.0
    dtype = next(t for t in (np.int8, np.int16, np.int32, np.int64) if largest <= np.iinfo(t).max)
    header = np.array(
        [[*m.weight.shape, k, int(factored and m.factored(k))] for m, k in zip(matrices, ranks, strict=True)],
        dtype=np.int32,
    )
    return (
        np.array([delta], dtype=np.float64).tobytes()
        + np.dtype(dtype).str.encode()
        + header.tobytes()
        + flat.numpy().astype(dtype).tobytes()
    )


def _compress(
    matrices: Sequence[_Matrix], ranks: Sequence[int], delta: float, factored: bool
) -> tuple[list[torch.Tensor], bytes]:
    """The approximated matrices and the bytes that describe them (before bz2)."""
    approx, codes = [], []
    for matrix, k in zip(matrices, ranks, strict=True):
        approximation, matrix_codes = matrix.encode(k, delta, factored)
        approx.append(approximation)
        codes += matrix_codes
    return approx, _serialize(matrices, ranks, delta, factored, codes)


def _approximate(
    matrices: Sequence[_Matrix], ranks: Sequence[int], delta: float, factored: bool
) -> list[torch.Tensor]:
    return [matrix.encode(k, delta, factored)[0] for matrix, k in zip(matrices, ranks, strict=True)]


def naive_bytes(matrices: Sequence[torch.Tensor]) -> int:
    """bz2 size of the raw float32 bytes of the matrices (DeMoss's naive, 30-40× looser, bound)."""
    raw = b"".join(m.detach().to("cpu", torch.float32).contiguous().numpy().tobytes() for m in matrices)
    return len(bz2.compress(raw, compresslevel=9))


def lossy_compress(
    matrices: Sequence[torch.Tensor], tau: float, delta: float, factored: bool = True
) -> tuple[list[torch.Tensor], int]:
    """One candidate: the approximated matrices and the compressed size in bytes (see the module doc)."""
    if delta <= 0:
        raise ValueError(f"delta: got {delta}; allowed: > 0")
    prepared = [_Matrix.of(m) for m in matrices]
    approx, payload = _compress(prepared, [m.rank(tau) for m in prepared], delta, factored)
    return approx, len(bz2.compress(payload, compresslevel=9))


def compressed_complexity(
    matrices: Sequence[torch.Tensor],
    loss_at: Callable[[list[torch.Tensor]], float],
    epsilon: float,
    taus: Sequence[float] = TAU_GRID,
    octave_resolution: float = OCTAVE_RESOLUTION,
    refine: bool = True,
    factored: bool = True,
) -> dict[str, Any]:
    """Compression complexity of ONE network's weight matrices (2-D tensors) under loss tolerance ε.

    ``loss_at(approx)`` is the network's loss with its matrices replaced by ``approx`` (same order,
    shapes, dtype and device as ``matrices``). Returns ``complexity_bytes``, ``naive_bytes``, the
    chosen ``tau`` and ``delta`` (1.0 and 0.0 when the raw weights were smallest), the ``ranks`` kept
    per matrix, ``loss_change`` |L(approx) − L(original)| of the choice and ``evaluations`` (calls of
    ``loss_at``).
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon: got {epsilon}; allowed: > 0")
    if not matrices:
        raise ValueError("matrices: empty")
    prepared = [_Matrix.of(m) for m in matrices]
    original_loss = float(loss_at(list(matrices)))
    if not math.isfinite(original_loss):
        raise ValueError(f"loss_at(matrices) is {original_loss}; the complexity needs a finite loss")
    naive = naive_bytes(matrices)
    best: dict[str, Any] = {
        "complexity_bytes": naive,
        "naive_bytes": naive,
        "tau": 1.0,
        "delta": 0.0,
        "ranks": [m.full_rank for m in prepared],
        "loss_change": 0.0,
        "evaluations": 1,
    }
    scale = max(
        max(float(t.abs().max()) if t.numel() else 0.0 for t in (m.weight, m.left, m.right)) for m in prepared
    )
    if scale == 0.0:
        return best
    log_low, log_high = math.log(DELTA_LOW * scale), math.log(DELTA_HIGH * scale)
    resolution = octave_resolution * math.log(2.0)

    def loss_change(ranks: tuple[int, ...], log_delta: float) -> float:
        best["evaluations"] += 1
        change = abs(
            float(loss_at(_approximate(prepared, ranks, math.exp(log_delta), factored))) - original_loss
        )
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

    # ranks → (size, log Δ) of the best compression with those ranks, None when none is admissible
    found: dict[tuple[int, ...], tuple[int, float] | None] = {}

    def visit(tau: float, start: float, floor: float) -> tuple[int, float] | None:
        ranks = tuple(m.rank(tau) for m in prepared)
        if ranks not in found:
            limit = largest_admissible(ranks, start, floor)
            found[ranks] = None
            if limit is not None:
                log_delta, change = limit
                _, payload = _compress(prepared, ranks, math.exp(log_delta), factored)
                size = len(bz2.compress(payload, compresslevel=9))
                found[ranks] = size, log_delta
                if size < best["complexity_bytes"]:
                    best.update(complexity_bytes=size, tau=tau, delta=math.exp(log_delta), ranks=list(ranks))
                    best["loss_change"] = change
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
