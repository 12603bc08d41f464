"""Standard image datasets from files already on disk: CIFAR-10/100 (``cifar10:PATH``, ``cifar100:PATH``),
STL-10 (``stl10:PATH``) and Hugging Face ``datasets`` (``hf:PATH``). Nothing is downloaded (``hf:`` with a
hub name excepted, where the network allows).

Each loader returns uint8 ``C x H x W`` sources; :func:`selfsup.data.load_dataset` streams them or reads
them into memory. CIFAR batches are Python pickles, read by a restricted unpickler that rebuilds numpy
arrays and nothing else. STL-10's binary files are memory-mapped, so its 100,000 unlabelled images are
never read whole.
"""

from __future__ import annotations

import bisect
import glob
import io
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from selfsup.data.core import ArrayDataset, DataSplits, to_labels
from selfsup.data.files import count_classes
from selfsup.data.sources import (
    ArraySource,
    DecodeError,
    Source,
    check_mode,
    fit_image,
    pil_to_tensor,
    size_pair,
)
from selfsup.errors import SelfsupError

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
STL10_URL = "https://cs.stanford.edu/~acoates/stl10/"
STL10_IMAGE_BYTES = 3 * 96 * 96


# --------------------------------------------------------------------------------------------- sources
class ResizedSource(Source):
    """Another uint8 image source, resized on read to ``size`` (bilinear, antialiased)."""

    def __init__(self, parent: Source, size: tuple[int, int]):
        self.parent, self.size = parent, size
        self.sample_shape = (parent.sample_shape[0], *size)
        self.labels = parent.labels

    def __len__(self) -> int:
        return len(self.parent)

    def read(self, i: int) -> torch.Tensor:
        return fit_image(self.parent.read(i), self.size)

    def read_all(self) -> torch.Tensor | None:
        whole = self.parent.read_all()
        if whole is None:
            return None
        return torch.cat([fit_image(whole[i : i + 1024], self.size) for i in range(0, len(whole), 1024)])


class ConcatSource(Source):
    """Sources of one sample shape, one after the other; labelled when all of them are."""

    def __init__(self, parts: list[Source]):
        shapes = {tuple(p.sample_shape) for p in parts}
        if len(shapes) != 1:
            raise SelfsupError(f"cannot concatenate sources of different sample shapes {sorted(shapes)}.")
        self.parts = parts
        self.sample_shape = parts[0].sample_shape
        self.starts = np.cumsum([0] + [len(p) for p in parts]).tolist()
        labels = [p.labels for p in parts]
        self.labels = None if any(y is None for y in labels) else torch.cat(labels)

    def __len__(self) -> int:
        return self.starts[-1]

    def read(self, i: int) -> torch.Tensor:
        k = bisect.bisect_right(self.starts, int(i)) - 1
        return self.parts[k].read(int(i) - self.starts[k])

    def read_all(self) -> torch.Tensor | None:
        wholes = [p.read_all() for p in self.parts]
        return None if any(w is None for w in wholes) else torch.cat(wholes)

    def nbytes(self) -> int:
        return sum(p.nbytes() for p in self.parts)


def _image_source(array: np.ndarray, labels: torch.Tensor | None, size) -> Source:
    """uint8 ``N x C x H x W`` rows (a view, possibly memory-mapped), resized on read unless ``size`` is
    None or the array's own size."""
    source = ArraySource(array, keep_uint8=True)
    source.labels = labels
    if size is None or size == tuple(source.sample_shape[1:]):
        return source
    return ResizedSource(source, size)


# --------------------------------------------------------------------------------------------- CIFAR
class _Dtype:
    """``numpy.dtype(obj, align, copy)`` as a pickle rebuilds it: plain numeric types only (bool, int, uint,
    float), and a state that may set the byte order and nothing else (a crafted state could otherwise
    declare object fields, whose bytes numpy would then take for pointers)."""

    def __init__(self, obj, align=False, copy=False):
        dtype = None
        if isinstance(obj, str):
            try:
                dtype = np.dtype(obj)
            except TypeError:
                pass
        if dtype is None or dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype:
            raise SelfsupError(f"refusing to unpickle the dtype {obj!r}: a CIFAR batch holds numbers only.")
        self.dtype = dtype

    def __setstate__(self, state) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
        if order not in ("<", ">", "|", "="):
            raise SelfsupError(f"refusing to unpickle a dtype of byte order {order!r}.")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


def _array(raw, dtype, shape, order: str = "C") -> np.ndarray:
    """An array of a checked dtype and shape from raw bytes of exactly the right length."""
    if isinstance(raw, str):  # a Python 2 pickle's str, decoded as latin-1
        raw = raw.encode("latin1")
    ok_shape = isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)
    if not isinstance(dtype, _Dtype) or not ok_shape or not isinstance(raw, (bytes, bytearray)):
        raise SelfsupError("refusing to unpickle an array that is not plain numbers.")
    if len(raw) != int(np.prod(shape)) * dtype.dtype.itemsize:
        raise SelfsupError(f"an array of shape {shape} holds {len(raw)} bytes, which does not match.")
    return np.frombuffer(bytes(raw), dtype=dtype.dtype).reshape(shape, order=order)


class _Array:
    """``numpy.core.multiarray._reconstruct(ndarray, ...)`` then its state: the array is built by
    :func:`_array` from the state's shape, dtype and bytes."""

    def __init__(self, cls, *args):
        if cls is not _NDARRAY:
            raise SelfsupError("refusing to unpickle an array of another class.")
        self.value = None

    def __setstate__(self, state) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise SelfsupError("refusing to unpickle an array state of another form.")
        shape, dtype, fortran, raw = state[-4:]
        self.value = _array(raw, dtype, shape, "F" if fortran else "C")


def _frombuffer(buf, dtype, shape, order="C") -> np.ndarray:
    """``numpy.core.numeric._frombuffer``, as pickles of protocol 5 rebuild arrays."""
    return _array(bytes(buf), dtype, tuple(shape), order)


_NDARRAY = object()  # stands for numpy.ndarray: only _Array may receive it


def _allowed_globals() -> dict[tuple[str, str], object]:
    """What a CIFAR batch may refer to, under numpy 1's and numpy 2's module names; ``_codecs.encode``
    rebuilds bytes in Python 3 pickles of protocol 2. Nothing of numpy itself is exposed."""
    import _codecs

    allowed = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _Dtype,
        ("_codecs", "encode"): _codecs.encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = _Array
        allowed[(f"{package}.numeric", "_frombuffer")] = _frombuffer
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and plain numeric arrays (rebuilt by :func:`_array`, never
    by numpy's own unpickling); any other global is refused, so a crafted file cannot run code."""

    allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        found = self.allowed.get((module, name))
        if found is None:
            raise SelfsupError(
                f"refusing to unpickle '{module}.{name}': a CIFAR batch holds only numpy arrays and lists."
            )
        return found


def _built(obj):
    """The unpickled object with each :class:`_Array` replaced by its array."""
    if isinstance(obj, _Array):
        if obj.value is None:
            raise SelfsupError("refusing to unpickle an array without its data.")
        return obj.value
    if isinstance(obj, _Dtype):
        return obj.dtype
    if isinstance(obj, dict):
        return {k: _built(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_built(v) for v in obj)
    return obj


def _unpickle(path: Path) -> dict:
    """A CIFAR batch file as a dict with str keys (the files are Python 2 pickles)."""
    try:
        with open(path, "rb") as fh:
            obj = _built(_ArrayUnpickler(fh, encoding="latin1").load())
    except SelfsupError as err:
        raise SelfsupError(f"'{path}' is not a plain CIFAR batch: {err}") from err
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as err:
        raise SelfsupError(
            f"could not read the CIFAR batch '{path}' (truncated or not a batch?): {err}"
        ) from err
    if not isinstance(obj, dict):
        raise SelfsupError(f"'{path}' is not a CIFAR batch: it holds a {type(obj).__name__}, not a dict.")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


_CIFAR = {
    10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta"),
    100: ("cifar-100-python", ["train"], "test", "meta"),
}


def _cifar_root(path: str | Path, classes: int) -> Path:
    folder, train_files, _, _ = _CIFAR[classes]
    p = Path(path).expanduser()
    if not p.is_dir():
        what = "does not exist" if not p.exists() else "is a file, not a folder"
        raise SelfsupError(f"CIFAR-{classes} folder '{p}' {what}; check the path after 'cifar{classes}:'.")
    if (p / folder).is_dir():
        return p / folder
    if p.name == folder or (p / train_files[0]).is_file():
        return p
    other = 100 if classes == 10 else 10
    hint = (
        f" It holds '{_CIFAR[other][0]}': use 'cifar{other}:{p}'."
        if (p / _CIFAR[other][0]).is_dir() or p.name == _CIFAR[other][0]
        else ""
    )
    raise SelfsupError(
        f"'{p}' is not an extracted CIFAR-{classes} folder: expected torchvision's layout, '{folder}/' "
        f"with {', '.join(train_files[:1] + train_files[-1:])}... ({folder} from {CIFAR_URL}, extracted); "
        f"nothing is downloaded.{hint}"
    )


def _cifar_batch(root: Path, name: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    path = root / name
    if not path.is_file():
        raise SelfsupError(
            f"CIFAR-{classes} batch file '{name}' is missing from '{root}'; expected torchvision's extracted "
            f"'{_CIFAR[classes][0]}' layout (from {CIFAR_URL}; nothing is downloaded)."
        )
    batch = _unpickle(path)
    key = "labels" if classes == 10 else "fine_labels"
    if "data" not in batch or key not in batch:
        raise SelfsupError(f"'{path}' has no '{key}' or 'data' entry (keys: {', '.join(map(str, batch))}).")
    data, labels = np.asarray(batch["data"]), np.asarray(batch[key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise SelfsupError(
            f"'{path}': expected uint8 data of N x 3072 and N labels, got {data.dtype} data of shape "
            f"{data.shape} and {len(labels)} labels."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise SelfsupError(
            f"'{path}': labels must lie in 0..{classes - 1}, got {labels.min()}..{labels.max()}."
        )
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_names(root: Path, meta: str, classes: int) -> list[str] | None:
    if not (root / meta).is_file():
        return None
    names = _unpickle(root / meta).get("label_names" if classes == 10 else "fine_label_names")
    if names is None or len(names) != classes:
        return None
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def load_cifar(path: str | Path, seed: int = 0, image_size=None, classes: int = 10) -> DataSplits:
    """CIFAR-10 (``classes=10``) or CIFAR-100 (``classes=100``, fine labels) from torchvision's extracted
    folder: ``path`` holds ``cifar-10-batches-py/`` (``cifar-100-python/``) or is that folder.

    Train: the 50,000 images of ``data_batch_1..5`` (``train``), test: the 10,000 of ``test_batch``
    (``test``), as uint8 3 x 32 x 32; ``image_size`` (an int or (height, width)) resizes them on read.
    Class names come from ``batches.meta`` (``meta``). The pickled batches are read by an unpickler that
    rebuilds numpy arrays only. Nothing is downloaded. ``seed`` is unused (the files fix the split).
    """
    if classes not in _CIFAR:
        raise SelfsupError(f"CIFAR has 10 or 100 classes, got classes={classes!r}.")
    size = None if image_size is None else size_pair(image_size)
    root = _cifar_root(path, classes)
    _, train_files, test_file, meta = _CIFAR[classes]
    batches = [_cifar_batch(root, name, classes) for name in train_files]
    x = np.concatenate([b[0] for b in batches]) if len(batches) > 1 else batches[0][0]
    y = torch.from_numpy(np.concatenate([b[1] for b in batches]).astype(np.int64))
    xt, yt = _cifar_batch(root, test_file, classes)
    yt = torch.from_numpy(yt.astype(np.int64))
    train, test = _image_source(x, y, size), _image_source(xt, yt, size)
    return DataSplits(
        name=f"cifar{classes}:{root}",
        modality="image",
        train=ArrayDataset(train, y),
        test=ArrayDataset(test, yt),
        num_classes=classes,
        sample_shape=tuple(train.sample_shape),
        class_names=_cifar_names(root, meta, classes),
        info={"source": str(root), "image_size": tuple(train.sample_shape[1:])},
    )


def load_cifar10(path: str | Path, seed: int = 0, image_size=None) -> DataSplits:
    """CIFAR-10 from torchvision's extracted ``cifar-10-batches-py`` folder (:func:`load_cifar`)."""
    return load_cifar(path, seed=seed, image_size=image_size, classes=10)


def load_cifar100(path: str | Path, seed: int = 0, image_size=None) -> DataSplits:
    """CIFAR-100 (fine labels) from the extracted ``cifar-100-python`` folder (:func:`load_cifar`)."""
    return load_cifar(path, seed=seed, image_size=image_size, classes=100)


# --------------------------------------------------------------------------------------------- STL-10
STL10_SPLITS = ("train", "unlabeled", "train+unlabeled")


def _stl10_root(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        what = "does not exist" if not p.exists() else "is a file, not a folder"
        raise SelfsupError(f"STL-10 folder '{p}' {what}; check the path after 'stl10:'.")
    for root in (p / "stl10_binary", p):
        if (root / "train_X.bin").is_file() or (root / "unlabeled_X.bin").is_file():
            return root
    raise SelfsupError(
        f"'{p}' is not an extracted STL-10 folder: expected 'stl10_binary/' with train_X.bin, train_y.bin, "
        f"test_X.bin, test_y.bin, unlabeled_X.bin (stl10_binary.tar.gz from {STL10_URL}, extracted); "
        "nothing is downloaded."
    )


def _stl10_images(root: Path, name: str, size) -> Source:
    """The images of ``name`` memory-mapped, as 3 x 96 x 96 views of the column-major file."""
    path = root / f"{name}_X.bin"
    if not path.is_file():
        raise SelfsupError(
            f"STL-10 file '{path.name}' is missing from '{root}'; expected the stl10_binary layout."
        )
    nbytes = path.stat().st_size
    if nbytes == 0 or nbytes % STL10_IMAGE_BYTES:
        raise SelfsupError(
            f"'{path}' has {nbytes} bytes, not a positive multiple of {STL10_IMAGE_BYTES} (one 3 x 96 x 96 "
            "image); the file is truncated or not STL-10: extract it again."
        )
    x = np.memmap(path, dtype=np.uint8, mode="r", shape=(nbytes // STL10_IMAGE_BYTES, 3, 96, 96))
    return _image_source(x.transpose(0, 1, 3, 2), None, size)


def _stl10_labels(root: Path, name: str, n: int) -> torch.Tensor:
    path = root / f"{name}_y.bin"
    if not path.is_file():
        raise SelfsupError(
            f"STL-10 file '{path.name}' is missing from '{root}'; expected the stl10_binary layout."
        )
    y = np.fromfile(path, dtype=np.uint8)
    if len(y) != n:
        raise SelfsupError(
            f"'{path}' has {len(y)} labels but {name}_X.bin has {n} images; extract them again."
        )
    if n and (y.min() < 1 or y.max() > 10):
        raise SelfsupError(f"'{path}': STL-10 labels must lie in 1..10, got {y.min()}..{y.max()}.")
    return torch.from_numpy(y.astype(np.int64) - 1)


def _stl10_split(root: Path, name: str, size, labelled: bool) -> Source:
    source = _stl10_images(root, name, size)
    if labelled:
        source.labels = _stl10_labels(root, name, len(source))
    return source


def load_stl10(path: str | Path, seed: int = 0, split: str = "train", image_size=None) -> DataSplits:
    """STL-10 from its extracted binary files: ``path`` holds ``stl10_binary/`` or is that folder.

    ``split`` picks the training set: ``"train"`` (5,000 labelled images), ``"unlabeled"`` (the 100,000
    unlabelled ones) or ``"train+unlabeled"`` (all 105,000, without labels). The test split is always the
    8,000 labelled test images. A training set without labels has ``train.y = None``: the online probe and
    the final probes, which fit on train labels, are skipped. Images are uint8 3 x 96 x 96, memory-mapped
    (never read whole); ``image_size`` resizes them on read. Nothing is downloaded; ``seed`` is unused.
    """
    split = split.replace("unlabelled", "unlabeled") if isinstance(split, str) else split
    if split not in STL10_SPLITS:
        raise SelfsupError(f"STL-10 split must be one of {', '.join(STL10_SPLITS)}, got {split!r}.")
    size = None if image_size is None else size_pair(image_size)
    root = _stl10_root(path)
    parts = [_stl10_split(root, name, size, labelled=split == "train") for name in split.split("+")]
    train = parts[0] if len(parts) == 1 else ConcatSource(parts)
    test = _stl10_split(root, "test", size, labelled=True)
    names_file = root / "class_names.txt"
    names = names_file.read_text().split() if names_file.is_file() else None
    return DataSplits(
        name=f"stl10:{root}",
        modality="image",
        train=ArrayDataset(train, train.labels),
        test=ArrayDataset(test, test.labels),
        num_classes=10,
        sample_shape=tuple(train.sample_shape),
        class_names=names if names is not None and len(names) == 10 else None,
        info={"source": str(root), "split": split, "image_size": tuple(train.sample_shape[1:])},
    )


# --------------------------------------------------------------------------------------------- Hugging Face
def _import_datasets():
    try:
        import datasets
    except ImportError as err:
        raise SelfsupError(
            "'hf:' datasets need the optional package 'datasets': pip install 'selfsup[hf]'"
        ) from err
    return datasets


def _decode(value, mode: str) -> torch.Tensor:
    """One stored image (a PIL image, ``{"bytes", "path"}``, bytes, or a uint8 array) as ``C x H x W``."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return pil_to_tensor(value, mode)
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        value = value["bytes"] or value["path"]
    if isinstance(value, (bytes, str)):
        with Image.open(io.BytesIO(value) if isinstance(value, bytes) else value) as im:
            return pil_to_tensor(im, mode)
    if value is None:
        raise DecodeError("no image stored")
    arr = np.asarray(value)
    if np.issubdtype(arr.dtype, np.integer) and arr.size and 0 <= arr.min() and arr.max() <= 255:
        arr = arr.astype(np.uint8)  # nested lists (Array3D, Sequence features) come back as int64
    if arr.dtype != np.uint8:
        raise SelfsupError(
            f"the image column holds {arr.dtype} arrays; expected uint8 images (or encoded ones)."
        )
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise SelfsupError(
            f"the image column holds arrays of shape {arr.shape}; expected H x W or H x W x C."
        )
    try:
        return pil_to_tensor(Image.fromarray(np.ascontiguousarray(arr)), mode)
    except TypeError as err:
        raise SelfsupError(
            f"the image column holds arrays of shape {arr.shape} PIL cannot read: {err}"
        ) from err


class HFSource(Source):
    """The images of a Hugging Face ``datasets.Dataset`` column, decoded, converted to ``mode`` and resized
    to ``size`` on read. The dataset (memory-mapped Arrow) pickles to DataLoader workers by reference."""

    def __init__(self, ds, image_key: str, mode: str, size: tuple[int, int], labels: torch.Tensor | None):
        self.ds, self.key, self.mode, self.size = ds.select_columns([image_key]), image_key, mode, size
        self.sample_shape = (check_mode(mode), *size)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.ds)

    def read(self, i: int) -> torch.Tensor:
        from PIL import Image

        try:
            img = _decode(self.ds[int(i)][self.key], self.mode)
        except SelfsupError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise DecodeError(f"sample {i} of column '{self.key}': {err}") from err
        return fit_image(img, self.size)


def _open_hf(datasets, path: str):
    """A ``save_to_disk`` folder, parquet files (a folder, a file or a glob), or a hub name."""
    p = Path(path).expanduser()
    failures = (OSError, ValueError, getattr(getattr(datasets, "exceptions", None), "DatasetsError", OSError))
    try:
        if p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file()):
            return datasets.load_from_disk(str(p))
        if p.is_dir():
            if not any(p.rglob("*.parquet")):
                raise SelfsupError(
                    f"'{p}' holds neither a dataset saved by save_to_disk (dataset_dict.json or state.json) "
                    "nor parquet files."
                )
            return datasets.load_dataset("parquet", data_dir=str(p))
        if p.is_file():
            if p.suffix.lower() != ".parquet":
                raise SelfsupError(
                    f"'{p}' is not a .parquet file; 'hf:' takes a save_to_disk folder or parquet."
                )
            return datasets.load_dataset("parquet", data_files=str(p))
        if any(c in path for c in "*?["):
            files = sorted(glob.glob(str(p), recursive=True))
            if not files:
                raise SelfsupError(f"no file matches '{path}'.")
            return datasets.load_dataset("parquet", data_files=files)
        if path.startswith(("/", ".", "~")) or path.count("/") > 1:
            raise SelfsupError(f"'{p}' does not exist; check the path after 'hf:'.")
        return datasets.load_dataset(path)
    except SelfsupError:
        raise
    except failures as err:
        raise SelfsupError(f"could not load the Hugging Face dataset '{path}': {err}") from err


def _pick_splits(datasets, data, split: str | None):
    """The training split and the test split ("test", else "validation", else None)."""
    if isinstance(data, datasets.Dataset):
        if split not in (None, "train"):
            raise SelfsupError(f"the dataset has a single split; split={split!r} does not exist in it.")
        return data, None
    names = list(data)
    if split is None:
        split = "train" if "train" in names else (names[0] if len(names) == 1 else None)
    if split not in names:
        raise SelfsupError(
            f"the dataset has splits {', '.join(names)}; choose the training one with split=NAME "
            f"(got {split!r})."
        )
    test = next((n for n in ("test", "validation") if n in names and n != split), None)
    return data[split], (data[test] if test else None)


def _columns(datasets, features, image_key: str | None, label_key: str | None) -> tuple[str, str | None]:
    columns = list(features)
    for key, what in ((image_key, "image_key"), (label_key, "label_key")):
        if key is not None and key not in features:
            raise SelfsupError(f"{what}={key!r} is not a column; the columns are {', '.join(columns)}.")
    if image_key is None:
        image_key = next((k for k, f in features.items() if isinstance(f, datasets.Image)), None)
        if image_key is None:
            raise SelfsupError(
                f"no column has the Image feature; name the image column with image_key= (columns: "
                f"{', '.join(columns)})."
            )
    if label_key is None:
        label_key = next((k for k, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
        if label_key is None and "label" in features and "label" != image_key:
            label_key = "label"
    return image_key, label_key


def _label_values(ds, key: str) -> np.ndarray | None:
    """The column's values (None when a label is missing: null or -1, the ClassLabel convention)."""
    if ds is None or key not in ds.features:
        return None
    col = ds.select_columns([key]).with_format("arrow")[:].column(0)
    values = None if col.null_count else col.to_numpy(zero_copy_only=False)
    if values is not None and np.issubdtype(values.dtype, np.number) and values.size and values.min() < 0:
        values = None
    return values


def _hf_labels(datasets, train, test, key: str | None):
    """Train and test labels (int64 or None), the number of classes and the class names."""
    if key is None:
        return None, None, None, None
    y, yt = _label_values(train, key), _label_values(test, key)
    feature = train.features[key]
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    given = [v for v in (y, yt) if v is not None]
    if any(v.dtype.kind in "OSU" for v in given):  # class names stored as strings
        names = sorted({str(v) for values in given for v in values})
        index = {n: i for i, n in enumerate(names)}
        y, yt = ([index[str(v)] for v in vals] if vals is not None else None for vals in (y, yt))
    y, yt = (to_labels(np.asarray(v), f"label column '{key}'") if v is not None else None for v in (y, yt))
    what = f"hf column {key}"
    classes = len(names) if names else count_classes(what, *((y, yt) if y is not None else (yt, None)))
    return y, yt, classes, names


def load_hf(
    path: str,
    seed: int = 0,
    image_key: str | None = None,
    label_key: str | None = None,
    image_size=32,
    mode: str = "RGB",
    split: str | None = None,
) -> DataSplits:
    """A Hugging Face ``datasets`` image dataset: a folder written by ``save_to_disk`` (a Dataset or a
    DatasetDict), parquet files (a folder, one file or a glob), or a hub name (downloaded by ``datasets``
    where the network allows). Needs the optional package ``datasets`` (``pip install 'selfsup[hf]'``).

    The training split is ``split`` (default "train", or the only split); the test split is "test", else
    "validation", else none. ``image_key`` defaults to the first column with the Image feature,
    ``label_key`` to the first ClassLabel column, else "label", else none (unlabelled); a split whose labels
    are missing (null or -1) is unlabelled, and a test split without labels is dropped when the training
    split has them. Images are decoded on read, converted to ``mode`` ("RGB" or "L") and resized (aspect
    ratio not kept) to ``image_size``. ``seed`` is unused (the dataset fixes the split).
    """
    datasets = _import_datasets()
    size, channels = size_pair(image_size), check_mode(mode)
    train_ds, test_ds = _pick_splits(datasets, _open_hf(datasets, path), split)
    image_key, label_key = _columns(datasets, train_ds.features, image_key, label_key)
    if test_ds is not None and image_key not in test_ds.features:
        raise SelfsupError(
            f"the test split has no column '{image_key}' (columns: {', '.join(test_ds.features)})."
        )
    y, yt, classes, names = _hf_labels(datasets, train_ds, test_ds, label_key)
    if label_key is not None and y is None:
        warnings.warn(
            f"the '{label_key}' column has missing labels (null or -1); training unlabelled.", stacklevel=2
        )
    if test_ds is not None and y is not None and yt is None:
        warnings.warn("the test split has no labels; it is left out (probes need test labels).", stacklevel=2)
        test_ds = None
    train = ArrayDataset(HFSource(train_ds, image_key, mode, size, y), y)
    test = ArrayDataset(HFSource(test_ds, image_key, mode, size, yt), yt) if test_ds is not None else None
    return DataSplits(
        name=f"hf:{path}",
        modality="image",
        train=train,
        test=test,
        num_classes=classes if y is not None or yt is not None else None,
        sample_shape=(channels, *size),
        class_names=names,
        info={"source": str(path), "image_key": image_key, "label_key": label_key, "image_size": size},
    )
