"""bench.boundary's judgement of the phase boundary, on hand-made study results."""

from bench.boundary import judge_phase, phase_report


def _row(steps: int, *estimates: tuple[float, float, float, float]) -> dict:
    return {
        "model_steps": steps,
        "wall_s": 1.0,
        "estimates": [
            {
                "group": {"weight_decay": wd},
                "critical_fraction": f,
                "ci_low": lo,
                "ci_high": hi,
                "n_trials": 3,
            }
            for wd, f, lo, hi in estimates
        ],
    }


GRID = _row(100_000, (0.1, 0.775, 0.725, 0.825), (1.0, 0.5, 0.475, 0.55))


def test_each_weight_decay_must_be_half_as_wide_agree_and_cost_at_most_the_grid():
    good = judge_phase(GRID, _row(99_000, (0.1, 0.79, 0.77, 0.81), (1.0, 0.51, 0.50, 0.53)))
    assert good["status"] == "PASS"
    assert [round(r["width_ratio"], 3) for r in good["groups"]] == [0.4, 0.4]  # 0.04/0.1, 0.03/0.075
    # one group too wide (0.06 / 0.1 = 0.6)
    wide = judge_phase(GRID, _row(99_000, (0.1, 0.79, 0.76, 0.82), (1.0, 0.51, 0.50, 0.53)))
    assert wide["status"] == "FAIL" and not wide["groups"][0]["half_as_wide"]
    # narrow but far from the grid's estimate: 0.775 outside [0.60 - 0.05, 0.62 + 0.05]
    far = judge_phase(GRID, _row(99_000, (0.1, 0.61, 0.60, 0.62), (1.0, 0.51, 0.50, 0.53)))
    assert far["status"] == "FAIL" and not far["groups"][0]["agree"]
    # more model-steps than the grid
    costly = judge_phase(GRID, _row(100_001, (0.1, 0.79, 0.77, 0.81), (1.0, 0.51, 0.50, 0.53)))
    assert costly["status"] == "FAIL" and not costly["at_most_grid_steps"]
    # a group the boundary study has no estimate for fails
    missing = judge_phase(GRID, _row(99_000, (1.0, 0.51, 0.50, 0.53)))
    assert missing["status"] == "FAIL"


def test_the_report_has_a_row_per_weight_decay_and_the_verdict():
    boundary = _row(99_000, (0.1, 0.79, 0.77, 0.81), (1.0, 0.51, 0.50, 0.53))
    phase = {"grid": GRID, "boundary": boundary, "judged": judge_phase(GRID, boundary)}
    lines = phase_report(phase, quick=False)
    assert any(
        line.startswith("0.1 ") and "0.775 [0.725, 0.825]" in line and "0.40" in line for line in lines
    )
    assert lines[-1].startswith("phase boundary: PASS")


def test_the_dense_sweep_centres_on_the_grids_estimate_and_the_budget_follows_the_setting():
    from bench.boundary import budget_of, dense_sets

    default = "train_fraction=" + ",".join(f"{0.40 + 0.02 * i:.2f}" for i in range(11))
    assert dense_sets(0.505) == [default, "seeds=4", "monotone_stop=0"]  # the README's 0.40 … 0.60
    assert dense_sets(None)[0] == default
    assert dense_sets(0.425)[0].startswith("train_fraction=0.32,0.34,")  # x-y mod 37's grid estimate
    assert dense_sets(0.93)[0].endswith(",0.96,0.98")  # kept below 1
    assert dense_sets(0.03)[0].startswith("train_fraction=0.02,0.04,")
    assert dense_sets(0.505, 16)[1] == "seeds=16"  # --dense-seeds
    assert budget_of(["op=-", "p=37"]) == 5000 and budget_of(["steps=4000", "steps=3000"]) == 3000
