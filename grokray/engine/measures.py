"""What an evaluation measures of R replicas at once: loss and accuracy on each replica's
training and validation split, the weight norm, clean / corrupted training accuracy, recovery
error, and the progress measures (norms every evaluation; spectral entropy, effective rank,
Fourier IPR and compression complexity on a log schedule). A part of ``ReplicaRun``
(``grokray.engine.run``), whose ``__init__`` sets the attributes used here."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from grokray.metrics import (
    compressed_complexity,
    is_log_step,
    mlp_neuron_weights,
    neuron_ipr,
    norm_measures,
    spectral_measures,
)
from grokray.models.replicas import ReplicaMLP

EVAL_CHUNK = 8192  # examples per forward pass at evaluation (bounds memory of large pools)


class Measures:
    """The evaluation of ``ReplicaRun``."""

    @torch.no_grad()
    def _columns(self, step: int) -> dict[str, torch.Tensor]:
        """Every curve of the evaluation at ``step``, as (R,) tensors (no host sync)."""
        outputs = self._outputs_all()
        targets = self.targets
        losses, correct = self._losses(outputs, targets), self._correct(outputs, targets)
        dtype = losses.dtype
        train_mask, val_mask = self.train_mask.to(dtype), self.val_mask.to(dtype)
        n_train, n_val = train_mask.sum(dim=1), val_mask.sum(dim=1)
        norms = torch.sqrt(
            sum(p.detach().double().pow(2).flatten(1).sum(dim=1) for p in self.model.parameters())
        )
        columns = {
            "train_loss": (losses * train_mask).sum(dim=1) / n_train,
            "train_acc": (correct * train_mask).sum(dim=1) / n_train,
            "val_loss": (losses * val_mask).sum(dim=1) / n_val,
            "val_acc": (correct * val_mask).sum(dim=1) / n_val,
            "weight_norm": norms.to(dtype),
        }
        if self.any_corruption:
            corrupted = self.corrupted_mask.to(dtype)
            clean = train_mask - corrupted
            truly = self._correct(outputs, self.clean_targets.expand_as(targets))
            columns["train_acc_clean"] = (truly * clean).sum(dim=1) / clean.sum(dim=1).clamp(min=1)
            columns["train_acc_corrupted"] = (correct * corrupted).sum(dim=1) / corrupted.sum(dim=1).clamp(
                min=1
            )
        columns.update(self._measures(step))
        return columns

    @torch.no_grad()
    def _outputs_all(self) -> torch.Tensor:
        chunks = [
            self._forward(self.inputs[start : start + EVAL_CHUNK])
            for start in range(0, self.n_total, EVAL_CHUNK)
        ]
        return torch.cat(chunks, dim=1)

    @torch.no_grad()
    def _measures(self, step: int) -> dict[str, torch.Tensor]:
        """Progress measures as (R,) tensors: cheap ones every evaluation, the rest on a log schedule."""
        out: dict[str, torch.Tensor] = {}
        raw = {name: getattr(self.model, name).detach() for name in self.model.names}
        # a diverged replica has inf/NaN weights, on which an SVD raises: measure zeros instead
        # and report NaN for it (no host sync: the flags stay on the device)
        finite = torch.stack([p.flatten(1).isfinite().all(dim=1) for p in raw.values()]).all(dim=0)
        params = {name: p.nan_to_num(0.0, 0.0, 0.0) for name, p in raw.items()}
        if self.pool.truth is not None:
            predicted = self._forward(self.pool.probe.to(self.device))[..., 0]
            truth = self.pool.truth.to(self.device).reshape(1, -1)
            error = (predicted.reshape(len(self.active), -1) - truth).norm(dim=1)
            out["recovery_error"] = error / truth.norm()
        if self.measures == "none":
            return {name: torch.where(finite, value, torch.nan) for name, value in out.items()}
        out.update(norm_measures(params))
        if self.measures == "all" and is_log_step(step, self.eval_every):
            out.update(spectral_measures(params))
            weights = mlp_neuron_weights(params, self.configs[0]["p"], self.configs[0]["encoding"]) if (
                isinstance(self.model, ReplicaMLP)) else None  # fmt: skip
            if weights is not None:
                out["fourier_ipr"] = neuron_ipr(*weights)[1]
            out.update(self._complexity())
        return {name: torch.where(finite, value, torch.nan) for name, value in out.items()}

    def _complexity(self) -> dict[str, torch.Tensor]:
        """DeMoss's compression complexity of each replica over all its parameters (weights,
        embeddings, biases, norm gains), expensive: log schedule only."""
        names = list(self.model.names)
        sizes, naive = [], []
        for i in range(len(self.active)):
            tensors = [getattr(self.model, n)[i].detach() for n in names]
            if not all(bool(t.isfinite().all()) for t in tensors):  # diverged: nothing to compress
                sizes.append(math.nan)
                naive.append(math.nan)
                continue

            def loss_at(approx: list[torch.Tensor], i: int = i) -> float:
                return self._replica_train_loss(i, dict(zip(names, approx, strict=True)))

            result = compressed_complexity(tensors, loss_at, epsilon=self.configs[0]["complexity_epsilon"])
            sizes.append(float(result["complexity_bytes"]))
            naive.append(float(result["naive_bytes"]))
        return {
            "complexity_bytes": torch.tensor(sizes, device=self.device),
            "naive_complexity_bytes": torch.tensor(naive, device=self.device),
        }

    @torch.no_grad()
    def _replica_train_loss(self, row: int, replaced: Mapping[str, torch.Tensor]) -> float:
        """Training loss of batch row ``row`` with some parameters replaced (for the complexity
        search): that replica alone, on its own training examples, at its clean weights."""
        params = {
            name: (replaced[name] if name in replaced else getattr(self.model, name)[row]).unsqueeze(0)
            for name in self.model.names
        }
        index = self.train_index[row, : self.n_train[self.active[row]]]
        buffers = getattr(self.model, "buffer_values", None)
        if buffers:  # VmapReplicas keeps buffers stacked outside the module: the row's alone
            self.model.buffer_values = {name: value[row : row + 1] for name, value in buffers.items()}
        try:
            outputs = torch.func.functional_call(self.model, params, (self.inputs[index].unsqueeze(0),))
        finally:
            if buffers:
                self.model.buffer_values = buffers
        return float(self._losses(outputs, self.targets[row, index].unsqueeze(0)).mean())
