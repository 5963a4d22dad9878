"""The per-size summary of a study's trial table: what a researcher reads first of a sweep over
the training size, previewable in the MLflow UI (CSV and HTML) and printed by ``grokray report``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

SIZE_COLUMNS = ("n", "p_grok", "median_grokking_step", "censored", "unconfirmed", "dominated", "failed")


def size_summary(
    table: pd.DataFrame, size_col: str = "train_fraction", group_cols: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per (group, size): ``n`` runs; ``p_grok`` = grokked / runs that were trained and
    not failed (a dominated run is counted as not grokked: the monotone rule inferred it);
    ``median_grokking_step`` of the runs that grokked; ``censored``: runs that trained their whole
    budget without grokking; ``unconfirmed``: of those, runs above the grok threshold at the budget
    whose ``patience`` had not run out (they may have grokked just after it); ``dominated``: runs
    stopped because larger sizes did not grok;
    ``failed``: runs whose trial raised."""
    if table.empty or size_col not in table:
        return pd.DataFrame(columns=[*group_cols, size_col, *SIZE_COLUMNS])
    reasons = table.get("stop_reason", pd.Series("", index=table.index)).astype(str)
    grokked = table.get("grokked", pd.Series(False, index=table.index)).fillna(False).astype(bool)
    steps = pd.to_numeric(table.get("grokking_step", pd.Series(math.nan, index=table.index)), errors="coerce")
    frame = pd.DataFrame(
        {
            **{c: table[c].astype(str) for c in group_cols if c in table},
            size_col: table[size_col],
            "grokked": grokked & (reasons != "failed"),
            "step": steps.where(grokked),
            "censored": reasons == "budget",
            "unconfirmed": (reasons == "budget")
            & table.get("grok_unconfirmed", pd.Series(False, index=table.index)).fillna(False).astype(bool),
            "dominated": reasons == "dominated",
            "failed": reasons == "failed",
        }
    )
    keys = [*[c for c in group_cols if c in table], size_col]
    rows: list[dict[str, Any]] = []
    for key, part in frame.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        counted = part[~part["failed"]]
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n": len(part),
                "p_grok": float(counted["grokked"].mean()) if len(counted) else math.nan,
                "median_grokking_step": float(part["step"].median())
                if part["step"].notna().any()
                else math.nan,
                "censored": int(part["censored"].sum()),
                "unconfirmed": int(part["unconfirmed"].sum()),
                "dominated": int(part["dominated"].sum()),
                "failed": int(part["failed"].sum()),
            }
        )
    return pd.DataFrame(rows, columns=[*keys, *SIZE_COLUMNS])


def format_size_summary(summary: pd.DataFrame) -> str:
    """A fixed-width text table of ``size_summary`` (at most 100 columns for a few group names)."""
    if summary.empty:
        return "(no runs)"
    shown = summary.copy()
    shown["p_grok"] = shown["p_grok"].map(lambda v: "-" if pd.isna(v) else f"{v:.2f}")
    shown["median_grokking_step"] = shown["median_grokking_step"].map(
        lambda v: "-" if pd.isna(v) else f"{v:.0f}"
    )
    header = [c.replace("median_grokking_step", "median grok step") for c in shown.columns]
    cells = [[str(v) for v in row] for row in shown.itertuples(index=False)]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)
