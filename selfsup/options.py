"""One checker for options given by name: ``method.params``, ``model.backbone_args``, ``data.view_args``
and dataset options all end up as keyword arguments of a function or class, so they are checked against
its signature: an unknown name fails with a did-you-mean hint and the list of valid options, a value of
the wrong type fails with the expected type (checked with pydantic against the annotation).

>>> check_options("backbone 'conv1d'", {"widht": 32}, Conv1dResNet, skip=("sample_shape",))
ConfigError: backbone 'conv1d' has no option 'widht'. Did you mean 'width'? Options: width, blocks, ...
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import typing
from collections.abc import Callable, Iterable
from typing import Any

from selfsup.errors import ConfigError, SelfsupError, did_you_mean

__all__ = ["accepted_options", "check_options", "int_at_least", "number_in"]


def accepted_options(target: Callable, skip: Iterable[str] = ()) -> dict[str, inspect.Parameter]:
    """Keyword parameters of ``target`` (a function or a class), without ``self``, ``*args``,
    ``**kwargs`` and the names in ``skip``."""
    skip = {"self", *skip}
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    params = inspect.signature(target).parameters.values()
    return {p.name: p for p in params if p.name not in skip and p.kind not in variadic}


def check_options(what: str, given: dict[str, Any], target: Callable, skip: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` unless every key of ``given`` is a keyword option of ``target`` whose
    annotation accepts the value (pydantic's lax mode: ``"2"`` is a valid int, ``"abc"`` is not).

    ``what`` names the thing in the message, e.g. ``"method 'vicreg'"``.
    """
    accepted = accepted_options(target, skip)
    hints = _type_hints(target)
    for key, value in given.items():
        if key not in accepted:
            valid = ", ".join(accepted) or "none"
            raise ConfigError(f"{what} has no option '{key}'.{did_you_mean(key, accepted)} Options: {valid}.")
        ann = hints.get(key)
        if ann is None:
            continue
        problem = _type_problem(ann, value)
        if problem:
            raise ConfigError(f"{what}: option '{key}' {problem} (got {value!r})")


def _type_hints(target: Callable) -> dict[str, Any]:
    fn = target.__init__ if inspect.isclass(target) else target
    fn = inspect.unwrap(fn)
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - an annotation we cannot evaluate is simply not type-checked
        return {}


def _type_problem(annotation: Any, value: Any) -> str | None:
    adapter = _adapter(annotation)
    if adapter is None:
        return None
    from pydantic import ValidationError

    try:
        adapter.validate_python(value)
    except ValidationError as err:
        return f"must be {_type_name(annotation)}: {err.errors()[0]['msg']}"
    return None


def _adapter(annotation: Any):
    try:
        return _cached_adapter(annotation)
    except TypeError:  # an unhashable annotation
        return _make_adapter(annotation)


@functools.lru_cache(maxsize=256)
def _cached_adapter(annotation: Any):
    return _make_adapter(annotation)


def _make_adapter(annotation: Any):
    from pydantic import ConfigDict, TypeAdapter

    try:
        return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # noqa: BLE001 - e.g. a torch type in a union: no check for that option
        return None


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def int_at_least(name: str, value: object, low: int) -> int:
    """``value`` as an int, or :class:`SelfsupError` unless it is an integer (not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise SelfsupError(f"{name} must be an integer >= {low}; got {value!r}.")
    return int(value)


def number_in(name: str, value: object, low: float, high: float = math.inf) -> float:
    """``value`` as a float, or :class:`SelfsupError` unless it is a real number (not a bool) in
    [``low``, ``high``]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
        where = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
        raise SelfsupError(f"{name} must be a number {where}; got {value!r}.")
    return float(value)
