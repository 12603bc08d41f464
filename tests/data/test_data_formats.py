"""CIFAR-10/100, STL-10 and Hugging Face datasets from tiny files written in the real formats (nothing is
downloaded): exact pixels and labels, the restricted unpickler, memory-mapped STL-10, clear errors, and the
same samples streamed or in memory."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from selfsup.cli import app
from selfsup.data import load_dataset
from selfsup.data.sources import fit_image
from selfsup.data.stream import take
from selfsup.errors import SelfsupError

runner = CliRunner()
CALLS: list[tuple] = []


def _record_call(*args):
    CALLS.append(args)


class _Evil:
    """Unpickles into a call of ``target(*args)``."""

    def __init__(self, target, *args):
        self.target, self.args = target, args

    def __reduce__(self):
        return (self.target, self.args)


def _pattern(n: int, seed: int, shape=(3, 32, 32)) -> np.ndarray:
    """uint8 images that differ between channels, rows and columns (a transposed or swapped read shows)."""
    k, c, h, w = np.meshgrid(*(np.arange(s) for s in (n, *shape)), indexing="ij")
    return ((k * 31 + c * 67 + h * 5 + w * 11 + seed) % 256).astype(np.uint8)


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (BINSTRING opcodes), as cPickle wrote the real CIFAR files."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_str


def _dump(path, obj, protocol=2):
    """``protocol="py2"``: a Python 2 pickle with numpy 1's module names, like the distributed files."""
    if protocol == "py2":
        buf = io.BytesIO()
        _Py2Pickler(buf, protocol=2).dump(obj)
        path.write_bytes(buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
        return
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


# --------------------------------------------------------------------------------------------- CIFAR
def _write_cifar10(root) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    x, xt = _pattern(10, 0), _pattern(3, 7)
    x[0] = 0
    x[0, 0] = 255  # a red image: the first 1024 bytes of its row are 255
    y, yt = np.arange(10) % 10, np.array([9, 0, 4])
    for b in range(5):  # pickles of Python 3 (protocols 2 to 5) read too, as the Python 2 ones below
        rows = x[2 * b : 2 * b + 2].reshape(2, 3072)
        batch = {b"batch_label": b"batch", b"labels": y[2 * b : 2 * b + 2].tolist(), b"data": rows}
        batch[b"filenames"] = [b"a.png", b"b.png"]
        _dump(folder / f"data_batch_{b + 1}", batch, protocol=2 + b % 4)
    _dump(folder / "test_batch", {b"labels": yt.tolist(), b"data": xt.reshape(3, 3072)}, protocol="py2")
    names = [n.encode() for n in "plane car bird cat deer dog frog horse ship truck".split()]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072}, protocol="py2")
    return x, y, xt, yt


def _write_cifar100(root) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    x, xt = _pattern(4, 3), _pattern(2, 5)
    y, yt = np.array([0, 99, 42, 7]), np.array([5, 98])
    train = {b"fine_labels": y.tolist(), b"coarse_labels": [0] * 4, b"data": x.reshape(4, -1)}
    _dump(folder / "train", train, protocol="py2")
    _dump(
        folder / "test", {b"fine_labels": yt.tolist(), b"coarse_labels": [0] * 2, b"data": xt.reshape(2, -1)}
    )
    _dump(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)]})
    return x, y, xt, yt


@pytest.mark.parametrize("inside", [False, True])
def test_cifar10_pixels_labels_and_names(tmp_path, inside):
    x, y, xt, yt = _write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" if inside else tmp_path
    d = load_dataset(f"cifar10:{path}", stream=False)
    assert d.train.x.dtype == torch.uint8 and tuple(d.train.x.shape) == (10, 3, 32, 32)
    assert d.sample_shape == (3, 32, 32) and d.num_classes == 10 and d.modality == "image"
    assert torch.equal(d.train.x, torch.from_numpy(x)) and torch.equal(d.test.x, torch.from_numpy(xt))
    red = d.train.x[0]
    assert (red[0] == 255).all() and (red[1:] == 0).all()
    img = d.train.x[3]  # R plane, then G, then B, each row-major: value at (c, h, w)
    assert int(img[0, 0, 1]) == (3 * 31 + 11) % 256 and int(img[0, 1, 0]) == (3 * 31 + 5) % 256
    assert int(img[2, 4, 9]) == (3 * 31 + 2 * 67 + 4 * 5 + 9 * 11) % 256
    assert d.train.y.tolist() == y.tolist() and d.test.y.tolist() == yt.tolist()
    assert d.class_names[:3] == ["plane", "car", "bird"] and len(d.class_names) == 10


def test_cifar100_fine_labels(tmp_path):
    x, y, xt, yt = _write_cifar100(tmp_path)
    d = load_dataset(f"cifar100:{tmp_path}", stream=False)
    assert torch.equal(d.train.x, torch.from_numpy(x)) and torch.equal(d.test.x, torch.from_numpy(xt))
    assert d.train.y.tolist() == [0, 99, 42, 7] and d.test.y.tolist() == [5, 98]
    assert d.num_classes == 100 and d.class_names[99] == "c99"


def test_cifar_image_size_resizes_on_read(tmp_path):
    x, *_ = _write_cifar10(tmp_path)
    d = load_dataset(f"cifar10:{tmp_path}", stream=True, image_size=20)
    assert d.sample_shape == (3, 20, 20) and d.train.x.sample_shape == (3, 20, 20)
    expected = fit_image(torch.from_numpy(x[5]), (20, 20))
    assert torch.equal(take(d.train.x, torch.tensor([5]))[0], expected)


@pytest.mark.parametrize("how", ["getcwd", "system", "spy"])
def test_cifar_unpickler_refuses_other_globals(tmp_path, how):
    _write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    target = {"getcwd": (os.getcwd,), "system": (os.system, f"touch {marker}"), "spy": (_record_call, 1)}[how]
    batch = {b"labels": [0, 1], b"data": np.zeros((2, 3072), np.uint8), b"x": _Evil(*target)}
    _dump(tmp_path / "cifar-10-batches-py" / "data_batch_3", batch)
    CALLS.clear()
    with pytest.raises(SelfsupError, match="refusing to unpickle") as err:
        load_dataset(f"cifar10:{tmp_path}")
    assert "data_batch_3" in str(err.value)
    assert not marker.exists() and CALLS == []


def test_cifar_missing_files_say_which(tmp_path):
    with pytest.raises(SelfsupError, match="does not exist"):
        load_dataset(f"cifar10:{tmp_path / 'nope'}")
    with pytest.raises(SelfsupError, match="cifar-10-batches-py"):
        load_dataset(f"cifar10:{tmp_path}")
    _write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(SelfsupError, match="'data_batch_4' is missing.*cifar-10-batches-py"):
        load_dataset(f"cifar10:{tmp_path}")
    with pytest.raises(SelfsupError, match="use 'cifar10:"):
        load_dataset(f"cifar100:{tmp_path}")
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x02}q\x00(X")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").write_bytes(b"")
    with pytest.raises(SelfsupError, match="truncated"):
        load_dataset(f"cifar10:{tmp_path}")


# --------------------------------------------------------------------------------------------- STL-10
def _write_stl10(root) -> dict[str, np.ndarray]:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    arrays = {"train": _pattern(4, 1, (3, 96, 96)), "test": _pattern(3, 2, (3, 96, 96))}
    arrays["unlabeled"] = _pattern(5, 3, (3, 96, 96))
    for name, x in arrays.items():  # column-major images, as in the real files
        (folder / f"{name}_X.bin").write_bytes(x.transpose(0, 1, 3, 2).tobytes())
    arrays["train_y"], arrays["test_y"] = np.array([1, 10, 3, 3], np.uint8), np.array([2, 1, 10], np.uint8)
    arrays["train_y"].tofile(folder / "train_y.bin")
    arrays["test_y"].tofile(folder / "test_y.bin")
    names = "airplane bird car cat deer dog horse monkey ship truck"
    (folder / "class_names.txt").write_text("\n".join(names.split()) + "\n")
    return arrays


def test_stl10_recovers_the_images_memory_mapped(tmp_path):
    a = _write_stl10(tmp_path)
    d = load_dataset(f"stl10:{tmp_path}", stream=True)
    source = d.train.x
    assert isinstance(source.array, np.memmap) and not source.array.flags["C_CONTIGUOUS"]  # a view
    assert d.sample_shape == (3, 96, 96) and d.num_classes == 10 and d.class_names[7] == "monkey"
    assert torch.equal(take(source, torch.arange(4)), torch.from_numpy(a["train"]))
    assert torch.equal(take(d.test.x, torch.arange(3)), torch.from_numpy(a["test"]))
    assert d.train.y.tolist() == [0, 9, 2, 2] and d.test.y.tolist() == [1, 0, 9]
    mem = load_dataset(f"stl10:{tmp_path / 'stl10_binary'}", stream=False)
    assert torch.equal(mem.train.x, torch.from_numpy(a["train"]))


def test_stl10_splits(tmp_path):
    a = _write_stl10(tmp_path)
    d = load_dataset(f"stl10:{tmp_path}", split="unlabeled", stream=False)
    assert d.train.y is None and not d.labelled and len(d.train) == 5
    assert torch.equal(d.train.x, torch.from_numpy(a["unlabeled"])) and d.test.y.tolist() == [1, 0, 9]
    d = load_dataset(f"stl10:{tmp_path}", split="train+unlabeled", stream=True)
    assert d.train.y is None and len(d.train) == 9 and len(d.test) == 3
    both = np.concatenate([a["train"], a["unlabeled"]])
    assert torch.equal(take(d.train.x, torch.arange(9)), torch.from_numpy(both))
    d = load_dataset(f"stl10:{tmp_path}", split="train+unlabeled", image_size=48, stream=False)
    assert tuple(d.train.x.shape) == (9, 3, 48, 48)
    assert torch.equal(d.train.x[6], fit_image(torch.from_numpy(a["unlabeled"][2]), (48, 48)))
    with pytest.raises(SelfsupError, match="train\\+unlabeled"):
        load_dataset(f"stl10:{tmp_path}", split="extra")


def test_stl10_bad_files(tmp_path):
    with pytest.raises(SelfsupError, match="stl10_binary"):
        load_dataset(f"stl10:{tmp_path}")
    _write_stl10(tmp_path)
    folder = tmp_path / "stl10_binary"
    (folder / "unlabeled_X.bin").write_bytes(b"\0" * (2 * 27648 - 5))
    with pytest.raises(SelfsupError, match="multiple of 27648"):
        load_dataset(f"stl10:{tmp_path}", split="unlabeled")
    np.array([1, 2], np.uint8).tofile(folder / "train_y.bin")
    with pytest.raises(SelfsupError, match="2 labels but train_X.bin has 4 images"):
        load_dataset(f"stl10:{tmp_path}")
    (folder / "test_y.bin").unlink()
    np.array([1, 2, 3, 4], np.uint8).tofile(folder / "train_y.bin")
    with pytest.raises(SelfsupError, match="'test_y.bin' is missing"):
        load_dataset(f"stl10:{tmp_path}")


# --------------------------------------------------------------------------------------------- Hugging Face
COLOURS = [(255, 0, 0), (128, 128, 128), (0, 255, 0)]


@pytest.fixture
def hf_data(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    datasets.disable_progress_bars()
    images = [
        Image.new("RGB", (10, 12), COLOURS[0]),
        Image.new("L", (40, 40), 128),
        Image.new("RGBA", (32, 32), (*COLOURS[2], 100)),
    ]
    features = datasets.Features(
        image=datasets.Image(), label=datasets.ClassLabel(names=["red", "grey", "green"])
    )
    train = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 2]}, features=features)
    test = datasets.Dataset.from_dict({"image": images[::-1], "label": [2, 1, 0]}, features=features)
    datasets.DatasetDict(train=train, test=test).save_to_disk(str(tmp_path / "saved"))
    train.to_parquet(str(tmp_path / "pq" / "train-00000-of-00001.parquet"))
    test.to_parquet(str(tmp_path / "pq" / "test-00000-of-00001.parquet"))
    return tmp_path


def _constant(img: torch.Tensor, colour) -> bool:
    return all(bool((img[c] == v).all()) for c, v in enumerate(colour))


def test_hf_saved_dataset(hf_data):
    d = load_dataset(f"hf:{hf_data / 'saved'}", stream=False)
    assert d.train.x.dtype == torch.uint8 and tuple(d.train.x.shape) == (3, 3, 32, 32)
    assert all(_constant(d.train.x[i], COLOURS[i]) for i in range(3))
    assert all(_constant(d.test.x[i], COLOURS[2 - i]) for i in range(3))
    assert d.train.y.tolist() == [0, 1, 2] and d.test.y.tolist() == [2, 1, 0]
    assert d.num_classes == 3 and d.class_names == ["red", "grey", "green"]
    grey = load_dataset(f"hf:{hf_data / 'saved'}", mode="L", image_size=8, stream=False)
    assert tuple(grey.train.x.shape) == (3, 1, 8, 8) and bool((grey.train.x[1] == 128).all())


def test_hf_parquet_folder_and_file(hf_data):
    d = load_dataset(f"hf:{hf_data / 'pq'}", stream=False)
    assert len(d.train) == 3 and len(d.test) == 3 and d.class_names == ["red", "grey", "green"]
    assert _constant(d.train.x[0], COLOURS[0]) and d.test.y.tolist() == [2, 1, 0]
    one = load_dataset(f"hf:{hf_data / 'pq' / 'train-00000-of-00001.parquet'}", stream=False)
    assert one.test is None and one.train.y.tolist() == [0, 1, 2] and _constant(one.train.x[2], COLOURS[2])


def test_hf_source_pickles_for_workers(hf_data):
    d = load_dataset(f"hf:{hf_data / 'saved'}", stream=True)
    copy = pickle.loads(pickle.dumps(d.train.x))
    assert torch.equal(copy.read(1), d.train.x.read(1))
    assert len(pickle.dumps(d.train.x)) < 10_000  # the memory-mapped table travels by reference


def test_hf_array_column_string_labels_and_missing_test_labels(hf_data):
    import datasets
    from PIL import Image

    arr = np.zeros((3, 8, 6, 3), np.uint8)
    arr[..., 1] = 200
    arr[1, 2, 4] = (1, 2, 3)
    features = datasets.Features(img=datasets.Array3D((8, 6, 3), "uint8"), cls=datasets.Value("string"))
    splits = {
        "train": datasets.Dataset.from_dict({"img": arr, "cls": ["dog", "cat", "dog"]}, features=features),
        "validation": datasets.Dataset.from_dict({"img": arr[:2], "cls": ["cat", "emu"]}, features=features),
    }
    datasets.DatasetDict(splits).save_to_disk(str(hf_data / "arrays"))
    with pytest.raises(SelfsupError, match="no column has the Image feature.*img, cls"):
        load_dataset(f"hf:{hf_data / 'arrays'}")
    d = load_dataset(
        f"hf:{hf_data / 'arrays'}", image_key="img", label_key="cls", image_size=(8, 6), stream=False
    )
    assert torch.equal(d.train.x, torch.from_numpy(arr.transpose(0, 3, 1, 2)))
    assert d.class_names == ["cat", "dog", "emu"] and d.num_classes == 3
    assert d.train.y.tolist() == [1, 0, 1] and d.test.y.tolist() == [0, 2]

    features = datasets.Features(image=datasets.Image(), label=datasets.ClassLabel(names=["a", "b"]))
    ims = [Image.new("RGB", (5, 5), (1, 2, 3))] * 2
    splits = {
        "train": datasets.Dataset.from_dict({"image": ims, "label": [0, 1]}, features=features),
        "test": datasets.Dataset.from_dict({"image": ims, "label": [-1, -1]}, features=features),
    }
    datasets.DatasetDict(splits).save_to_disk(str(hf_data / "nolabels"))
    with pytest.warns(UserWarning, match="test split has no labels"):
        d = load_dataset(f"hf:{hf_data / 'nolabels'}", stream=False)
    assert d.test is None and d.train.y.tolist() == [0, 1] and d.num_classes == 2


def test_hf_errors(hf_data, monkeypatch):
    with pytest.raises(SelfsupError, match="columns are image, label"):
        load_dataset(f"hf:{hf_data / 'saved'}", image_key="nope")
    with pytest.raises(SelfsupError, match="splits train, test"):
        load_dataset(f"hf:{hf_data / 'saved'}", split="validation")
    with pytest.raises(SelfsupError, match="does not exist"):
        load_dataset(f"hf:{hf_data / 'absent'}")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(SelfsupError, match=r"pip install 'selfsup\[hf\]'"):
        load_dataset(f"hf:{hf_data / 'saved'}")


def test_cli_without_datasets_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "datasets", None)
    res = runner.invoke(app, ["train", "--quiet", "data.dataset=hf:/some/path", "train.epochs=1"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and res.output.count("error:") == 1, res.output
    assert "pip install 'selfsup[hf]'" in res.output and "Traceback" not in res.output


# --------------------------------------------------------------------------------------------- both paths
def _specs(tmp_path) -> list[tuple[str, dict]]:
    _write_cifar10(tmp_path / "c10")
    _write_cifar100(tmp_path / "c100")
    _write_stl10(tmp_path / "stl")
    specs = [
        (f"cifar10:{tmp_path / 'c10'}", {}),
        (f"cifar10:{tmp_path / 'c10'}", {"image_size": 20}),
        (f"cifar100:{tmp_path / 'c100'}", {}),
        (f"stl10:{tmp_path / 'stl'}", {}),
        (f"stl10:{tmp_path / 'stl'}", {"split": "train+unlabeled", "image_size": 40}),
    ]
    return specs + [(f"hf:{tmp_path / 'saved'}", {}), (f"hf:{tmp_path / 'saved'}", {"image_size": 12})]


def test_streamed_and_in_memory_give_the_same_samples(hf_data):
    for spec, options in _specs(hf_data):
        streamed = load_dataset(spec, stream=True, workers=0, **options)
        memory = load_dataset(spec, stream=False, workers=0, **options)
        assert streamed.info["streamed"] and not memory.info["streamed"]
        for s, m in ((streamed.train, memory.train), (streamed.test, memory.test)):
            idx = torch.arange(len(m))
            assert isinstance(m.x, torch.Tensor) and m.x.dtype == torch.uint8
            assert torch.equal(take(s.x, idx), m.x), (spec, options)
            assert (s.y is None and m.y is None) or torch.equal(s.y, m.y)


# --------------------------------------------------------------------------------------------- presets
@pytest.mark.slow
@pytest.mark.parametrize(
    "preset, spec, write",
    [
        ("simclr-cifar10", "cifar10", _write_cifar10),
        ("vicreg-cifar10", "cifar10", _write_cifar10),
        ("byol-stl10", "stl10", _write_stl10),
    ],
)
def test_presets_train_a_few_steps_on_their_layout(tmp_path, monkeypatch, preset, spec, write):
    """Each image preset, as written (resnet18, its heads, LARS, its views), on tiny files of its dataset's
    real layout; only the length and the batch are cut."""
    write(tmp_path)
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).parents[2] / "configs" / f"{preset}.yaml"
    args = ["train", "--quiet", "--config", str(config), f"data.dataset={spec}:{tmp_path}"]
    args += ["train.epochs=1", "train.batch_size=4", "train.name=r", "data.stream=true", "data.workers=1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "runs/r/metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 2 and np.isfinite(record["loss"]) and record["backbone/rankme"] > 0
    summary = json.loads((tmp_path / "runs/r/summary.json").read_text())
    assert summary["n_train"] == (10 if spec == "cifar10" else 9)  # stl10: train + unlabeled
    if spec == "stl10":  # trained without labels: probed on STL-10's labelled train/test splits
        assert "linear_acc" not in summary
        res = CliRunner().invoke(app, ["probe", "runs/r", "--data", f"stl10:{tmp_path}", "--json"])
        assert res.exit_code == 0, res.output
        assert 0 <= json.loads(res.output)["linear_acc"] <= 1
        res = CliRunner().invoke(app, ["probe", "runs/r", "--data", "digits"])
        assert (
            res.exit_code == 2 and "have shape (1, 8, 8) but the run was trained on (3, 96, 96)" in res.output
        )


class _CraftedDtype:
    """Unpickles into numpy.dtype('u1') with a state that declares an object field (numpy would trust it)."""

    def __reduce__(self):
        state = (3, "|", None, ("f",), {"f": (np.dtype("O"), 0)}, 8, 1, 0x3F)
        return (np.dtype, ("u1", False, True), state)


@pytest.mark.parametrize(
    "payload",
    [
        np.array([1, "a"], dtype=object),  # object arrays: their bytes would be read as pointers
        np.zeros(2, dtype=[("f", "O")]),
        np.float64(1.0),  # numpy scalars (multiarray.scalar) are not needed by CIFAR and refused
        _CraftedDtype(),
    ],
    ids=["object-array", "object-field", "numpy-scalar", "crafted-dtype-state"],
)
@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_unpickler_refuses_anything_but_plain_numeric_arrays(tmp_path, payload, protocol):
    _write_cifar10(tmp_path)
    batch = {b"labels": [0, 1], b"data": np.zeros((2, 3072), np.uint8), b"x": payload}
    _dump(tmp_path / "cifar-10-batches-py" / "data_batch_2", batch, protocol=protocol)
    with pytest.raises(SelfsupError, match="refusing to unpickle"):
        load_dataset(f"cifar10:{tmp_path}")
