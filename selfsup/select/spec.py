"""The sweep file: schema, validation against :class:`RunConfig`, and the run config of each trial.

A sweep YAML (see ``configs/sweeps/``)::

    name: vicreg-cov-mnist1d          # sweep directory: <out_dir>/<name>; default: the file's stem
    out_dir: sweeps
    base:                             # a run config: a preset path and/or inline sections (inline wins)
      preset: configs/vicreg-mnist1d.yaml
      train: {epochs: 15}
    overrides: [optim.lr=1e-3]        # dotted overrides applied on top of base
    space:                            # any dotted RunConfig key, method.params.* included
      method.params.cov_coeff: {type: grid, values: [0.01, 0.1, 1, 10], log: true}
      optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}   # random / tpe only
    sampler: grid                     # grid | random | tpe
    n_trials: 4                       # grid: default and maximum = the grid size
    workers: 2                        # worker processes on this machine
    storage: null                     # default sqlite:///<sweep dir>/study.db; or postgresql://...
    objective: rankme                 # or {metric: rankme, layer: backbone | projector | <layer name>}
    direction: maximize
    selection: {rule: highest}        # or {rule: threshold, tol: 0.01, prefer: min, key: ...}, or a named
                                      # rule (selfsup.select.rules); none: loss-rankme on RankMe, else highest

Everything is validated before a trial starts: unknown top-level or space keys fail with a did-you-mean
hint, and every combination of grid values (and ends of ranges) must make a valid run config (which checks
``method.params.*`` against the method's criterion, as ``selfsup train`` does).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from selfsup import config as C
from selfsup.errors import ConfigError, did_you_mean

#: Keys the sweep manages itself (each trial's run directory).
MANAGED_KEYS = ("train.out_dir", "train.name")
#: Fields of RunConfig whose value is a free-form dict: keys below them are not checked against a schema.
DICT_FIELDS = ("method.params", "model.backbone_args", "data.view_args")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamSpec(_Strict):
    """One swept key: a grid / categorical list of values, or a float / int range."""

    type: Literal["grid", "float", "int", "categorical"]
    values: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    log: bool | None = None  # ranges: sample on a log scale; grids: log x axis in the report (auto if None)
    step: float | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.type in ("grid", "categorical"):
            if not self.values:
                raise ValueError(f"type '{self.type}' needs a non-empty 'values' list")
            if self.low is not None or self.high is not None or self.step is not None:
                raise ValueError(f"type '{self.type}' takes 'values', not low/high/step")
            for v in self.values:
                if v is not None and not isinstance(v, (bool, int, float, str)):
                    raise ValueError(
                        f"values must be numbers, strings, booleans or null (got {v!r}); "
                        "write a dict value as a YAML string"
                    )
            if len({json.dumps(v) for v in self.values}) != len(self.values):
                raise ValueError(f"values contain duplicates: {self.values}")
        else:
            if self.values is not None:
                raise ValueError(f"type '{self.type}' takes low/high, not 'values'")
            if self.low is None or self.high is None:
                raise ValueError(f"type '{self.type}' needs 'low' and 'high'")
            if not self.low < self.high:
                raise ValueError(f"low ({self.low}) must be smaller than high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError(f"a log range needs low > 0 (got {self.low})")
            if self.log and self.step is not None:
                raise ValueError("'step' cannot be combined with log: true")
            if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
                raise ValueError(f"type 'int' needs integer low/high (got {self.low}, {self.high})")
        return self

    def candidates(self) -> list[Any]:
        """Values that every trial config may take at the extremes (used to validate before starting)."""
        if self.values is not None:
            return list(self.values)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


class Objective(_Strict):
    metric: str = "rankme"
    layer: str = "backbone"  # "backbone" (its output), "projector" (its output) or any named layer


class Selection(_Strict):
    # highest | threshold | a rule of selfsup.select.rules (checked by summary.check_rule, which imports
    # them); None: the chosen rule (rules.CHOSEN_RULE) on the backbone's RankMe, highest on other objectives
    rule: str | None = None
    tol: float = Field(0.01, ge=0, lt=1)  # threshold rule: runs within tol * |best| of the best score
    prefer: Literal["min", "max"] = "min"  # threshold rule: smallest or largest value of `key`
    key: str | None = None  # threshold rule: the hyper-parameter; default: the only swept key
    exclude_unsafe: bool = True  # pick among runs without an unsafe-run flag (selfsup.select.flags)


class SweepSpec(_Strict):
    name: str | None = None
    out_dir: str = "sweeps"
    base: dict[str, Any] | str | None = None
    overrides: list[str] = Field(default_factory=list)
    space: dict[str, ParamSpec]
    sampler: Literal["grid", "random", "tpe"] = "grid"
    n_trials: int | None = Field(None, ge=1)
    workers: int = Field(1, ge=1)
    threads: int | None = Field(None, ge=1)  # torch threads per worker; default cpu_count // workers
    storage: str | None = None
    objective: Objective | str = Field(default_factory=Objective)
    direction: Literal["maximize", "minimize"] = "maximize"
    seed: int = 0
    heartbeat_interval: int = Field(10, ge=1)  # seconds between a running trial's heartbeats
    grace_period: int = Field(60, ge=2)  # a running trial silent this long is stale (its worker died)
    selection: Selection = Field(default_factory=Selection)


_TOP_KEYS = list(SweepSpec.model_fields)


def _explain(err: ValidationError, where: str) -> ConfigError:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc)
        if e["type"] == "extra_forbidden" and len(loc) == 1:
            lines.append(
                f"unknown sweep key '{key}'.{did_you_mean(key, _TOP_KEYS)} "
                f"Valid keys: {', '.join(_TOP_KEYS)}."
            )
        elif e["type"] == "extra_forbidden" and loc[0] == "space":
            lines.append(
                f"space entry '{loc[1]}': unknown field '{loc[-1]}'."
                f"{did_you_mean(loc[-1], ParamSpec.model_fields)} "
                "Valid: type, values, low, high, log, step."
            )
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = f" (got {e.get('input')!r})" if e["type"] != "value_error" else ""
            lines.append(f"'{key}': {msg}{got}")
    return ConfigError(f"invalid sweep file {where}:\n  " + "\n  ".join(lines))


def _field_annotation(key: str) -> Any:
    """The annotation of a dotted RunConfig key, or None below a dict field."""
    section, _, name = key.partition(".")
    sec = C.RunConfig.model_fields.get(section)
    if sec is None or "." in name:
        return None
    field = sec.annotation.model_fields.get(name)
    return field.annotation if field is not None else None


def _coerce(key: str, value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string: make it a float unless the key is a string field."""
    if C.is_number_string(value):
        ann = _field_annotation(key)
        if ann is None or str not in getattr(ann, "__args__", (ann,)):
            return float(value)
    return value


def check_key(key: str) -> None:
    """A swept key must name a RunConfig field (or a key below a dict field such as ``method.params``)."""
    valid = C._valid_keys(C.RunConfig)
    if key in MANAGED_KEYS:
        raise ConfigError(f"space key '{key}' cannot be swept: the sweep sets it (trial run directories)")
    if key in valid and key not in DICT_FIELDS:
        return
    if any(key.startswith(d + ".") and len(key) > len(d) + 1 for d in DICT_FIELDS):
        return
    if key in DICT_FIELDS:
        raise ConfigError(f"space key '{key}' is a whole dict; sweep one entry of it, e.g. '{key}.NAME'")
    hint = did_you_mean(key, valid + [d + ".NAME" for d in DICT_FIELDS])
    below = ", ".join(d + ".NAME" for d in DICT_FIELDS)
    raise ConfigError(
        f"unknown config key '{key}' in the sweep space.{hint} "
        f"Sweepable keys: any of {', '.join(valid)}, or {below}."
    )


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Sweep:
    """A loaded, validated sweep: the spec, the resolved base run config and where everything lives."""

    def __init__(self, spec: SweepSpec, base: dict[str, Any], sweep_dir: Path, source: str):
        self.spec = spec
        self.base = base  # resolved run config as a nested dict (overrides applied)
        self.sweep_dir = Path(sweep_dir)
        self.source = source
        self.objective = (
            spec.objective
            if isinstance(spec.objective, Objective)
            else Objective(**_parse_objective(spec.objective))
        )
        self.keys = list(spec.space)
        self._grid = None

    # --- where ----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The study's name in the storage: the sweep's ``name`` (default: its directory's name)."""
        return self.spec.name or self.sweep_dir.name

    @property
    def storage_url(self) -> str:
        return self.spec.storage or f"sqlite:///{(self.sweep_dir / 'study.db').resolve()}"

    @property
    def trials_dir(self) -> Path:
        return self.sweep_dir / "trials"

    # --- what -----------------------------------------------------------------------------------
    def grid(self) -> list[dict[str, Any]]:
        """Grid points in sweep order: the product of the values, first key outermost (YAML order)."""
        if self._grid is None:
            values = [self.spec.space[k].values or [] for k in self.keys]
            self._grid = [dict(zip(self.keys, combo, strict=True)) for combo in itertools.product(*values)]
        return self._grid

    @property
    def n_trials(self) -> int:
        if self.spec.sampler == "grid":
            return self.spec.n_trials or len(self.grid())
        return int(self.spec.n_trials)

    def trial_config(self, params: dict[str, Any], name: str) -> C.RunConfig:
        data = json.loads(json.dumps(self.base))
        for key, value in params.items():
            C.set_dotted(data, key, value)
        data.setdefault("train", {})
        data["train"]["out_dir"] = str(self.trials_dir)
        data["train"]["name"] = name
        # the trackers (train.loggers) keep every trial as a run of one experiment named after the sweep
        data["train"].setdefault("experiment", self.name)
        data["train"].setdefault("tracking_dir", str(self.sweep_dir))
        return C.from_dict(data)

    def fingerprint(self) -> dict[str, Any]:
        """What must be identical for two invocations to share one study (n_trials and workers may differ)."""
        return {
            "base": self.base,
            "space": {k: v.model_dump(mode="json") for k, v in self.spec.space.items()},
            "sampler": self.spec.sampler,
            "objective": self.objective.model_dump(),
            "direction": self.spec.direction,
            "seed": self.spec.seed,
        }

    def fingerprint_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.fingerprint(), sort_keys=True).encode()).hexdigest()[:16]

    def resolved_dict(self) -> dict[str, Any]:
        """The spec with its base inlined: ``selfsup sweep --config DIR/sweep.yaml`` reruns the same sweep."""
        d = self.spec.model_dump(mode="json", exclude_none=True)
        d["name"] = self.name
        d["base"] = self.base
        d["overrides"] = []
        d["objective"] = self.objective.model_dump()
        d["n_trials"] = self.n_trials
        if self.spec.storage is None:
            d.pop("storage", None)
        return d


def _parse_objective(text: str) -> dict[str, str]:
    if "/" in text:
        layer, metric = text.split("/", 1)
        return {"metric": metric, "layer": layer}
    return {"metric": text}


def _load_base(base: dict | str | None, here: Path) -> dict[str, Any]:
    if base is None:
        return {}
    if isinstance(base, str):
        base = {"preset": base}
    base = dict(base)
    preset = base.pop("preset", None)
    data: dict[str, Any] = {}
    if preset is not None:
        candidates = [here / preset, Path(preset)] if not Path(preset).is_absolute() else [Path(preset)]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            looked = ", ".join(map(str, candidates))
            raise ConfigError(f"base preset '{preset}' not found (looked in {looked})")
        data = C.load_yaml(path)
    return _deep_merge(data, base)


def load_sweep(
    path: str | Path | None = None,
    *,
    data: dict | None = None,
    sweep_dir: str | Path | None = None,
    storage: str | None = None,
    workers: int | None = None,
) -> Sweep:
    """Read and validate a sweep file (or a dict); nothing is created on disk."""
    if data is None:
        path = Path(path)
        path = path / "sweep.yaml" if path.is_dir() else path
        data = C.load_yaml(
            path,
            "sweep file",
            "sweep.yaml",
            "pass a sweep YAML (see configs/sweeps/)",
            "(base, space, sampler ...)",
        )
        where, here = f"'{path}'", path.parent
    else:
        where, here = "(dict)", Path.cwd()
    if not isinstance(data, dict):
        raise ConfigError(f"sweep file {where} must hold a mapping (base, space, sampler ...)")
    if not data.get("space"):
        raise ConfigError(
            f"sweep file {where} has an empty search space: add at least one entry under "
            "'space:', e.g. 'optim.lr: {type: grid, values: [1.0e-4, 1.0e-3]}'"
        )
    if storage is not None:
        data = {**data, "storage": storage}
    if workers is not None:
        data = {**data, "workers": workers}
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as err:
        raise _explain(err, where) from None
    for key, p in spec.space.items():  # YAML 1.1 number strings -> floats where the field is not a string
        if p.values is not None:
            p.values = [_coerce(key, v) for v in p.values]

    base = C.apply_overrides(_load_base(spec.base, here), list(spec.overrides))
    C.from_dict(base)  # the base alone must be a valid run config
    name = spec.name
    if name is None and path is not None and Path(path).name != "sweep.yaml":
        name = Path(path).stem
    in_own_dir = path is not None and Path(path).name == "sweep.yaml" and name == Path(path).parent.name
    if sweep_dir is None and in_own_dir:
        sweep_dir = Path(path).parent  # the resolved copy inside its own sweep directory
    if sweep_dir is None:
        if not name:
            raise ConfigError(f"sweep file {where} needs a 'name' (the sweep directory is <out_dir>/<name>)")
        sweep_dir = Path(spec.out_dir) / name
    sweep = Sweep(spec, base, Path(sweep_dir), where)
    validate(sweep)
    return sweep


def validate(sweep: Sweep) -> None:
    spec = sweep.spec
    keys = sweep.keys
    for key in keys:
        check_key(key)
    for a, b in itertools.permutations(keys, 2):
        if b.startswith(a + "."):
            raise ConfigError(f"space keys '{a}' and '{b}' overlap; sweep one of them")
    if spec.sampler == "grid":
        ranges = [k for k in keys if spec.space[k].values is None]
        if ranges:
            raise ConfigError(
                f"sampler 'grid' needs a list of values for every key; {', '.join(ranges)} "
                "has a low/high range: give 'values', or use sampler random or tpe"
            )
        if spec.n_trials is not None and spec.n_trials > len(sweep.grid()):
            raise ConfigError(
                f"n_trials={spec.n_trials} is larger than the grid ({len(sweep.grid())} "
                "points); leave n_trials out to run the whole grid once"
            )
    elif spec.n_trials is None:
        raise ConfigError(f"sampler '{spec.sampler}' needs n_trials (how many trials to finish)")

    _check_candidates(sweep)
    from selfsup.methods import RUN_METRICS
    from selfsup.quality import METRICS

    obj = sweep.objective
    known = [*METRICS, *RUN_METRICS]
    if obj.metric not in known:
        hint = did_you_mean(obj.metric, known)
        raise ConfigError(
            f"unknown objective metric '{obj.metric}'.{hint} Label-free metrics: {', '.join(known)}."
        )
    if obj.metric in RUN_METRICS and spec.direction != "minimize":
        raise ConfigError(f"objective {obj.metric} is a loss (lower is better): set direction: minimize")
    sel = spec.selection
    if sel.rule == "threshold":
        if sel.key is None and len(keys) != 1:
            raise ConfigError(
                "selection rule 'threshold' needs 'key' (which hyper-parameter to prefer "
                f"small or large) when the space has several keys: one of {', '.join(keys)}"
            )
        if sel.key is not None and sel.key not in keys:
            raise ConfigError(f"selection key '{sel.key}' is not swept.{did_you_mean(sel.key, keys)}")


def _check_candidates(sweep: Sweep) -> None:
    """Every combination of candidate values (grid values, both ends of ranges) must give a valid run config
    (:func:`selfsup.config.from_dict`, which also checks ``method.params`` against each method swept)."""
    keys = sweep.keys
    for combo in itertools.product(*(sweep.spec.space[k].candidates() for k in keys)):
        data = json.loads(json.dumps(sweep.base))
        for key, value in zip(keys, combo, strict=True):
            C.set_dotted(data, key, value)
        try:
            C.from_dict(data)
        except ConfigError as err:
            shown = ", ".join(f"{k} = {v!r}" for k, v in zip(keys, combo, strict=True))
            raise ConfigError(f"space {shown} gives an invalid run config: {err}") from None


def threads_per_worker(spec: SweepSpec) -> int:
    return spec.threads or max(1, (os.cpu_count() or 1) // spec.workers)


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


__all__ = [
    "Objective",
    "ParamSpec",
    "Selection",
    "Sweep",
    "SweepSpec",
    "check_key",
    "finite",
    "load_sweep",
    "threads_per_worker",
    "validate",
]
