"""The training loop: views -> model.loss -> step, with a label-free monitor, checkpoints and resume.

Read top to bottom: :func:`fit` builds everything from a :class:`RunConfig`, restores the newest good
checkpoint when resuming, then runs epochs. Each epoch ends with the monitor (RankMe and the other
quality metrics of backbone and projector on a fixed monitor subset), one line in ``metrics.jsonl`` and a
checkpoint. The RNG state is checkpointed at epoch boundaries, so a killed run resumes exactly.
"""

from __future__ import annotations

import json
import math
import resource
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from selfsup import config as C
from selfsup.data import DataSplits, load_dataset, monitor_indices
from selfsup.errors import ConfigError, DivergenceError, NonFiniteError, SelfsupError
from selfsup.methods import SSLModel, get_method
from selfsup.models import build_backbone
from selfsup.probes import knn_probe, linear_probe
from selfsup.quality import quality_report
from selfsup.train import checkpoint as ckpt
from selfsup.train.optim import build_optimizer, lr_factor, set_lr
from selfsup.views import build_view_set, default_recipe


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps") from None


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


@dataclass
class Components:
    """Everything :func:`build` makes from a config; shared by training, ``embed`` and ``probe``."""

    cfg: C.RunConfig
    data: DataSplits
    model: SSLModel
    views: nn.ModuleList  # one augmentation module per view (asymmetric recipes differ per view)
    device: torch.device


def build(cfg: C.RunConfig, data: DataSplits | None = None) -> Components:
    device = pick_device(cfg.train.device)
    data = data or load_dataset(cfg.data.dataset, seed=cfg.train.seed)
    recipe = get_method(cfg.method.name)
    backbone = build_backbone(cfg.model.backbone, data.sample_shape, **cfg.model.backbone_args)
    model = SSLModel(
        recipe,
        backbone,
        cfg.model.projector,
        cfg.model.predictor,
        cfg.method.params,
        n_train=len(data.train),
        ema_base=cfg.method.ema_base,
    ).to(device)
    recipe_name = cfg.data.views or data.info.get("default_views") or default_recipe(data.sample_shape)
    view_args = dict(cfg.data.view_args)
    if recipe_name == data.info.get("default_views"):  # e.g. the PDE datasets fill in view_args.equation
        view_args = {**data.info.get("view_args", {}), **view_args}
    views = build_view_set(recipe_name, data.sample_shape, cfg.data.n_views, **view_args).to(device)
    return Components(cfg, data, model, views, device)


def _check(cfg: C.RunConfig, data: DataSplits) -> None:
    n = len(data.train)
    if cfg.train.batch_size > n:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is larger than the training set ({n} samples); "
            f"set train.batch_size to at most {n}"
        )


@torch.no_grad()
def embed(
    model: SSLModel,
    x: torch.Tensor,
    device: torch.device,
    layers: list[str] | None = None,
    batch_size: int = 1024,
) -> dict[str, torch.Tensor]:
    """Embed un-augmented samples in eval mode; returns layer -> N x D float32 on ``device``."""
    was_training = model.training
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(x), batch_size):
        for k, v in model.embed_layers(x[i : i + batch_size].to(device), layers).items():
            chunks.setdefault(k, []).append(v.float())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in chunks.items()}


def monitor(c: Components, x_mon: torch.Tensor, n_lidar: int) -> dict:
    """Label-free quality of the backbone output and the projector output on the monitor subset."""
    names = c.model.layer_names
    out_layers = {"backbone": c.model.backbone.layer_names[-1]}
    if names[-1] != out_layers["backbone"]:
        out_layers["projector"] = names[-1]
    feats = embed(c.model, x_mon, c.device, list(dict.fromkeys(out_layers.values())))
    result = {}
    for tag, layer in out_layers.items():
        rep = quality_report(feats[layer])
        result.update({f"{tag}/{k}": v for k, v in rep.items() if isinstance(v, (int, float))})
    if n_lidar:
        xs = x_mon[:n_lidar].to(c.device)
        with torch.no_grad():
            c.model.eval()
            views = torch.stack([c.model.backbone(view(xs)) for view in c.views], 1)
            c.model.train()
        from selfsup.quality import lidar

        result["backbone/lidar"] = float(lidar(views.float(), c.cfg.data.n_views))
    return result


def _state(c: Components, opt, probe, probe_opt, epoch: int, step: int) -> dict:
    return {
        "epoch": epoch,
        "step": step,
        "model": c.model.state_dict(),
        "optimizer": opt.state_dict(),
        "probe": probe.state_dict() if probe is not None else None,
        "probe_optimizer": probe_opt.state_dict() if probe_opt is not None else None,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "config": C.RunConfig.model_validate(c.cfg).model_dump(mode="json"),
    }


def _comparable(cfg_dict: dict) -> dict:
    """The parts of a config that must match for a resume (epochs may grow, logging may change)."""
    d = json.loads(json.dumps(cfg_dict))
    for key in ("epochs", "name", "out_dir", "tensorboard", "device", "monitor_every"):
        d["train"].pop(key, None)
    return d


def new_run_dir(cfg: C.RunConfig) -> Path:
    name = (
        cfg.train.name or f"{cfg.method.name}-{cfg.data.dataset.split(':')[0]}-{datetime.now():%Y%m%d-%H%M%S}"
    )
    run_dir = Path(cfg.train.out_dir) / name
    i = 1
    while run_dir.exists():
        i += 1
        run_dir = Path(cfg.train.out_dir) / f"{name}-{i}"
    return run_dir


def fit(
    cfg: C.RunConfig,
    run_dir: str | Path | None = None,
    resume: bool = False,
    console: Console | None = None,
    progress: bool = True,
) -> dict:
    """Train one run; return its summary (also written to ``summary.json``)."""
    console = console or Console()
    t_start = time.perf_counter()
    if resume:
        run_dir = Path(run_dir)
        saved = C.load_yaml(run_dir)
        if _comparable(saved) != _comparable(cfg.model_dump(mode="json")):
            raise ConfigError(
                f"cannot resume '{run_dir}' with a different configuration; rerun with its own config "
                f"(selfsup train --resume {run_dir}) or start a new run"
            )
    else:
        run_dir = Path(run_dir) if run_dir else new_run_dir(cfg)
        run_dir.mkdir(parents=True, exist_ok=False)
    ckpt_dir = run_dir / "checkpoints"

    seed_everything(cfg.train.seed, cfg.train.deterministic)
    data = load_dataset(cfg.data.dataset, seed=cfg.train.seed)
    _check(cfg, data)
    c = build(cfg, data)
    C.save(cfg, run_dir / "config.yaml")
    model, data, device = c.model, c.data, c.device
    x_train = data.train.x.to(device)
    x_mon = data.train.x[
        monitor_indices(len(data.train), min(cfg.data.monitor_size, len(data.train)), cfg.train.seed)
    ]
    labelled = data.train.y is not None and data.num_classes
    probe = (
        nn.Linear(model.backbone.out_dim, data.num_classes).to(device)
        if (labelled and cfg.train.online_probe)
        else None
    )
    probe_opt = torch.optim.Adam(probe.parameters(), lr=1e-3) if probe is not None else None
    opt = build_optimizer(list(model.parameters()), cfg.optim)
    bs = cfg.train.batch_size
    steps_per_epoch = len(data.train) // bs
    total_steps = steps_per_epoch * cfg.train.epochs

    start_epoch, step = 0, 0
    if resume:
        state, path = ckpt.load_latest(ckpt_dir, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if probe is not None and state["probe"] is not None:
            probe.load_state_dict(state["probe"])
            probe_opt.load_state_dict(state["probe_optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        start_epoch, step = state["epoch"] + 1, state["step"]
        console.print(f"resuming [bold]{run_dir}[/] from {path.name} (epoch {start_epoch + 1})")
    _truncate_metrics(run_dir / "metrics.jsonl", start_epoch)
    writer = _tensorboard(run_dir) if cfg.train.tensorboard else None

    use_amp = cfg.train.amp and device.type == "cuda"
    bar = Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not progress,
        transient=True,
    )
    model.train()
    with bar:
        task = bar.add_task("train", total=steps_per_epoch, epoch=0, loss="-")
        for epoch in range(start_epoch, cfg.train.epochs):
            t0 = time.perf_counter()
            bar.reset(task, total=steps_per_epoch, epoch=f"{epoch + 1}/{cfg.train.epochs}", loss="-")
            perm = torch.randperm(
                len(data.train), generator=torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch)
            )
            loss_sum, correct, seen = 0.0, 0, 0
            for b in range(steps_per_epoch):
                idx = perm[b * bs : (b + 1) * bs]
                x = x_train[idx.to(device)]
                set_lr(opt, cfg.optim.lr * lr_factor(step, cfg.optim, steps_per_epoch, total_steps))
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    views = [view(x) for view in c.views]
                    try:
                        loss, feats = model.loss(views, idx.to(device))
                    except NonFiniteError:  # the criterion refuses non-finite embeddings
                        loss = torch.tensor(float("nan"))
                if not torch.isfinite(loss):
                    last = ckpt.list_checkpoints(ckpt_dir)
                    raise DivergenceError(
                        f"non-finite loss at epoch {epoch + 1}, step {b + 1}. The last good checkpoint is "
                        f"kept ({last[0] if last else 'none yet'}). Lower optim.lr, set optim.clip_grad, "
                        f"or add warm-up (optim.warmup_epochs)."
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.clip_grad:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
                opt.step()
                step += 1
                model.update_target(step, total_steps)
                if probe is not None:  # online probe on detached features: no gradient reaches the backbone
                    logits = probe(feats.float())
                    y = data.train.y[idx].to(device)
                    probe_loss = F.cross_entropy(logits, y)
                    probe_opt.zero_grad(set_to_none=True)
                    probe_loss.backward()
                    probe_opt.step()
                    correct += int((logits.argmax(1) == y).sum())
                    seen += len(y)
                loss_sum += loss.item()
                bar.update(task, advance=1, loss=f"{loss_sum / (b + 1):.4g}")

            record = {
                "epoch": epoch + 1,
                "step": step,
                "loss": loss_sum / steps_per_epoch,
                "lr": opt.param_groups[0]["lr"],
                "epoch_time": time.perf_counter() - t0,
            }
            if probe is not None:
                record["online_probe_train_acc"] = correct / max(seen, 1)
            if (epoch + 1) % cfg.train.monitor_every == 0 or epoch + 1 == cfg.train.epochs:
                t_mon = time.perf_counter()
                record.update(monitor(c, x_mon, cfg.train.lidar_samples))
                if probe is not None and data.test is not None and data.test.y is not None:
                    h = embed(model, data.test.x, device, [model.backbone.layer_names[-1]])
                    pred = probe(next(iter(h.values()))).argmax(1).cpu()
                    record["online_probe_test_acc"] = float((pred == data.test.y).float().mean())
                record["monitor_time"] = time.perf_counter() - t_mon
            _append(run_dir / "metrics.jsonl", record)
            if writer is not None:
                for k, v in record.items():
                    writer.add_scalar(k, v, epoch + 1)
            bar.console.print(_epoch_line(record, cfg.train.epochs))
            ckpt.save_checkpoint(
                _state(c, opt, probe, probe_opt, epoch, step), ckpt.checkpoint_path(ckpt_dir, epoch)
            )
            ckpt.prune(ckpt_dir, cfg.train.keep_checkpoints)

    summary = finish(c, run_dir, console)
    summary["train_seconds"] = time.perf_counter() - t_start
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if writer is not None:
        writer.close()
    from selfsup.report import write_run_report

    write_run_report(run_dir)
    console.print(f"run directory: [bold]{run_dir}[/]  (report: {run_dir / 'report.html'})")
    return summary


def finish(c: Components, run_dir: Path, console: Console) -> dict:
    """Final evaluation: probes on the test split (when labelled) and the quality report per layer."""
    data, model = c.data, c.model
    x_mon = data.train.x[
        monitor_indices(len(data.train), min(c.cfg.data.monitor_size, len(data.train)), c.cfg.train.seed)
    ]
    feats = embed(model, x_mon, c.device)
    summary: dict = {
        "run_dir": str(run_dir),
        "method": c.cfg.method.name,
        "dataset": data.name,
        "n_train": len(data.train),
        "layers": {},
    }
    for layer, z in feats.items():
        rep = quality_report(z, singular_values=True)
        summary["layers"][layer] = rep
    summary["rankme_backbone"] = summary["layers"][model.backbone.layer_names[-1]]["rankme"]
    summary.update(probe_run(c))
    if "linear_acc" in summary:
        console.print(
            f"linear probe test accuracy [bold]{100 * summary['linear_acc']:.2f} %[/], "
            f"kNN (k=20) {100 * summary['knn_acc']:.2f} %, "
            f"RankMe(backbone) {summary['rankme_backbone']:.1f}"
        )
    else:
        console.print(f"RankMe(backbone) {summary['rankme_backbone']:.1f} (no labels: probes skipped)")
    return summary


def probe_run(c: Components, layer: str | None = None) -> dict:
    """Linear probe and kNN on frozen features of ``layer`` (default: backbone output), test split."""
    data = c.data
    if data.test is None or data.train.y is None or data.test.y is None:
        return {}
    layer = layer or c.model.backbone.layer_names[-1]
    tr = embed(c.model, data.train.x, c.device, [layer])[layer]
    te = embed(c.model, data.test.x, c.device, [layer])[layer]
    y_tr, y_te = data.train.y.to(c.device), data.test.y.to(c.device)
    lin = linear_probe(tr, y_tr, te, y_te)
    knn = knn_probe(tr, y_tr, te, y_te)
    return {"probe_layer": layer, "linear_acc": lin.accuracy, "knn_acc": knn.accuracy}


def _epoch_line(r: dict, epochs: int) -> str:
    parts = [f"epoch {r['epoch']:>3}/{epochs}", f"loss {r['loss']:.4g}"]
    if "backbone/rankme" in r:
        parts.append(f"RankMe backbone {r['backbone/rankme']:.1f}")
    if "projector/rankme" in r:
        parts.append(f"projector {r['projector/rankme']:.1f}")
    if "online_probe_test_acc" in r:
        parts.append(f"online probe {100 * r['online_probe_test_acc']:.1f} %")
    parts.append(f"{r['epoch_time']:.1f}s")
    return "  ".join(parts)


def _append(path: Path, record: dict) -> None:
    clean = {
        k: (v if not (isinstance(v, float) and not math.isfinite(v)) else None) for k, v in record.items()
    }
    with open(path, "a") as f:
        f.write(json.dumps(clean) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_metrics(path: Path, start_epoch: int) -> None:
    """On resume, drop records of epochs that will be redone (a kill after logging, before the checkpoint)."""
    if path.is_file():
        keep = [r for r in read_metrics(path) if r["epoch"] <= start_epoch]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SelfsupError(
            "train.tensorboard=true needs the tensorboard package: pip install tensorboard"
        ) from None
    return SummaryWriter(str(run_dir / "tensorboard"))
