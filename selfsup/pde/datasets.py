"""PDE trajectories as datasets: ``pde:PATH.h5`` and ``pde-gen:EQUATION[,key=value...]``.

Plugged into :mod:`selfsup.data` through the ``selfsup.datasets`` entry points (:mod:`selfsup.plugins`):

* ``pde:PATH.h5`` (:data:`PDE_FILE`): an HDF5 file of :mod:`selfsup.pde.io`: split ``train`` -> train,
  ``test`` or else ``valid`` -> test;
* ``pde-gen:EQUATION[,key=value...]`` (:data:`PDE_GENERATED`): a small set generated on the fly and cached
  under ``$SELFSUP_CACHE/pde``; keys ``n_train`` (512), ``n_test`` (128), ``data_seed`` (0) and any
  generator parameter of :func:`selfsup.pde.generate`, e.g. ``pde-gen:burgers,n_train=256,nx=128,keep=64``.

**Sample layout.** A trajectory is stored as a ``(3, nt, nx)`` float32 sample: channel 0 is the field ``u``,
channels 1 and 2 are its coordinates ``t = j dt`` and ``x = i dx`` (from the first stored point), as the
public SSL code feeds its Navier-Stokes fields with their coordinates as channels. The views
(:mod:`selfsup.pde.views`) read ``dt / dx`` from them for the Galilean boost (a row ``i`` steps after the
window start is shifted by ``c * i * dt / dx`` grid points) and rescale them with the KdV/Burgers scaling;
KdV and KS draw ``L`` and ``T`` per trajectory, so one per-dataset grid would make the boost only
approximately a symmetry. The ``pde2d`` encoder (:mod:`selfsup.pde.encoder`) reads only channel 0 by default
(``fields=1``, grid-blind); ``fields=3`` gives it the coordinates too.

``DataSplits.info`` holds ``equation``, per split ``coeffs`` (name -> ``(n,)`` float64, e.g. ``L``, ``T``,
``nu``), ``dx``, ``dt``, and ``default_views``/``view_args`` (``pde`` with the equation), which
:func:`selfsup.train.build` uses when ``data.views`` is not set. ``y`` is ``None`` (no classes).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from selfsup.data import ArrayDataset, DatasetEntry, DataSplits, cache_dir
from selfsup.errors import ConfigError, SelfsupError, ShapeError
from selfsup.pde.data import PDEData
from selfsup.pde.equations import get_equation
from selfsup.pde.generate import parse_options

__all__ = ["PDE_FILE", "PDE_GENERATED", "load_pde_file", "load_pde_generated", "pde_splits", "to_samples"]


def to_samples(data: PDEData, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(n, 3, nt, nx)``: the field and its coordinates ``t = j dt``, ``x = i dx`` per trajectory."""
    j = torch.arange(data.nt, dtype=torch.float64)
    i = torch.arange(data.nx, dtype=torch.float64)
    t = (data.dt.double()[:, None, None] * j[:, None]).expand(data.n, data.nt, data.nx)
    x = (data.dx.double()[:, None, None] * i).expand(data.n, data.nt, data.nx)
    return torch.stack([data.u.double(), t, x], dim=1).to(dtype).contiguous()


def pde_splits(name: str, train: PDEData, test: PDEData | None, source: str) -> DataSplits:
    """Wrap PDE trajectories as :class:`DataSplits` (unlabelled; coefficients and grids in ``info``)."""
    if test is not None and (test.nt, test.nx) != (train.nt, train.nx):
        raise ShapeError(
            f"{source}: test trajectories are {test.nt} x {test.nx}, train ones {train.nt} x {train.nx}"
        )
    parts = {"train": train} if test is None else {"train": train, "test": test}
    info: dict[str, Any] = {
        "source": source,
        "equation": train.equation,
        "coeffs": {s: {k: v.to(torch.float64).cpu() for k, v in d.coeffs.items()} for s, d in parts.items()},
        "dx": {s: d.dx.cpu() for s, d in parts.items()},
        "dt": {s: d.dt.cpu() for s, d in parts.items()},
        "params": train.params,
        "channels": ["u", "t", "x"],
        "default_views": "pde",
        "view_args": {"equation": train.equation},
    }
    return DataSplits(
        name=name,
        modality="image",
        train=ArrayDataset(to_samples(train)),
        test=ArrayDataset(to_samples(test)) if test is not None else None,
        num_classes=None,
        sample_shape=(3, train.nt, train.nx),
        info=info,
    )


def load_pde_file(path: str, seed: int = 0) -> DataSplits:
    """``pde:PATH``: split ``train`` -> train, ``test`` (else ``valid``) -> test (``seed`` is unused)."""
    from selfsup.pde.io import list_splits, read_h5

    p = Path(path).expanduser()
    if not p.is_file():
        raise SelfsupError(f"pde dataset: no such HDF5 file: {p}")
    splits = list_splits(p)
    if "train" not in splits:
        raise SelfsupError(f"pde dataset {p} has no 'train' split; it has: {', '.join(splits) or 'none'}")
    test_name = "test" if "test" in splits else "valid" if "valid" in splits else None
    train = read_h5(p, "train")
    test = read_h5(p, test_name) if test_name else None
    return pde_splits(f"pde:{p.name}", train, test, str(p))


def _parse_gen_spec(spec: str) -> tuple[str, dict[str, Any]]:
    equation, *items = [s.strip() for s in spec.split(",")]
    usage = "pde-gen: options are key=value after the equation, e.g. 'pde-gen:burgers,n_train=256'"
    return equation, parse_options(items, usage)


def load_pde_generated(spec: str, seed: int = 0) -> DataSplits:
    """``pde-gen:EQUATION[,key=value...]``: generate (once, then from the cache) train and test trajectories.

    ``n_train`` (default 512) and ``n_test`` (128) trajectories, seeds ``data_seed`` and ``data_seed + 1``
    (the data does not depend on the training seed); other keys override the generator's defaults.
    """
    from selfsup.pde.generate import generate
    from selfsup.pde.io import read_h5, write_h5

    equation, options = _parse_gen_spec(spec)
    eq = get_equation(equation)  # unknown equation -> ConfigError with suggestions
    n_train = int(options.pop("n_train", 512))
    n_test = int(options.pop("n_test", 128))
    data_seed = int(options.pop("data_seed", 0))
    if n_train < 1 or n_test < 0:
        raise ConfigError(f"pde-gen: n_train must be >= 1 and n_test >= 0, got {n_train}, {n_test}")
    params = eq.resolve(options)  # validates the generator parameters
    key = json.dumps(  # "v": the cache format; 2: KdV and KS files also record u0_k1 and u0_k2
        {
            "eq": eq.name,
            "params": params,
            "n": [n_train, n_test],
            "seed": data_seed,
            "dtype": "float32",
            "v": 2,
        },
        sort_keys=True,
        default=str,
    )
    path = cache_dir() / "pde" / f"{eq.name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.h5"
    if not path.is_file():  # solved in float64, stored in float32 (what training reads)
        gen = dict(options, threads=1, dtype=torch.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            write_h5(tmp, generate(eq.name, n_train, seed=data_seed, **gen), "train")
            if n_test:
                write_h5(tmp, generate(eq.name, n_test, seed=data_seed + 1, **gen), "test")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    train = read_h5(path, "train")
    test = read_h5(path, "test") if n_test else None
    return pde_splits(f"pde-gen:{spec}", train, test, str(path))


PDE_FILE = DatasetEntry(
    "pde",
    load_pde_file,
    "image",
    "pde:PATH.h5 - PDE trajectories written by 'selfsup pde generate' (or LPSDA files); train split -> "
    "train, test/valid -> test; samples (3, nt, nx): field, t and x coordinates; coefficients in info.",
    prefix=True,
    default_views="pde",
)
PDE_GENERATED = DatasetEntry(
    "pde-gen",
    load_pde_generated,
    "image",
    "pde-gen:EQUATION[,n_train=512,n_test=128,data_seed=0,GENERATOR_KEY=VALUE...] - kdv, ks, heat or "
    "burgers generated locally and cached; samples (3, nt, nx) as for pde:PATH.",
    prefix=True,
    default_views="pde",
)
