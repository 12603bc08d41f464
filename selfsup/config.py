"""Run configuration: pydantic models, YAML load/save and dotted ``key=value`` overrides.

The defaults are the main job (VICReg on MNIST-1D with the conv1d backbone). Every section forbids
unknown keys, and a misspelt key fails with a did-you-mean hint. The resolved configuration is saved in
the run directory; ``selfsup train --config RUN_DIR/config.yaml`` reproduces the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from selfsup.errors import ConfigError, did_you_mean


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Section):
    dataset: str = "mnist1d"
    views: str | None = None  # view recipe; None -> the modality's default (signal / simclr / small-image)
    view_args: dict[str, Any] = Field(default_factory=dict)
    n_views: int = Field(2, ge=2)
    local_views: int = Field(0, ge=0)  # the last local_views of the n_views are local crops (LeJEPA)
    local_view_args: dict[str, Any] = Field(default_factory=dict)  # {} -> the recipe's local crop_scale
    monitor_size: int = Field(2048, ge=2)  # fixed seeded subset of train for label-free metrics
    load_args: dict[str, Any] = Field(default_factory=dict)  # loader options: image_size, mode, split...
    stream: bool | Literal["auto"] = "auto"  # auto: in memory up to max_memory_mb, streamed above
    max_memory_mb: float = Field(1024, gt=0)  # the auto rule's limit, in MiB of uint8 images
    workers: int | None = Field(None, ge=0)  # DataLoader processes decoding streamed samples; None: cores
    validation: int = Field(0, ge=0)  # > 0: that many training samples held out as the probes' test split


class ModelConfig(_Section):
    backbone: str = "conv1d"
    backbone_args: dict[str, Any] = Field(default_factory=dict)
    projector: str | None = "1024-1024"  # Linear-BN-ReLU spec; null -> the method's paper default
    predictor: str | None = (
        None  # BYOL / SimSiam: its MLP; SIE: the hypernetwork's hidden widths ("": linear)
    )
    equivariant_dim: int | None = Field(None, ge=1)  # SIE: last dims of the backbone output; None -> half
    head_batch_norm: bool = True  # BatchNorm between the head layers (the papers' heads)
    sync_bn: bool | None = None  # SyncBatchNorm across processes; None -> on with CUDA and 2+ processes
    init_from: str | None = None  # starting weights: a run or export directory, a weights file


class MethodConfig(_Section):
    name: str = "vicreg"
    params: dict[str, Any] = Field(default_factory=dict)  # criterion keyword overrides
    ema_base: float | None = Field(None, ge=0.0, le=1.0)  # BYOL target momentum at step 0


class OptimConfig(_Section):
    name: Literal["adamw", "sgd", "lars"] = "adamw"
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    warmup_epochs: float = Field(2.0, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0, le=1)
    schedule: Literal["cosine", "constant"] = "cosine"
    clip_grad: float | None = Field(None, gt=0)


#: The experiment trackers ``train.loggers`` may name (:mod:`selfsup.train.trackers`).
LOGGERS = ("tensorboard", "mlflow", "wandb")


class TrainConfig(_Section):
    epochs: int = Field(28, ge=1)
    batch_size: int = Field(128, ge=2)
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast on CUDA and on CPUs with AMX (train.components.use_amp)
    monitor_every: int = Field(2, ge=1)
    lidar_samples: int = Field(256, ge=0)  # monitor samples used for LiDAR (0 disables it, else >= 2)
    online_probe: bool = True
    loggers: list[str] = Field(default_factory=list)  # any of LOGGERS (optional extras)
    experiment: str = "selfsup"  # the MLflow experiment / W&B project and group (a sweep: its name)
    tracking_dir: str | None = None  # MLflow's file store, W&B's offline runs; None -> out_dir
    out_dir: str = "runs"
    name: str | None = None
    keep_checkpoints: int = Field(2, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _tensorboard_flag(cls, data: Any) -> Any:
        """Configs saved before ``loggers`` existed: ``tensorboard: true`` is ``loggers: [tensorboard]``."""
        if isinstance(data, dict) and "tensorboard" in data:
            data = dict(data)
            if data.pop("tensorboard") and "tensorboard" not in data.setdefault("loggers", []):
                data["loggers"] = [*data["loggers"], "tensorboard"]
        return data

    @field_validator("loggers")
    @classmethod
    def _known_loggers(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in LOGGERS:
                raise ValueError(
                    f"unknown logger '{name}'.{did_you_mean(name, LOGGERS)} Loggers: {', '.join(LOGGERS)}"
                )
        return list(dict.fromkeys(v))

    @field_validator("lidar_samples")
    @classmethod
    def _lidar_needs_two(cls, v: int) -> int:
        if v == 1:
            raise ValueError("LiDAR needs at least 2 samples; use 0 to switch it off")
        return v


class RunConfig(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


def _valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _valid_keys(ann, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _explain(err: ValidationError) -> ConfigError:
    lines = []
    valid = _valid_keys(RunConfig)
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{key}'.{did_you_mean(key, valid)}")
        else:
            lines.append(f"'{key}': {e['msg']} (got {e.get('input')!r})")
    return ConfigError("invalid configuration: " + "; ".join(lines))


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate a nested dict into a :class:`RunConfig`, with readable errors (see :func:`check_options`)."""
    try:
        cfg = RunConfig.model_validate(data or {})
    except ValidationError as err:
        raise _explain(err) from None
    check_options(cfg)
    return cfg


def check_options(cfg: RunConfig) -> None:
    """Check the free-form dicts against the signatures they are passed to: ``method.params`` (the method's
    criterion), ``model.backbone_args`` (the backbone) and ``data.view_args`` (the view recipe: ``data.views``
    or the dataset's default). A misspelt or ill-typed key fails here, not at the first training step. When
    the recipe depends on the data's shape (``arrays:``), ``view_args`` are checked when the views are built.
    """
    from selfsup.data import dataset_default_views
    from selfsup.methods import check_method_params, get_method
    from selfsup.models import check_backbone_options, get_backbone
    from selfsup.views import check_view_options, get_view_recipe

    method = get_method(cfg.method.name)  # unknown names fail with their own did-you-mean first
    get_backbone(cfg.model.backbone)
    recipe = cfg.data.views or dataset_default_views(cfg.data.dataset)
    if recipe is not None:
        get_view_recipe(recipe)
    _under("method.params", check_method_params, method, cfg.method.params)
    _under("model.backbone_args", check_backbone_options, cfg.model.backbone, cfg.model.backbone_args)
    if recipe is not None:
        _under("data.view_args", check_view_options, recipe, cfg.data.view_args)
    _check_views(cfg, method, recipe)


def _check_views(cfg: RunConfig, method, recipe: str | None) -> None:
    """Local views leave at least one global view (two for LeJEPA's prediction target); their options are
    those of the recipe."""
    from selfsup.views import check_view_options, local_view_options

    data = cfg.data
    n_global = data.n_views - data.local_views
    if n_global < 1:
        raise ConfigError(
            f"invalid configuration: data.local_views={data.local_views} leaves no global view among "
            f"data.n_views={data.n_views}; raise data.n_views"
        )
    if n_global < method.min_global_views:
        raise ConfigError(
            f"invalid configuration: method '{method.name}' needs at least {method.min_global_views} global "
            f"views; data.n_views="
            f"{data.n_views} with data.local_views={data.local_views} gives {n_global}"
        )
    if recipe is not None and data.local_views:
        local = _under("data.local_view_args", local_view_options, recipe, data.local_view_args)
        _under("data.local_view_args", check_view_options, recipe, local)


def _under(key: str, check, *args):
    try:
        return check(*args)
    except ConfigError as err:
        raise ConfigError(f"invalid configuration: '{key}': {err}") from None


def load_yaml(
    path: str | Path,
    what: str = "config file",
    default_name: str = "config.yaml",
    hint: str = "pass a YAML file or a run directory",
    holds: str = "of sections",
) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (or ``path/default_name`` for a directory); ConfigError otherwise."""
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist; {hint}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{what} '{path}' is not a UTF-8 text file; {hint}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} '{path}' is not valid YAML: {yaml_problem(err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}' must hold a mapping {holds}, got {type(data).__name__}")
    return data


def yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's error in one line: the problem and where it is."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. optim.lr=1e-3")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) < 2 or not all(parts):
            valid = _valid_keys(RunConfig)
            raise ConfigError(
                f"override key '{key}' must be dotted like train.epochs.{did_you_mean(key, valid)}"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override '{item}': the value is not YAML: {yaml_problem(err)}") from None
        set_dotted(data, key.strip(), float(value) if is_number_string(value) else value)
    return data


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data["a"]["b"]["c"] = value`` for ``key = "a.b.c"``, creating sections on the way."""
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{key}': '{p}' holds {node!r}, not a section")
    node[parts[-1]] = value


def is_number_string(value: Any) -> bool:
    """True for a string that is a number: YAML 1.1 reads ``1e-3`` as the string "1e-3"."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def resolve(config: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults <- YAML file <- dotted overrides, validated."""
    data = load_yaml(config) if config else {}
    return from_dict(apply_overrides(data, list(overrides or [])))


def save(cfg: RunConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML atomically (a temporary file renamed into place): a process killed while
    writing leaves the old file or none, never an empty one that a resume would refuse."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    os.replace(tmp, path)
