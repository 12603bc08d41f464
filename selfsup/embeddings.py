"""Read N x K embedding matrices from .npy, .npz and .pt files (for `selfsup quality`); write them with
their sample ids; map them to 2-D for pictures (:func:`map_2d`).

``selfsup embed -o FILE.npz`` writes ``embeddings`` (N x K float32), ``ids`` (one per row: the file path
relative to the folder for folder data, the index in the split otherwise) and ``layer``, an ``.npz``
because numpy reads it with nothing else installed (``np.load(f)["embeddings"]``, ``["ids"]``) and pandas in
one line (``pandas.DataFrame(z["embeddings"], index=z["ids"])``); ``-o FILE.npy`` writes the bare matrix."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from selfsup.errors import SelfsupError
from selfsup.paths import check_output_file


def load_embeddings(path: str | Path, key: str | None = None) -> torch.Tensor:
    """Return the N x K matrix stored in ``path``; ``key`` picks an array in ``.npz`` or a dict ``.pt``."""
    path = Path(path)
    if not path.is_file():
        raise SelfsupError(f"file '{path}' does not exist")
    if path.stat().st_size == 0:
        raise SelfsupError(f"file '{path}' is empty")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            obj = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                obj = {k: archive[k] for k in archive.files}
        elif suffix in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise SelfsupError(f"'{path}': unsupported file type '{suffix}'; use .npy, .npz or .pt")
    except SelfsupError:
        raise
    except pickle.UnpicklingError:  # torch's message would suggest weights_only=False: never
        raise SelfsupError(f"'{path}' is refused by the safe loader (corrupt, or pickled code)") from None
    except (ValueError, OSError, EOFError, RuntimeError, zipfile.BadZipFile) as err:
        first = str(err).splitlines()[0] if str(err) else repr(err)
        raise SelfsupError(f"cannot read '{path}': {first}") from None
    if isinstance(obj, dict):
        arrays = {k: v for k, v in obj.items() if isinstance(v, (np.ndarray, torch.Tensor))}
        if not arrays:
            raise SelfsupError(f"'{path}' holds no arrays")
        if key is None and "embeddings" in arrays:  # a file of selfsup embed: the matrix beside its ids
            key = "embeddings"
        if key is None:
            if len(arrays) > 1:
                raise SelfsupError(f"'{path}' holds several arrays {sorted(arrays)}; choose one with --key")
            key = next(iter(arrays))
        if key not in arrays:
            raise SelfsupError(f"key '{key}' not found in '{path}'; available: {sorted(arrays)}")
        obj = arrays[key]
    elif key is not None:
        raise SelfsupError(f"--key '{key}' given but '{path}' holds a single array")
    if not isinstance(obj, (np.ndarray, torch.Tensor)):
        raise SelfsupError(f"'{path}' holds a {type(obj).__name__}, not an array")
    if isinstance(obj, np.ndarray) and not np.issubdtype(obj.dtype, np.number):
        raise SelfsupError(f"'{path}' holds a non-numeric array (dtype {obj.dtype})")
    return torch.as_tensor(obj)


EMBEDDING_SUFFIXES = (".npz", ".npy")


def check_embeddings_file(path: str | Path, what: str = "output file") -> Path:
    """``path`` can take embeddings: ``.npz`` (with ids) or ``.npy`` (the bare matrix), writable."""
    path = check_output_file(path, None, what)
    if path.suffix not in EMBEDDING_SUFFIXES:
        raise SelfsupError(
            f"{what} '{path}' must end in .npz (embeddings with their ids) or .npy (the matrix alone), "
            f"e.g. '{path.with_suffix('.npz')}'"
        )
    return path


def save_embeddings(z: torch.Tensor, path: str | Path, ids=None, layer: str | None = None) -> Path:
    """Write ``z`` to ``path``: an ``.npz`` with ``embeddings``, ``ids`` (default: the row indices) and
    ``layer``, or a bare ``.npy``."""
    path = check_embeddings_file(path)
    z = z.detach().cpu().numpy()
    if path.suffix == ".npy":
        np.save(path, z)
        return path
    ids = np.arange(len(z)) if ids is None else np.asarray(ids)
    if len(ids) != len(z):
        raise SelfsupError(f"{len(ids)} ids for {len(z)} embeddings: one id per row")
    with open(path, "wb") as fh:  # np.savez would append .npz to a path that lacks it; this one has it
        np.savez(fh, embeddings=z, ids=ids, layer=np.array(layer or ""))
    return path


MAP_METHODS = ("pca", "umap")


def map_2d(z: torch.Tensor | np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``N x 2`` coordinates of the rows of ``z`` for a picture: ``pca``, the projections on the two
    principal axes of the centred rows (float64 SVD, each axis' largest loading positive as scikit-learn
    sets it: the result equals ``sklearn.decomposition.PCA(2).fit_transform``), or ``umap`` (the
    ``umap-learn`` package, ``pip install 'selfsup[umap]'``; seeded)."""
    x = np.asarray(z.detach().cpu() if isinstance(z, torch.Tensor) else z, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise SelfsupError(f"a 2-D map needs an N x K matrix with N >= 3; got shape {x.shape}")
    if method == "pca":
        x = x - x.mean(axis=0)
        u, s, vt = np.linalg.svd(x, full_matrices=False)
        vt = vt[:2]
        signs = np.sign(vt[range(len(vt)), np.abs(vt).argmax(axis=1)])  # each axis' largest loading > 0
        out = u[:, :2] * s[:2] * signs
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))  # one feature: a line on the first axis
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise SelfsupError(
                "UMAP pictures need the umap-learn package: pip install 'selfsup[umap]'"
            ) from None
        # seeded, so one thread (umap-learn warns that it overrides its default n_jobs=-1 otherwise)
        return umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(x)
    raise SelfsupError(f"unknown map '{method}'; use one of {', '.join(MAP_METHODS)}")
