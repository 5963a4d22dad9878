"""The counting of ``make faults`` (tools/faults.py) on synthetic MLflow-like run records."""

from __future__ import annotations

from tools.faults import Outcome, count_runs, format_table, summarize


def parent(run_id: str = "p", status: str = "FINISHED") -> dict:
    return {"run_id": run_id, "status": status, "tags": {"grokray.role": "study"}}


def child(key: str, status: str = "FINISHED", parent_id: str = "p", **outcome: str) -> dict:
    tags = {"grokray.role": "trial", "grokray.run_key": key, "mlflow.parentRunId": parent_id}
    tags.update(outcome if outcome else {"stop_reason": "grokked"})
    return {"run_id": f"run-{key}-{status}-{len(outcome)}", "status": status, "tags": tags}


def test_a_clean_study_has_nothing_lost_duplicated_or_orphaned():
    runs = [
        parent(),
        child("t1_0"),
        child("t2_0", stop_reason="budget"),
        child("t3_0", stop_reason="diverged"),
    ]
    counts = count_runs(runs, requested=3, table_rows=3)
    assert counts == {
        "parents": 1,
        "parent_finished": True,
        "children": 3,
        "finished_trials": 3,
        "lost": 0,
        "duplicates": 0,
        "orphans": 0,
    }


def test_a_trial_recorded_as_failed_with_its_error_is_not_lost():
    runs = [parent(), child("t1_0"), child("t2_0", "FAILED", stop_reason="failed", error="RuntimeError: x")]
    assert count_runs(runs, requested=2, table_rows=2)["lost"] == 0
    # failed without the error recorded, or killed: lost
    runs[2] = child("t2_0", "FAILED", stop_reason="failed")
    assert count_runs(runs, requested=2, table_rows=2)["lost"] == 1
    runs[2] = child("t2_0", "KILLED", stop_reason="budget")
    assert count_runs(runs, requested=2, table_rows=2)["lost"] == 1


def test_lost_trials_count_missing_child_runs_and_missing_table_rows():
    runs = [parent(), child("t1_0"), child("t2_0")]
    assert count_runs(runs, requested=4, table_rows=4)["lost"] == 2  # two trials never got a run
    assert count_runs([*runs, child("t3_0"), child("t4_0")], requested=4, table_rows=3)["lost"] == 1
    assert count_runs(runs, requested=2, table_rows=None)["lost"] == 0  # no table: the parent says so
    assert count_runs([], requested=3, table_rows=None)["lost"] == 3


def test_duplicates_are_extra_runs_with_the_same_run_key():
    runs = [parent(), child("t1_0"), child("t1_0", "KILLED"), child("t1_0", "FAILED"), child("t2_0")]
    counts = count_runs(runs, requested=2, table_rows=2)
    assert counts["duplicates"] == 2  # three runs for t1_0: two too many
    assert counts["lost"] == 0 and counts["children"] == 4


def test_two_runs_of_one_config_under_different_trials_are_a_duplicate_unless_superseded():
    """The window of issue 16: a trial the restored experiment did not know, its config trained
    again under a new trial id: two run keys, one config."""
    first = child("t1_0", "FAILED", stop_reason="budget")
    again = child("t9_0")
    for run in (first, again):
        run["tags"]["grokray.config_key"] = "c0"
    other = child("t2_0")
    other["tags"]["grokray.config_key"] = "c1"
    assert count_runs([parent(), first, again, other], requested=2, table_rows=2)["duplicates"] == 1
    first["tags"]["grokray.superseded"] = "true"  # set aside, linked by the run that continued it
    counts = count_runs([parent(), first, again, other], requested=2, table_rows=2)
    assert counts["duplicates"] == 0 and counts["children"] == 2 and counts["orphans"] == 0


def test_orphans_are_open_runs_runs_without_outcome_or_without_parent():
    runs = [
        parent(),
        child("t1_0", "RUNNING"),  # left open (a driver killed hard, never resumed)
        child("t2_0", "FINISHED", stop_reason_missing="1"),  # ended without an outcome
        child("t3_0", parent_id="gone"),  # its parent run does not exist
        child("t4_0"),
    ]
    runs[2]["tags"].pop("stop_reason", None)
    counts = count_runs(runs, requested=4, table_rows=4)
    assert counts["orphans"] == 3
    assert count_runs([parent("p", "RUNNING"), child("t1_0")], 1, 1)["orphans"] == 1
    assert count_runs([parent("p", "RUNNING"), child("t1_0")], 1, 1)["parent_finished"] is False


def test_two_parent_runs_are_not_a_finished_study():
    runs = [parent("p"), parent("q"), child("t1_0")]
    counts = count_runs(runs, requested=1, table_rows=1)
    assert counts["parents"] == 2 and counts["parent_finished"] is False


def test_summary_table_sums_per_scenario():
    outcomes = [
        Outcome("sigkill-resume", survived=True, wall_s=100.0),
        Outcome("sigkill-resume", survived=False, lost=1, duplicates=2, orphans=3, wall_s=50.0),
        Outcome("diverge", survived=True, wall_s=20.0),
    ]
    rows = summarize(outcomes)
    assert rows == [
        {
            "scenario": "sigkill-resume",
            "runs": 2,
            "survived": 1,
            "trials_lost": 1,
            "duplicate_runs": 2,
            "orphan_runs": 3,
            "mean_wall_s": 75.0,
        },
        {
            "scenario": "diverge",
            "runs": 1,
            "survived": 1,
            "trials_lost": 0,
            "duplicate_runs": 0,
            "orphan_runs": 0,
            "mean_wall_s": 20.0,
        },
    ]
    table = format_table(rows).splitlines()
    assert table[0].split(" | ")[0].strip() == "scenario" and "mean wall s" in table[0]
    assert [cell.strip() for cell in table[2].split(" | ")] == [
        "sigkill-resume",
        "2",
        "1",
        "1",
        "2",
        "3",
        "75.0",
    ]
