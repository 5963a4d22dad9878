"""Does ``torch.compile`` pay for a training step of the batched MLP? A probe, not part of the table.

``python -m bench.compile_probe [--replicas R] [--device cpu|cuda] [--steps N]``: the forward and
loss of ``ReplicaMLP`` on config (a) of ``bench.bench`` (p=47, one-hot, width 128, 15 % data,
full batch), eager vs ``torch.compile``d, same optimizer, timed in alternation, plus the compile
time of the first step. The trainer stays eager unless this shows a gain that outweighs the
compile time of a trial (a grokking trial lasts seconds to minutes).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from grokray.config import default_config
from grokray.models import build_model
from grokray.models.replicas import ReplicaMLP


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compile_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=16)
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    p, replicas = 47, args.replicas
    config = {**default_config(), "p": p, "encoding": "onehot", "width": 128, "depth": 1}
    models = []
    for seed in range(replicas):
        torch.manual_seed(seed)
        models.append(build_model(config))
    model = ReplicaMLP(models).to(device)
    n = int(0.15 * p * p)
    inputs = torch.randint(0, p, (replicas, n, 2), device=device)
    targets = torch.randint(0, p, (replicas, n), device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x).reshape(-1, p), y.reshape(-1))

    compiled = torch.compile(loss_of)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def steps(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], count: int) -> float:
        sync()
        started = time.perf_counter()
        for _ in range(count):
            optimizer.zero_grad()
            loss(inputs, targets).backward()
            optimizer.step()
        sync()
        return (time.perf_counter() - started) / count

    compile_s = steps(compiled, 1)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.reps):
        for name, loss in (("eager", loss_of), ("compiled", compiled)):
            steps(loss, 10)
            times[name].append(steps(loss, args.steps))
    eager, fast = statistics.median(times["eager"]), statistics.median(times["compiled"])
    print(f"device {args.device}, R={replicas}, torch {torch.__version__}")
    print(f"first compiled step (compiling): {compile_s:.1f} s")
    print(f"eager {1e3 * eager:.3f} ms/step, compiled {1e3 * fast:.3f} ms/step, speed-up {eager / fast:.2f}x")
    print(
        f"compile time pays back after {compile_s / max(eager - fast, 1e-12):.0f} steps"
        if fast < eager
        else "compiled is not faster: no payback"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
