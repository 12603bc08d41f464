"""Datasets: embedded ones (mnist1d, digits), image folders and array files, as train/test splits.

>>> splits = load_dataset("mnist1d")        # DataSplits(train=ArrayDataset(x: 4000 x 1 x 40, y), test=...)
>>> idx = monitor_indices(len(splits.train), 512, seed=0)   # fixed subset for label-free metrics
"""

from selfsup.data.core import ArrayDataset, DataSplits, monitor_indices
from selfsup.data.registry import (
    DATASETS,
    DatasetEntry,
    dataset_default_views,
    list_datasets,
    load_dataset,
    register_dataset,
)
from selfsup.paths import cache_dir

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "DataSplits",
    "DatasetEntry",
    "cache_dir",
    "dataset_default_views",
    "list_datasets",
    "load_dataset",
    "monitor_indices",
    "register_dataset",
]
