"""The end of a study: the trial table (one row per replica run), the outcome summary, and the
study's answer (critical size, slopes, plots) logged to the parent run.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from grokray.crash import crash_point
from grokray.outcomes import mark_failed
from grokray.storage import Storage
from grokray.study import Study
from grokray.tune.callbacks import ended_before_failure
from grokray.tune.results import replica_rows


def trial_id_of(result: Any) -> str:
    return (result.metrics or {}).get("trial_id") or Path(result.path).name


def trial_table(study: Study, results: Any) -> pd.DataFrame:
    """One row per replica run: run key, Tune trial, the full config, the outcome, the data sizes."""
    rows = []
    for result in results:
        trial_rows = replica_rows(study, trial_id_of(result), result.config or {}, result.metrics or {})
        for row in trial_rows:
            # a replica of a pack that ended before the pack raised keeps its outcome
            row["failed"] = result.error is not None and not ended_before_failure(row)
            if row["failed"]:
                mark_failed(row)
        rows.extend(trial_rows)
    table = pd.DataFrame(rows)
    for key in ("memorization_step", "grokking_step", "grokking_delay"):
        if key in table:
            table[key] = pd.to_numeric(table[key], errors="coerce")
    return table


def outcome_summary(study: Study, table: pd.DataFrame) -> str:
    """Per searched config (seeds pooled): runs, grokked, mean grokking step and delay, phases."""
    names = [k for k in study.searched_names() if k in table]
    if table.empty:
        return "(no trials)"
    groups = table.groupby(names, sort=True, dropna=False) if names else [((), table)]
    rows = []
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{n}={v}" for n, v in zip(names, key, strict=True)) or "all"
        phases = (
            part["doshi_phase"] if "doshi_phase" in part and part["corruption"].gt(0).any() else part["phase"]
        )
        rows.append(
            [
                label,
                f"{int(part['grokked'].fillna(False).astype(bool).sum())}/{len(part)}",
                _mean_text(part["grokking_step"]),
                _mean_text(part["grokking_delay"]),
                f"{pd.to_numeric(part['final_val_acc'], errors='coerce').mean():.3f}",
                ", ".join(sorted({str(v) for v in phases.dropna()})),
            ]
        )
    header = ["config", "grokked", "grokking step", "grokking delay", "val acc", "phase"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]
    )


def _mean_text(values: pd.Series) -> str:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return f"{numbers.mean():.0f}" if len(numbers) else "-"


def second_dimension(study: Study, size_col: str) -> str | None:
    """The searched name the study figure facets by: the estimate's first group column, else the
    first searched name that is not the size (None for a size-only study)."""
    for name in [*study.group_names(), *study.searched_names()]:
        if name not in (size_col, "seed"):
            return name
    return None


def _size_label(size_col: str) -> str:
    return "fraction" if size_col == "train_fraction" else size_col


def model_steps(table: pd.DataFrame) -> int:
    """The steps the study's runs trained, summed over runs (its compute, in model-steps)."""
    if "steps_run" not in table:
        return 0
    return int(pd.to_numeric(table["steps_run"], errors="coerce").fillna(0).sum())


def widen_to_posterior(study: Study, table: pd.DataFrame, estimates: list[dict]) -> None:
    """A boundary study's reported 95 % interval: the hull of the bootstrap's and the search's
    posterior's (in place; the bootstrap's kept as ``ci_bootstrap_low`` / ``ci_bootstrap_high``).

    The search tries most sizes once. Where the band is noisy the bootstrap (drawn from the fitted
    logistic, whose slope a dozen runs overstate) covers the critical size far less often than
    95 %, also where the few runs happen to be separated; the posterior, which weighs every slope
    the runs allow, covers about as often as it says. ``python -m bench.coverage`` measures it on
    simulated runs: the hull covers 0.93-0.97 where the bootstrap alone covers 0.60-0.95, at up to
    twice its width where the band is sharp. The point estimate stays the logistic fit's."""
    from grokray.tune.boundary import BoundarySearch

    search = BoundarySearch(study)
    scale = 1.0
    if search.size_key == "train_size" and "n_total" in table:
        scale = float(pd.to_numeric(table["n_total"], errors="coerce").median())
    by_group = {tuple(str(v) for v in e["group"].values()): e for e in estimates}
    for row in search.report(search.from_table(table)):
        estimate = by_group.get(tuple(str(v) for v in row["group"].values()))
        if estimate is None or "posterior_low" not in row:
            continue
        low, high = estimate["ci_low"], estimate["ci_high"]
        if not (math.isfinite(low) and math.isfinite(high)):
            continue  # nothing estimated (every run grokked, or none): the note says why
        estimate["ci_bootstrap_low"], estimate["ci_bootstrap_high"] = low, high
        estimate["ci_low"] = min(low, row["posterior_low"] / scale)
        estimate["ci_high"] = max(high, row["posterior_high"] / scale)
        if (estimate["ci_low"], estimate["ci_high"]) != (low, high):
            note = "95 % interval: the hull of the bootstrap's and the boundary search's posterior's"
            estimate["note"] = f"{estimate['note']}; {note}" if estimate.get("note") else note


def boundary_report(study: Study, table: pd.DataFrame, estimates: list[dict]) -> list[dict[str, Any]]:
    """Per group of a boundary study: the search's posterior interval, its runs and model-steps,
    and what a grid of the same resolution (its spacing the estimate's 95 % interval) would have
    spent (``grokray.analysis.boundary.grid_equivalent``)."""
    from grokray.analysis.boundary import grid_equivalent, spend_by_distance
    from grokray.tune.boundary import BoundarySearch

    search = BoundarySearch(study)
    states = search.from_table(table)
    report = search.report(states)
    scale = 1.0
    if search.size_key == "train_size" and "n_total" in table:
        scale = float(pd.to_numeric(table["n_total"], errors="coerce").median())
    by_group = {tuple(str(v) for v in e["group"].values()): e for e in estimates}
    runs = table
    if "failed" in runs:
        runs = runs[~runs["failed"].fillna(False).astype(bool)]
    runs = runs[runs["grokked"].notna()] if "grokked" in runs else runs.iloc[0:0]
    for row, state in zip(report, states.values(), strict=True):
        estimate = by_group.get(tuple(str(v) for v in row["group"].values()), {})
        width = (estimate.get("ci_high", math.nan) - estimate.get("ci_low", math.nan)) * scale
        mine = runs[[search.key_of(r) == state.key for r in runs.to_dict("records")]] if len(runs) else runs
        row["spend"] = spend_by_distance(
            pd.to_numeric(mine[search.size_key], errors="coerce").tolist() if len(mine) else [],
            mine["grokked"].astype(bool).tolist() if len(mine) else [],
            pd.to_numeric(mine["steps_run"], errors="coerce").fillna(0).astype(int).tolist()
            if len(mine)
            else [],
            float(estimate.get("critical_fraction", math.nan)) * scale,
            study.boundary_precision(),
        )
        row.update(
            grid_equivalent(
                state.sizes,
                state.grokked,
                state.grok_sizes,
                state.grok_steps,
                search.low,
                search.high,
                width,
                search.seeds,
                state.budget,
                monotone=study.monotone_stop,
            )
        )
    return report


def format_boundary(report: list[dict[str, Any]], spent: int, size_col: str) -> str:
    """The boundary search's lines under the estimate: each group's posterior interval and
    model-steps, against the grid of the same resolution."""
    label = "fraction" if size_col == "train_fraction" else size_col
    lines = [f"\nboundary search: {spent:,} model-steps in all"]
    for row in report:
        name = ", ".join(f"{k}={v}" for k, v in row["group"].items()) or "all"
        text = f"  {name}: {row['runs']} runs, {row['model_steps']:,} model-steps"
        if "posterior_low" in row:
            text += (f"; posterior critical {label} {row['posterior_median']:.3g} "
                     f"[{row['posterior_low']:.3g}, {row['posterior_high']:.3g}]")  # fmt: skip
        if "grid_model_steps" in row:
            text += (f"; a grid of the same resolution ({row['grid_points']} sizes x {row['grid_seeds']} "
                     f"seeds, spacing {row['grid_spacing']:.3g}): ~{row['grid_model_steps']:,.0f} "
                     "model-steps (estimated from these runs)")  # fmt: skip
        lines.append(text)
        if row.get("spend"):
            bands = [
                f"{b['band']}: {b['runs']} runs ({b['grokked']} grokked), {b['model_steps']:,} model-steps"
                for b in row["spend"]
            ]
            lines.append(f"    runs by distance from the critical {label}: " + "; ".join(bands))
    return "\n".join(lines)


def finish_study(
    study: Study, tracker: Any, table: pd.DataFrame, curves: list[pd.DataFrame], store: Storage
) -> dict[str, Any]:
    """Estimate, plots, artifacts: the study's answer, logged to the parent run."""
    from grokray.analysis import critical_data_size, format_estimates
    from grokray.analysis.critical import critical_by_budget
    from grokray.analysis.plots import (
        plot_critical_by_budget,
        plot_grok_probability,
        plot_phase_boundary,
        plot_validation_curves,
    )
    from grokray.analysis.sizes import size_summary
    from grokray.analysis.slope import format_slopes, study_slopes
    from grokray.analysis.study_plots import study_plots
    from grokray.tracking import jsonable

    size_col = study.size_key() or "train_fraction"
    group_cols = study.group_names()
    estimates = critical_data_size(table, size_col=size_col, group_cols=group_cols, binned=study.group_bins())
    summary = {
        "study": study.name,
        "budget_steps": int(study.resolve({})["steps"]),
        "task": study.resolve({})["task"],
        "op": study.resolve({})["op"],
        "p": study.resolve({})["p"],
        "regularizer": "searched" if "regularizer" in study.space else study.resolve({})["regularizer"],
        "n_trials": len(table),
        "n_failed": int(table["failed"].sum()) if "failed" in table else 0,
        "estimates": estimates,
    }
    per_size = size_summary(table, size_col, group_cols) if size_col in study.space else None
    if per_size is not None:
        summary["per_size"] = per_size.to_dict("records")
    # Notsawo et al.'s law: log(delay) against log(lr·β), per norm, for studies that vary β
    slopes = study_slopes(table, study.searched_names())
    if slopes is not None:
        summary["slopes"] = slopes
    summary["model_steps"] = model_steps(table)
    by_budget = []
    if size_col in study.space:  # P(grok within b) for every b up to the budget, from the same runs
        by_budget = critical_by_budget(
            table, size_col, group_cols, n_bootstrap=200, binned=study.group_bins()
        )
        summary["by_budget"] = by_budget
    if study.sampler == "boundary":
        widen_to_posterior(study, table, estimates)
        summary["boundary"] = boundary_report(study, table, estimates)
    out_dir = store.join(study.name)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        table_path = tmp_path / "trials.parquet"
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), table_path)
        # previewable in the MLflow UI: the per-run table as CSV, the per-size summary as CSV and HTML
        previews = [tmp_path / "trials.csv"]
        table.to_csv(previews[0], index=False)
        if per_size is not None:
            per_size.to_csv(tmp_path / "per_size.csv", index=False)
            (tmp_path / "per_size.html").write_text(
                per_size.to_html(index=False, na_rep="-", float_format="%.3g")
            )
            previews += [tmp_path / "per_size.csv", tmp_path / "per_size.html"]
        (tmp_path / "estimate.json").write_text(json.dumps(jsonable(summary), indent=2, default=str))
        plots = []
        all_curves = pd.concat(curves, ignore_index=True) if curves else None
        if all_curves is not None:
            plots.append(
                plot_validation_curves(
                    all_curves,
                    table,
                    tmp_path / "val_acc_vs_step.png",
                    size_col=size_col,
                    facet_col=second_dimension(study, size_col),
                )
            )
        if size_col in study.space:  # the critical-size figure needs a sweep over data size
            plots.append(
                plot_grok_probability(
                    table, estimates, tmp_path / f"p_grok_vs_{_size_label(size_col)}.png", size_col=size_col
                )
            )
        if any(math.isfinite(r["critical_fraction"]) for r in by_budget):
            plots.append(
                plot_critical_by_budget(by_budget, tmp_path / "critical_vs_budget.png", size_col=size_col)
            )
        if size_col in study.space and len(group_cols) == 1:  # the phase boundary over the other name
            plots.append(
                plot_phase_boundary(
                    table, estimates, tmp_path / "phase_boundary.png", size_col=size_col, dim=group_cols[0]
                )
            )
        plots.extend(study_plots(study.plots, table, all_curves, tmp_path))
        for path in (table_path, *previews, tmp_path / "estimate.json", *plots):
            tracker.log_study_artifact(path)
            if store.exists(out_dir):
                store.write_bytes(f"{out_dir}/{path.name}", path.read_bytes())
            if path == table_path:
                crash_point("table")
    first = estimates[0] if estimates else {}
    tracker.log_study_metrics(
        {
            k: first.get(k)
            for k in ("critical_fraction", "ci_low", "ci_high", "critical_size", "peak_fraction")
            if isinstance(first.get(k), (int, float))
        }
        | {"model_steps": summary["model_steps"]}
    )
    if summary.get("boundary"):
        grid_steps = sum(g.get("grid_model_steps", 0.0) for g in summary["boundary"])
        tracker.log_study_metrics({"grid_model_steps": grid_steps})
    if slopes is not None:
        tracker.log_study_metrics(
            {f"slope_{s['group']}": s["slope"] for s in slopes if math.isfinite(s["slope"])}
        )
    crash_point("estimate")
    tracker.set_study_tags({"grokray.has_estimate": "true"})
    summary["sweeps_size"] = size_col in study.space
    summary["table"] = (
        format_estimates(estimates) if summary["sweeps_size"] else outcome_summary(study, table)
    )
    if slopes is not None:
        summary["table"] += "\n" + format_slopes(slopes)
    if summary.get("boundary"):
        summary["table"] += "\n" + format_boundary(summary["boundary"], summary["model_steps"], size_col)
    summary["results_dir"] = store.show(out_dir)
    summary["parent_run_id"] = tracker.parent_run_id
    return summary
