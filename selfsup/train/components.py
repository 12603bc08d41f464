"""What a run is made of: the device, the data, the model and the views, built from a config or loaded
from a run directory, and the fixed monitor subset its label-free metrics are computed on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from selfsup import config as C
from selfsup.data import DataSplits, dataset_default_views, load_dataset, monitor_indices
from selfsup.data.stream import as_float, take, worker_count
from selfsup.errors import ConfigError, SelfsupError
from selfsup.methods import SSLModel, get_method
from selfsup.models import build_backbone
from selfsup.train import checkpoint as ckpt
from selfsup.train import distributed
from selfsup.train.rundir import check_checkpoint_config, read_run_config
from selfsup.views import TransformPairs, build_pair_views, build_view_set, default_recipe, get_view_recipe


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"device '{name}': this machine has no usable CUDA GPU; use cpu or auto")
        if device.index is not None and device.index >= n:
            raise ConfigError(f"device '{name}': this machine has {n} CUDA GPU(s): cuda:0 to cuda:{n - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device '{name}': MPS is not available on this machine; use cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device '{name}' is not supported; use auto, cpu, cuda, cuda:N or mps")
    return device


def use_amp(enabled: bool, device: torch.device) -> bool:
    """Whether training steps run under bfloat16 autocast (``train.amp``): on CUDA, and on CPUs with AMX
    bfloat16 tiles (Intel Sapphire Rapids and later), where oneDNN runs bfloat16 convolutions and matrix
    products several times faster than float32. Elsewhere the step stays float32: most CPUs without AMX
    emulate bfloat16 (slower), though those with AVX-512 bfloat16 instructions can gain from forcing it
    (``SELFSUP_AMX=1``, which overrides the CPU probe, :func:`cpu_has_amx`). Criteria compute in float32
    either way."""
    if not enabled:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_has_amx()


#: Overrides the AMX probe: ``1`` reports AMX tiles present (bfloat16 steps), ``0`` absent (float32 steps).
#: Unset or empty, torch's probe decides. Tests set it to run both CPU paths on any machine.
AMX_ENV = "SELFSUP_AMX"


def cpu_has_amx() -> bool:
    """The CPU has AMX tiles and the OS lets this process use them, unless ``$SELFSUP_AMX`` says otherwise
    (torch's private probes, by their names before and after torch 2.4; an older or different torch, or a
    CPU that is not x86, answers False)."""
    forced = os.environ.get(AMX_ENV, "").strip()
    if forced:
        if forced not in ("0", "1"):
            raise ConfigError(f"{AMX_ENV}={forced!r}: use 1 (AMX present), 0 (absent) or leave it unset")
        return forced == "1"
    supported = getattr(torch.cpu, "_is_amx_tile_supported", None) or getattr(
        torch.cpu, "_is_cpu_support_amx_tile", None
    )
    permitted = getattr(torch.cpu, "_init_amx", lambda: True)  # asks the kernel for the tile registers
    return bool(supported is not None and supported() and permitted())


@dataclass
class Components:
    """Everything :func:`build` makes from a config; shared by training, embedding, probes and layers."""

    cfg: C.RunConfig
    data: DataSplits
    model: SSLModel
    views: nn.Module  # one augmentation module per view (a ModuleList), or TransformPairs (views.pairs)
    device: torch.device


def build(cfg: C.RunConfig, data: DataSplits | None = None, init_weights: bool = True) -> Components:
    """Data (loaded unless given), model and views of a run config, on its device. The backbone starts from
    ``model.init_from`` when it is set and ``init_weights`` (a resumed or reloaded run takes its
    checkpoint's weights instead)."""
    device = distributed.process_device(pick_device(cfg.train.device))
    data = data or load_data(cfg)
    views = build_views_of(cfg, data).to(device)
    backbone = build_backbone(cfg.model.backbone, data.sample_shape, **cfg.model.backbone_args)
    model = SSLModel(
        get_method(cfg.method.name),
        backbone,
        cfg.model.projector,
        cfg.model.predictor,
        cfg.method.params,
        n_train=len(data.train),
        ema_base=cfg.method.ema_base,
        n_global=cfg.data.n_views - cfg.data.local_views,
        head_batch_norm=cfg.model.head_batch_norm,
        transform_identity=views.identity() if isinstance(views, TransformPairs) else None,
        equivariant_dim=cfg.model.equivariant_dim,
        train_labels=data.train.y,
        batch_size=cfg.train.batch_size,
        steps_per_epoch=len(data.train) // cfg.train.batch_size,
    )
    if cfg.model.init_from and init_weights:
        ckpt.init_backbone(model.backbone, cfg.model.init_from)
    return Components(cfg, data, model.to(device), views, device)


def build_views_of(cfg: C.RunConfig, data: DataSplits) -> nn.Module:
    """The run's views: one augmentation module per view, or the ``pairs`` of a dataset with factors."""
    recipe = (
        cfg.data.views
        or data.info.get("default_views")
        or dataset_default_views(cfg.data.dataset)  # the entry's, which the config check validated
        or default_recipe(data.sample_shape)
    )
    view_args = dict(cfg.data.view_args)
    if recipe == data.info.get("default_views"):  # e.g. the PDE datasets fill in view_args.equation
        view_args = {**data.info.get("view_args", {}), **view_args}
    if get_view_recipe(recipe).paired:
        if not get_method(cfg.method.name).accepts_paired_views:
            raise ConfigError(
                f"method '{cfg.method.name}' needs global and local crops; view recipe '{recipe}' gives pairs"
            )
        d = cfg.data
        return build_pair_views(recipe, data.train, as_float, d.n_views, d.local_views, **view_args)
    local = (cfg.data.local_views, cfg.data.local_view_args)
    return build_view_set(recipe, data.sample_shape, cfg.data.n_views, *local, **view_args)


def load_data(cfg: C.RunConfig, spec: str | None = None, load_args: dict | None = None) -> DataSplits:
    """The run's dataset (or ``spec``), with the run's loader options (or ``load_args``), streamed or in
    memory as ``data.stream`` says."""
    d = cfg.data
    args = d.load_args if load_args is None else load_args
    taken = {"seed": "train.seed", "stream": "data.stream", "workers": "data.workers"}
    taken |= {"max_memory_mb": "data.max_memory_mb", "validation": "data.validation"}
    for key in set(args) & {*taken, "spec", "path"}:
        raise ConfigError(
            f"data.load_args.{key} is not a loader option; set {taken.get(key, 'data.dataset')}"
        )
    validation = d.validation if spec is None else 0
    return load_dataset(
        spec or d.dataset, cfg.train.seed, d.stream, d.workers, d.max_memory_mb, validation, **args
    )


def workers(cfg: C.RunConfig) -> int:
    """DataLoader worker processes for streamed data (``data.workers``, else one per core, at most 8)."""
    return worker_count(cfg.data.workers)


def check_batch_size(cfg: C.RunConfig, data: DataSplits) -> None:
    n = len(data.train)
    if cfg.train.batch_size > n:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is larger than the training set ({n} samples); "
            f"set train.batch_size to at most {n}"
        )


def load_run(
    run_dir: str | Path, device: str | None = None, checkpoint: str | Path | None = None
) -> tuple[Components, Path]:
    """A trained run: its config, data and model with the newest good checkpoint's weights (or those of
    ``checkpoint``, one of its files), and that checkpoint's path. ``device`` overrides ``train.device``."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise SelfsupError(f"'{run_dir}' is not a run directory (no config.yaml)")
    cfg = C.from_dict(read_run_config(run_dir))
    if device is not None:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": device})})
    c = build(cfg, init_weights=False)  # the checkpoint's weights follow
    if checkpoint is None:
        state, path = ckpt.load_latest(run_dir / "checkpoints", map_location=c.device)
    else:
        path = Path(checkpoint)
        state = ckpt.load_checkpoint(path, map_location=c.device)
    check_checkpoint_config(state, cfg, run_dir, path)
    c.model.load_state_dict(state["model"])
    return c, path


def monitor_subset(c: Components) -> torch.Tensor:
    """The fixed, seeded subset of the training samples the label-free metrics are computed on, on the
    CPU: at most ``data.monitor_size`` samples, read once when the data is streamed, kept as stored (uint8
    images: :func:`~selfsup.data.stream.as_float` makes them float where they are used)."""
    n = len(c.data.train)
    return take(c.data.train.x, monitor_indices(n, min(c.cfg.data.monitor_size, n), c.cfg.train.seed))
