"""Self-supervised learning on PDE trajectories (Mialon, Garrido et al., NeurIPS 2023, arXiv 2307.05432).

Importing this module registers three things with the library's registries:

* datasets ``pde:PATH.h5`` (an HDF5 file of :mod:`selfsup.pde.io`: split ``train`` -> train, ``test`` or else
  ``valid`` -> test) and ``pde-gen:EQUATION[,key=value...]`` (a small set generated on the fly and cached
  under ``$SELFSUP_CACHE/pde``; keys ``n_train`` (512), ``n_test`` (128), ``data_seed`` (0) and any
  generator parameter of :func:`selfsup.pde.generate`, e.g. ``pde-gen:burgers,n_train=256,nx=128,keep=64``);
* the view recipe ``pde`` (:class:`PDEViews`): random (t, x) crops and random Lie point symmetries per sample;
* the backbone ``pde2d`` (:class:`PDE2dResNet`): a small 2-D ResNet over the (t, x) field, circular in x.

**Sample layout.** A trajectory is stored as a ``(2, nt, nx)`` float32 sample: channel 0 is the field ``u``,
channel 1 is the constant ``dt / dx`` of that trajectory (the "grid channel"). The views need this ratio for
the Galilean boost (a row ``i`` steps after the window start is shifted by ``c * i * dt / dx`` grid points),
and the KdV/Burgers scaling updates it; KdV and KS draw ``L`` and ``T`` per trajectory, so one per-dataset
ratio would make the boost only approximately a symmetry. ``pde2d`` reads only channel 0 (``fields=1``),
so the encoder never sees the grid (which would leak the ``L``/``T`` regression targets). Other backbones
would see the grid channel: use ``pde2d`` with PDE data. A ``(1, nt, nx)`` sample (e.g. from ``arrays:``)
works with ``PDEViews(dt_dx=...)`` given explicitly.

``DataSplits.info`` holds ``equation``, per split ``coeffs`` (name -> ``(n,)`` float64, e.g. ``L``, ``T``,
``nu``), ``dx``, ``dt``, and ``default_views``/``view_args`` (``pde`` with the equation), which
:func:`selfsup.train.build` uses when ``data.views`` is not set. ``y`` is ``None`` (no classes).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data import ArrayDataset, DatasetEntry, DataSplits, cache_dir, register_dataset
from selfsup.errors import ConfigError, SelfsupError, ShapeError
from selfsup.models.backbones import (
    BACKBONES,
    Backbone,
    BasicBlock,
    _blocks_per_stage,
    _init_resnet,
    _positive_int,
)
from selfsup.pde.data import PDEData
from selfsup.pde.equations import get_equation
from selfsup.pde.symmetries import symmetries
from selfsup.views.recipes import register_view_recipe

__all__ = [
    "PDE2dResNet",
    "PDEViews",
    "load_pde_file",
    "load_pde_generated",
    "pde_splits",
    "to_samples",
]

# ------------------------------------------------------------------------------------------------ data


def to_samples(data: PDEData) -> torch.Tensor:
    """``(n, 2, nt, nx)`` float32: the field and the constant per-trajectory ``dt / dx`` channel."""
    ratio = (data.dt / data.dx).to(torch.float32)
    grid = ratio[:, None, None].expand(data.n, data.nt, data.nx)
    return torch.stack([data.u.to(torch.float32), grid], dim=1).contiguous()


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
        "grid_channel": "dt/dx",
        "default_views": "pde",
        "view_args": {"equation": train.equation},
    }
    return DataSplits(
        name=name,
        modality="image",
        train=ArrayDataset(to_samples(train)),
        test=ArrayDataset(to_samples(test)) if test is not None else None,
        num_classes=None,
        sample_shape=(2, train.nt, train.nx),
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
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"pde-gen: options are key=value after the equation, e.g. 'pde-gen:burgers,n_train=256', "
                f"got '{item}'"
            )
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip()] = tuple(value) if isinstance(value, list) else value
    return equation, options


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
    key = json.dumps(
        {"eq": eq.name, "params": params, "n": [n_train, n_test], "seed": data_seed, "dtype": "float32"},
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


register_dataset(
    DatasetEntry(
        "pde",
        load_pde_file,
        "image",
        "pde:PATH.h5 - PDE trajectories written by 'selfsup pde generate' (or LPSDA files); train split -> "
        "train, test/valid -> test; samples (2, nt, nx): field + dt/dx channel; coefficients in info.",
        prefix=True,
        default_views="pde",
    )
)
register_dataset(
    DatasetEntry(
        "pde-gen",
        load_pde_generated,
        "image",
        "pde-gen:EQUATION[,n_train=512,n_test=128,data_seed=0,GENERATOR_KEY=VALUE...] - kdv, ks, heat or "
        "burgers generated locally and cached; samples (2, nt, nx) as for pde:PATH.",
        prefix=True,
        default_views="pde",
    )
)

# ----------------------------------------------------------------------------------------------- views

# (x, t, u) exponents of the scaling symmetry per equation: x -> e^(a e) x, t -> e^(b e) t, u -> e^(c e) u
_SCALING = {"kdv": (1.0, 3.0, -2.0), "burgers": (1.0, 2.0, -1.0), "heat": (1.0, 2.0, 0.0)}
_SYMS = ("space", "boost", "scale", "add", "amplitude")


class PDEViews(nn.Module):
    """Random crops and Lie point symmetries of a batch of PDE samples ``(B, C, nt, nx)``, per sample.

    ``C`` is 2 (field + ``dt/dx`` grid channel, see the module docstring) or 1 (then ``dt_dx`` must be
    given when ``boost > 0``). Each sample gets, in this order:

    1. a random time window of ``crop[0]`` steps (time translation; start uniform in ``0..nt - crop[0]``);
    2. one Fourier shift per row on the full periodic grid: ``g * nx`` grid points (space translation,
       ``g ~ U(-space, space)``) plus ``c * i * dt / dx`` (Galilean boost, ``c ~ U(-boost, boost)``, ``i``
       the row index within the window; a boost about the window start differs from one about ``t = 0``
       by a space translation, also a symmetry), then ``u -> u + c``;
    3. scaling (KdV, Burgers, heat) ``e ~ U(-scale, scale)``: ``u -> e^(c e) u`` on the same grid indices,
       the grid channel multiplied by ``e^((b - a) e)`` (the new ``dt / dx``); heat also ``add`` (``u + g``)
       and ``amplitude`` (``e^g u``);
    4. a random window of ``crop[1]`` grid points in x.

    Steps 1-3 map exact solutions to exact solutions (checked with :func:`selfsup.pde.residual` in the
    tests); the x-crop makes the window non-periodic (``pde2d`` still pads circularly). The output is
    ``(B, C, crop[0], crop[1])``: the input shape when ``crop`` is ``None`` (the default: no cropping).
    Default strengths are the public ones of :func:`selfsup.pde.symmetries` (KdV space 1.0, boost 0.4,
    scale 0.1; KS space 1.0, boost 0.4); a strength for a symmetry the equation lacks raises ConfigError.
    """

    def __init__(
        self,
        sample_shape: Sequence[int],
        equation: str | None = None,
        crop: Sequence[int] | None = None,
        space: float | None = None,
        boost: float | None = None,
        scale: float | None = None,
        add: float | None = None,
        amplitude: float | None = None,
        dt_dx: float | None = None,
    ) -> None:
        super().__init__()
        shape = tuple(int(s) for s in sample_shape)
        if len(shape) != 3 or shape[0] not in (1, 2):
            raise ShapeError(
                f"view recipe 'pde' takes samples (C, nt, nx) with C = 2 (field + dt/dx channel) or 1, "
                f"got sample shape {shape}"
            )
        if equation is None:
            raise ConfigError(
                "view recipe 'pde' needs the equation: set data.view_args.equation (kdv, ks, heat, burgers)"
            )
        self.equation = get_equation(equation).name
        _, nt, nx = shape
        self.grid = shape[0] == 2
        crop = (nt, nx) if crop is None else tuple(int(c) for c in crop)
        if len(crop) != 2 or not (1 <= crop[0] <= nt and 1 <= crop[1] <= nx):
            raise ConfigError(
                f"pde views: crop must be (t, x) with 1 <= t <= {nt}, 1 <= x <= {nx}, got {crop}"
            )
        self.crop = crop
        table = symmetries(self.equation)
        given = {"space": space, "boost": boost, "scale": scale, "add": add, "amplitude": amplitude}
        self.strength: dict[str, float] = {}
        for name in _SYMS:
            s = given[name]
            if s is None:
                s = table[name].strength if name in table else 0.0
            s = float(s)
            if s < 0:
                raise ConfigError(f"pde views: strength '{name}' must be >= 0, got {s}")
            if s > 0 and name not in table:
                raise ConfigError(
                    f"pde views: '{self.equation}' has no '{name}' symmetry; "
                    f"its symmetries: {', '.join(table)}"
                )
            self.strength[name] = s
        if not self.grid and self.strength["boost"] > 0 and dt_dx is None:
            raise ConfigError(
                "pde views: samples without a dt/dx channel need dt_dx=... for the boost (or boost=0)"
            )
        self.dt_dx = None if dt_dx is None else float(dt_dx)

    def extra_repr(self) -> str:
        s = ", ".join(f"{k}={v:g}" for k, v in self.strength.items() if v)
        return f"equation={self.equation}, crop={self.crop}, {s}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != (2 if self.grid else 1):
            raise ShapeError(
                f"pde views expect a batch (B, {2 if self.grid else 1}, nt, nx), got {tuple(x.shape)}"
            )
        b, _, nt, nx = x.shape
        ct, cx = self.crop
        dev, dtype = x.device, x.dtype
        wdtype = torch.float64 if dtype == torch.float64 else torch.float32

        def uniform(s: float) -> torch.Tensor:
            return (2 * torch.rand(b, device=dev, dtype=wdtype) - 1) * s

        t0 = torch.randint(0, nt - ct + 1, (b,), device=dev)
        rows = t0[:, None] + torch.arange(ct, device=dev)
        u = torch.gather(x[:, 0], 1, rows[:, :, None].expand(b, ct, nx)).to(wdtype)
        ratio = (
            x[:, 1, 0, 0].to(wdtype)
            if self.grid
            else torch.full((b,), self.dt_dx or 0.0, dtype=wdtype, device=dev)
        )
        g, c = uniform(self.strength["space"]), uniform(self.strength["boost"])
        shift = g[:, None] * nx + c[:, None] * ratio[:, None] * torch.arange(ct, device=dev, dtype=wdtype)
        if self.strength["space"] or self.strength["boost"]:
            m = torch.arange(nx // 2 + 1, device=dev, dtype=wdtype)
            phase = torch.polar(
                torch.ones_like(shift[..., None] * m), -2 * math.pi / nx * shift[..., None] * m
            )
            u = torch.fft.irfft(torch.fft.rfft(u, dim=-1) * phase, n=nx, dim=-1)
        u = u + c[:, None, None]
        if self.strength["scale"]:
            a, bt, cu = _SCALING[self.equation]
            e = uniform(self.strength["scale"])
            u = u * torch.exp(cu * e)[:, None, None]
            ratio = ratio * torch.exp((bt - a) * e)
        if self.strength["add"]:
            u = u + uniform(self.strength["add"])[:, None, None]
        if self.strength["amplitude"]:
            u = u * torch.exp(uniform(self.strength["amplitude"]))[:, None, None]
        if cx < nx:
            x0 = torch.randint(0, nx - cx + 1, (b,), device=dev)
            cols = x0[:, None] + torch.arange(cx, device=dev)
            u = torch.gather(u, 2, cols[:, None, :].expand(b, ct, cx))
        out = u[:, None]
        if self.grid:
            out = torch.cat([out, ratio[:, None, None, None].expand(b, 1, ct, cx)], dim=1)
        return out.to(dtype)


@register_view_recipe("pde")
def pde_views(sample_shape: Sequence[int], view_index: int = 0, **overrides) -> PDEViews:
    """PDE trajectories: random (t, x) crops and random Lie point symmetries per sample (:class:`PDEViews`).

    Options: ``equation`` (required; filled in by the ``pde:``/``pde-gen:`` datasets), ``crop`` (t, x)
    (default: none), strengths ``space``, ``boost``, ``scale``, ``add``, ``amplitude`` (default: the public
    ones of the equation), ``dt_dx`` for samples without a grid channel. Symmetric in the views.
    """
    import inspect

    allowed = [
        p for p in inspect.signature(PDEViews.__init__).parameters if p not in ("self", "sample_shape")
    ]
    for key in overrides:
        if key not in allowed:
            from selfsup.errors import did_you_mean

            raise ConfigError(
                f"view recipe 'pde' has no option '{key}'.{did_you_mean(key, allowed)} "
                f"Options: {', '.join(allowed)}."
            )
    return PDEViews(sample_shape, **overrides)


# -------------------------------------------------------------------------------------------- backbone


class _CircConv2d(nn.Conv2d):
    """Conv2d over (t, x) with circular padding in x (periodic domain) and zero padding in t."""

    def __init__(self, in_ch: int, out_ch: int, k: int, stride: int = 1) -> None:
        super().__init__(in_ch, out_ch, k, stride=stride, padding=(k // 2, 0), bias=False)
        self.pad_x = k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_x:
            x = F.pad(x, (self.pad_x, self.pad_x, 0, 0), mode="circular")
        return super().forward(x)


class _Block(BasicBlock):
    """:class:`~selfsup.models.backbones.BasicBlock` with circular-in-x 3x3 convolutions."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(in_ch, out_ch, stride, dims=2, conv3=lambda i, o, s: _CircConv2d(i, o, 3, s))


class _Fields(nn.Module):
    def __init__(self, fields: int) -> None:
        super().__init__()
        self.fields = fields

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.fields]


class PDE2dResNet(Backbone):
    """Small 2-D ResNet over PDE fields ``B x C x nt x nx``, circular in x, for ``pde:``/``pde-gen:`` data.

    Only the first ``fields`` channels are read (the rest, e.g. the ``dt/dx`` grid channel, is ignored).
    Layers: ``stem`` (5x5 conv, stride ``stem_stride``, BN, ReLU), ``layer1`` (``width``), ``layer2``
    (``2*width``, stride 2), ``layer3`` (``4*width``, stride 2), ``pool`` (global average, ``out_dim =
    4*width``); any field size is accepted (crops at training, whole fields at evaluation).
    """

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        width: int = 16,
        blocks: int | Sequence[int] = 1,
        fields: int = 1,
        stem_stride: int = 2,
    ) -> None:
        shape = tuple(sample_shape)
        if len(shape) != 3:
            raise ShapeError(
                f"backbone 'pde2d' takes samples shaped (channels, nt, nx), got sample_shape={shape}"
            )
        width = _positive_int(width, "pde2d width")
        fields = _positive_int(fields, "pde2d fields")
        stem_stride = _positive_int(stem_stride, "pde2d stem_stride")
        if fields > shape[0]:
            raise ConfigError(f"pde2d: fields={fields} but samples have {shape[0]} channel(s)")
        n_blocks = _blocks_per_stage(blocks, 3, "pde2d")
        w = [width, 2 * width, 4 * width]
        stages: dict[str, nn.Module] = {
            "stem": nn.Sequential(
                _Fields(fields),
                _CircConv2d(fields, width, 5, stem_stride),
                nn.BatchNorm2d(width),
                nn.ReLU(True),
            ),
            "layer1": nn.Sequential(
                _Block(width, w[0]), *[_Block(w[0], w[0]) for _ in range(n_blocks[0] - 1)]
            ),
            "layer2": nn.Sequential(
                _Block(w[0], w[1], 2), *[_Block(w[1], w[1]) for _ in range(n_blocks[1] - 1)]
            ),
            "layer3": nn.Sequential(
                _Block(w[1], w[2], 2), *[_Block(w[2], w[2]) for _ in range(n_blocks[2] - 1)]
            ),
            "pool": nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)),
        }
        dims = {"stem": width, "layer1": w[0], "layer2": w[1], "layer3": w[2], "pool": w[2]}
        super().__init__(stages, dims, shape)
        _init_resnet(self)


BACKBONES["pde2d"] = PDE2dResNet
