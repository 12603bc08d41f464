"""Shared machinery of the criteria: input validation, float32 maths and a gradient-correct all-gather.

Every criterion validates its inputs (:func:`check_pair`, :func:`check_embeddings`), casts them to
float32 and does its maths inside :func:`float32_math` (autocast disabled), so a loss is computed in
float32 whether it is given float16, bfloat16 or float32 embeddings, with or without autocast.

Distributed semantics (``gather_distributed=True``)
--------------------------------------------------
:func:`gather` concatenates the per-process batches along dim 0. Its backward all-reduces (SUM) the
incoming gradient and returns this process's slice. With every process computing the same *global*
loss ``L`` (or a share of it, see :func:`global_mean`), the gradient that reaches a process's shard
is ``world_size * dL/dshard``; DDP then averages parameter gradients over the processes, which
divides by ``world_size`` and gives exactly the single-process gradient of ``L`` on the concatenated
batch. Returning only the local slice without the all-reduce (as one popular library did) yields a
gradient ``world_size`` times too small.

We use our own small :class:`torch.autograd.Function` rather than
``torch.distributed.nn.functional.all_gather``: the latter has the right (SUM) semantics on gloo but is
deprecated in recent PyTorch and needs equal shard sizes; ours also accepts uneven shards.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator

import torch
import torch.distributed as dist

from selfsup.errors import NonFiniteError, SelfsupError, ShapeError

__all__ = [
    "check_embeddings",
    "check_pair",
    "check_positive",
    "float32_math",
    "gather",
    "gather_pair",
    "gather_with_offset",
    "global_mean",
    "all_reduce_sum",
    "is_distributed",
    "off_diagonal",
]


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"a {type(x).__name__}"


def check_embeddings(z: object, name: str, *, min_rows: int = 2, collective: bool = False) -> torch.Tensor:
    """Validate one embedding batch (N x K, N >= ``min_rows``, floating, finite); return it in float32.

    ``collective``: the criterion gathers across torch.distributed processes, so every process calls this
    check in step; the finiteness verdict is then agreed by all of them (one tiny all-reduce), so that a
    NaN on one process stops every process here instead of leaving the others waiting in the gather."""
    if not isinstance(z, torch.Tensor):
        raise SelfsupError(f"{name} must be a torch.Tensor of shape (batch, dim); got {_describe(z)}.")
    if z.ndim != 2:
        raise ShapeError(
            f"{name} must be 2-D (batch, dim); got shape {tuple(z.shape)}. "
            "Flatten the embeddings first, e.g. z.flatten(1)."
        )
    if not z.is_floating_point():
        raise SelfsupError(f"{name} must be a floating-point tensor; got dtype {z.dtype}.")
    if z.shape[0] < min_rows:
        raise ShapeError(
            f"{name} has {z.shape[0]} row(s) but this criterion needs a batch of at least {min_rows}; "
            f"got shape {tuple(z.shape)}. Increase the batch size."
        )
    if z.shape[1] < 1:
        raise ShapeError(f"{name} has no features (shape {tuple(z.shape)}).")
    if not _all_finite(z.detach(), collective and is_distributed()):
        raise NonFiniteError(
            f"{name} contains NaN or Inf values; check the model output (learning rate, mixed precision "
            "overflow) before computing the loss."
        )
    return z.float()


def _all_finite(z: torch.Tensor, collective: bool) -> bool:
    bad = (~torch.isfinite(z)).any().to(torch.int32)
    if collective:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return not bool(bad)


def check_pair(
    z1: object,
    z2: object,
    names: tuple[str, str] = ("z1", "z2"),
    *,
    min_rows: int = 2,
    collective: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two embedding batches of the same shape and device; return both in float32
    (``collective``: see :func:`check_embeddings`)."""
    a = check_embeddings(z1, names[0], min_rows=min_rows, collective=collective)
    b = check_embeddings(z2, names[1], min_rows=min_rows, collective=collective)
    if a.shape != b.shape:
        raise ShapeError(
            f"{names[0]} and {names[1]} must have the same shape (the two views of one batch); "
            f"got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    if a.device != b.device:
        raise SelfsupError(f"{names[0]} and {names[1]} are on different devices: {a.device} and {b.device}.")
    return a, b


def check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Validate a finite real hyper-parameter that must be > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SelfsupError(f"{name} must be a number; got {value!r}.")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise SelfsupError(f"{name} must be a finite number {bound}; got {value!r}.")
    return v


@contextlib.contextmanager
def float32_math(device: torch.device) -> Iterator[None]:
    """Disable autocast for ``device``'s type so the enclosed maths runs in the tensors' own dtype."""
    try:
        ctx: contextlib.AbstractContextManager = torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # a device type without autocast support
        ctx = contextlib.nullcontext()
    with ctx:
        yield


def off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, flattened."""
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def is_distributed() -> bool:
    """True when torch.distributed is available and initialised."""
    return dist.is_available() and dist.is_initialized()


def _world() -> tuple[int, int]:
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather in forward; all_reduce(SUM) of the gradient and this rank's slice in backward."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:  # type: ignore[override]
        ctx.sizes, ctx.rank = sizes, rank
        z = z.contiguous()
        biggest = max(sizes)
        if z.shape[0] < biggest:  # all_gather needs equal shapes: pad, then strip the padding
            z = torch.cat([z, z.new_zeros((biggest - z.shape[0], *z.shape[1:]))])
        parts = [torch.empty_like(z) for _ in sizes]
        dist.all_gather(parts, z)
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def _shard_sizes(n: int, device: torch.device) -> list[int]:
    _, world = _world()
    mine = torch.tensor([n], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(sizes, mine)
    return [int(s.item()) for s in sizes]


def gather_with_offset(z: torch.Tensor) -> tuple[torch.Tensor, int]:
    """:func:`gather`, also returning the index of this process's first row in the result."""
    if not is_distributed():
        return z, 0
    rank, _ = _world()
    sizes = _shard_sizes(z.shape[0], z.device)
    return _GatherWithGrad.apply(z, sizes, rank), sum(sizes[:rank])


def gather(z: torch.Tensor) -> torch.Tensor:
    """Concatenate ``z`` from all processes along dim 0, with gradient (identity when not distributed).

    Shards may have different lengths. See the module docstring for the gradient semantics.
    """
    return gather_with_offset(z)[0]


def gather_pair(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Gather two views in one collective; returns (z1_all, z2_all, offset of this process's rows)."""
    if not is_distributed():
        return z1, z2, 0
    both, offset = gather_with_offset(torch.cat([z1, z2], dim=1))
    k = z1.shape[1]
    return both[:, :k], both[:, k:], offset


def global_mean(local_sum: torch.Tensor, local_count: int, gathered: bool) -> torch.Tensor:
    """Mean over all processes of per-row terms, from this process's sum over its own rows.

    Used by the criteria whose rows (anchors) are local but whose columns (candidates) are gathered,
    so each process does 1/world_size of the work. The returned value is the global mean on every
    process; its gradient is that of ``world_size * local_sum / global_count``, so that summed over
    processes (the all-reduce in :func:`gather`'s backward) it is ``world_size`` times the gradient of
    the global mean, exactly like a criterion computed entirely on the gathered batch.
    """
    if not gathered or not is_distributed():
        return local_sum / local_count
    _, world = _world()
    stats = torch.stack([local_sum.detach(), local_sum.new_tensor(float(local_count))])
    dist.all_reduce(stats, op=dist.ReduceOp.SUM)
    value = stats[0] / stats[1]
    share = local_sum * (world / stats[1])
    return share + (value - share).detach()


class _AllReduceSum(torch.autograd.Function):
    """all_reduce(SUM) in forward and in backward: the gradient of a sum over processes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.contiguous().clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over all processes, with gradient (identity when not distributed).

    Every process then computes the same global loss from the sum, and the backward all-reduce gives each
    process ``world_size * dL/dx`` (the gradient of every process's identical loss), the convention of
    :func:`gather`: DDP's averaging divides it back to the single-process gradient. A backward that
    returned the incoming gradient unreduced would leave it ``world_size`` times too small after DDP (the
    bug lightly fixed in its SIGReg, lightly-ai/lightly#1920).
    """
    if not is_distributed():
        return x
    return _AllReduceSum.apply(x)
