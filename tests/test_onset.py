from grokray.metrics import OnsetTracker, liu_phase


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
