"""A boundary study through real Ray Tune, real Optuna and a real SQLite MLflow, as a user runs it:
it starts at the largest size, stops within its budget of model-steps, gives every run its own
seed, and records the search (posterior, model-steps, the grid it replaces, f0 at every budget)."""

import json

import pandas as pd
import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.integration


def test_a_boundary_study_searches_stops_at_its_budget_and_records_the_search(tmp_path, cli):
    from mlflow.tracking import MlflowClient

    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    study = str(ROOT / "studies/critical_size_boundary.py")
    sets = ["steps=600", "max_steps_total=3000"]
    result = cli("run", study, "--quick", *[a for s in sets for a in ("--set", s)], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "boundary search over train_fraction in [0.1, 0.9]" in result.stdout  # the note up front
    assert "boundary search: " in result.stdout and "posterior critical fraction" in result.stdout

    out = tmp_path / "results/critical-size-boundary"
    table = pd.read_parquet(out / "trials.parquet")
    summary = json.loads((out / "estimate.json").read_text())
    # its budget of model-steps: every run within it (a run in flight counts at its whole budget)
    assert summary["model_steps"] == int(table["steps_run"].sum()) <= 3000
    assert summary["model_steps"] + 600 > 3000 - 600  # it stopped because the next would not fit
    # the largest size first, then sizes of its choosing; every run its own seed
    first = table.loc[table["seed"] == table["seed"].min(), "train_fraction"].iloc[0]
    assert first == pytest.approx(0.9)
    assert table["seed"].is_unique
    [report] = summary["boundary"]
    assert report["runs"] == len(table) and report["model_steps"] == summary["model_steps"]
    assert report["posterior_low"] <= report["posterior_median"] <= report["posterior_high"]
    assert {"grid_model_steps", "grid_points", "grid_spacing"} <= set(report) or not table["grokked"].any()
    if report["spend"]:  # where it spent its runs: every run and model-step in one distance band
        assert sum(b["runs"] for b in report["spend"]) == len(table)
        assert sum(b["model_steps"] for b in report["spend"]) == summary["model_steps"]
        assert "runs by distance from the critical fraction" in result.stdout
    budgets = [row["budget"] for row in summary["by_budget"]]
    assert budgets == sorted(budgets) and budgets[-1] == 600

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("critical-size-boundary")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("grokray.role") == "study"]
    children = [r for r in runs if r.data.tags.get("grokray.role") == "trial"]
    assert parent.info.status == "FINISHED"  # ended by its search, not taken for an interruption
    assert all(r.info.status == "FINISHED" for r in children) and len(children) == len(table)
    assert parent.data.metrics["model_steps"] == summary["model_steps"]
    assert parent.data.params["sampler"] == "boundary" and parent.data.params["monotone_stop"] == "0"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"estimate.json", "trials.parquet", "p_grok_vs_fraction.png"} <= artifacts
    assert "critical_vs_budget.png" in artifacts or not table["grokked"].any()
