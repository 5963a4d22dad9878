"""The reproduction suite's runner: rows in, REPORT.md / report.json out, a raising row is a FAIL row."""

from __future__ import annotations

import json

import pytest

from grokray.reproduce import REGISTRY, Context, Row, load_rows
from grokray.reproduce.__main__ import main
from grokray.reproduce.core import figure, spread, study_configs


@pytest.fixture
def fake_rows():
    def good(ctx: Context) -> Row:
        plt, path = figure(ctx, "fake-good.png")
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        fig.savefig(path)
        plt.close(fig)
        return Row("fake-good", "Paper 2024", "Fig. 1", "a claim", "1.0", "0.98", "± 0.05", True,
                   scaled="p 97 → 23", plot="fake-good.png", command="grokray trial x.py")  # fmt: skip

    def bad(ctx: Context) -> Row:
        raise RuntimeError("boom")

    REGISTRY["fake-good"], REGISTRY["fake-bad"] = good, bad
    yield
    REGISTRY.pop("fake-good"), REGISTRY.pop("fake-bad")


def test_the_report_has_a_row_per_experiment_and_a_raising_row_fails(tmp_path, fake_rows, capsys):
    code = main(["--rows", "fake-good,fake-bad", "--out", str(tmp_path)])
    assert code == 1  # one row failed
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(r["key"], r["passed"]) for r in report["rows"]] == [("fake-good", True), ("fake-bad", False)]
    assert "RuntimeError: boom" in report["rows"][1]["measured"]
    markdown = (tmp_path / "REPORT.md").read_text()
    assert "| fake-good | Paper 2024 | Fig. 1 | 1.0 | 0.98 | ± 0.05 | PASS | p 97 → 23 |" in markdown
    assert "![fake-good](fake-good.png)" in markdown
    assert (tmp_path / "fake-good.png").stat().st_size > 0
    assert "1 passed, 1 failed" in capsys.readouterr().out


def test_an_unknown_row_is_named(tmp_path, capsys):
    assert main(["--rows", "nope", "--out", str(tmp_path)]) == 2
    assert "--rows: unknown nope" in capsys.readouterr().err


def test_every_paper_has_rows():
    keys = list(load_rows())
    for paper in ("doshi", "notsawo", "zhang", "demoss", "zhu"):
        assert any(k.startswith(paper) for k in keys), f"no row for {paper}"


def test_spread_is_mean_and_range():
    assert spread([1.0, 2.0, 6.0]) == "3 [1, 6]"
    assert spread([float("nan")]) == "n/a"
    assert spread([0.5]) == "0.5"


def test_study_configs_are_the_trials_of_the_shipped_study():
    configs = study_configs("critical_size.py", ["seeds=3", "train_fraction=0.3,0.6"])
    assert [(c["train_fraction"], c["seed"]) for c in configs] == [
        (0.3, 0), (0.3, 1), (0.3, 2), (0.6, 0), (0.6, 1), (0.6, 2),
    ]  # fmt: skip
    assert all(c["p"] == 31 and c["replicas"] == 3 for c in configs)
