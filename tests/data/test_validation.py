"""data.validation: training samples held out as the test split, to choose settings without the test set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfsup import config as C
from selfsup.data import ArrayDataset, DataSplits, load_dataset
from selfsup.errors import ConfigError
from selfsup.train.components import load_data


def test_held_out_samples_are_stratified_disjoint_and_the_same_for_every_seed():
    full = load_dataset("digits", seed=0)
    a = load_dataset("digits", seed=0, validation=300)
    assert len(a.train) + len(a.test) == len(full.train) and len(a.test) == 300
    rows = {tuple(r) for r in full.train.x.flatten(1).tolist()}
    train_rows = {tuple(r) for r in a.train.x.flatten(1).tolist()}
    test_rows = [tuple(r) for r in a.test.x.flatten(1).tolist()]
    assert all(r in rows for r in test_rows) and not train_rows & set(test_rows)  # from train, disjoint
    m0, m3 = (load_dataset("mnist1d", seed=s, validation=1000) for s in (0, 3))  # a standard split:
    assert torch.equal(m0.test.x, m3.test.x)  # the same held-out samples whatever the run's seed
    share = np.bincount(a.test.y.numpy(), minlength=10) / 300  # stratified: class shares as in train
    assert np.abs(share - np.bincount(full.train.y.numpy(), minlength=10) / len(full.train)).max() < 0.01
    assert a.info["validation"] == {"held_out": 300, "of_train": len(full.train), "seed": 0}


def test_the_run_config_holds_out_and_bad_values_say_what_to_fix():
    cfg = C.resolve(None, ["data.dataset=digits", "data.validation=200"])
    data = load_data(cfg)
    assert len(data.test) == 200 and len(data.train) == len(load_dataset("digits").train) - 200
    with pytest.raises(ConfigError, match="data.validation=5000 must leave at least 2"):
        load_data(C.resolve(None, ["data.dataset=digits", "data.validation=5000"]))
    unlabelled = DataSplits("u", "signal", ArrayDataset(torch.zeros(10, 1, 4)), None, None, (1, 4))
    from selfsup.data.registry import hold_out

    with pytest.raises(ConfigError, match="needs labels .* set data.validation=0"):
        hold_out(unlabelled, 3)
    with pytest.raises(ConfigError, match="set data.validation"):
        load_data(C.resolve(None, ["data.dataset=digits", "data.load_args={validation: 3}"]))
