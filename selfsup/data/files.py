"""User data: an image folder (``folder:PATH``) or arrays in a ``.npy``/``.npz`` file (``arrays:PATH``)."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from selfsup.data.builtin import stratified_split
from selfsup.data.core import ArrayDataset, DataSplits, check_finite, to_labels
from selfsup.data.sources import (
    IMAGE_EXTENSIONS,
    ArraySource,
    FolderSource,
    check_mode,
    scan_folder,
    size_pair,
)
from selfsup.errors import SelfsupError, ShapeError

FOLDER_TEST_FRACTION = 0.2


# --------------------------------------------------------------------------------------------- image folder
def load_image_folder(
    path: str | Path, seed: int = 0, image_size=32, mode: str = "RGB", rescan: bool = False
) -> DataSplits:
    """The images under ``path``, decoded on read and resized (aspect ratio not kept) to ``image_size``.

    Layout: ``path/<class>/**/<image>`` gives labels (classes = sorted sub-folder names); images directly in
    ``path`` with no class sub-folder give an unlabelled dataset. Grey, colour and palette images mix
    freely (each is converted to ``mode``: "RGB", 3 channels, or "L", 1), as do sizes. Zero-byte files and
    files without a readable image header are left out and counted in one warning. Labelled folders get a
    seeded stratified 20 % test split; unlabelled ones have no test split. The file list is cached
    (:func:`~selfsup.data.sources.scan_folder`; ``rescan=True`` rebuilds it). Samples are uint8
    ``C x H x W`` :class:`~selfsup.data.sources.FolderSource` items; :func:`selfsup.data.load_dataset`
    streams them or reads them into memory.
    """
    root = Path(path).expanduser()
    _check_folder(root)
    size, channels = size_pair(image_size), check_mode(mode)
    listing = scan_folder(root, rescan=rescan)
    _warn_listing(root, listing)
    files, classes = listing["files"], listing["classes"]
    source = FolderSource(root, files, listing["labels"], mode, size)
    info = {"source": str(root), "skipped": len(listing["skipped"]), "image_size": size, "mode": mode}
    shape = (channels, *size)
    name = f"folder:{root}"
    if classes is None:
        return DataSplits(name, "image", ArrayDataset(source), None, None, shape, info=info)
    y = np.asarray(listing["labels"], dtype=np.int64)
    tr, te = stratified_split(y, int(round(FOLDER_TEST_FRACTION * len(y))), seed)
    info["split_seed"] = int(seed)
    train = ArrayDataset(source.subset(tr), torch.from_numpy(y[tr]))
    test = ArrayDataset(source.subset(te), torch.from_numpy(y[te])) if len(te) else None
    return DataSplits(name, "image", train, test, len(classes), shape, class_names=classes, info=info)


def _check_folder(root: Path) -> None:
    if not root.exists():
        raise SelfsupError(f"image folder '{root}' does not exist; check the path after 'folder:'.")
    if not root.is_dir():
        raise SelfsupError(
            f"'{root}' is a file, not a folder; use 'arrays:{root}' for .npy/.npz files or point 'folder:' "
            "at a directory of images."
        )


def _warn_listing(root: Path, listing: dict) -> None:
    """Warn of left-out files; raise when no image is left."""
    if listing["loose"]:
        warnings.warn(
            f"image folder '{root}' has class sub-folders and also {listing['loose']} image(s) at its top "
            "level; the top-level images have no class and were ignored.",
            stacklevel=4,
        )
    skipped = listing["skipped"]
    if skipped:
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(
            f"skipped {len(skipped)} unreadable image file(s) in '{root}' (empty, or not an image): "
            f"{', '.join(skipped[:5])}{more}.",
            stacklevel=4,
        )
    if listing["files"]:
        return
    if listing["found"]:
        raise SelfsupError(f"none of the {listing['found']} image file(s) in '{root}' could be read.")
    others = [p.name for p in root.rglob("*") if p.is_file()][:5]
    found = f" It holds other files ({', '.join(others)}...)." if others else " It is empty."
    raise SelfsupError(
        f"no images found in '{root}' (looked for {', '.join(IMAGE_EXTENSIONS)} at the top level and in "
        f"class sub-folders).{found}"
    )


# --------------------------------------------------------------------------------------------- arrays
def _as_samples(x: np.ndarray, what: str) -> tuple[ArraySource, str]:
    """The samples as a source of N x C x L signals or N x C x H x W images (views of ``x``, which may be
    memory-mapped: nothing is copied), and the modality."""
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
    for i in range(0, len(x), 4096):  # in chunks: a memory-mapped array is never read whole
        check_finite(x[i : i + 4096], what)
    modality = "image" if x.ndim == 4 else "signal"
    if x.ndim == 2:
        x = x[:, None, :]
    # channels-last (N x H x W x C, C in 1/3/4) is the common numpy layout: move channels first
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = np.transpose(x, (0, 3, 1, 2))
    return ArraySource(x, keep_uint8=modality == "image"), modality


def load_arrays(path: str | Path, seed: int = 0) -> DataSplits:
    """Samples from a ``.npy`` file (x only) or a ``.npz`` file with ``x`` and optional ``y``, ``x_test``,
    ``y_test``.

    2-D ``x`` are signals (N x L, becomes N x 1 x L), 3-D are signals N x C x L, 4-D are images N x C x H x W
    (N x H x W x C with C in 1, 3, 4 is transposed; uint8 images stay uint8 and become [0, 1] floats on the
    device). A ``.npy`` file is memory-mapped, so one larger than memory streams. NaN/Inf raise
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
            data = {"x": np.load(p, mmap_mode="r", allow_pickle=False)}  # paged in as read
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
        if xt.sample_shape != x.sample_shape:
            raise ShapeError(
                f"'{p}': x_test samples have shape {xt.sample_shape} but x samples have {x.sample_shape}."
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
        num_classes=count_classes(p, y, test.y if test is not None else None),
        sample_shape=x.sample_shape,
        info={"source": str(p)},
    )


#: Labels may skip class numbers, up to this many classes (or as many as there are labelled samples).
MAX_SPARSE_CLASSES = 10_000


def count_classes(p: Path, y: torch.Tensor | None, y_test: torch.Tensor | None) -> int | None:
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
