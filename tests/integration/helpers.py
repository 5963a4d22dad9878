"""What the integration tests do as a user would: run grokray in a subprocess, read its runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.paths import ROOT

SMOKE_ARGS = ("--quick", "--set", "train_fraction=0.2,0.5,0.8", "--set", "seeds=2")


def run_grokray(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m grokray ARGS`` in a subprocess (its own session: nothing of it outlives a kill)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "grokray", *args], cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def parent_run_id(workdir: Path, study_name: str = "critical-size") -> str:
    """The MLflow parent run of the study run in ``workdir`` (from ``results/STUDY/grokray.json``)."""
    import json

    return json.loads((workdir / "results" / study_name / "grokray.json").read_text())["parent_run_id"]


def study_runs(client: Any, parent_id: str) -> tuple[Any, list[Any]]:
    """The parent run and its child runs."""
    parent = client.get_run(parent_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        max_results=1000,
    )
    return parent, children
