"""PDE data with exact Lie point symmetries (Mialon, Garrido et al., NeurIPS 2023, arXiv 2307.05432).

* :func:`generate` -- batched pseudo-spectral solvers (ETDRK4 for KdV and KS, exact Fourier solutions for heat
  and, through Cole-Hopf, for viscous Burgers), seeded, CPU or GPU, returning :class:`PDEData`.
* :func:`symmetries` -- the Lie point symmetries of each equation as batched transforms.
* :func:`residual` -- per-trajectory relative PDE residual (checks that a transformed field is a solution).
* :func:`write_h5` / :func:`read_h5` -- HDF5 storage, also reading the public LPSDA layout.

For self-supervised learning, :mod:`selfsup.pde.datasets` (``pde:``/``pde-gen:`` datasets),
:mod:`selfsup.pde.views` (the ``pde`` view recipe) and :mod:`selfsup.pde.encoder` (the ``pde2d`` backbone)
plug into the library's registries through entry points (:mod:`selfsup.plugins`); importing this package
registers nothing. :mod:`selfsup.pde.downstream` measures a trained run on the two downstream tasks.
"""

from selfsup.pde.data import PDEData
from selfsup.pde.equations import EQUATIONS, Equation, get_equation
from selfsup.pde.generate import generate
from selfsup.pde.io import list_splits, read_h5, write_h5
from selfsup.pde.residual import residual
from selfsup.pde.symmetries import Symmetry, get_symmetry, symmetries

__all__ = [
    "EQUATIONS",
    "Equation",
    "PDEData",
    "Symmetry",
    "generate",
    "get_equation",
    "get_symmetry",
    "list_splits",
    "read_h5",
    "residual",
    "symmetries",
    "write_h5",
]
