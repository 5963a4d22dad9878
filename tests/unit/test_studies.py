"""Every shipped study validates, names its headline plots, and runs its quick profile through
``grokray trial`` (the command a researcher debugs a config with)."""

from __future__ import annotations

import json

import pytest

from grokray.cli import main
from grokray.outcomes import OUTCOME_KEYS
from grokray.study import load_study
from tests.paths import ROOT

STUDIES = sorted(ROOT.glob("studies/*.py"))


def test_every_paper_has_a_study():
    names = {path.stem for path in STUDIES}
    assert {
        "critical_size",
        "critical_size_width",
        "critical_size_text",
        "regularizers",
        "sparse_recovery",
        "glass",
        "complexity",
        "corruption",
    } <= names


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_validates_and_quick_profile_runs(path, capsys):
    study = load_study(path)
    quick = load_study(path, quick=True)
    assert quick.total_trials <= study.total_trials
    assert study.description.strip()
    if path.stem not in ("critical_size", "critical_size_boundary"):  # figures built in (P(grok), curves)
        assert study.plots, "every paper's study logs its headline plot"
    assert main(["trial", str(path), "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(OUTCOME_KEYS) <= set(result)
    assert result["steps_run"] == quick.resolve({})["steps"] or result["grokked"]
    # what each paper logs beside the loss is in the outcome
    expected = {
        "sparse_recovery": "final_recovery_error",
        "complexity": "final_complexity_bytes",
        "corruption": "final_fourier_ipr",
        "regularizers": "final_nuclear",
    }.get(path.stem)
    if expected:
        assert expected in result
