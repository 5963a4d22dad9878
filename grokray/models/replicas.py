"""R networks of one shape as one module: parameters stacked on a leading replica axis.

Built from R ordinary ``MLP`` modules (each initialized with its own seed and ``init_scale``), so
replica r starts exactly where the unbatched network of the same config starts. Weights keep
``nn.Linear``'s (out, in) layout, so per-replica Langevin noise can be drawn in the same order and
shape as the unbatched path.

The first layer of a pair MLP is not multiplied out example by example. Its input is [e_a; e_b]
(two embedding rows, or two one-hot rows), so W·[e_a; e_b] + b = T_a[a] + T_b[b] with the tables
T_a = E_a W_aᵀ and T_b = E_b W_bᵀ + b (for one-hot inputs the weight's own columns): two p × width
products a step instead of one (n × 2e) × (2e × width), and the examples only gather and add
two table rows (``PairGather``; its backward adds each example's gradient into the rows it
gathered, in order). That cuts a step's arithmetic by 2-3x for the grokking MLPs (the first layer
was 2/3 of it at p = 47, one-hot, width 128). Every later layer is an ``ActLinear`` (activation
and linear layer in one autograd node), whose weight gradients are summed in chunks of a fixed
shape, so that a replica's rows padded in a pack train bit for bit as unpadded. The sums are the
same up to float rounding as the obvious network's (``MLP``); a replica's arithmetic does not
depend on the others in its batch, nor on its padding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from grokray.models.mlp import ACTIVATIONS, MLP, Quadratic

# the activations ``ActLinear`` computes itself (every one of ``ACTIVATIONS``)
ACTIVATION_KINDS = {nn.ReLU: "relu", nn.GELU: "gelu", Quadratic: "quadratic"}


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

    def first_layer_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first linear layer as two tables (R, p, out): row a of the first is its output for
        operand a in the first slot, row b of the second for operand b in the second, the layer's
        bias added to the second (one pass over the examples fewer)."""
        weight = getattr(self, self.linears[0][0])  # (R, out, 2e) or (R, out, 2p)
        bias = getattr(self, self.linears[0][1], None)
        if self.encoding == "embed":
            dim = self.embed_a_weight.shape[-1]
            first = torch.bmm(self.embed_a_weight, weight[:, :, :dim].transpose(1, 2))
            second_weight = weight[:, :, dim:].transpose(1, 2)
            if bias is None:
                return first, torch.bmm(self.embed_b_weight, second_weight)
            return first, torch.baddbmm(bias.unsqueeze(1), self.embed_b_weight, second_weight)
        first, second = weight[:, :, : self.p].transpose(1, 2), weight[:, :, self.p :].transpose(1, 2)
        return first, second if bias is None else second + bias.unsqueeze(1)

    def _flat_indices(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each example's rows in the replicas' stacked tables (operand + replica x p), made once
        for the inputs a run hands every step (its full batch), again for any other."""
        cached = self.__dict__.get("_indices")  # (the inputs themselves, their version, indices)
        if cached is not None and cached[0] is pairs and cached[1] == pairs._version:
            return cached[2], cached[3]
        offset = torch.arange(pairs.shape[0], device=pairs.device).unsqueeze(1) * self.p
        first = (pairs[..., 0] + offset).reshape(-1)
        second = (pairs[..., 1] + offset).reshape(-1)
        self.__dict__["_indices"] = (pairs, pairs._version, first, second)
        return first, second

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        first_table, second_table = self.first_layer_tables()
        first, second = self._flat_indices(pairs)
        x = PairGather.apply(first_table, second_table, first, second).view(*pairs.shape[:-1], -1)
        kind = ACTIVATION_KINDS[type(self.activation)]
        for weight_name, bias_name in self.linears[1:]:
            x = ActLinear.apply(x, getattr(self, weight_name), getattr(self, bias_name, None), kind)
        return x

    @torch.no_grad()
    def keep(self, index: torch.Tensor) -> None:
        """Drop every replica not in ``index`` (finished ones stop costing compute)."""
        for name in self.names:
            parameter = getattr(self, name)
            parameter.data = parameter.data[index].contiguous()
            parameter.grad = None


class PairGather(torch.autograd.Function):
    """``first_table[first] + second_table[second]`` over the rows of two stacked tables (R, p, d)
    (flat row indices, ``ReplicaMLP._flat_indices``); the backward adds each output row's gradient
    into the two table rows it came from (``pair_gather_grad``)."""

    @staticmethod
    def forward(
        ctx: Any,
        first_table: torch.Tensor,
        second_table: torch.Tensor,
        first: torch.Tensor,
        second: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(first, second)
        ctx.shape = first_table.shape
        width = first_table.shape[-1]
        with serial_if_small(first.numel() * width):
            gathered = first_table.reshape(-1, width).index_select(0, first)
            return gathered.add_(second_table.reshape(-1, width).index_select(0, second))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        first, second = ctx.saved_tensors
        dense = grad.device.type != "cpu"
        return (
            pair_gather_grad(grad, first, ctx.shape, dense=dense),
            pair_gather_grad(grad, second, ctx.shape, dense=dense),
            None,
            None,
        )


SERIAL_NUMEL = 1 << 20  # elements below which the table's gather and scatter run on one thread


@contextlib.contextmanager
def serial_if_small(numel: int) -> Iterator[None]:
    """One intra-op thread for a gather or scatter of fewer than ``SERIAL_NUMEL`` elements: the
    same numbers, without waking a second thread for a few microseconds of work (a wake-up costs
    ~0.4 ms with ``OMP_WAIT_POLICY=PASSIVE``, what ``make bench`` runs with: the engine at R = 1 on
    the bench's p = 47 MLP went from 0.68x to 0.97x of the plain loop)."""
    threads = torch.get_num_threads()
    if threads == 1 or numel >= SERIAL_NUMEL:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pair_gather_grad(grad: torch.Tensor, index: torch.Tensor, shape: torch.Size, dense: bool) -> torch.Tensor:
    """A stacked table's gradient (``shape``: R, p, d) from the gathered rows' (n, d): ``grad[i]``
    added into flat table row ``index[i]`` (replica r's rows are r·p ... r·p + p - 1).

    ``dense=False`` (a CPU) is ``index_add_``, which walks the rows in order: deterministic. On a
    GPU ``index_add_`` adds with atomics, in no fixed order, so ``dense=True`` multiplies each
    replica's one-hot rows with the gradient instead (a batched product, as the one-hot first layer
    before the tables was): the same sums, in a fixed order."""
    replicas, rows, width = shape
    grad = grad.reshape(-1, width)
    if not dense:
        with serial_if_small(grad.numel()):  # the same sums: each column walks the rows in order
            return grad.new_zeros(replicas * rows, width).index_add_(0, index, grad).view(shape)
    local = index.view(replicas, -1) - torch.arange(replicas, device=index.device).unsqueeze(1) * rows
    hits = nn.functional.one_hot(local, rows).to(grad.dtype)
    return torch.bmm(hits.transpose(1, 2), grad.view(replicas, -1, width))


def grad_chunk(device: torch.device) -> int:
    """Rows a weight gradient of ``ActLinear`` sums in one product (a fixed shape per device)."""
    return 256 if device.type == "cpu" else 1024


class ActLinear(torch.autograd.Function):
    """φ(z) Wᵀ + b for R replicas (z: (R, n, in), φ: relu, gelu or x²), whose gradients do not
    depend on how far a replica's rows are padded.

    A replica's rows in a pack are padded to the longest in its part (with zero gradient). The
    forward and the input's gradient compute each row alone, so padding changes none of them; but
    the weight and bias gradients sum over the rows, and a matrix product sums a longer row count
    in other blocks: padded and unpadded runs of the same replica would round differently, and a
    replica trained alone (``grokray trial``, ``pack=1``) would drift from its packed run
    (measured: 33 of 42 padded products differ). So those sums go over chunks of a fixed row count
    (``grad_chunk``): φ(z) is written into a buffer of whole chunks (zero rows after the last
    example), the weight gradient is one batched product of a fixed shape per chunk, and the
    chunks' products are added in order: padding adds only zero rows and zero chunks, exactly.
    """

    @staticmethod
    def forward(
        ctx: Any, z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, kind: str
    ) -> torch.Tensor:
        replicas, rows, width = z.shape
        chunk = grad_chunk(z.device)
        chunks = -(-rows // chunk)
        buffer = z.new_empty(replicas, chunks * chunk, width)
        buffer[:, rows:].zero_()
        h = buffer[:, :rows]
        if kind == "relu":
            torch.clamp(z, min=0.0, out=h)
        elif kind == "gelu":  # (gelu's out= does not write into a strided view)
            h.copy_(nn.functional.gelu(z))
        else:  # quadratic
            torch.mul(z, z, out=h)
        # relu's derivative reads φ(z) > 0 from the buffer: z itself need not outlive the forward
        ctx.save_for_backward(None if kind == "relu" else z, buffer, weight)
        ctx.kind, ctx.has_bias, ctx.chunks = kind, bias is not None, chunks
        if bias is not None:
            return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        return torch.bmm(h, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        z, buffer, weight = ctx.saved_tensors
        grad = grad.contiguous()
        replicas, rows, out = grad.shape
        grad_z = None
        if ctx.needs_input_grad[0]:
            grad_h = torch.bmm(grad, weight)
            if ctx.kind == "relu":
                grad_z = torch.ops.aten.threshold_backward(grad_h, buffer[:, :rows], 0.0)
            elif ctx.kind == "gelu":
                grad_z = torch.ops.aten.gelu_backward(grad_h, z)
            else:  # d(z²) = 2 z dz
                grad_z = grad_h.mul_(z).mul_(2.0)
        padded = nn.functional.pad(grad, (0, 0, 0, buffer.shape[1] - rows))
        chunked = padded.view(replicas * ctx.chunks, -1, out)
        grad_weight = torch.bmm(
            chunked.transpose(1, 2), buffer.view(replicas * ctx.chunks, -1, buffer.shape[2])
        )
        grad_weight = grad_weight.view(replicas, ctx.chunks, out, -1).sum(dim=1)
        grad_bias = None
        if ctx.has_bias:
            grad_bias = padded.view(replicas, ctx.chunks, -1, out).sum(dim=2).sum(dim=1)
        return grad_z, grad_weight, grad_bias, None


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
