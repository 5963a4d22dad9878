"""bench.tracking: times the MLflow calls of tiny runs (a smoke run; the figures are the bench's)."""

from bench.tracking import main, measure


def test_it_times_the_calls_a_run_makes_and_no_others(capsys):
    result = measure(runs=3, params=2)
    assert result["runs"] == 3 and result["total"] > 0
    # a run: created, its params and (at the end) its metrics and outcome in two log_batch, its
    # status; its files are written without a look-up of the run
    assert set(result) - {"runs", "params", "total"} == {"create_run", "log_batch", "set_terminated"}
    assert main(["--runs", "2", "--params", "1"]) == 0
    assert "all of a run's tracking" in capsys.readouterr().out
