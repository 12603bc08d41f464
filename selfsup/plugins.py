"""How datasets, view recipes, backbones and methods from elsewhere reach the registries: Python entry points.

The registries of :mod:`selfsup.data`, :mod:`selfsup.views`, :mod:`selfsup.models` and
:mod:`selfsup.methods` hold their built-in entries in a literal table and, when a name is not there, look it
up in one entry-point group:

=====================  ======================================================  ==========================
group                  an entry point names                                    example (``selfsup.pde``)
=====================  ======================================================  ==========================
``selfsup.datasets``   a :class:`selfsup.data.DatasetEntry`                    ``pde``, ``pde-gen``
``selfsup.views``      a :class:`selfsup.views.ViewRecipe`                     ``pde``
``selfsup.backbones``  a callable ``(sample_shape, **options) -> Backbone``    ``pde2d``
``selfsup.methods``    a :class:`selfsup.methods.MethodRecipe`                 (``tests/methods``)
=====================  ======================================================  ==========================

``selfsup.pde`` declares its own in ``pyproject.toml`` (``[project.entry-points."selfsup.backbones"]``
``pde2d = "selfsup.pde.encoder:PDE2dResNet"``), so ``data``, ``models`` and ``views`` never import it, and
every registry is complete in a fresh interpreter. Another installed package adds its own the same way;
nothing is registered as a side effect of importing a module. (Entry points are package metadata: the
package must be installed, ``pip install -e .`` for a checkout.)
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import Any

__all__ = ["load_plugin", "plugin_names"]


@functools.cache
def _group(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=group)}


def plugin_names(group: str) -> list[str]:
    """Names declared in an entry-point group (nothing is imported)."""
    return list(_group(group))


def load_plugin(group: str, name: str) -> Any | None:
    """The object a plug-in declares under ``name`` in ``group`` (importing its module), or None."""
    ep = _group(group).get(name)
    return None if ep is None else ep.load()
