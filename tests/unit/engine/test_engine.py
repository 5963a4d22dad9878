import math

import pytest
import torch

from grokray.config import default_config
from grokray.engine.reference import train
from grokray.models import build_model
from grokray.optim import LangevinNoise, build_optimizer
from grokray.tasks import make_modular


def config(**overrides):
    c = default_config()
    c.update(
        p=13,
        width=32,
        depth=1,
        embed_dim=8,
        steps=60,
        eval_every=20,
        lr=1e-2,
        device="cpu",
        train_fraction=0.5,
    )
    c.update(overrides)
    return c


def test_same_seed_same_run_and_other_seed_differs():
    first, second = train(config(seed=3)), train(config(seed=3))
    other = train(config(seed=4))
    assert [r["val_loss"] for r in first["history"]] == [r["val_loss"] for r in second["history"]]
    assert [r["val_loss"] for r in first["history"]] != [r["val_loss"] for r in other["history"]]


def test_matches_a_plain_pytorch_adamw_loop():
    """T = 0, full batch: the trainer is exactly the obvious hand-written loop."""
    c = config(seed=1)
    data = make_modular(c["p"], c["op"], c["train_fraction"], 0, c["seed"])
    torch.manual_seed(c["seed"])
    model = build_model(c)
    opt = torch.optim.AdamW(model.parameters(), lr=c["lr"], weight_decay=c["weight_decay"], betas=(0.9, 0.98))
    losses = []
    for step in range(c["steps"] + 1):
        if step % c["eval_every"] == 0:
            with torch.no_grad():
                losses.append(
                    float(torch.nn.functional.cross_entropy(model(data.val_inputs), data.val_labels))
                )
        if step == c["steps"]:
            break
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(data.train_inputs), data.train_labels).backward()
        opt.step()
    assert [r["val_loss"] for r in train(c)["history"]] == losses


def test_init_scale_multiplies_every_parameter():
    torch.manual_seed(0)
    base = build_model(config(init_scale=1.0))
    torch.manual_seed(0)
    scaled = build_model(config(init_scale=3.0))
    names = [n for n, _ in base.named_parameters()]
    assert any("bias" in n for n in names) and any("embed" in n for n in names)
    for (name, a), (_, b) in zip(base.named_parameters(), scaled.named_parameters(), strict=True):
        assert torch.allclose(b, 3.0 * a), name


def test_langevin_noise_has_the_right_scale_and_zero_temperature_adds_nothing():
    param = torch.nn.Parameter(torch.zeros(200_000))
    LangevinNoise([param], lr=0.01, temperature=0.5, seed=0)()
    assert param.std().item() == pytest.approx(math.sqrt(2 * 0.01 * 0.5), rel=0.02)
    assert abs(param.mean().item()) < 0.001
    still = torch.nn.Parameter(torch.zeros(10))
    LangevinNoise([still], lr=0.01, temperature=0.0, seed=0)()
    assert torch.count_nonzero(still) == 0


def test_temperature_changes_the_run():
    cold, hot = train(config()), train(config(temperature=1e-3))
    assert cold["final_val_loss"] != hot["final_val_loss"]


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_optimizers_build_and_step(name):
    model = torch.nn.Linear(3, 1)
    opt = build_optimizer(model.parameters(), config(optimizer=name))
    before = model.weight.detach().clone()
    model(torch.ones(2, 3)).sum().backward()
    opt.step()
    assert not torch.equal(before, model.weight)


def test_groks_on_an_easy_split_and_stops_when_told():
    """A known result: p=31 addition with 70 % of the pairs groks within ~1-2k AdamW steps."""
    c = config(p=31, width=128, embed_dim=32, train_fraction=0.7, steps=3000, eval_every=50)
    outcome = train(c, on_eval=lambda record: record["grokked"])
    assert outcome["grokked"] and outcome["stop_reason"] == "grokked"
    assert outcome["final_val_acc"] >= 0.99
    assert outcome["memorization_step"] < outcome["grokking_step"] < 3000
    assert outcome["steps_run"] == outcome["grokking_step"] + 50  # confirmed after patience=2 evals
    assert outcome["grokking_delay"] == outcome["grokking_step"] - outcome["memorization_step"]


def test_budget_and_outcome_keys():
    outcome = train(config(train_fraction=0.1))
    assert outcome["stop_reason"] == "budget" and outcome["steps_run"] == 60
    assert not outcome["grokked"] and outcome["grokking_step"] is None
    assert [r["step"] for r in outcome["history"]] == [0, 20, 40, 60]
    assert outcome["history"][-1]["stop_reason"] == "budget"
    assert all(r["stop_reason"] == "running" for r in outcome["history"][:-1])


def test_divergence_is_detected():
    outcome = train(config(init_scale=1e30))
    assert outcome["stop_reason"] == "diverged"
    assert outcome["steps_run"] == 0


def test_minibatch_and_onehot_and_mse_paths_run():
    outcome = train(config(batch_size=16, encoding="onehot", loss="mse"))
    assert outcome["steps_run"] == 60 and math.isfinite(outcome["final_train_loss"])


# ---- replicas: R networks as one batched model ----------------------------------------------

from grokray.engine import train_replicas  # noqa: E402


def _curve(outcome, key="val_loss"):
    return [r[key] for r in outcome["history"]]


def test_one_replica_is_the_unbatched_path_bit_for_bit():
    c = config(seed=2)
    [batched] = train_replicas([c], stop_on_grok=False)
    assert _curve(batched) == _curve(train(c))
    assert batched["replica"] == 0


def test_replicas_with_different_hyperparameters_match_their_single_runs():
    configs = [
        config(seed=0),
        config(seed=1, lr=3e-3),
        config(seed=2, weight_decay=0.1, train_fraction=0.3),  # another training-set size
        config(seed=3, init_scale=2.0, temperature=1e-4),
        config(seed=4, optimizer="adamw", weight_decay=0.0),
    ]
    batched = train_replicas(configs, stop_on_grok=False)
    assert [b["replica"] for b in batched] == list(range(5))
    for c, b in zip(configs, batched, strict=True):
        single = train(c)
        assert b["n_train"] == single["n_train"]
        assert _curve(b) == pytest.approx(_curve(single), rel=1e-4, abs=1e-5)
        assert _curve(b, "weight_norm") == pytest.approx(_curve(single, "weight_norm"), rel=1e-4)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_replica_optimizers_match_torch(name):
    configs = [config(seed=0, optimizer=name, weight_decay=0.01), config(seed=1, optimizer=name, lr=5e-3)]
    for c, b in zip(configs, train_replicas(configs, stop_on_grok=False), strict=True):
        assert _curve(b) == pytest.approx(_curve(train(c)), rel=1e-4, abs=1e-5)


def test_finished_replicas_leave_the_batch_without_disturbing_the_others():
    easy = config(p=31, width=128, embed_dim=32, train_fraction=0.8, steps=1500, eval_every=50, seed=0)
    hard = {**easy, "train_fraction": 0.2, "seed": 1}
    seen: list[set[int]] = []
    outcomes = train_replicas([easy, hard], on_eval=lambda rs: seen.append({r["replica"] for r in rs}))
    grokked, memorized = outcomes
    assert grokked["grokked"] and grokked["stop_reason"] == "grokked" and grokked["steps_run"] < 1500
    assert (
        not memorized["grokked"] and memorized["stop_reason"] == "budget" and memorized["steps_run"] == 1500
    )
    assert seen[0] == {0, 1} and seen[-1] == {1}  # the grokked replica stopped costing work
    # dropping replica 0 changes nothing for replica 1: same curve as a run that keeps both
    kept = train_replicas([easy, hard], stop_on_grok=False)[1]
    assert _curve(memorized) == pytest.approx(_curve(kept), rel=1e-6)
    # and it starts as its solo run (later, float rounding is amplified by training dynamics)
    assert _curve(memorized)[:4] == pytest.approx(_curve(train(hard))[:4], rel=1e-4)


def test_replicas_must_share_shapes():
    with pytest.raises(ValueError, match="width"):
        train_replicas([config(width=32), config(width=64)])


def test_a_replica_reproduces_alone_on_the_batched_path():
    """How `grokray trial` reproduces replica 1 of a batched trial: the same arithmetic, alone."""
    configs = [config(seed=0), config(seed=1, lr=3e-3)]
    in_batch = train_replicas(configs, stop_on_grok=False)[1]
    [alone] = train_replicas([configs[1]], stop_on_grok=False, batched=True)
    assert _curve(in_batch) == _curve(alone)


def _transformers():
    base = config(model="transformer", width=16, heads=2, steps=40, eval_every=20)
    return [{**base, "seed": 0}, {**base, "seed": 1, "lr": 3e-3, "train_fraction": 0.3}]


def test_looped_replicas_of_other_models_reproduce_alone_and_match_vmap(monkeypatch):
    """Off the MLP, a CPU runs the replicas one after another (``loop``): a replica in a batch is
    the same arithmetic as alone up to the rounding of its padded loss row, and the vmap engine (a
    GPU's) agrees to float tolerance.

    Replica 1 trains on fewer examples than replica 0, so in the batch its per-example losses sit
    in a row padded to replica 0's length: ATen's vectorized sum splits a row into SIMD lanes by
    its length, so the padded row rounds differently from the unpadded one. With AVX2 kernels the
    two happened to agree to the bit; with AVX-512 (``ATEN_CPU_CAPABILITY=avx512``) they differ at
    ~1e-7 relative, hence a tolerance of a few float32 ulps, not equality."""
    from grokray.engine import ReplicaRun

    configs = _transformers()
    run = ReplicaRun(configs, stop_on_grok=False)
    assert run.model.loop and type(run.model).__name__ == "VmapReplicas"
    looped = run.run()
    [alone] = train_replicas([configs[1]], stop_on_grok=False, batched=True)
    assert _curve(looped[1]) == pytest.approx(_curve(alone), rel=1e-5, abs=1e-6)
    assert _curve(looped[0]) != _curve(alone)  # the comparison can fail: the replicas differ
    monkeypatch.setenv("GROKRAY_ENGINE", "vmap")
    vmapped = ReplicaRun(configs, stop_on_grok=False)
    assert not vmapped.model.loop
    for a, b in zip(looped, vmapped.run(), strict=True):
        assert _curve(a) == pytest.approx(_curve(b), rel=1e-4, abs=1e-5)
        assert _curve(a, "val_acc") == pytest.approx(_curve(b, "val_acc"), abs=0.02)


def test_an_unknown_engine_is_named(monkeypatch):
    monkeypatch.setenv("GROKRAY_ENGINE", "fast")
    with pytest.raises(ValueError, match="GROKRAY_ENGINE: got 'fast'"):
        train_replicas(_transformers(), stop_on_grok=False)


def test_checkpoint_resume_continues_bit_for_bit():
    """Stop a batched run at an evaluation (after one replica has left the batch), restore its
    state into a fresh run, and the rest of the run is the uninterrupted run exactly: weights,
    optimizer moments, noise and minibatch generators, onset trackers, histories."""
    from grokray.engine import ReplicaRun

    easy = config(
        p=31,
        width=64,
        embed_dim=16,
        train_fraction=0.8,
        steps=1200,
        eval_every=50,
        seed=0,
        temperature=1e-6,
        batch_size=200,
    )
    configs = [easy, {**easy, "train_fraction": 0.3, "seed": 1}, {**easy, "seed": 2, "lr": 3e-3}]
    reference = ReplicaRun(configs, stop_on_grok=True).run()
    assert reference[0]["stop_reason"] == "grokked" and reference[1]["stop_reason"] == "budget"

    class Interrupt(Exception):
        pass

    saved = {}
    interrupted = ReplicaRun(configs, stop_on_grok=True)

    def on_eval(records):
        if len(interrupted.active) < 3 and interrupted.step >= 900:
            saved["state"] = interrupted.state_dict()
            raise Interrupt

    with pytest.raises(Interrupt):
        interrupted.run(on_eval)
    resumed = ReplicaRun(configs, stop_on_grok=True)
    resumed.load_state_dict(saved["state"])
    outcomes = resumed.run()
    assert [o["replica"] for o in outcomes] == [0, 1, 2]

    def timeless(history):
        return [{k: v for k, v in record.items() if k != "elapsed_s"} for record in history]

    for got, want in zip(outcomes, reference, strict=True):
        assert timeless(got["history"]) == timeless(want["history"])
        assert {k: got[k] for k in ("grokking_step", "steps_run", "stop_reason")} == {
            k: want[k] for k in ("grokking_step", "steps_run", "stop_reason")
        }


def test_a_run_resumed_from_its_final_checkpoint_trains_nothing_and_keeps_its_outcomes():
    """The checkpoint a finished trial leaves (every replica done, the batch not shrunk) loads into
    a fresh run that returns the same outcomes without a single step."""
    from grokray.engine import ReplicaRun

    configs = [config(p=31, width=32, embed_dim=8, steps=100, eval_every=50, seed=s) for s in (0, 1)]
    finished = ReplicaRun(configs, stop_on_grok=True)
    outcomes = finished.run()
    resumed = ReplicaRun(configs, stop_on_grok=True)
    resumed.load_state_dict(finished.state_dict())
    steps = []
    assert resumed.run(lambda records: steps.append(resumed.step)) == outcomes
    assert steps == [] and not resumed.active
    assert resumed.latest_records() == finished.latest_records()


@pytest.mark.parametrize("model", ["mlp", "transformer"])
def test_a_replicas_final_weights_rebuild_its_network(model):
    """``ReplicaRun.weights(row)`` is the single network's state dict: loaded into
    ``build_model(config)`` it gives the accuracy the run recorded at its last evaluation, for a
    replica that left the batch early (grokked) and for one that ran its budget."""
    from grokray.engine import ReplicaRun
    from grokray.tasks import make_pool, split
    from grokray.weights import model_from

    if model == "mlp":  # the known grokking split (test_groks_on_an_easy_split_and_stops_when_told)
        easy = config(p=31, width=128, embed_dim=32, train_fraction=0.7, steps=3000, eval_every=50)
    else:  # a transformer that "groks" at a low bar within a few hundred steps
        easy = config(p=13, train_fraction=0.9, steps=300, eval_every=50, model=model, width=16, heads=2,
                      grok_threshold=0.15)  # fmt: skip
    # replica 0 groks and leaves the batch early; replica 1 cannot reach its bar in the budget
    configs = [easy, {**easy, "train_fraction": 0.2, "seed": 1, "grok_threshold": 0.99}]
    run = ReplicaRun(configs, stop_on_grok=True)
    outcomes = run.run()
    for row, (c, outcome) in enumerate(zip(configs, outcomes, strict=True)):
        network = model_from({"config": c, "state_dict": run.weights(row)})
        pool = make_pool(c)
        _, val = split(pool, c)
        with torch.no_grad():
            accuracy = (network(pool.inputs[val]).argmax(-1) == pool.targets[val]).float().mean()
        assert float(accuracy) == pytest.approx(outcome["final_val_acc"], abs=1e-6)
    assert outcomes[0]["stop_reason"] == "grokked" and outcomes[1]["stop_reason"] == "budget"
