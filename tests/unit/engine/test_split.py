"""A pack that does not fit in memory is split (``grokray.engine.split``): the parts train what
the whole pack trains, and a real allocation failure (the CPU allocator under an address-space
limit, in a child process) makes ``FittingRun`` split instead of failing."""

import subprocess
import sys
import textwrap

import pytest
import torch

from grokray.config import default_config
from grokray.engine.run import ReplicaRun
from grokray.engine.split import (
    CPU_PART_OVERHEAD_ROWS,
    FittingRun,
    SplitRun,
    checkpoint_groups,
    halves,
    is_out_of_memory,
    part_bounds,
    part_workers,
    plan_parts,
    size_parts,
)
from grokray.tasks import make_pool


def config(seed, **overrides):
    c = default_config()
    c.update(p=31, width=64, depth=1, embed_dim=16, steps=300, eval_every=50, lr=1e-2, device="cpu",
             train_fraction=0.8, seed=seed, batch_size=200)  # fmt: skip
    c.update(overrides)
    return c


CONFIGS = [config(0), config(1, train_fraction=0.3), config(2, lr=3e-3), config(3, weight_decay=1.0),
           config(4, train_fraction=0.6)]  # fmt: skip


def timeless(history):
    return [{k: v for k, v in record.items() if k != "elapsed_s"} for record in history]


def test_part_bounds_cover_every_replica_once():
    assert part_bounds(5, 2) == [(0, 2), (2, 5)]
    assert part_bounds(4, 8) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert part_bounds(3, 1) == [(0, 3)]


def brute_force_cost(sizes, overhead):
    """The cheapest cost over every partition of the sorted sizes into contiguous runs."""
    ordered = sorted(sizes)
    n = len(ordered)
    best = float("inf")
    for mask in range(2 ** (n - 1)):  # bit i set: a cut after sorted position i
        cost, start = 0.0, 0
        for i in range(n):
            if i == n - 1 or mask >> i & 1:
                cost += overhead + (i + 1 - start) * ordered[i]
                start = i + 1
        best = min(best, cost)
    return best


def model_cost(sizes, parts, overhead):
    return sum(overhead + len(part) * max(sizes[i] for i in part) for part in parts)


def test_size_parts_group_similar_sizes_at_the_least_modelled_cost():
    # by hand: one part pads 4 replicas to 100 (5 + 400); two parts cost 5 + 20 + 5 + 200
    assert size_parts([100, 10, 100, 10], 5) == [[1, 3], [0, 2]]
    assert size_parts([100, 10, 100, 10], 1000) == [[0, 1, 2, 3]]  # another part costs more than padding
    assert size_parts([50, 50, 50], 0) == [[0, 1, 2]]  # equal sizes: nothing to gain
    import random

    rng = random.Random(7)
    for _ in range(40):
        sizes = [rng.randint(1, 60) for _ in range(rng.randint(1, 9))]
        overhead = rng.choice([0.5, 10, 40, 200])
        parts = size_parts(sizes, overhead)
        assert sorted(i for part in parts for i in part) == list(range(len(sizes)))
        assert model_cost(sizes, parts, overhead) == pytest.approx(brute_force_cost(sizes, overhead))


def test_halves_and_the_parts_of_a_checkpoint():
    assert halves([[0, 1, 2], [3], [4, 5]]) == [[0, 1], [2], [3], [4], [5]]
    assert checkpoint_groups({"split": [[0, 2], [2, 5]]}, 5) == [[0, 1], [2, 3, 4]]  # an older checkpoint
    assert checkpoint_groups({"groups": [[1, 3], [0, 2]]}, 4) == [[1, 3], [0, 2]]
    assert checkpoint_groups({"step": 0}, 3) == [[0, 1, 2]]


def full_batch(seed, fraction):
    return config(seed, train_fraction=fraction, batch_size=0, steps=150)


def test_a_pack_of_different_sizes_trains_in_parts_of_similar_size():
    """Full batch on a CPU: a pack of 0.1 ... 0.9 pads each replica only to its part's largest, and
    trains what the whole padded pack trains (to float rounding: the padded width differs)."""
    fractions = [0.9, 0.1, 0.5, 0.15, 0.85, 0.45, 0.2, 0.8]
    configs = [full_batch(seed, f) for seed, f in enumerate(fractions)]
    pool = make_pool(configs[0])
    groups = plan_parts(configs, pool)
    assert len(groups) > 1
    sizes = [round(f * 31 * 31) for f in fractions]
    one = [list(range(len(configs)))]
    assert model_cost(sizes, groups, CPU_PART_OVERHEAD_ROWS) < model_cost(sizes, one, CPU_PART_OVERHEAD_ROWS)
    for part in groups:  # similar sizes together: no part spans both ends
        assert max(fractions[i] for i in part) - min(fractions[i] for i in part) < 0.8
    run = FittingRun(configs, stop_on_grok=False)
    assert run.n_parts == len(groups)
    seen = []
    outcomes = run.run(lambda records: seen.append([r["replica"] for r in records]))
    assert seen[0] == list(range(len(configs)))  # one merged evaluation, in the pack's order
    whole = ReplicaRun(configs, stop_on_grok=False).run()
    for got, want in zip(outcomes, whole, strict=True):
        assert got["replica"] == want["replica"] and got["n_train"] == want["n_train"]
        assert [r["step"] for r in got["history"]] == [r["step"] for r in want["history"]]
        for a, b in zip(got["history"], want["history"], strict=True):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3, abs=1e-5)
            assert a["val_acc"] == pytest.approx(b["val_acc"], abs=2e-3)


def test_minibatches_and_equal_sizes_train_in_one_part():
    pool = make_pool(CONFIGS[0])
    assert plan_parts(CONFIGS, pool) == [[0, 1, 2, 3, 4]]  # batch_size 200: no padding to save
    assert plan_parts([full_batch(s, 0.5) for s in range(4)], pool) == [[0, 1, 2, 3]]


def test_a_split_pack_trains_what_the_whole_pack_trains():
    whole = ReplicaRun(CONFIGS).run()
    split = SplitRun(CONFIGS, 2)
    seen = []
    outcomes = split.run(lambda records: seen.append(sorted(r["replica"] for r in records)))
    assert [o["replica"] for o in outcomes] == [0, 1, 2, 3, 4]
    for got, want in zip(outcomes, whole, strict=True):
        assert timeless(got["history"]) == timeless(want["history"])
    assert seen[0] == [0, 1, 2, 3, 4]  # one merged evaluation per step, the pack's numbers
    assert sorted(split.latest_records()) == [0, 1, 2, 3, 4]
    # a checkpoint has each done replica's final weights under its pack number, as a ReplicaRun's
    state, whole_run = split.state_dict(), ReplicaRun(CONFIGS)
    whole_run.run()
    whole_final = whole_run.state_dict()["final_weights"]
    assert sorted(state["final_weights"]) == sorted(whole_final) == [0, 1, 2, 3, 4]
    for row, weights in state["final_weights"].items():
        for name, value in weights.items():
            assert torch.equal(value, whole_final[row][name])


def test_parts_train_concurrently_one_thread_each_and_compute_the_same_numbers():
    """With two threads the parts train side by side, each op on one thread: every number is what
    the parts compute one after another on two threads, and the thread count is restored."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = SplitRun(CONFIGS, 2)
        assert part_workers(one.parts) == 1
        alone = one.run()
        torch.set_num_threads(2)
        two = SplitRun(CONFIGS, 2)
        assert part_workers(two.parts) == 2 and part_workers(two.parts[:1]) == 1
        seen = []
        together = two.run(lambda records: seen.append(torch.get_num_threads()))
        assert seen and set(seen) == {1}  # the parts' ops on one thread each while the pack trains
        assert torch.get_num_threads() == 2  # and the caller's threads back after it
    finally:
        torch.set_num_threads(threads)
    for got, want in zip(together, alone, strict=True):
        assert timeless(got["history"]) == timeless(want["history"])


def test_an_error_in_one_part_surfaces_once_every_part_is_idle():
    import time

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        split = SplitRun(CONFIGS, 2)
        finished = []

        def fails():
            raise RuntimeError("injected fault")

        def slow(step=split.parts[1]._train_step):
            time.sleep(0.05)
            step()
            finished.append(time.perf_counter())

        split.parts[0]._train_step = fails
        split.parts[1]._train_step = slow
        with pytest.raises(RuntimeError, match="injected fault"):
            split.run()
        raised = time.perf_counter()
        assert finished and max(finished) < raised  # the other part had stopped before the error
        assert len(finished) == CONFIGS[1]["eval_every"]  # it trained to its next evaluation
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_a_replica_padded_in_its_part_trains_bit_for_bit_as_alone():
    """In a part, a replica's rows are padded to the part's longest: its numbers are still those
    of the same config trained alone (``grokray trial``, ``pack=1``), to the bit, on one thread or
    two (``ActLinear`` sums weight gradients in chunks of a fixed shape; the rest is per row)."""
    from grokray.engine import train_replicas

    configs = [full_batch(0, 0.8), full_batch(1, 0.3), full_batch(2, 0.55)]
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            packed = ReplicaRun(configs, stop_on_grok=False).run()  # one part, padded to 0.8's rows
            for config, outcome in zip(configs, packed, strict=True):
                [alone] = train_replicas([config], stop_on_grok=False, batched=True)
                drop = ("replica", "elapsed_s")  # its index in the batch, the clock
                assert [{k: v for k, v in r.items() if k not in drop} for r in outcome["history"]] == [
                    {k: v for k, v in r.items() if k not in drop} for r in alone["history"]
                ]
    finally:
        torch.set_num_threads(threads)


def test_a_split_run_resumes_from_its_checkpoint_bit_for_bit():
    reference = SplitRun(CONFIGS, 2).run()

    class Interrupt(Exception):
        pass

    interrupted, saved = FittingRun(CONFIGS), {}
    interrupted.current = SplitRun(CONFIGS, 2)
    interrupted.groups = interrupted.current.groups

    def on_eval(records):
        if interrupted.step >= 150:
            saved["state"] = interrupted.state_dict()
            assert saved["state"]["step"] == 150  # what the trainable picks the newest checkpoint by
            raise Interrupt

    with pytest.raises(Interrupt):
        interrupted.run(on_eval)
    resumed = FittingRun(CONFIGS)
    resumed.load_state_dict(saved["state"])
    assert resumed.n_parts == 2
    steps = []
    outcomes = resumed.run(lambda records: steps.append(records[0]["step"]))
    assert steps[0] == 200  # the checkpoint's evaluation is not handed on again
    for got, want in zip(outcomes, reference, strict=True):
        assert timeless(got["history"]) == timeless(want["history"])


def test_only_running_out_of_memory_splits():
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: tried to allocate 8"))
    assert not is_out_of_memory(RuntimeError("injected fault at step 3"))
    run = FittingRun(CONFIGS[:2])
    run.current.run = lambda on_eval=None: (_ for _ in ()).throw(ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        run.run()


CHILD = textwrap.dedent(
    """
    import json, resource, sys, torch
    from grokray.config import default_config
    from grokray.engine.split import FittingRun
    torch.set_num_threads(1)
    def cfg(seed):
        c = default_config()
        c.update(p=97, width=1024, depth=1, embed_dim=32, steps=4, eval_every=2, lr=1e-2, device="cpu",
                 train_fraction=0.9, seed=seed)
        return c
    configs = [cfg(s) for s in range(8)]
    if sys.argv[1] == "limited":  # room for about a quarter of the pack's training step
        vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1])
        resource.setrlimit(resource.RLIMIT_AS, ((vm + 700 * 1024) * 1024, resource.RLIM_INFINITY))
    run = FittingRun(configs, stop_on_grok=False)
    steps = []
    outcomes = run.run(lambda records: steps.append(sorted(r["replica"] for r in records)))
    print(json.dumps({"parts": run.n_parts, "steps": steps,
                      "losses": [[r["train_loss"] for r in o["history"]] for o in outcomes]}))
    """
)


def child(mode):
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_a_pack_that_runs_out_of_memory_is_split_not_failed():
    free, _ = child("free")
    limited, log = child("limited")
    assert free["parts"] == 1
    assert limited["parts"] > 1 and "did not fit in memory" in log
    assert limited["steps"] == [list(range(8))] * 3  # each evaluation once, every replica in it
    assert limited["losses"] == free["losses"]  # the parts trained what the whole pack trains
