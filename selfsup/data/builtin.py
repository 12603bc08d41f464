"""Embedded datasets: MNIST-1D (generated locally, cached) and scikit-learn's 8 x 8 digits."""

from __future__ import annotations

import random
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from selfsup.data.core import ArrayDataset, DataSplits, save_npz_atomic, to_labels
from selfsup.paths import cache_dir

MNIST1D_SHAPE = (1, 40)
DIGITS_SHAPE = (1, 8, 8)
DIGITS_TEST_SIZE = 360


def stratified_split(y: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: ``n_test`` indices spread over classes in proportion to their size
    (largest-remainder rounding, so the total is exact), every class keeping at least one training sample.
    Returns sorted (train, test) index arrays."""
    rng = np.random.default_rng(int(seed))
    classes, counts = np.unique(y, return_counts=True)
    quota = n_test * counts / counts.sum()
    take = np.floor(quota).astype(int)
    rest = int(n_test - take.sum())
    if rest > 0:
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:rest]] += 1
    take = np.minimum(take, np.maximum(counts - 1, 0))
    test = []
    for cls, k in zip(classes, take, strict=True):
        members = np.flatnonzero(y == cls)
        test.append(rng.permutation(members)[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=int)
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


# --------------------------------------------------------------------------------------------- MNIST-1D
def _mnist1d_cache_path() -> Path:
    try:
        version = metadata.version("mnist1d")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return cache_dir() / f"mnist1d-{version}-default.npz"


def _generate_mnist1d() -> dict[str, np.ndarray]:
    """Run mnist1d's own generator with its default arguments (seed 42; 4000/1000 split). No download.

    ``make_dataset`` reseeds Python's and NumPy's global generators; their states are restored afterwards.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mnist1d.data import get_dataset_args, make_dataset

            data = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {
        "x": np.asarray(data["x"], dtype=np.float32),
        "y": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def _read_mnist1d_cache(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
    except (OSError, KeyError, ValueError):
        return None
    ok = (
        data["x"].shape == (4000, 40)
        and data["x_test"].shape == (1000, 40)
        and data["y"].shape == (4000,)
        and data["y_test"].shape == (1000,)
        and np.isfinite(data["x"]).all()
    )
    return data if ok else None


def load_mnist1d(seed: int = 0) -> DataSplits:
    """MNIST-1D (Greydanus 2020): 4000 train / 1000 test signals of length 40, 10 classes.

    Generated locally by the ``mnist1d`` package's ``make_dataset`` with its default arguments, then cached as
    ``mnist1d-<version>-default.npz`` under :func:`cache_dir` so later loads are instant. ``seed`` is unused:
    the dataset and its split are the package's standard ones.
    """
    path = _mnist1d_cache_path()
    data = _read_mnist1d_cache(path) if path.exists() else None
    if data is None:
        data = _generate_mnist1d()
        try:
            save_npz_atomic(path, **data)
        except OSError as err:  # read-only home: still usable, just not cached
            warnings.warn(
                f"could not cache MNIST-1D at {path}: {err}; set SELFSUP_CACHE to a writable folder.",
                stacklevel=2,
            )
    train = ArrayDataset(torch.from_numpy(data["x"]).unsqueeze(1), to_labels(data["y"], "MNIST-1D labels"))
    test = ArrayDataset(
        torch.from_numpy(data["x_test"]).unsqueeze(1), to_labels(data["y_test"], "MNIST-1D labels")
    )
    return DataSplits(
        name="mnist1d",
        modality="signal",
        train=train,
        test=test,
        num_classes=10,
        sample_shape=MNIST1D_SHAPE,
        class_names=[str(i) for i in range(10)],
        info={"source": "mnist1d.data.make_dataset (default args)", "cache": str(path)},
    )


# --------------------------------------------------------------------------------------------- digits
def load_digits(seed: int = 0) -> DataSplits:
    """scikit-learn's optical digits: 1797 8 x 8 grey images (values 0..16 scaled to [0, 1]), 10 classes.

    Split: stratified, seeded by ``seed`` (default 0, so fixed unless asked otherwise), 1437 train / 360 test.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0).reshape(-1, *DIGITS_SHAPE)
    y = np.asarray(bunch.target, dtype=np.int64)
    tr, te = stratified_split(y, DIGITS_TEST_SIZE, seed)
    return DataSplits(
        name="digits",
        modality="image",
        train=ArrayDataset(torch.from_numpy(np.ascontiguousarray(x[tr])), torch.from_numpy(y[tr])),
        test=ArrayDataset(torch.from_numpy(np.ascontiguousarray(x[te])), torch.from_numpy(y[te])),
        num_classes=10,
        sample_shape=DIGITS_SHAPE,
        class_names=[str(i) for i in range(10)],
        info={"source": "sklearn.datasets.load_digits", "split_seed": int(seed)},
    )
