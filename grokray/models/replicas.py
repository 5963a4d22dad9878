"""R networks of one shape as one module: parameters stacked on a leading replica axis.

Built from R ordinary ``MLP`` modules (each initialized with its own seed and ``init_scale``), so
replica r starts exactly where the unbatched network of the same config starts. Weights keep
``nn.Linear``'s (out, in) layout, so per-replica Langevin noise can be drawn in the same order and
shape as the unbatched path.

The first layer of a pair MLP is not multiplied out example by example. Its input is [e_a; e_b]
(two embedding rows, or two one-hot rows), so W·[e_a; e_b] = T[a] + T[p + b] with the table
T = [E_a W_aᵀ; E_b W_bᵀ] (for one-hot inputs T = Wᵀ itself): p × 2 small products a step instead
of one (n × 2e) × (2e × width) product, and the example rows only gather and add two table rows.
Its backward adds each example's gradient row into the table rows it gathered (``index_add_``).
That cuts a step's arithmetic by 2-3x for the grokking MLPs (the first layer was 2/3 of it at
p = 47, one-hot, width 128). The sums are the same up to float rounding as the obvious network's
(``MLP``); a replica's arithmetic still does not depend on the others in its batch.
"""

from __future__ import annotations

from typing import Any

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

    def first_layer_table(self) -> torch.Tensor:
        """T (R, 2p, out) of the first linear layer: row a is its output for operand a in the first
        slot, row p + b for operand b in the second (bias excluded: ``forward`` adds it to the
        second operand's rows)."""
        weight = getattr(self, self.linears[0][0])  # (R, out, 2e) or (R, out, 2p)
        if self.encoding == "embed":
            dim = self.embed_a_weight.shape[-1]
            return torch.cat(
                [
                    torch.bmm(self.embed_a_weight, weight[:, :, :dim].transpose(1, 2)),
                    torch.bmm(self.embed_b_weight, weight[:, :, dim:].transpose(1, 2)),
                ],
                dim=1,
            )
        return weight.transpose(1, 2)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        table = self.first_layer_table()
        bias = getattr(self, self.linears[0][1], None)
        if bias is not None:  # in the second operand's rows: one pass over the examples fewer
            table = torch.cat([table[:, : self.p], table[:, self.p :] + bias.unsqueeze(1)], dim=1)
        x = PairGather.apply(table, pairs[..., 0], pairs[..., 1] + self.p)
        for weight_name, bias_name in self.linears[1:]:
            x = self.activation(x)
            x = RowLinear.apply(x, getattr(self, weight_name), getattr(self, bias_name, None))
        return x

    @torch.no_grad()
    def keep(self, index: torch.Tensor) -> None:
        """Drop every replica not in ``index`` (finished ones stop costing compute)."""
        for name in self.names:
            parameter = getattr(self, name)
            parameter.data = parameter.data[index].contiguous()
            parameter.grad = None


class PairGather(torch.autograd.Function):
    """``out[r, i] = table[r, first[r, i]] + table[r, second[r, i]]`` for a table (R, rows, d) and
    indices (R, n); the backward adds each output row's gradient into the two table rows it came
    from (``pair_gather_grad``)."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        replicas, rows, width = table.shape
        offset = torch.arange(replicas, device=table.device).unsqueeze(1) * rows
        ctx.save_for_backward(first, second)
        ctx.rows = rows
        flat = table.reshape(replicas * rows, width)
        gathered = flat.index_select(0, (first + offset).reshape(-1))
        gathered.add_(flat.index_select(0, (second + offset).reshape(-1)))
        return gathered.view(*first.shape, width)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        first, second = ctx.saved_tensors
        dense = grad.device.type != "cpu"
        return pair_gather_grad(grad, first, second, ctx.rows, dense=dense), None, None


def pair_gather_grad(
    grad: torch.Tensor, first: torch.Tensor, second: torch.Tensor, rows: int, dense: bool
) -> torch.Tensor:
    """The table's gradient (R, rows, d) from the output's (R, n, d): ``grad[r, i]`` added into
    table rows ``first[r, i]`` and ``second[r, i]`` of replica r.

    ``dense=False`` (a CPU) is ``index_add_``, which walks the rows in order: deterministic. On a
    GPU ``index_add_`` adds with atomics, in no fixed order, so ``dense=True`` multiplies each
    replica's one-hot rows with the gradient instead (a batched product, as the one-hot first layer
    before the table was): the same sums, in a fixed order."""
    grad = grad.contiguous()
    replicas, _, width = grad.shape
    if not dense:
        offset = torch.arange(replicas, device=grad.device).unsqueeze(1) * rows
        flat = grad.reshape(-1, width)
        out = grad.new_zeros(replicas * rows, width)
        out.index_add_(0, (first + offset).reshape(-1), flat)
        out.index_add_(0, (second + offset).reshape(-1), flat)
        return out.view(replicas, rows, width)
    hits = nn.functional.one_hot(first, rows) + nn.functional.one_hot(second, rows)
    return torch.bmm(hits.to(grad.dtype).transpose(1, 2), grad)


def grad_chunk(device: torch.device) -> int:
    """Rows a weight gradient of ``RowLinear`` sums in one product (a fixed shape per device)."""
    return 256 if device.type == "cpu" else 1024


class RowLinear(torch.autograd.Function):
    """x Wᵀ + b for R replicas (x: (R, n, in)), whose gradients do not depend on the padding.

    A replica's rows in a pack are padded to the longest in its part (with zero gradient). The
    forward and the input's gradient compute each row alone, so padding changes none of them; but
    the weight and bias gradients sum over the rows, and a matrix product sums over a longer row
    count in other blocks: padded and unpadded runs of the same replica would round differently,
    and a replica trained alone (``grokray trial``, ``pack=1``) would drift from its packed run
    (measured: 33 of 42 padded products differ). So those sums go over chunks of a fixed row count
    (``grad_chunk``; the last chunk padded with zero rows), each chunk a product of one fixed
    shape, the chunks then added in order: padding adds only zero chunks and zero rows, exactly.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is not None:
            return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        return torch.bmm(x, weight.transpose(1, 2))

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        rows, chunk = grad.shape[1], grad_chunk(grad.device)
        grad_weight: torch.Tensor | None = None
        grad_bias: torch.Tensor | None = None
        for start in range(0, rows, chunk):  # in order: padding only adds zero chunks at the end
            g, h = grad[:, start : start + chunk], x[:, start : start + chunk]
            if g.shape[1] < chunk:  # the last, short chunk: zero rows to the fixed shape
                g = nn.functional.pad(g, (0, 0, 0, chunk - g.shape[1]))
                h = nn.functional.pad(h, (0, 0, 0, chunk - h.shape[1]))
            part = torch.bmm(g.transpose(1, 2), h)
            grad_weight = part if grad_weight is None else grad_weight.add_(part)
            if ctx.has_bias:
                summed = g.sum(dim=1)
                grad_bias = summed if grad_bias is None else grad_bias.add_(summed)
        return grad_x, grad_weight, grad_bias


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
