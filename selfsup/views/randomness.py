"""The per-sample random draws of the view recipes, and how several processes share them exactly.

Every view module draws its random parameters with :func:`rand`, :func:`randn` and :func:`randint`, whose
first dimension is the batch. Outside :func:`batch_shard` they are ``torch.rand`` & co. Inside it, a process
that holds rows ``[offset, offset + b)`` of a global batch of ``total`` samples draws the parameters of the
whole global batch and keeps its rows: every process consumes its generator as one process holding the
whole batch would, so the views of an N-process run are, sample for sample, those of a 1-process run with
the same seed and global batch. Drawing a few numbers per sample of the global batch costs little (additive
noise draws one per pixel: global batch x pixels); the augmentation itself (the crops, the blur) is computed
on the local rows only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch

from selfsup.errors import SelfsupError

_SHARD: ContextVar[tuple[int, int] | None] = ContextVar("selfsup_view_shard", default=None)


@contextlib.contextmanager
def batch_shard(offset: int, total: int) -> Iterator[None]:
    """Within this block, view modules are given rows ``[offset, offset + b)`` of a batch of ``total``."""
    token = _SHARD.set((int(offset), int(total)))
    try:
        yield
    finally:
        _SHARD.reset(token)


def sharded() -> bool:
    """True inside :func:`batch_shard`."""
    return _SHARD.get() is not None


def shard_rows(b: int) -> tuple[int, int]:
    """``(offset, total)``: this process holds rows ``[offset, offset + b)`` of a batch of ``total``
    (``(0, b)`` outside :func:`batch_shard`). For draws that depend on the whole batch (I-JEPA's masks are
    cut to the batch's shortest), which are then made for all ``total`` rows and sliced."""
    shard = _SHARD.get()
    return (0, b) if shard is None else shard


def _draw(draw, b: int, shape: tuple[int, ...]) -> torch.Tensor:
    shard = _SHARD.get()
    if shard is None:
        return draw((b, *shape))
    offset, total = shard
    if offset < 0 or offset + b > total:
        raise SelfsupError(f"a shard of {b} rows at offset {offset} does not fit in a batch of {total}")
    return draw((total, *shape))[offset : offset + b]


def rand(b: int, *shape: int, device=None, dtype=None) -> torch.Tensor:
    """``torch.rand(b, *shape)``: uniform on [0, 1), one row per sample."""
    return _draw(lambda s: torch.rand(s, device=device, dtype=dtype), b, shape)


def randn(b: int, *shape: int, device=None, dtype=None) -> torch.Tensor:
    """``torch.randn(b, *shape)``: standard normal, one row per sample."""
    return _draw(lambda s: torch.randn(s, device=device, dtype=dtype), b, shape)


def randn_like(x: torch.Tensor) -> torch.Tensor:
    """``torch.randn_like(x)`` for a batch ``x`` (first dimension: the samples)."""
    return randn(x.shape[0], *x.shape[1:], device=x.device, dtype=x.dtype)


def randint(low: int, high: int, b: int, *shape: int, device=None) -> torch.Tensor:
    """``torch.randint(low, high, (b, *shape))``: integers in [low, high), one row per sample."""
    return _draw(lambda s: torch.randint(low, high, s, device=device), b, shape)
