"""selfsup.data: embedded datasets, image folders, array files, errors, monitor subset."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.data import ArrayDataset, DataSplits, builtin, list_datasets, load_dataset, monitor_indices
from selfsup.data.stream import as_float
from selfsup.errors import ConfigError, NonFiniteError, SelfsupError, ShapeError


# ----------------------------------------------------------------------------------------------- mnist1d
@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory):
    """Generate MNIST-1D once for this module, in a private cache dir; record side effects."""
    cache = tmp_path_factory.mktemp("selfsup_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SELFSUP_CACHE", str(cache))
        np_state = np.random.get_state()[1].copy()
        first = load_dataset("mnist1d")
        np_state_after = np.random.get_state()[1].copy()
        generated = []  # the second load must read the .npz, not regenerate (counted, not timed)
        real = builtin._generate_mnist1d
        mp.setattr(builtin, "_generate_mnist1d", lambda: generated.append(1) or real())
        second = load_dataset("mnist1d")
    return {
        "first": first,
        "second": second,
        "regenerated": bool(generated),
        "cache": cache,
        "np_state_kept": np.array_equal(np_state, np_state_after),
    }


def test_mnist1d_shapes_and_classes(mnist1d):
    s: DataSplits = mnist1d["first"]
    assert s.name == "mnist1d" and s.modality == "signal"
    assert s.train.x.shape == (4000, 1, 40) and s.test.x.shape == (1000, 1, 40)
    assert s.train.x.dtype == torch.float32 and s.train.y.dtype == torch.int64
    assert s.sample_shape == (1, 40) and s.num_classes == 10
    assert sorted(torch.unique(s.train.y).tolist()) == list(range(10))
    assert len(s.train) == 4000 and len(s.test) == 1000
    # mnist1d standardises its signals: zero mean, unit std over the whole set
    all_x = torch.cat([s.train.x, s.test.x])
    assert abs(all_x.mean().item()) < 1e-3 and abs(all_x.std().item() - 1) < 1e-3


def test_mnist1d_cached_and_identical(mnist1d):
    files = list(mnist1d["cache"].glob("mnist1d-*.npz"))
    assert len(files) == 1
    assert not mnist1d["regenerated"]  # read from the .npz
    a, b = mnist1d["first"], mnist1d["second"]
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert mnist1d["np_state_kept"], "generating MNIST-1D must not reseed numpy's global generator"


# ----------------------------------------------------------------------------------------------- digits
def test_digits_split_sizes_and_balance():
    s = load_dataset("digits")
    assert s.modality == "image" and s.sample_shape == (1, 8, 8) and s.num_classes == 10
    assert s.train.x.shape == (1437, 1, 8, 8) and s.test.x.shape == (360, 1, 8, 8)
    assert 0.0 <= s.train.x.min().item() and s.train.x.max().item() == 1.0
    counts = torch.bincount(s.test.y, minlength=10)
    assert counts.min().item() >= 35 and counts.max().item() <= 37  # ~178 per class * 360 / 1797
    train_share = torch.bincount(s.train.y, minlength=10) / len(s.train)
    assert (train_share - counts / 360).abs().max().item() < 0.01
    again = load_dataset("digits")
    assert torch.equal(s.test.x, again.test.x)  # the default split is fixed
    other = load_dataset("digits", seed=1)
    assert not torch.equal(s.test.x, other.test.x)
    assert len(other.test) == 360


# ----------------------------------------------------------------------------------------------- folders
def _png(path, value, size=(10, 12), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)


def test_folder_with_class_subfolders(tmp_path):
    for i in range(5):
        _png(tmp_path / "zebra" / f"{i}.png", 200)
        _png(tmp_path / "cat" / f"{i}.png", 20)
    _png(tmp_path / "cat" / "nested" / "extra.png", 20)
    s = load_dataset(f"folder:{tmp_path}")
    assert s.class_names == ["cat", "zebra"] and s.num_classes == 2
    assert s.sample_shape == (3, 32, 32)
    assert len(s.train) + len(s.test) == 11 and len(s.test) == 2  # 20 % holdout, stratified
    assert sorted(s.test.y.tolist()) == [0, 1]
    x = torch.cat([s.train.x, s.test.x])
    y = torch.cat([s.train.y, s.test.y])
    assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32)  # in memory as uint8 (1 byte a value)
    assert (x[y == 0] == 20).all() and (x[y == 1] == 200).all()  # cat = dark
    small = load_dataset(f"folder:{tmp_path}", image_size=(8, 6), mode="L")
    assert small.sample_shape == (1, 8, 6) and small.train.x.shape[1:] == (1, 8, 6)


def test_folder_unlabelled(tmp_path):
    for i in range(4):
        _png(tmp_path / f"img{i}.jpg", 60 * i)
    (tmp_path / "notes.txt").write_text("not an image")
    s = load_dataset(f"folder:{tmp_path}")
    assert s.train.y is None and s.test is None and s.num_classes is None
    assert s.train.x.shape == (4, 3, 32, 32)


def test_folder_unreadable_file_skipped_with_count(tmp_path):
    for i in range(3):
        _png(tmp_path / "a" / f"{i}.png", 100)
    (tmp_path / "a" / "broken.png").write_bytes(b"this is not a png")
    (tmp_path / "a" / "truncated.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image file\(s\).*broken\.png"):
        s = load_dataset(f"folder:{tmp_path}")
    assert len(s.train) + (len(s.test) if s.test else 0) == 3
    assert s.info["skipped"] == 2


def test_folder_errors(tmp_path):
    with pytest.raises(SelfsupError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SelfsupError, match="no images found.*empty"):
        load_dataset(f"folder:{empty}")
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"junk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SelfsupError, match="could be read"):
            load_dataset(f"folder:{only_bad}")


# ----------------------------------------------------------------------------------------------- arrays
def test_arrays_npz_with_test_split(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x=rng.normal(size=(20, 50)),
        y=np.arange(20) % 3,
        x_test=rng.normal(size=(6, 50)),
        y_test=np.arange(6) % 3,
    )
    s = load_dataset(f"arrays:{path}")
    assert s.modality == "signal" and s.sample_shape == (1, 50)
    assert s.train.x.shape == (20, 1, 50) and s.train.x.dtype == torch.float32
    assert s.test.x.shape == (6, 1, 50) and s.num_classes == 3
    assert s.train.y.dtype == torch.int64


def test_arrays_layouts(tmp_path):
    np.save(tmp_path / "sig.npy", np.zeros((7, 2, 30)))
    s = load_dataset(f"arrays:{tmp_path / 'sig.npy'}")
    assert s.modality == "signal" and s.train.x.shape == (7, 2, 30) and s.train.y is None and s.test is None
    np.savez(tmp_path / "img.npz", x=np.full((5, 16, 16, 3), 255, dtype=np.uint8))
    s = load_dataset(f"arrays:{tmp_path / 'img.npz'}")
    assert s.modality == "image" and s.sample_shape == (3, 16, 16)  # channels-last moved first
    assert s.train.x.dtype == torch.uint8 and as_float(s.train.x).max().item() == 1.0  # [0, 1] on the device


def test_arrays_errors(tmp_path):
    x = np.ones((10, 1, 8))
    x[3, 0, 2] = np.nan
    x[4, 0, 0] = np.inf
    np.savez(tmp_path / "nan.npz", x=x)
    with pytest.raises(NonFiniteError, match=r"2 non-finite value.*\(3, 0, 2\)"):
        load_dataset(f"arrays:{tmp_path / 'nan.npz'}")
    np.savez(tmp_path / "badlen.npz", x=np.ones((10, 8)), y=np.zeros(9, dtype=int))
    with pytest.raises(ShapeError, match="9 labels but there are 10 samples"):
        load_dataset(f"arrays:{tmp_path / 'badlen.npz'}")
    np.savez(tmp_path / "nox.npz", data=np.ones((3, 4)), labels=np.zeros(3))
    with pytest.raises(SelfsupError, match="no array named 'x'.*keys present: data, labels"):
        load_dataset(f"arrays:{tmp_path / 'nox.npz'}")
    with pytest.raises(SelfsupError, match="does not exist"):
        load_dataset(f"arrays:{tmp_path / 'missing.npz'}")
    np.save(tmp_path / "flat.npy", np.ones(5))
    with pytest.raises(ShapeError, match="expected N x L"):
        load_dataset(f"arrays:{tmp_path / 'flat.npy'}")


# ----------------------------------------------------------------------------------------------- registry
def test_unknown_dataset_and_options():
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'. Did you mean 'mnist1d'"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match="folder:./my/images"):
        load_dataset("./my/images")
    with pytest.raises(ConfigError, match="needs a path"):
        load_dataset("folder")
    with pytest.raises(ConfigError, match="no option 'image_sise'.*Did you mean 'image_size'"):
        load_dataset("folder:/tmp", image_sise=16)
    assert issubclass(ConfigError, SelfsupError)


def test_list_datasets():
    rows = {r["name"]: r for r in list_datasets()}
    assert {"mnist1d", "digits", "folder:PATH", "arrays:PATH"} <= set(rows)
    assert rows["mnist1d"]["train"] == 4000 and rows["mnist1d"]["sample_shape"] == (1, 40)
    assert rows["digits"]["test"] == 360 and rows["digits"]["views"] == "small-image"
    assert all(r["description"] for r in rows.values())


def test_array_dataset_validates_labels():
    with pytest.raises(ShapeError, match="one entry per sample"):
        ArrayDataset(torch.zeros(4, 1, 3), torch.zeros(3, dtype=torch.int64))
    assert len(ArrayDataset(torch.zeros(4, 1, 3))) == 4


# ----------------------------------------------------------------------------------------------- monitor
def test_monitor_indices_deterministic_and_in_range():
    a = monitor_indices(1000, 128, seed=3)
    torch.manual_seed(123)  # independent of torch's global RNG
    b = monitor_indices(1000, 128, seed=3)
    assert torch.equal(a, b) and a.dtype == torch.int64 and len(a) == 128
    assert a.min().item() >= 0 and a.max().item() < 1000
    assert torch.equal(a, torch.sort(a).values) and len(torch.unique(a)) == 128
    assert not torch.equal(a, monitor_indices(1000, 128, seed=4))
    assert torch.equal(monitor_indices(50, 100, seed=0), torch.arange(50))
    with pytest.raises(SelfsupError):
        monitor_indices(0, 10, seed=0)
