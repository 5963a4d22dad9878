"""The arithmetic of one training step of R replicas at once: forward, per-example losses and
accuracy, the gathered full batch, and the step itself (weight noise, regularizer, Grokfast, the
per-replica optimizer, the norm constraint). A part of ``ReplicaRun`` (``grokray.engine.run``),
whose ``__init__`` sets the attributes used here."""

from __future__ import annotations

import torch
from torch import nn


class Step:
    """The training step of ``ReplicaRun``."""

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs (R, n, n_outputs) for inputs (R, n, ...) per replica or (n, ...) shared."""
        if inputs.dim() == self.inputs.dim():  # shared by all replicas
            if self.shared_inputs:
                return self.model(inputs, shared=True)
            inputs = inputs.expand(len(self.active), *inputs.shape)
        return self.model(inputs)

    def _losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-example losses, (R, n): cross-entropy, or MSE (to one-hot targets for classes)."""
        if self.regression:
            return (outputs[..., 0] - targets).pow(2)
        if self.loss_kind == "mse":
            target = nn.functional.one_hot(targets, self.n_outputs).to(outputs.dtype)
            return nn.functional.mse_loss(outputs, target, reduction="none").mean(dim=-1)
        flat = nn.functional.cross_entropy(
            outputs.reshape(-1, self.n_outputs), targets.reshape(-1), reduction="none"
        )
        return flat.view(targets.shape)

    def _correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return ((outputs[..., 0] - targets).abs() <= self.pool.tolerance).to(outputs.dtype)
        return (outputs.argmax(dim=-1) == targets).to(outputs.dtype)

    def _full_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every replica's training inputs and targets, gathered once (not at every step) until
        replicas leave the batch or a checkpoint loads, which replace the row tensors."""
        cached = self._gathered
        if cached is None or cached[0] is not self.train_index or cached[1] is not self.targets:
            index = self.train_index
            cached = (index, self.targets, self.inputs[index], torch.gather(self.targets, 1, index))
            self._gathered = cached
        return cached[2], cached[3]

    def _train_step(self) -> None:
        if self.batches is None:
            weight = self.train_weight
            inputs, targets = self._full_batch()
        else:
            picks = torch.stack([b.next() for b in self.batches])  # type: ignore[misc]
            index = torch.gather(self.train_index, 1, picks)
            weight = torch.full(index.shape, 1.0 / index.shape[1], device=self.device)
            inputs, targets = self.inputs[index], torch.gather(self.targets, 1, index)
        params = list(self.model.parameters())
        perturbed = self.weight_noise.perturb(params)
        losses = self._losses(self._forward(inputs), targets)
        per_replica = losses.mean(dim=1) if self.equal_sizes and self.batches is None else (
            losses * weight).sum(dim=1)  # fmt: skip
        self.optimizer.zero_grad()
        total = per_replica + self.regularizer(params) if self.regularizer.active else per_replica
        total.sum().backward()
        self.weight_noise.restore(params, perturbed)
        self.grokfast(params)
        self.optimizer.step(losses=per_replica.detach())
        self.norm_constraint(params)
