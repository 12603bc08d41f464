"""Methods: a recipe (name, criterion, head sizes, the paper's defaults) of one kind, and the model that
turns a recipe and a backbone into a loss.

====================  ===========================================================  ==================
module                kind of method                                               recipes
====================  ===========================================================  ==================
:mod:`.pairwise`      a criterion of two projected views                           simclr, vicreg ...
:mod:`.distill`       a predictor regresses a stop-gradient target projection      byol, simsiam
:mod:`.moco`          InfoNCE against a queue, a momentum encoder or neighbours    mocov2, mocov3, nnclr
:mod:`.dino`          a student matches a centred, sharpened EMA teacher           dino
:mod:`.swav`          swapped prediction of Sinkhorn-Knopp prototype assignments   swav
:mod:`.classify`      a linear classifier of every view                            diet, supervised
:mod:`.lejepa`        prediction of the global views + SIGReg                      lejepa
:mod:`.sie`           a predictor of the transformation between the views          sie, sie-nosplit
====================  ===========================================================  ==================

A new method of an existing kind is one more :class:`MethodRecipe`; a new kind subclasses
:class:`MethodKind` (``loss`` and whatever heads it needs). Either is added in its kind's module, or from
another installed package through the ``selfsup.methods`` entry points (:mod:`selfsup.plugins`)::

    [project.entry-points."selfsup.methods"]
    my-method = "my_package.methods:MY_RECIPE"
"""

from selfsup.methods.ema import ema_momentum
from selfsup.methods.kind import HeadOptions, MethodKind, MethodRecipe
from selfsup.methods.model import SSLModel, resolve_layer
from selfsup.methods.registry import (
    METHODS,
    RUN_METRICS,
    check_method_params,
    get_method,
    methods_recording,
)

__all__ = [
    "METHODS",
    "RUN_METRICS",
    "HeadOptions",
    "MethodKind",
    "MethodRecipe",
    "SSLModel",
    "check_method_params",
    "ema_momentum",
    "get_method",
    "methods_recording",
    "resolve_layer",
]
