"""The method table: the built-in recipes of each kind's module, then the ``selfsup.methods`` entry points
(:mod:`selfsup.plugins`: an entry point names a :class:`MethodRecipe`)."""

from __future__ import annotations

import inspect

import torch

from selfsup.errors import ConfigError, SelfsupError, unknown_name
from selfsup.methods import classify, distill, lejepa, pairwise, sie
from selfsup.methods.kind import MethodRecipe
from selfsup.options import check_options
from selfsup.plugins import load_plugin, plugin_names

METHODS: dict[str, MethodRecipe] = {
    r.name: r for module in (pairwise, distill, classify, lejepa, sie) for r in module.RECIPES
}

#: Run-level label-free numbers the built-in methods record on the monitor subset (``metrics.jsonl``,
#: ``summary.json``) besides the per-layer quality metrics; a sweep may optimise them
#: (``objective: {metric: lejepa_loss}``).
RUN_METRICS = tuple(dict.fromkeys(name for r in METHODS.values() for name in r.run_metrics))


def get_method(name: str) -> MethodRecipe:
    """A built-in recipe or one declared in the ``selfsup.methods`` entry points."""
    recipe = METHODS.get(name) or load_plugin("selfsup.methods", name)
    if recipe is None:
        raise unknown_name("method", name, [*METHODS, *plugin_names("selfsup.methods")])
    if not isinstance(recipe, MethodRecipe) or recipe.name != name:
        raise ConfigError(
            f"the 'selfsup.methods' entry point '{name}' must name a MethodRecipe called '{name}', "
            f"got {recipe!r:.80}"
        )
    return recipe


def methods_recording(metric: str) -> list[str]:
    """The built-in methods that record the run metric ``metric``."""
    return [name for name, r in METHODS.items() if metric in r.run_metrics]


def check_method_params(recipe: MethodRecipe, params: dict) -> None:
    """``method.params`` must be keyword options of the recipe's criterion, with values of the right type."""
    fn = recipe.criterion
    params_ = inspect.signature(fn).parameters.values()
    inputs = [p.name for p in params_ if p.default is inspect.Parameter.empty]  # the tensors
    check_options(f"method '{recipe.name}'", params, fn, skip=(*inputs, "gather_distributed", "seed"))
    gen = torch.Generator().manual_seed(0)  # not the global RNG: checking must not change a run's randomness
    try:  # the criterion checks its own ranges (lambd in [0, 1], n_slices >= 1 ...): once, on a dummy batch
        fn(*recipe.kind.dummy_inputs(gen), **params)
    except SelfsupError as err:
        raise ConfigError(f"method '{recipe.name}': {err}") from None
