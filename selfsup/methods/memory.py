"""Queues of past embeddings (MoCo's keys, NNCLR's support set, SwAV's queue): ring buffers saved with
the model, filled with the rows of the whole global batch, so every process holds the same queue."""

from __future__ import annotations

import torch
from torch import nn

from selfsup.criteria import gather
from selfsup.errors import ConfigError


def make_queue(
    m: nn.Module, name: str, shape: tuple[int, ...], batch_size: int | None, init=torch.zeros
) -> None:
    """Register the buffers ``m.<name>`` (``shape``, rows first) and ``m.<name>_ptr`` (the next row)."""
    size = shape[0]
    if batch_size and size % batch_size:
        raise ConfigError(
            f"method '{m.recipe.name}': {name} length {size} must be a multiple of the global batch "
            f"train.batch_size={batch_size} (the queue takes whole batches)"
        )
    m.register_buffer(name, init(*shape))
    m.register_buffer(f"{name}_ptr", torch.zeros((), dtype=torch.long))


def push(m: nn.Module, name: str, rows: torch.Tensor) -> None:
    """Write the rows of every process (this one's in rank order) at the queue's pointer, wrapping round.
    Only in a training step: evaluation forwards leave the queue alone."""
    if not (m.training and torch.is_grad_enabled()):
        return
    with torch.no_grad():
        queue, ptr = getattr(m, name), getattr(m, f"{name}_ptr")
        rows = rows.detach().to(queue.dtype)
        rows = gather(rows) if m.gather_distributed else rows
        start, size = int(ptr), queue.shape[0]
        idx = (torch.arange(rows.shape[0], device=queue.device) + start) % size
        queue[idx] = rows
        ptr.fill_((start + rows.shape[0]) % size)
