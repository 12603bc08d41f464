"""User data: an image folder (``folder:PATH``) or arrays in a ``.npy``/``.npz`` file (``arrays:PATH``)."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from selfsup.data.builtin import stratified_split
from selfsup.data.core import ArrayDataset, DataSplits, check_finite, to_labels
from selfsup.errors import SelfsupError, ShapeError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
FOLDER_TEST_FRACTION = 0.2


# --------------------------------------------------------------------------------------------- image folder
def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _images_under(folder: Path, recursive: bool) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if _is_image(p))


def _size_pair(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        return (image_size, image_size)
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError) as err:
        raise SelfsupError(f"image_size must be an int or (height, width), got {image_size!r}.") from err
    if h < 1 or w < 1:
        raise SelfsupError(f"image_size must be positive, got {image_size!r}.")
    return (h, w)


def load_image_folder(path: str | Path, seed: int = 0, image_size=32, mode: str = "RGB") -> DataSplits:
    """Load every image under ``path``, resized (without keeping the aspect ratio) to ``image_size``.

    Layout: ``path/<class>/**/<image>`` gives labels (classes = sorted sub-folder names); images directly in
    ``path`` with no class sub-folder give an unlabelled dataset. Files with an image extension that PIL
    cannot read are skipped and counted in one warning. Values are float32 in [0, 1], ``N x C x H x W``
    (C = 3 for ``mode="RGB"``, 1 for ``"L"``). Labelled folders get a seeded stratified 20 % test split;
    unlabelled ones have no test split.
    """
    root = Path(path).expanduser()
    _check_folder_args(root, mode)
    height, width = _size_pair(image_size)
    class_names, files = _labelled_files(root)
    channels = 3 if mode == "RGB" else 1
    x, labels, n_skipped = _read_images(root, files, mode, height, width, channels)
    info = {"source": str(root), "skipped": n_skipped, "image_size": (height, width), "mode": mode}
    return _folder_splits(root, x, labels, class_names, seed, info, (channels, height, width))


def _check_folder_args(root: Path, mode: str) -> None:
    if not root.exists():
        raise SelfsupError(f"image folder '{root}' does not exist; check the path after 'folder:'.")
    if not root.is_dir():
        raise SelfsupError(
            f"'{root}' is a file, not a folder; use 'arrays:{root}' for .npy/.npz files or point 'folder:' "
            "at a directory of images."
        )
    if mode not in ("RGB", "L"):
        raise SelfsupError(f"image mode must be 'RGB' or 'L', got {mode!r}.")


def _labelled_files(root: Path) -> tuple[list[str] | None, list[tuple[Path, int]]]:
    """Class names (None if unlabelled) and (image path, class index or -1) pairs; raises if there are none.

    Images in class sub-folders win: top-level images beside them are ignored, with a warning.
    """
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    per_class = {d.name: _images_under(d, recursive=True) for d in class_dirs}
    per_class = {k: v for k, v in per_class.items() if v}
    loose = _images_under(root, recursive=False)
    if per_class:
        class_names = sorted(per_class)
        files = [(p, i) for i, name in enumerate(class_names) for p in per_class[name]]
        if loose:
            warnings.warn(
                f"image folder '{root}' has class sub-folders and also {len(loose)} image(s) "
                "at its top level; "
                "the top-level images have no class and were ignored.",
                stacklevel=4,
            )
    else:
        class_names = None
        files = [(p, -1) for p in loose]
    if not files:
        others = [p.name for p in root.rglob("*") if p.is_file()][:5]
        found = f" It holds other files ({', '.join(others)}...)." if others else " It is empty."
        raise SelfsupError(
            f"no images found in '{root}' (looked for {', '.join(IMAGE_EXTENSIONS)} at the top level and in "
            f"class sub-folders).{found}"
        )
    return class_names, files


def _read_images(
    root: Path, files: list[tuple[Path, int]], mode: str, height: int, width: int, channels: int
) -> tuple[torch.Tensor, list[int], int]:
    """The images read and resized, float32 ``N x C x H x W`` in [0, 1]; their labels; the count skipped.

    Unreadable files (and images over PIL's decompression-bomb limit) are skipped with one warning; raises
    if none could be read.
    """
    from PIL import Image, UnidentifiedImageError

    arrays, labels, skipped = [], [], []
    for p, label in files:
        try:
            with Image.open(p) as im:
                im = im.convert(mode).resize((width, height), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
            skipped.append(p)
            continue
        arrays.append(arr.reshape(height, width, channels))
        labels.append(label)
    if skipped:
        names = ", ".join(str(p.relative_to(root)) for p in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(
            f"skipped {len(skipped)} unreadable image file(s) in '{root}': {names}{more}.", stacklevel=4
        )
    if not arrays:
        raise SelfsupError(f"none of the {len(files)} image file(s) in '{root}' could be read.")
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    return x, labels, len(skipped)


def _folder_splits(
    root: Path,
    x: torch.Tensor,
    labels: list[int],
    class_names: list[str] | None,
    seed: int,
    info: dict,
    sample_shape: tuple[int, int, int],
) -> DataSplits:
    """The unlabelled dataset, or (with class names) a seeded stratified train/test split of it."""
    if class_names is None:
        return DataSplits(
            name=f"folder:{root}",
            modality="image",
            train=ArrayDataset(x),
            test=None,
            num_classes=None,
            sample_shape=sample_shape,
            info=info,
        )
    y = np.asarray(labels, dtype=np.int64)
    n_test = int(round(FOLDER_TEST_FRACTION * len(y)))
    tr, te = stratified_split(y, n_test, seed)
    yt = torch.from_numpy(y)
    train = ArrayDataset(x[tr], yt[tr])
    test = ArrayDataset(x[te], yt[te]) if len(te) else None
    info["split_seed"] = int(seed)
    return DataSplits(
        name=f"folder:{root}",
        modality="image",
        train=train,
        test=test,
        num_classes=len(class_names),
        sample_shape=sample_shape,
        class_names=class_names,
        info=info,
    )


# --------------------------------------------------------------------------------------------- arrays
def _as_samples(x: np.ndarray, what: str) -> tuple[torch.Tensor, str]:
    """float32 tensor N x C x L (signals) or N x C x H x W (images), and the modality."""
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise SelfsupError(f"{what} must be a numeric array, got dtype {x.dtype}.")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise SelfsupError(f"{what} is complex; split it into real and imaginary channels first.")
    if x.ndim < 2 or x.ndim > 4:
        raise ShapeError(
            f"{what} has shape {x.shape}; expected N x L or N x C x L (signals) or N x C x H x W (images)."
        )
    if x.shape[0] == 0:
        raise SelfsupError(f"{what} holds no samples (shape {x.shape}).")
    check_finite(x, what)
    scale_uint8 = x.dtype == np.uint8
    if x.ndim == 2:
        x = x[:, None, :]
        modality = "signal"
    elif x.ndim == 3:
        modality = "signal"
    else:
        modality = "image"
        # channels-last (N x H x W x C, C in 1/3/4) is the common numpy layout: move channels first
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = np.transpose(x, (0, 3, 1, 2))
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if scale_uint8 and modality == "image":
        t = t.div_(255.0)
    return t, modality


def load_arrays(path: str | Path, seed: int = 0) -> DataSplits:
    """Samples from a ``.npy`` file (x only) or a ``.npz`` file with ``x`` and optional ``y``, ``x_test``,
    ``y_test``.

    2-D ``x`` are signals (N x L, becomes N x 1 x L), 3-D are signals N x C x L, 4-D are images N x C x H x W
    (N x H x W x C with C in 1, 3, 4 is transposed; uint8 images are scaled to [0, 1]). NaN/Inf raise
    :class:`NonFiniteError`, labels of the wrong length :class:`ShapeError`. ``seed`` is unused (the file
    fixes the split).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise SelfsupError(f"array file '{p}' does not exist; check the path after 'arrays:'.")
    if p.is_dir():
        raise SelfsupError(
            f"'{p}' is a folder; use 'folder:{p}' for image folders, 'arrays:' for .npy/.npz files."
        )
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            data = {"x": np.load(p, allow_pickle=False)}
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        else:
            raise SelfsupError(
                f"'{p}' is not a .npy or .npz file; save arrays with numpy.save or numpy.savez."
            )
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise SelfsupError(f"could not read '{p}' as a numpy file: {err}") from err

    if "x" not in data:
        keys = ", ".join(sorted(data)) or "none"
        raise SelfsupError(
            f"'{p}' has no array named 'x' (keys present: {keys}); save the samples as x, e.g. "
            "numpy.savez(path, x=samples, y=labels)."
        )
    extra = sorted(set(data) - {"x", "y", "x_test", "y_test"})
    if extra:
        warnings.warn(
            f"'{p}': ignored array(s) {', '.join(extra)} (only x, y, x_test, y_test are read).", stacklevel=3
        )

    x, modality = _as_samples(data["x"], f"'{p}' x")
    y = _labels(data.get("y"), len(x), f"'{p}' y")
    train = ArrayDataset(x, y)
    test = None
    if "x_test" in data:
        xt, modality_t = _as_samples(data["x_test"], f"'{p}' x_test")
        if xt.shape[1:] != x.shape[1:]:
            raise ShapeError(
                f"'{p}': x_test samples have shape {tuple(xt.shape[1:])} "
                f"but x samples have {tuple(x.shape[1:])}."
            )
        yt = _labels(data.get("y_test"), len(xt), f"'{p}' y_test")
        if (y is None) != (yt is None):
            raise SelfsupError(f"'{p}': give labels for both splits (y and y_test) or for neither.")
        test = ArrayDataset(xt, yt)
    elif "y_test" in data:
        raise SelfsupError(f"'{p}' has y_test but no x_test.")

    return DataSplits(
        name=f"arrays:{p}",
        modality=modality,
        train=train,
        test=test,
        num_classes=_num_classes(p, y, test.y if test is not None else None),
        sample_shape=tuple(int(s) for s in x.shape[1:]),
        info={"source": str(p)},
    )


#: Labels may skip class numbers, up to this many classes (or as many as there are labelled samples).
MAX_SPARSE_CLASSES = 10_000


def _num_classes(p: Path, y: torch.Tensor | None, y_test: torch.Tensor | None) -> int | None:
    """Labels are class indices 0..C-1: C is the largest label + 1, at most the number of labelled samples
    or :data:`MAX_SPARSE_CLASSES` (a label of 10**12 would size the online probe at 10**12 outputs)."""
    if y is None:
        return None
    labels = [t for t in (y, y_test) if t is not None and len(t)]
    top = max(int(t.max()) for t in labels)
    n_labels = sum(len(t) for t in labels)
    if top + 1 > max(n_labels, MAX_SPARSE_CLASSES):
        raise SelfsupError(
            f"'{p}': labels must be class indices 0..C-1, but the largest is {top} for {n_labels} "
            "labelled samples; remap them first, e.g. y = numpy.unique(y, return_inverse=True)[1]."
        )
    return top + 1


def _labels(y: np.ndarray | None, n: int, what: str) -> torch.Tensor | None:
    if y is None:
        return None
    labels = to_labels(y, what)
    if len(labels) != n:
        raise ShapeError(
            f"{what} has {len(labels)} labels but there are {n} samples; they must match one to one."
        )
    return labels
