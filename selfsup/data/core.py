"""Dataset containers, the cache directory and the fixed monitor subset."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from selfsup.data.sources import Source
from selfsup.errors import NonFiniteError, SelfsupError, ShapeError

MODALITIES = ("signal", "image")


@dataclass
class ArrayDataset:
    """Samples ``x`` (``N x ...``: ``N x C x L`` signals, ``N x C x H x W`` images) and optional integer
    labels ``y`` (int64, length N). ``x`` is a tensor in memory (float32, or uint8 images, which become
    [0, 1] floats on the device) or a :class:`~selfsup.data.sources.Source` read batch by batch (streamed)."""

    x: torch.Tensor | Source
    y: torch.Tensor | None = None
    #: Generated data's per-sample factors (objects3d: instance, quaternion, hue ...), each a tensor with
    #: one row per sample; None for data without recorded factors.
    factors: dict[str, torch.Tensor] | None = None
    #: Where each sample came from (a folder's file paths), kept when a source is read into memory; None:
    #: the source's own ids, else the sample indices (:meth:`sample_ids`).
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.x, (torch.Tensor, Source)):
            raise SelfsupError(
                f"ArrayDataset.x must be a torch.Tensor or a Source, got {type(self.x).__name__}."
            )
        if isinstance(self.x, torch.Tensor) and self.x.ndim < 2:
            raise ShapeError(
                f"ArrayDataset.x must be N x ... (at least 2-D), got shape {tuple(self.x.shape)}."
            )
        if self.y is not None:
            if not isinstance(self.y, torch.Tensor):
                raise SelfsupError(
                    f"ArrayDataset.y must be a torch.Tensor or None, got {type(self.y).__name__}."
                )
            if self.y.ndim != 1 or self.y.shape[0] != len(self):
                raise ShapeError(
                    f"labels must be a vector with one entry per sample: x has {len(self)} samples, "
                    f"y has shape {tuple(self.y.shape)}."
                )
        for name, values in (self.factors or {}).items():
            if not isinstance(values, torch.Tensor) or values.shape[:1] != (len(self),):
                raise ShapeError(f"factor '{name}' must be a tensor with one row per sample ({len(self)}).")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def streamed(self) -> bool:
        return isinstance(self.x, Source)

    def sample_ids(self) -> np.ndarray:
        """One id per sample: its file path for folder data, else its index in the split."""
        if self.ids is not None:
            return self.ids
        ids = self.x.sample_ids() if isinstance(self.x, Source) else None
        return np.arange(len(self)) if ids is None else ids

    @property
    def sample_shape(self) -> tuple[int, ...]:
        if isinstance(self.x, Source):
            return tuple(self.x.sample_shape)
        return tuple(int(s) for s in self.x.shape[1:])


@dataclass
class DataSplits:
    """A loaded dataset: train split (and test split when there is one), with what the trainer needs."""

    name: str
    modality: str  # "signal" | "image"
    train: ArrayDataset
    test: ArrayDataset | None
    num_classes: int | None
    sample_shape: tuple
    class_names: list[str] | None = None
    info: dict = field(default_factory=dict)  # free-form provenance (source path, skipped files...)

    @property
    def labelled(self) -> bool:
        return self.train.y is not None


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Write an ``.npz`` through a temporary file and a rename, so a killed process leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_finite(x: np.ndarray, what: str) -> None:
    """Raise NonFiniteError, with the count and first index, if ``x`` holds NaN or Inf."""
    if np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.complexfloating):
        bad = ~np.isfinite(x)
        if bad.any():
            n_bad = int(bad.sum())
            first = np.argwhere(bad)[0]
            raise NonFiniteError(
                f"{what} holds {n_bad} non-finite value(s) (NaN or Inf), "
                f"the first at index {tuple(first.tolist())}; "
                "clean or impute them before training."
            )


def to_labels(y: np.ndarray, what: str) -> torch.Tensor:
    """Integer class labels as an int64 tensor (floats allowed when they are whole numbers, >= 0)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:  # column vector
        y = y[:, 0]
    if y.ndim != 1:
        raise ShapeError(f"{what} must be a vector of class labels, got shape {y.shape}.")
    if np.issubdtype(y.dtype, np.floating):
        check_finite(y, what)
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise SelfsupError(
                f"{what} must hold integer class labels, got non-integer values (e.g. {y[0]})."
            )
    elif not np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_:
        raise SelfsupError(f"{what} must hold integer class labels, got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise SelfsupError(f"{what} must hold class labels >= 0, got minimum {y.min()}.")
    return torch.from_numpy(np.ascontiguousarray(y))


def monitor_indices(n_total: int, n_monitor: int, seed: int) -> torch.Tensor:
    """A fixed, seeded subset of ``n_monitor`` indices in ``[0, n_total)``, sorted (int64).

    Label-free metrics (RankMe...) are computed on this subset every N epochs, so it must not change during
    a run. All indices when ``n_monitor >= n_total``. Independent of torch's global RNG.
    """
    n_total, n_monitor = int(n_total), int(n_monitor)
    if n_total <= 0:
        raise SelfsupError(f"monitor_indices needs a non-empty dataset, got n_total={n_total}.")
    if n_monitor <= 0:
        raise SelfsupError(f"monitor_indices needs n_monitor >= 1, got {n_monitor}.")
    if n_monitor >= n_total:
        return torch.arange(n_total, dtype=torch.int64)
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(n_total, generator=gen)[:n_monitor]
    return torch.sort(idx).values
