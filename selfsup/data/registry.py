"""Dataset registry: a spec string -> :class:`DataSplits`.

Specs: a registered name (``mnist1d``, ``digits``, ``objects3d``) or a prefix with a path (``folder:PATH``,
``arrays:PATH``). Datasets of other subpackages or packages (``pde:PATH``, ``pde-gen:EQUATION``) come in
through the ``selfsup.datasets`` entry points (:mod:`selfsup.plugins`); :func:`register_dataset` adds one
at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from selfsup.data.builtin import load_digits, load_mnist1d, stratified_split
from selfsup.data.core import MODALITIES, ArrayDataset, DataSplits
from selfsup.data.files import load_arrays, load_image_folder
from selfsup.data.formats import load_cifar10, load_cifar100, load_hf, load_stl10
from selfsup.data.objects3d import load_objects3d
from selfsup.data.stream import MAX_MEMORY_MB, place
from selfsup.errors import ConfigError, SelfsupError, unknown_name
from selfsup.options import check_options
from selfsup.plugins import load_plugin, plugin_names


@dataclass(frozen=True)
class DatasetEntry:
    name: str  # "mnist1d", or a prefix such as "folder" (spec "folder:PATH")
    loader: Callable[..., DataSplits]  # loader(seed=..., **options) or loader(path, seed=..., **options)
    modality: str | None  # None: decided by the data
    description: str
    prefix: bool = False  # spec is "name:PATH"
    train_size: int | None = None
    test_size: int | None = None
    sample_shape: tuple | None = None
    num_classes: int | None = None
    default_views: str | None = None


DATASETS: dict[str, DatasetEntry] = {
    e.name: e
    for e in [
        DatasetEntry(
            "mnist1d",
            load_mnist1d,
            "signal",
            "MNIST-1D (Greydanus 2020), generated locally by the mnist1d package and cached; 10 classes.",
            train_size=4000,
            test_size=1000,
            sample_shape=(1, 40),
            num_classes=10,
            default_views="signal",
        ),
        DatasetEntry(
            "digits",
            load_digits,
            "image",
            "scikit-learn 8x8 optical digits scaled to [0, 1]; seeded stratified split; 10 classes.",
            train_size=1437,
            test_size=360,
            sample_shape=(1, 8, 8),
            num_classes=10,
            default_views="small-image",
        ),
        DatasetEntry(
            "objects3d",
            load_objects3d,
            "image",
            "procedural 3-D objects rendered locally and cached (an offline 3DIEBench): 10 classes (of 12) x "
            "50 instances x 40 views, random rotation, hue, background and light per view, all recorded as "
            "factors; split by instance (20% to test); image_size= 32 or 64, classes=, instances=, views=, "
            "test_fraction=, factors=, data_seed=, diversity= (one factor varied for a fraction of the "
            "images).",
            train_size=16000,
            test_size=4000,
            sample_shape=(3, 32, 32),
            num_classes=10,
            default_views="pairs",
        ),
        DatasetEntry(
            "folder",
            load_image_folder,
            "image",
            "folder:PATH - images resized to 32x32 RGB (image_size=, mode='L' for grey); class sub-folders "
            "give labels and a seeded 20% test split, otherwise unlabelled with no test split.",
            prefix=True,
            default_views="simclr",
        ),
        DatasetEntry(
            "arrays",
            load_arrays,
            None,
            "arrays:PATH - .npy (x) or .npz (x, optional y, x_test, y_test); N x L or N x C x L signals, "
            "N x C x H x W images.",
            prefix=True,
        ),
        DatasetEntry(
            "cifar10",
            load_cifar10,
            "image",
            "cifar10:PATH - CIFAR-10 from torchvision's extracted folder (PATH holds cifar-10-batches-py/ or "
            "is it); 32x32 RGB, image_size= resizes; nothing is downloaded.",
            prefix=True,
            train_size=50000,
            test_size=10000,
            sample_shape=(3, 32, 32),
            num_classes=10,
            default_views="simclr",
        ),
        DatasetEntry(
            "cifar100",
            load_cifar100,
            "image",
            "cifar100:PATH - CIFAR-100 (fine labels) from torchvision's extracted folder (PATH holds "
            "cifar-100-python/ or is it); 32x32 RGB, image_size= resizes; nothing is downloaded.",
            prefix=True,
            train_size=50000,
            test_size=10000,
            sample_shape=(3, 32, 32),
            num_classes=100,
            default_views="simclr",
        ),
        DatasetEntry(
            "stl10",
            load_stl10,
            "image",
            "stl10:PATH - STL-10 binary files (PATH holds stl10_binary/ or is it), memory-mapped; "
            "split='train' (5000 labelled), 'unlabeled' (100000) or 'train+unlabeled' (unlabelled train: "
            "no probes); 8000 labelled test images; nothing is downloaded.",
            prefix=True,
            train_size=5000,
            test_size=8000,
            sample_shape=(3, 96, 96),
            num_classes=10,
            default_views="simclr",
        ),
        DatasetEntry(
            "hf",
            load_hf,
            "image",
            "hf:PATH - a Hugging Face datasets folder (save_to_disk) or parquet files (folder, file, glob), "
            "or a hub name (downloaded by datasets); image_key=, label_key=, split=, image_size= (32), "
            "mode=; needs pip install 'selfsup[hf]'.",
            prefix=True,
            default_views="simclr",
        ),
    ]
}


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    """Add (or replace) a dataset in the registry."""
    if entry.modality is not None and entry.modality not in MODALITIES:
        raise ConfigError(f"dataset modality must be one of {MODALITIES} or None, got {entry.modality!r}.")
    DATASETS[entry.name] = entry
    return entry


def get_entry(name: str) -> DatasetEntry | None:
    """The registered dataset (or prefix) ``name``: built-in, added, or declared by a plug-in."""
    entry = DATASETS.get(name)
    return entry if entry is not None else load_plugin("selfsup.datasets", name)


def _all_entries() -> list[DatasetEntry]:
    plugged = [get_entry(n) for n in plugin_names("selfsup.datasets") if n not in DATASETS]
    return [*DATASETS.values(), *plugged]


def _resolve(spec: str) -> tuple[DatasetEntry, str | None]:
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"dataset spec must be a non-empty string, got {spec!r}.")
    spec = spec.strip()
    name, sep, rest = spec.partition(":")
    entry = get_entry(name)
    if sep and entry is not None and entry.prefix:
        if not rest:
            raise ConfigError(f"dataset spec '{spec}' needs a path after '{name}:', e.g. '{name}:./my_data'.")
        return entry, rest
    if not sep and entry is not None and not entry.prefix:
        return entry, None
    if entry is not None and entry.prefix:
        raise ConfigError(f"dataset '{name}' needs a path: write '{name}:PATH'.")
    if entry is not None:
        raise ConfigError(f"dataset '{name}' takes no path; write '{name}'.")
    choices = [e.name + (":PATH" if e.prefix else "") for e in _all_entries()]
    err = unknown_name("dataset", spec if not sep else name, choices)
    if not sep and ("/" in spec or "\\" in spec or spec.startswith(".")):
        err = ConfigError(
            f"{err} For your own data write 'folder:{spec}' (images) or 'arrays:{spec}' (.npy/.npz)."
        )
    raise err


def load_dataset(
    spec: str,
    seed: int = 0,
    stream: bool | str = "auto",
    workers: int | None = None,
    max_memory_mb: float = MAX_MEMORY_MB,
    validation: int = 0,
    **options,
) -> DataSplits:
    """Load a dataset from its spec: ``mnist1d``, ``digits``, ``folder:PATH``, ``arrays:PATH``...

    ``seed`` seeds the train/test split where the dataset has no standard one (digits, labelled folders).
    ``options`` go to the loader (``folder:`` takes ``image_size`` and ``mode``); unknown ones raise
    :class:`ConfigError`. Errors in the data itself raise :class:`SelfsupError` subclasses. Datasets read
    sample by sample (folders, ``.npy`` files, CIFAR, STL-10, ``hf:``) are streamed or read into memory by
    ``stream`` (:func:`selfsup.data.stream.place`: ``"auto"`` keeps those of at most ``max_memory_mb`` MiB
    in memory), decoded by ``workers`` processes. ``validation`` > 0 holds that many training samples out as
    the test split (:func:`hold_out`).
    """
    entry, path = _resolve(spec)
    check_options(f"dataset '{entry.name}'", options, entry.loader, skip=("path", "spec", "seed"))
    splits = entry.loader(path, seed=seed, **options) if entry.prefix else entry.loader(seed=seed, **options)
    if splits.modality not in MODALITIES:
        raise SelfsupError(f"dataset '{spec}' produced an unknown modality {splits.modality!r}.")
    if validation:
        splits = hold_out(splits, validation)
    return place(splits, stream, workers, max_memory_mb)


#: The seed of the validation draw: the same held-out samples whatever the run's seed, so runs of several
#: seeds are compared on one validation set.
VALIDATION_SEED = 0


def hold_out(splits: DataSplits, n: int) -> DataSplits:
    """A validation split: ``n`` training samples (stratified by label, a fixed draw) become the test split,
    the training split keeps the rest, and the dataset's own test split is set aside. For choosing settings
    (recipe, epochs) on data the final test accuracy never sees."""
    train = splits.train
    if train.y is None:
        raise ConfigError(
            f"data.validation={n} needs labels to hold out a validation split; dataset '{splits.name}' "
            "has none: set data.validation=0"
        )
    if not 0 < n <= len(train) - 2:
        raise ConfigError(
            f"data.validation={n} must leave at least 2 of the {len(train)} training samples; set it lower"
        )
    keep, held = stratified_split(train.y.numpy(), n, VALIDATION_SEED)

    def part(index: np.ndarray) -> ArrayDataset:
        rows = torch.from_numpy(index)
        return ArrayDataset(
            train.x[rows] if isinstance(train.x, torch.Tensor) else train.x.subset(index),
            train.y[rows],
            None if train.factors is None else {k: v[rows] for k, v in train.factors.items()},
            None if train.ids is None else train.ids[index],
        )

    info = {
        **splits.info,
        "validation": {"held_out": len(held), "of_train": len(train), "seed": VALIDATION_SEED},
    }
    return dataclasses.replace(splits, train=part(keep), test=part(held), info=info)


def list_datasets() -> list[dict]:
    """One dict per dataset for ``selfsup datasets``: name, modality, train/test sizes, sample shape,
    number of classes, default view recipe and a description. Path-based datasets appear as patterns
    (``folder:PATH``) with ``None`` for what depends on the data. Nothing is loaded or generated."""
    rows = []
    for e in _all_entries():
        rows.append(
            {
                "name": e.name + (":PATH" if e.prefix else ""),
                "modality": e.modality,
                "train": e.train_size,
                "test": e.test_size,
                "sample_shape": e.sample_shape,
                "classes": e.num_classes,
                "views": e.default_views,
                "description": e.description,
            }
        )
    return rows


def dataset_default_views(spec: str) -> str | None:
    """The view recipe a dataset spec uses by default, when its entry says (``None``: decided by the data).
    Nothing is loaded."""
    return _resolve(spec)[0].default_views
