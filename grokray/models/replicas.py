"""R networks of one shape as one module: parameters stacked on a leading replica axis.

Built from R ordinary ``MLP`` modules (each initialized with its own seed and ``init_scale``), so
replica r starts exactly where the unbatched network of the same config starts. Weights keep
``nn.Linear``'s (out, in) layout, so per-replica Langevin noise can be drawn in the same order and
shape as the unbatched path.
"""

from __future__ import annotations

import torch
from torch import nn

from grokray.models.mlp import ACTIVATIONS, MLP


class ReplicaMLP(nn.Module):
    """Forward of R MLPs at once: inputs (R, n, 2) operand indices → logits (R, n, p)."""

    def __init__(self, models: list[MLP]) -> None:
        super().__init__()
        first = models[0]
        self.p, self.encoding = first.p, first.encoding
        self.activation = next(
            (m for m in first.hidden if not isinstance(m, nn.Linear)), ACTIVATIONS["relu"]()
        )
        self.names: list[str] = []
        self.original: dict[str, str] = {}  # stacked name → the single model's parameter name
        for name, _ in first.named_parameters():
            stacked = torch.stack([dict(m.named_parameters())[name].detach() for m in models])
            key = name.replace(".", "_")
            self.register_parameter(key, nn.Parameter(stacked.clone()))
            self.names.append(key)
            self.original[key] = name
        self.linears = [
            (f"hidden_{i}_weight", f"hidden_{i}_bias")
            for i, module in enumerate(first.hidden)
            if isinstance(module, nn.Linear)
        ] + [("head_weight", "head_bias")]

    @property
    def replicas(self) -> int:
        return getattr(self, self.names[0]).shape[0]

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        a, b = pairs[..., 0], pairs[..., 1]
        if self.encoding == "embed":
            rows = torch.arange(self.replicas, device=pairs.device).unsqueeze(1)
            x = torch.cat([self.embed_a_weight[rows, a], self.embed_b_weight[rows, b]], dim=-1)
        else:
            x = torch.cat([nn.functional.one_hot(a, self.p), nn.functional.one_hot(b, self.p)], dim=-1).to(
                self.head_weight.dtype
            )
        for i, (weight_name, bias_name) in enumerate(self.linears):
            weight = getattr(self, weight_name)
            bias = getattr(self, bias_name, None)
            if bias is not None:
                x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
            else:
                x = torch.bmm(x, weight.transpose(1, 2))
            if i < len(self.linears) - 1:
                x = self.activation(x)
        return x

    @torch.no_grad()
    def keep(self, index: torch.Tensor) -> None:
        """Drop every replica not in ``index`` (finished ones stop costing compute)."""
        for name in self.names:
            parameter = getattr(self, name)
            parameter.data = parameter.data[index].contiguous()
            parameter.grad = None


class VmapReplicas(nn.Module):
    """R copies of any network as one module: ``torch.func`` over parameters stacked on axis 0.

    Works for every model of ``grokray.models`` (their forward is vmap-safe: no in-place ops on
    parameters, no data-dependent control flow). Parameter names are the module's with ``.``
    replaced by ``_``, as in ``ReplicaMLP``, so checkpoints and measures see one naming. Inputs
    are either shared by all replicas, (n, ...), or per replica, (R, n, ...).

    ``loop=True`` runs the module once per replica on its slice of the stacked parameters
    (``functional_call``, no vmap) and stacks the outputs: the same parameters, optimizer and
    checkpoints, each replica's arithmetic that of the plain module. On a CPU that is faster for
    compute-bound models (a 1-layer transformer at R=8: ~1.7x), where vmap's batched matmuls
    lose the fused bias and the cache; on a GPU vmap's one launch per op for all replicas wins.
    """

    def __init__(self, models: list[nn.Module], loop: bool = False) -> None:
        super().__init__()
        import copy

        self.loop = loop

        # the module whose forward runs with the stacked values; in a list, so that its own
        # parameters are not this module's (functional_call replaces them)
        self.base = [copy.deepcopy(models[0])]
        self.original: dict[str, str] = {}
        self.names: list[str] = []
        for name, _ in models[0].named_parameters():
            stacked = torch.stack([dict(m.named_parameters())[name].detach() for m in models])
            key = name.replace(".", "_")
            self.register_parameter(key, nn.Parameter(stacked.clone()))
            self.names.append(key)
            self.original[key] = name
        self.buffer_values = {
            name: torch.stack([dict(m.named_buffers())[name] for m in models])
            for name, _ in models[0].named_buffers()
        }

    @property
    def replicas(self) -> int:
        return getattr(self, self.names[0]).shape[0]

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        self.buffer_values = {name: fn(value) for name, value in self.buffer_values.items()}
        self.base[0]._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def forward(self, inputs: torch.Tensor, shared: bool = False) -> torch.Tensor:
        from torch.func import functional_call, vmap

        base = self.base[0]
        params = {self.original[key]: getattr(self, key) for key in self.names}
        buffers = self.buffer_values
        if self.loop:
            return torch.stack(
                [
                    functional_call(
                        base,
                        ({k: v[r] for k, v in params.items()}, {k: v[r] for k, v in buffers.items()}),
                        (inputs if shared else inputs[r],),
                    )
                    for r in range(self.replicas)
                ]
            )

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(base, (p, b), (x,))

        return vmap(one, in_dims=(0, 0, None if shared else 0))(params, buffers, inputs)

    @torch.no_grad()
    def keep(self, index: torch.Tensor) -> None:
        for name in self.names:
            parameter = getattr(self, name)
            parameter.data = parameter.data[index].contiguous()
            parameter.grad = None
        self.buffer_values = {name: value[index] for name, value in self.buffer_values.items()}
