"""A pack that does not fit in memory is split (``grokray.engine.split``): the parts train what
the whole pack trains, and a real allocation failure (the CPU allocator under an address-space
limit, in a child process) makes ``FittingRun`` split instead of failing."""

import subprocess
import sys
import textwrap

import pytest

from grokray.config import default_config
from grokray.engine.run import ReplicaRun
from grokray.engine.split import FittingRun, SplitRun, is_out_of_memory, part_bounds


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


def test_a_split_run_resumes_from_its_checkpoint_bit_for_bit():
    reference = SplitRun(CONFIGS, 2).run()

    class Interrupt(Exception):
        pass

    interrupted, saved = FittingRun(CONFIGS), {}
    interrupted.current = SplitRun(CONFIGS, 2)
    interrupted.n_parts = 2

    def on_eval(records):
        if interrupted.step >= 150:
            saved["state"] = interrupted.state_dict()
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
