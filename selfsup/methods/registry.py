"""The method table: the built-in recipes of each kind's module, then the ``selfsup.methods`` entry points
(:mod:`selfsup.plugins`: an entry point names a :class:`MethodRecipe`)."""

from __future__ import annotations

import inspect

import torch

from selfsup.errors import ConfigError, SelfsupError, did_you_mean, unknown_name
from selfsup.methods import classify, dino, distill, lejepa, masked, moco, pairwise, sie, swav
from selfsup.methods.kind import MethodRecipe
from selfsup.options import accepted_options, check_options
from selfsup.plugins import load_plugin, plugin_names

METHODS: dict[str, MethodRecipe] = {
    r.name: r
    for module in (pairwise, distill, moco, dino, swav, classify, lejepa, sie, masked)
    for r in module.RECIPES
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


def split_params(recipe: MethodRecipe, params: dict) -> tuple[dict, dict]:
    """``params`` as (the criterion's keyword options, the kind's options: queue sizes, momenta ...);
    a name that is neither's is a :class:`ConfigError` with a did-you-mean hint."""
    fn = recipe.criterion
    inputs = [
        p.name for p in inspect.signature(fn).parameters.values() if p.default is inspect.Parameter.empty
    ]
    of_criterion = accepted_options(fn, skip=(*inputs, "gather_distributed", "seed"))
    of_kind = accepted_options(recipe.kind.options)
    for key in params:
        if key not in of_criterion and key not in of_kind:
            names = [*of_criterion, *of_kind]
            raise ConfigError(
                f"method '{recipe.name}' has no option '{key}'.{did_you_mean(key, names)} "
                f"Options: {', '.join(names) or 'none'}."
            )
    return {k: v for k, v in params.items() if k in of_criterion}, {
        k: v for k, v in params.items() if k in of_kind
    }


def check_method_params(recipe: MethodRecipe, params: dict) -> tuple[dict, dict]:
    """``method.params`` must be keyword options of the recipe's criterion or of its kind, with values of
    the right type and in range; returns them split as :func:`split_params` does."""
    of_criterion, of_kind = split_params(recipe, params)
    where = f"method '{recipe.name}'"
    check_options(where, of_criterion, recipe.criterion)
    check_options(where, of_kind, recipe.kind.options)
    gen = torch.Generator().manual_seed(0)  # not the global RNG: checking must not change a run's randomness
    try:  # the criterion checks its own ranges (lambd in [0, 1], n_slices >= 1 ...): once, on a dummy batch
        recipe.criterion(*recipe.kind.dummy_inputs(gen), **of_criterion)
        recipe.kind.options(**of_kind)
    except SelfsupError as err:
        raise ConfigError(f"method '{recipe.name}': {err}") from None
    return of_criterion, of_kind
