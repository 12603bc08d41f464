"""Read N x K embedding matrices from .npy, .npz and .pt files (for `selfsup quality`); write .npy."""

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


def save_embeddings(z: torch.Tensor, path: str | Path) -> Path:
    """Write ``z`` to ``path``, a ``.npy`` file in an existing directory."""
    path = check_output_file(path, ".npy")
    np.save(path, z.detach().cpu().numpy())
    return path
