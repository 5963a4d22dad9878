"""DeMoss et al.'s row: the quick smoke of ``demoss-complexity``, its criteria on hand-made curves,
and the engine's complexity over every parameter of a replica."""

from __future__ import annotations

import math

import pytest
import torch

from grokray.config import default_config
from grokray.engine import ReplicaRun
from grokray.metrics import naive_bytes
from grokray.models import build_model
from grokray.reproduce import Context
from grokray.reproduce.demoss import DROP, GAP, RISE, _summary, complexity, verdict


def test_quick_smoke_fills_the_row_and_draws_the_png(tmp_path):
    result = complexity(Context(out=tmp_path, quick=True, progress=lambda line: None))
    assert result.key == "demoss-complexity" and result.paper == "DeMoss et al. 2024"
    for field in ("figure", "claim", "reference", "measured", "tolerance", "scaled", "command"):
        assert getattr(result, field), field
    assert result.command.startswith("grokray trial studies/complexity.py --set model=mlp")
    assert "30–40×" in result.reference and "naive bzip2" in result.measured
    assert (tmp_path / result.plot).stat().st_size > 0
    for arm in ("regularized", "unregularized"):
        [seed] = result.values[arm]
        assert seed["steps"][0] == 0 and len(seed["steps"]) >= 4  # the log schedule, from step 0
        assert all(0 < c <= n for c, n in zip(seed["complexity_bytes"], seed["naive_bytes"], strict=True))
    assert set(result.values["checks"]) == {
        "regularized_grokked", "rise", "peak_before_grokking", "drop", "unregularized_stays", "gap",
    }  # fmt: skip


def outcome(curve, grokking_step=None):
    """An outcome whose history holds complexity at some steps (the others have none, or NaN)."""
    history = [{"step": 5, "complexity_bytes": math.nan, "naive_complexity_bytes": math.nan}]
    history += [{"step": 7}]
    history += [{"step": s, "complexity_bytes": c, "naive_complexity_bytes": n} for s, c, n in curve]
    return {"history": history, "grokking_step": grokking_step, "memorization_step": 1, "final_val_acc": 1.0}


def test_summary_by_hand():
    # the final level is the mean over the last octave: steps 40 and 80 (≥ 80 / 2)
    s = _summary(
        outcome([(0, 100.0, 8000.0), (10, 4000.0, 8100.0), (40, 3000.0, 8200.0), (80, 1000.0, 8000.0)], 20)
    )
    assert (s["initial"], s["peak"], s["peak_step"], s["final"]) == (100, 4000, 10, 2000)
    assert (s["final_from"], s["final_step"]) == (40, 80)
    assert s["drop"] == 2.0 and s["naive_ratio"] == pytest.approx(8100 / 2000)
    with pytest.raises(ValueError, match="no finite complexity_bytes"):
        _summary(outcome([]))
    assert s["steps"] == [0, 10, 40, 80]


def summary(initial, peak, peak_step, final, grokking_step, final_from=50):
    return {"initial": initial, "peak": peak, "peak_step": peak_step, "final": final,
            "drop": peak / final, "grokking_step": grokking_step, "final_from": final_from}  # fmt: skip


def test_verdict_passes_the_papers_picture_and_names_each_failure():
    good = [summary(100, 4000, 10, 2000, 30), summary(100, 4500, 20, 2500, 40)]
    flat = [summary(100, 7000, 50, 6500, None), summary(100, 7000, 90, 7000, None)]
    assert all(verdict(good, flat).values())
    assert DROP == 1.5 and RISE == 10 and GAP == 2
    peak_late = ["peak_before_grokking"]
    failing = [  # (the checks that fail, regularized seeds, unregularized seeds)
        (["regularized_grokked", *peak_late], [summary(100, 4000, 10, 2000, None)], flat),
        (["rise"], [summary(500, 4000, 10, 2000, 30)], flat),  # 8× its init value only
        (peak_late, [summary(100, 4000, 50, 2000, 30)], flat),  # the peak comes after grokking
        (peak_late, [summary(100, 4000, 10, 2000, 60)], flat),  # groks inside the last octave
        (["drop"], [summary(100, 4000, 10, 2900, 30)], flat),  # 1.38×
        (["unregularized_stays"], good, [summary(100, 8000, 50, 5000, None)]),  # it fell 1.6×
        (["gap"], good, [summary(100, 5000, 50, 4999, None)]),  # 4999 < 2 × 2500
    ]
    for expected, regularized, unregularized in failing:
        checks = verdict(regularized, unregularized)
        assert [k for k, ok in checks.items() if not ok] == expected


def replica_run(**overrides) -> ReplicaRun:
    c = default_config()
    c.update(task="modular", p=11, model="mlp", width=16, embed_dim=4, depth=1, steps=0, eval_every=1,
             measures="all", device="cpu", train_fraction=0.5)  # fmt: skip
    c.update(overrides)
    return ReplicaRun([{**c, "seed": 0}, {**c, "seed": 1}], stop_on_grok=False)


@pytest.mark.parametrize("model", ["mlp", "transformer"])
def test_engine_complexity_counts_every_parameter_of_each_replica(model):
    run = replica_run(model=model, heads=2)
    [first, second] = run.run()
    for seed, result in ((0, first), (1, second)):
        torch.manual_seed(seed)
        model = build_model({**run.configs[seed]}, run.pool)
        names = [name for name, _ in model.named_parameters()]
        assert any("bias" in n for n in names) and any("embed" in n for n in names)
        assert any(p.dim() == 1 for p in model.parameters())
        record = result["history"][0]
        assert record["naive_complexity_bytes"] == naive_bytes([p.detach() for p in model.parameters()])
        assert 0 < record["complexity_bytes"] <= record["naive_complexity_bytes"]


@pytest.mark.parametrize("model", ["mlp", "transformer"])
def test_replica_train_loss_is_the_train_loss_of_that_replica(model):
    run = replica_run(init_scale=3.0, model=model, heads=2)
    records = run._evaluate(0, 0.0)
    for row in (0, 1):
        assert run._replica_train_loss(row, {}) == pytest.approx(records[row]["train_loss"], rel=1e-5)


def test_replica_train_loss_is_that_replica_alone_on_its_training_pairs():
    run = replica_run(init_scale=3.0)
    records = run._evaluate(0, 0.0)
    # replacing a bias (not only matrices) changes the loss: the plain module, by hand
    torch.manual_seed(1)
    model = build_model(run.configs[1], run.pool)
    with torch.no_grad():
        model.head.bias.zero_()
    index = run.train_index[1, : run.n_train[1]]
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(run.inputs[index]), run.targets[1, index])
    replaced = run._replica_train_loss(1, {"head_bias": torch.zeros_like(run.model.head_bias[1])})
    assert replaced == pytest.approx(float(expected), rel=1e-6)
    assert replaced != pytest.approx(records[1]["train_loss"], rel=1e-3)
    assert torch.count_nonzero(run.model.head_bias[1]) > 0  # the replica's own weights are untouched
