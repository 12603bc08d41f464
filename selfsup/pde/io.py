"""HDF5 storage of PDE trajectories, in our layout and in the public generator's (LPSDA) layout.

Our layout, one group per split::

    /<split>/u (n, nt, nx)   x (n, nx)   t (n, nt)   dx (n,)   dt (n,)   coeffs/<name> (n,)
    attrs: root ``equation``, ``format``; group ``equation``, ``created``, ``params`` (JSON), ``selfsup``

The public layout of Brandstetter et al. (LPSDA), used by Mialon, Garrido et al. (arXiv 2307.05432), is
also read: a group per split holding ``pde_{nt}-{nx}`` (n, nt, nx) and ``x``, ``t``, ``dx``, ``dt`` (per
trajectory, or shared 1-D/scalar), any other ``(n,)`` dataset being read as a coefficient.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import torch

import selfsup
from selfsup.errors import SelfsupError, ShapeError
from selfsup.pde.data import PDEData
from selfsup.pde.equations import EQUATIONS

FORMAT = "selfsup-pde-1"
_GRIDS = ("x", "t", "dx", "dt")


def write_h5(path: str | Path, data: PDEData, split: str = "train", overwrite: bool = False) -> Path:
    """Write ``data`` as group ``split`` of the HDF5 file ``path`` (created, or appended to).

    An existing split raises :class:`SelfsupError` unless ``overwrite``; so does a file that already holds
    another equation.
    """
    path = Path(path)
    data.check_finite(f"write_h5({path.name}, split={split!r})")
    if path.parent and not path.parent.exists():
        raise SelfsupError(f"cannot write {path}: directory {path.parent} does not exist")
    with h5py.File(path, "a") as f:
        known = f.attrs.get("equation")
        if known is not None and known != data.equation:
            raise SelfsupError(
                f"{path} holds equation '{known}', not '{data.equation}'; write to another file"
            )
        if split in f:
            if not overwrite:
                raise SelfsupError(f"{path} already has a split '{split}'; choose another split or overwrite")
            del f[split]
        f.attrs.update(equation=data.equation, format=FORMAT)
        g = f.create_group(split)
        g.create_dataset("u", data=data.u.detach().cpu().numpy())
        for name in _GRIDS:
            g.create_dataset(name, data=getattr(data, name).detach().cpu().to(torch.float64).numpy())
        c = g.create_group("coeffs")
        for name, v in data.coeffs.items():
            c.create_dataset(name, data=v.detach().cpu().to(torch.float64).numpy())
        g.attrs.update(
            equation=data.equation,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            params=json.dumps(data.params, default=str),
            selfsup=selfsup.__version__,
        )
    return path


def list_splits(path: str | Path) -> list[str]:
    """Names of the split groups of an HDF5 file."""
    with _open(path) as f:
        return [k for k in f if isinstance(f[k], h5py.Group)]


def read_h5(path: str | Path, split: str | None = None, equation: str | None = None) -> PDEData:
    """Read one split (default: ``train`` if present, else the only split) as :class:`PDEData`.

    Works for our layout and for LPSDA-style files (``pde_{nt}-{nx}``). ``equation`` overrides the name
    found in the attributes or guessed from the file name. A missing dataset raises :class:`SelfsupError`
    naming it; NaN/Inf values raise :class:`~selfsup.errors.NonFiniteError`.
    """
    path = Path(path)
    with _open(path) as f:
        splits = [k for k in f if isinstance(f[k], h5py.Group)]
        if split is None:
            if "train" in splits or len(splits) != 1:
                split = "train"
            else:
                split = splits[0]
        if split not in f:
            raise SelfsupError(f"{path} has no split '{split}'; available: {', '.join(splits) or 'none'}")
        g = f[split]
        name = equation or g.attrs.get("equation") or f.attrs.get("equation") or _guess_equation(path)
        u_key = "u" if "u" in g else next((k for k in g if re.fullmatch(r"pde_\d+-\d+", k)), None)
        if u_key is None:
            raise SelfsupError(
                f"{path}:{split} has no field dataset: expected 'u' (selfsup) or 'pde_{{nt}}-{{nx}}'"
                f" (LPSDA); found {', '.join(g) or 'nothing'}"
            )
        u = torch.from_numpy(np.asarray(g[u_key][()]))
        if u.dim() != 3:
            raise ShapeError(f"{path}:{split}/{u_key} must be (n, nt, nx), got shape {tuple(u.shape)}")
        n, nt, nx = u.shape
        grids = {}
        for key, shape in zip(_GRIDS, ((n, nx), (n, nt), (n,), (n,)), strict=True):
            if key not in g:
                raise SelfsupError(f"{path}:{split} is missing the dataset '{key}' (needed with '{u_key}')")
            grids[key] = _broadcast(np.asarray(g[key][()], dtype=np.float64), shape, f"{path}:{split}/{key}")
        coeffs = {}
        if "coeffs" in g:
            coeffs = {
                k: torch.from_numpy(np.asarray(v[()], dtype=np.float64)) for k, v in g["coeffs"].items()
            }
        else:
            for k, v in g.items():
                if k not in _GRIDS and k != u_key and isinstance(v, h5py.Dataset) and v.shape == (n,):
                    coeffs[k] = torch.from_numpy(np.asarray(v[()], dtype=np.float64))
        params = json.loads(g.attrs["params"]) if "params" in g.attrs else {"source": "lpsda"}
    data = PDEData(str(name), u, grids["x"], grids["t"], grids["dx"], grids["dt"], coeffs, params)
    return data.check_finite(f"{path}:{split}")


def _open(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise SelfsupError(f"no such HDF5 file: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise SelfsupError(f"cannot read {path} as HDF5: {err}") from None


def _broadcast(a: np.ndarray, shape: tuple[int, ...], where: str) -> torch.Tensor:
    """Per-trajectory array of ``shape`` from a per-trajectory, shared 1-D or scalar dataset."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    try:
        return t.expand(shape).clone() if tuple(t.shape) != shape else t
    except RuntimeError:
        raise ShapeError(f"{where} has shape {tuple(t.shape)}, which does not broadcast to {shape}") from None


def _guess_equation(path: Path) -> str:
    tokens = re.split(r"[^a-z0-9]+", path.stem.lower())
    return next((t for t in tokens if t in EQUATIONS), "unknown")
