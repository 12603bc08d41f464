"""Image sources: datasets read one sample at a time, as uint8 ``C x H x W`` tensors at one load size.

A source is a map-style :class:`torch.utils.data.Dataset`: DataLoader worker processes read and decode its
samples (the cheap per-sample work), batches travel as uint8, and only on the training device do they
become float views (:func:`selfsup.data.stream.as_float`, then the batched view recipes). The same source
serves both paths: streamed batch by batch, or read once into one uint8 tensor when it fits
(:func:`selfsup.data.stream.materialize`), so both give the same samples.

Item ``i`` is ``(image, ok)``: ``ok`` is False when sample ``i`` could not be decoded (a file truncated
after the file list was built) and the next readable sample stands in for it; the loader counts these.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.progress import track
from torch.utils.data import Dataset

from selfsup.errors import SelfsupError
from selfsup.paths import cache_dir

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
#: Formats torchvision decodes itself (libjpeg-turbo, libpng, libwebp); the others go through PIL.
_TORCHVISION_DECODES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
MODES = {"RGB": 3, "L": 1}


class DecodeError(Exception):
    """A sample that cannot be read (corrupt, truncated, vanished)."""


def size_pair(image_size) -> tuple[int, int]:
    """``image_size`` as (height, width): an int or a pair, positive."""
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError) as err:
        raise SelfsupError(f"image_size must be an int or (height, width), got {image_size!r}.") from err
    if h < 1 or w < 1:
        raise SelfsupError(f"image_size must be positive, got {image_size!r}.")
    return (h, w)


def check_mode(mode: str) -> int:
    """The channel count of an image mode ('RGB': 3, 'L': 1)."""
    if mode not in MODES:
        raise SelfsupError(f"image mode must be 'RGB' (colour) or 'L' (grey), got {mode!r}.")
    return MODES[mode]


def fit_image(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A uint8 ``C x H x W`` image brought to ``size`` (bilinear, antialiased, aspect ratio not kept)."""
    from torchvision.transforms.v2 import functional as TF

    if tuple(img.shape[-2:]) != size:
        img = TF.resize(img, list(size), antialias=True)
    return img.contiguous()


def pil_to_tensor(im, mode: str) -> torch.Tensor:
    """A PIL image converted to ``mode`` as a uint8 ``C x H x W`` tensor."""
    arr = np.asarray(im.convert(mode), dtype=np.uint8)
    return torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], MODES[mode]).copy()).permute(2, 0, 1)


def decode_file(path: Path, mode: str, size: tuple[int, int]) -> torch.Tensor:
    """The image file at ``path`` as uint8 ``C x H x W`` at ``size``: torchvision's decoders for JPEG, PNG,
    GIF and WebP, PIL for the other formats (and where torchvision refuses a file PIL reads).
    Raises :class:`DecodeError`."""
    if path.suffix.lower() in _TORCHVISION_DECODES:
        try:
            with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders for torchcodec's
                warnings.simplefilter("ignore", DeprecationWarning)
                from torchvision.io import ImageReadMode, decode_image, read_file

                read_mode = ImageReadMode.RGB if mode == "RGB" else ImageReadMode.GRAY
                img = decode_image(read_file(str(path)), mode=read_mode)
            return fit_image(img, size)
        except (RuntimeError, ValueError, OSError):
            pass  # PIL below reads some files libjpeg refuses (CMYK, odd headers) or says why it cannot
    return fit_image(_pil_decode(path, mode), size)


def _pil_decode(path: Path, mode: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return pil_to_tensor(im, mode)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DecodeError(f"{path}: {err}") from err


class Source(Dataset):
    """Random access to ``len(self)`` samples of ``sample_shape`` (uint8 images or float32 arrays), with
    optional labels. Subclasses implement :meth:`read`; ``labels`` (int64, one per sample, or None) stay in
    memory.
    """

    sample_shape: tuple[int, ...]
    labels: torch.Tensor | None = None

    def read(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def read_all(self) -> torch.Tensor | None:
        """Every sample at once, where the source can do it faster than one by one (None: it cannot)."""
        return None

    def sample_ids(self) -> np.ndarray | None:
        """A name for each sample that says where it came from (a folder's file paths), or None when the
        sample's index is the only name it has."""
        return None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        n = len(self)
        for k in range(min(n, 16)):  # a bad sample: the next readable one stands in, and is counted
            try:
                return self.read((int(i) + k) % n), k == 0
            except DecodeError:
                continue
        raise SelfsupError(f"16 samples in a row from index {i} could not be read; is the data still there?")

    def subset(self, index: np.ndarray) -> Source:
        """The samples at ``index``, in that order (a train/test split)."""
        return Subset(self, np.asarray(index, dtype=np.int64))

    def nbytes(self) -> int:
        """Bytes of the whole source as one uint8 tensor (the in-memory rule of the loader)."""
        return len(self) * int(np.prod(self.sample_shape))


class Subset(Source):
    def __init__(self, parent: Source, index: np.ndarray):
        self.parent, self.index = parent, index
        self.sample_shape = parent.sample_shape
        self.labels = parent.labels[torch.from_numpy(index)] if parent.labels is not None else None

    def __len__(self) -> int:
        return len(self.index)

    def read(self, i: int) -> torch.Tensor:
        return self.parent.read(int(self.index[i]))

    def sample_ids(self) -> np.ndarray | None:
        ids = self.parent.sample_ids()
        return None if ids is None else ids[self.index]


# --------------------------------------------------------------------------------------------- folders
class FolderSource(Source):
    """Image files, decoded and resized on read (``folder:PATH``)."""

    def __init__(self, root: Path, files: list[str], labels, mode: str, size: tuple[int, int]):
        self.root, self.mode, self.size = root, mode, size
        # one numpy array of UTF-8 paths, not a list of str: DataLoader workers forked from this process
        # would copy a list's pages as they touch its reference counts (a million paths, in every worker)
        self.files = np.array([f.encode() for f in files], dtype=np.bytes_)
        self.sample_shape = (check_mode(mode), *size)
        self.labels = torch.as_tensor(labels, dtype=torch.int64) if labels is not None else None

    def __len__(self) -> int:
        return len(self.files)

    def file(self, i: int) -> str:
        """The path of sample ``i``, relative to the folder."""
        return self.files[i].decode()

    def sample_ids(self) -> np.ndarray:
        return np.char.decode(self.files, "utf-8")

    def read(self, i: int) -> torch.Tensor:
        path = self.root / self.file(i)
        try:
            return decode_file(path, self.mode, self.size)
        except OSError as err:  # deleted or unreadable since the scan
            raise DecodeError(f"{path}: {err}") from err


def _is_image(entry: os.DirEntry) -> bool:
    name = entry.name
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file()


def _walk(folder: Path, recursive: bool) -> list[str]:
    """Image files under ``folder`` (relative to it, sorted), by ``os.scandir`` (no stat of each file)."""
    found, stack = [], [folder]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if recursive and e.is_dir() and not e.name.startswith("."):
                    stack.append(Path(e.path))
                elif _is_image(e):
                    found.append(os.path.relpath(e.path, folder))
    return sorted(found)


def _readable(path: Path) -> bool:
    """Non-empty and with an image header PIL recognises (checked once, when the file list is built)."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            return False
        with Image.open(path) as im:
            return im.width > 0 and im.height > 0
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def scan_folder(root: Path, rescan: bool = False) -> dict:
    """The folder's file list: ``{"classes", "files", "labels", "skipped", "loose"}``, built once and cached
    under :func:`cache_dir` (``folders/``), so a restart does not rescan (and header-check) a million
    files. The cache is used while the modification times of the folder and of every folder under it are
    unchanged (adding or removing a file changes its folder's time; only folders are listed to check it);
    ``rescan=True`` rebuilds it.

    Class sub-folders (sorted names) give labels, their images found recursively; without any, the images
    at the top level form an unlabelled set. Zero-byte files and files without a readable image header are
    left out and listed in ``skipped``."""

    class_dirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    stamp = _folder_times(root)
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:20]
    cached = cache_dir() / "folders" / f"{key}.json"
    if not rescan and cached.is_file():
        try:
            listing = json.loads(cached.read_text())
            if isinstance(listing, dict) and listing.get("stamp") == stamp:
                return listing
        except (OSError, ValueError):
            pass
    listing = _build_listing(root, class_dirs)
    listing.update(stamp=stamp, root=str(root.resolve()))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(listing))
        os.replace(tmp, cached)
    except OSError as err:
        warnings.warn(f"could not cache the file list of '{root}' in {cached.parent} ({err}).", stacklevel=3)
    return listing


def _folder_times(root: Path) -> list:
    """The modification time of every (non-hidden) folder under ``root``, with its path: adding or
    removing a file anywhere changes one of them. Folders only are stat'ed, not the files."""
    stamp, stack = [], [root]
    while stack:
        d = stack.pop()
        stamp.append([os.path.relpath(d, root), os.stat(d).st_mtime_ns])
        with os.scandir(d) as it:
            stack.extend(Path(e.path) for e in it if e.is_dir() and not e.name.startswith("."))
    return sorted(stamp)


def _build_listing(root: Path, class_dirs: list[str]) -> dict:
    per_class = {d: [f"{d}/{f}" for f in _walk(root / d, recursive=True)] for d in class_dirs}
    per_class = {d: files for d, files in per_class.items() if files}
    loose = _walk(root, recursive=False)
    if per_class:
        classes = sorted(per_class)
        pairs = [(f, i) for i, d in enumerate(classes) for f in per_class[d]]
    else:
        classes, pairs = None, [(f, -1) for f in loose]
    ok = [
        _readable(root / f)
        for f, _ in track(pairs, "checking images", transient=True, disable=len(pairs) < 5000)
    ]
    good = [pair for pair, keep in zip(pairs, ok, strict=True) if keep]
    skipped = [f for (f, _), keep in zip(pairs, ok, strict=True) if not keep]
    return {
        "classes": classes,
        "files": [f for f, _ in good],
        "labels": [y for _, y in good] if classes else None,
        "skipped": skipped,
        "loose": len(loose) if classes else 0,
        "found": len(pairs),
    }


# --------------------------------------------------------------------------------------------- arrays
class ArraySource(Source):
    """Rows of a numpy array, often memory-mapped (``arrays:PATH.npy``): the operating system pages in
    what is read, so an array larger than memory trains. uint8 images stay uint8 with ``keep_uint8``;
    everything else becomes float32."""

    def __init__(self, array: np.ndarray, keep_uint8: bool = False):
        self.array = array
        self.dtype = np.uint8 if keep_uint8 and array.dtype == np.uint8 else np.float32
        self.sample_shape = tuple(int(s) for s in array.shape[1:])

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def read(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.array[i], dtype=self.dtype, order="C"))  # a writable copy

    def read_all(self) -> torch.Tensor:
        return torch.from_numpy(np.array(self.array, dtype=self.dtype, order="C"))

    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.sample_shape)) * np.dtype(self.dtype).itemsize
