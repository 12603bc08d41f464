"""Batches from memory or from a streamed :class:`~selfsup.data.sources.Source`, in one seeded order.

The training loop asks :class:`EpochBatches` for an epoch's index batches and :func:`feed` for the samples
of each: rows of an in-memory tensor, or a DataLoader reading the source in ``workers`` processes, the
batch moved to the device as uint8 (pinned, non-blocking on CUDA) and made float there by
:func:`as_float`. Both paths follow the same permutation, so they deliver the same batches. Workers draw
no random numbers (augmentations are drawn on the device by the view recipes), so resuming at an epoch
boundary needs no worker state: the epoch's order is a function of ``(seed, epoch)``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import torch
from rich.progress import track
from torch.utils.data import DataLoader, Sampler

from selfsup.data.core import DataSplits
from selfsup.data.sources import Source
from selfsup.errors import SelfsupError

#: The in-memory rule: ``data.stream=auto`` reads a source into memory when it takes at most this many
#: MiB as uint8 (``data.max_memory_mb``), and streams it otherwise.
MAX_MEMORY_MB = 1024


def worker_count(workers: int | None = None) -> int:
    """DataLoader worker processes: ``workers`` when given (``data.workers``), else the CPU cores shared
    among this machine's training processes (torchrun's ``LOCAL_WORLD_SIZE``), at least 1, at most 8."""
    if workers is not None:
        return workers
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(8, (os.cpu_count() or 1) // max(local, 1)))


def as_float(x: torch.Tensor) -> torch.Tensor:
    """Samples as the model takes them: uint8 images -> float32 in [0, 1]; other dtypes -> float32."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x if x.dtype == torch.float32 else x.float()


def _loader(source: Source, device: torch.device, workers: int, **options) -> DataLoader:
    """A DataLoader over ``source``: pinned batches for CUDA, and a generator of its own, so seeding its
    workers leaves the global RNG (the one the views draw from) alone."""
    pin = device.type == "cuda"
    return DataLoader(source, num_workers=workers, pin_memory=pin, generator=torch.Generator(), **options)


def take(x: torch.Tensor | Source, idx: torch.Tensor) -> torch.Tensor:
    """The samples at ``idx`` as one tensor on the CPU (a few: the monitor subset, a preview)."""
    if isinstance(x, torch.Tensor):
        return x[idx]
    return torch.stack([x[int(i)][0] for i in idx])


class EpochBatches(Sampler):
    """An epoch's index batches: a permutation seeded by ``(seed, epoch)``, cut into global batches of
    ``batch_size`` (the last incomplete one dropped), each process keeping its rows ``[rank * b / W,
    (rank + 1) * b / W)``. Call :meth:`set_epoch` before each epoch; iterating twice gives the same
    batches. ``len`` counts the whole epoch's batches."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        share = batch_size // world_size
        self.rows = slice(rank * share, (rank + 1) * share)
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """The epoch to iterate, from its batch ``start`` (a run resumed mid-epoch skips the ones it took)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=gen)
        bs = self.batch_size
        for b in range(self.start, len(self)):
            yield perm[b * bs : (b + 1) * bs][self.rows]


class Feed:
    """Iterates ``(index, samples)`` of each batch of ``batches`` on ``device``; ``skipped`` counts samples
    a source could not decode (the next readable one stood in)."""

    def __init__(self, x, batches: Sampler, device: torch.device, workers: int):
        self.x, self.batches, self.device = x, batches, device
        self.skipped = 0
        self.loader = None
        if not isinstance(x, torch.Tensor):
            more = {"persistent_workers": True, "prefetch_factor": 4} if workers > 0 else {}
            self.loader = _loader(x, device, workers, batch_sampler=batches, **more)

    def close(self) -> None:
        """Stop the worker processes (and drop their prefetched batches)."""
        self.loader = None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.x, torch.Tensor):  # in memory, already on the device
            for idx in self.batches:
                idx = idx.to(self.device)
                yield idx, as_float(self.x[idx])
            return
        for idx, (images, ok) in zip(self.batches, guarded(self.loader), strict=True):
            self.skipped += int((~ok).sum())
            yield idx.to(self.device), as_float(images.to(self.device, non_blocking=True))


def sequential(x, batch_size: int, device: torch.device, workers: int) -> Iterator[torch.Tensor]:
    """Every sample of ``x`` in order, ``batch_size`` at a time, as float on ``device`` (embeddings of a
    whole split: a streamed source never sits in memory)."""
    if isinstance(x, torch.Tensor):
        for i in range(0, len(x), batch_size):
            yield as_float(x[i : i + batch_size].to(device))
        return
    for images, _ in guarded(_loader(x, device, workers, batch_size=batch_size)):
        yield as_float(images.to(device, non_blocking=True))


def guarded(loader: DataLoader) -> Iterator:
    """The loader's batches; a worker process that dies (killed, out of memory) or fails becomes one
    :class:`SelfsupError` that says what to do, instead of DataLoader's traceback."""
    try:
        yield from loader
    except SelfsupError as err:  # raised in a worker: DataLoader adds the worker's traceback to the text
        raise SelfsupError(str(err).strip().splitlines()[-1].split("Error: ", 1)[-1]) from None
    except RuntimeError as err:
        if "DataLoader worker" not in str(err):
            raise
        raise SelfsupError(
            f"a data-loading worker process stopped: {err} Lower data.workers or free memory, then resume "
            "the run with selfsup train --resume RUN_DIR (its last checkpoint is kept)."
        ) from None


def materialize(source: Source, workers: int, what: str = "samples") -> tuple[torch.Tensor, int]:
    """The whole source read into one tensor (uint8 images stay uint8), by ``workers`` processes, with a
    progress bar on large sources; and the number of samples that could not be decoded."""
    whole = source.read_all()
    if whole is not None:
        return whole, 0
    n = len(source)
    out = None
    skipped, at = 0, 0
    batch = 256
    loader = _loader(source, torch.device("cpu"), workers if n > 4 * batch else 0, batch_size=batch)
    for images, ok in track(guarded(loader), f"reading {what}", transient=True, disable=n < 5000):
        if out is None:
            out = torch.empty((n, *images.shape[1:]), dtype=images.dtype)
        out[at : at + len(images)] = images
        at += len(images)
        skipped += int((~ok).sum())
    return out, skipped


def place(
    splits: DataSplits,
    stream: bool | str = "auto",
    workers: int | None = None,
    max_memory_mb: float = MAX_MEMORY_MB,
) -> DataSplits:
    """Stream the splits' sources, or read them into memory: ``stream=True`` / ``False``, or ``"auto"``:
    into memory when all of them together take at most ``max_memory_mb`` MiB (uint8 images: 1 byte per
    value), streamed otherwise. Datasets already in memory stay there. Records the choice in
    ``splits.info["streamed"]`` and undecodable samples in ``info["unreadable"]``."""
    parts = [p for p in (splits.train, splits.test) if p is not None and p.streamed]
    if any(len(p) == 0 for p in parts):
        raise SelfsupError(f"dataset '{splits.name}' has a split without samples; check its files.")
    total_mb = sum(p.x.nbytes() for p in parts) / 2**20
    if stream == "auto":
        stream = total_mb > max_memory_mb
    splits.info["streamed"] = bool(stream and parts)
    if stream or not parts:
        return splits
    workers = worker_count(workers)
    unreadable = 0
    for p in parts:
        if p.ids is None:
            p.ids = p.x.sample_ids()  # a folder's file paths outlive its source
        p.x, skipped = materialize(p.x, workers)
        unreadable += skipped
    if unreadable:
        warnings.warn(
            f"{unreadable} sample(s) of '{splits.name}' could not be decoded; the next readable "
            "sample stands in for each.",
            stacklevel=3,
        )
    splits.info["unreadable"] = unreadable
    return splits
