"""When to compute the expensive progress measures: a log-spaced schedule over evaluations.

Evaluations happen at steps n · eval_every. ``is_log_step`` is True at step 0 and at the
evaluations whose index n = step / eval_every is the nearest integer to a point 2^(j / per_octave)
of a log-spaced grid (j = 0, 1, 2, …). With per_octave = 2 the indices are

    0, 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256, …

i.e. every doubling of the step holds about ``per_octave`` of them, and a run of N evaluations
computes the expensive measures about per_octave · log2(N) + 2 times instead of N. The schedule
depends on the step alone (no state), so it survives a resume from a checkpoint.
"""

from __future__ import annotations

import math


def is_log_step(step: int, eval_every: int, per_octave: int = 2) -> bool:
    """True at step 0 and at the evaluation nearest each grid point eval_every · 2^(j/per_octave)."""
    if eval_every < 1 or per_octave < 1:
        raise ValueError(f"eval_every and per_octave must be ≥ 1, got {eval_every} and {per_octave}")
    if step < 0 or step % eval_every:
        return False
    index = step // eval_every
    if index == 0:
        return True
    # round(2^(j/q)) == index needs j/q within half an index of log2(index): try the j around it.
    # 2^(j/q) is an integer or irrational, so it is never exactly halfway between two integers.
    center = per_octave * math.log2(index)
    return any(
        round(2.0 ** (j / per_octave)) == index
        for j in range(max(0, math.floor(center) - 1), math.ceil(center) + 2)
    )
