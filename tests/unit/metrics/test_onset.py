import pytest

from grokray.metrics import OnsetTracker
from grokray.outcomes import liu_phase


def feed(tracker, curve):
    for step, train_acc, val_acc in curve:
        tracker.update(step, train_acc, val_acc)
    return tracker


def test_grokking_curve_onsets_and_delay():
    # memorizes at step 100, generalizes at step 600, both held for patience=2 evaluations
    curve = [(s, min(1.0, s / 100), 0.0 if s < 600 else 1.0) for s in range(0, 1001, 100)]
    tracker = feed(OnsetTracker(0.99, 0.99, patience=2), curve)
    assert tracker.memorization_step == 100
    assert tracker.grokking_step == 600
    assert tracker.grokking_delay == 500
    assert tracker.grokked


def test_a_blip_above_threshold_is_not_grokking():
    curve = [(0, 1, 0.2), (100, 1, 0.995), (200, 1, 0.5), (300, 1, 0.995), (400, 1, 0.999), (500, 1, 0.3)]
    tracker = feed(OnsetTracker(0.99, 0.99, patience=2), curve)
    # the first crossing at 100 is not held; from 300 it is held for 2 evaluations
    assert tracker.grokking_step == 300


def test_not_confirmed_before_patience():
    tracker = feed(OnsetTracker(0.99, 0.99, patience=3), [(0, 1, 1), (100, 1, 1)])
    assert tracker.grokking_step is None and not tracker.grokked
    tracker.update(200, 1, 1)
    assert tracker.grokking_step == 0


def test_state_round_trip():
    tracker = feed(OnsetTracker(0.9, 0.9, 2), [(0, 0.95, 0.1), (10, 0.95, 0.95)])
    copy = OnsetTracker(0.9, 0.9, 2)
    copy.load_state_dict(tracker.state_dict())
    for t in (tracker, copy):
        t.update(20, 0.95, 0.95)
    assert copy.grokking_step == tracker.grokking_step == 10
    assert copy.memorization_step == tracker.memorization_step == 0


def test_liu_phases():
    # the gap is a tenth of the budget: 1,000 steps of 10,000, 100 of 1,000
    assert liu_phase(100, 1100, 10000) == "grokking"
    assert liu_phase(100, 1099, 10000) == "comprehension"
    assert liu_phase(100, 300, 1000) == "grokking"
    assert liu_phase(100, 5000, 100000) == "comprehension"
    assert liu_phase(None, 500, 10000) == "comprehension"
    assert liu_phase(100, None, 10000) == "memorization"
    assert liu_phase(None, None, 10000) == "confusion"


def test_generalization_onset_on_a_loss_threshold():
    # Notsawo et al.'s t2: the first step with recovery error ≤ 1e-4, here held for 2 evaluations;
    # the dip to 5e-5 at 300 is not held (2e-4 at 400), from 500 it is; exactly 1e-4 counts
    errors = [1.0, 0.5, 1e-3, 5e-5, 2e-4, 8e-5, 1e-4, 1e-5]
    tracker = OnsetTracker(1e-6, 1e-4, patience=2, memorize_metric="train_loss", grok_metric="recovery_error")
    by_accuracy = OnsetTracker(0.99, 0.99, patience=2)
    losses = [1.0, 1e-3, 1e-7, 1e-8, 1e-7, 1e-8, 1e-8, 1e-8]  # ≤ 1e-6 from step 200 on
    for i, (loss, error) in enumerate(zip(losses, errors, strict=True)):
        for t in (tracker, by_accuracy):
            t.update(100 * i, 0.0, 0.0, train_loss=loss, recovery_error=error)
    assert tracker.memorization_step == 200
    assert tracker.grokking_step == 500
    assert tracker.grokking_delay == 300
    # the default tracker reads the accuracies (0 throughout), not the losses beside them
    assert by_accuracy.grokking_step is None and by_accuracy.memorization_step is None


def test_val_loss_onset_and_nan_never_counts():
    tracker = OnsetTracker(0.9, 0.5, patience=2, grok_metric="val_loss")
    for step, val_loss in [(0, 2.0), (10, 0.4), (20, float("nan")), (30, 0.5), (40, 0.3)]:
        tracker.update(step, 1.0, 0.0, val_loss=val_loss)
    assert tracker.memorization_step == 0  # train_acc 1.0 ≥ 0.9, the default curve
    assert tracker.grokking_step == 30


def test_unknown_metric_or_missing_curve_is_refused():
    with pytest.raises(ValueError, match="grok_metric"):
        OnsetTracker(grok_metric="train_loss")
    with pytest.raises(ValueError, match="memorize_metric"):
        OnsetTracker(memorize_metric="recovery_error")
    tracker = OnsetTracker(grok_metric="recovery_error")
    with pytest.raises(ValueError, match="recovery_error: this run has no such curve"):
        tracker.update(0, 1.0, 1.0, train_loss=0.1)


def test_state_round_trip_keeps_the_direction():
    tracker = OnsetTracker(1e-3, 1e-2, 2, "train_loss", "recovery_error")
    tracker.update(0, 0.0, 0.0, train_loss=1e-4, recovery_error=5e-3)
    copy = OnsetTracker(1e-3, 1e-2, 2, "train_loss", "recovery_error")
    copy.load_state_dict(tracker.state_dict())
    for t in (tracker, copy):
        t.update(10, 0.0, 0.0, train_loss=1e-4, recovery_error=5e-3)
    assert copy.grokking_step == tracker.grokking_step == 0
    assert copy.memorization_step == tracker.memorization_step == 0


def test_the_plain_loop_onset_reads_the_named_losses():
    from grokray.config import default_config
    from grokray.engine.reference import train

    # val_loss starts near ln 13 ≈ 2.6 and rises as the net memorizes: ≤ 3 holds at step 0 only,
    # where val_acc (≈ 1/13) is nowhere near any accuracy threshold
    c = default_config() | {
        "p": 13, "width": 32, "depth": 1, "embed_dim": 8, "steps": 200, "eval_every": 20, "lr": 1e-2,
        "device": "cpu", "patience": 1, "memorize_metric": "train_loss", "memorize_threshold": 0.5,
        "grok_metric": "val_loss", "grok_threshold": 3.0,
    }  # fmt: skip
    outcome = train(c)
    history = outcome["history"]
    assert outcome["memorization_step"] == next(r["step"] for r in history if r["train_loss"] <= 0.5) > 0
    assert outcome["grokking_step"] == 0 and history[0]["val_loss"] <= 3.0 < history[1]["val_loss"]


def test_a_run_above_the_threshold_at_the_budget_is_pending_and_flagged_unconfirmed():
    from grokray.outcomes import outcome_of

    tracker = OnsetTracker(0.99, 0.99, 3)
    last = {}
    for step, val in ((0, 0.1), (100, 0.5), (200, 0.995), (300, 0.999)):  # 2 of 3 evaluations above
        tracker.update(step, 1.0, val)
        last = {"step": step, "train_acc": 1.0, "val_acc": val, "train_loss": 0.0, "val_loss": 0.1}
    assert tracker.grok_pending and not tracker.grokked
    assert outcome_of(tracker, last, "budget", 300)["grok_unconfirmed"] is True
    assert outcome_of(tracker, last, "running", 300)["grok_unconfirmed"] is False  # not at the end yet
    tracker.update(400, 1.0, 0.5)  # fell back below: the candidate resets
    assert not tracker.grok_pending
    tracker.update(500, 1.0, 0.999), tracker.update(600, 1.0, 0.999), tracker.update(700, 1.0, 0.999)
    assert tracker.grokked and not tracker.grok_pending
