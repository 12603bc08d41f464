"""The training loop: views -> model.loss -> step, with a label-free monitor, checkpoints and exact resume.

:func:`fit` reads top to bottom: open (or resume) the run, then for each epoch one pass over the data
(:func:`train_epoch`) and the end of the epoch (:func:`end_epoch`: monitor, ``metrics.jsonl``, checkpoint),
then the final evaluation. The RNG state is checkpointed at epoch boundaries, so a killed run resumes
exactly; a run stopped by the scheduler's signal (:mod:`selfsup.train.preempt`) checkpoints the step it
stopped at, with its position in the epoch, and resumes there exactly. The HTML report is drawn by the
``report`` callable :func:`fit` is given (the CLI and the sweep worker pass
:func:`selfsup.report.write_run_report`), before the trackers of ``train.loggers`` close.
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from selfsup import config as C
from selfsup.data.stream import EpochBatches, Feed
from selfsup.errors import ConfigError, DivergenceError, NonFiniteError, Stopped
from selfsup.methods import resolve_layer
from selfsup.train import checkpoint as ckpt
from selfsup.train import distributed, preempt
from selfsup.train.components import (
    Components,
    build,
    check_batch_size,
    load_data,
    monitor_subset,
    pick_device,
    use_amp,
    workers,
)
from selfsup.train.measure import embed, final_summary, monitor
from selfsup.train.optim import build_optimizer, fusable, lr_factor, set_lr
from selfsup.train.rundir import (
    append_metrics,
    check_checkpoint_config,
    open_run_dir,
    run_lock,
    truncate_metrics,
)
from selfsup.train.trackers import Trackers
from selfsup.train.trackers import check as check_trackers
from selfsup.views import batch_shard, draw_views

#: Steps between two reads of the running loss (progress bar, divergence check): the loss is summed on
#: the device, so the other steps do not wait for it.
LOG_EVERY = 25


@dataclass
class Run:
    """A run in progress: its directory, optimisers, online probe, the next epoch and step, and the
    modules a training step calls (the model and probe, in DistributedDataParallel with several processes)."""

    opt: torch.optim.Optimizer
    probe: nn.Linear | None
    probe_opt: torch.optim.Optimizer | None
    step_model: nn.Module
    step_probe: nn.Module | None
    world: distributed.World
    dir: Path | None = None  # opened once everything else has been built and checked
    epoch: int = 0
    step: int = 0
    stop: preempt.StopFlag | None = None  # raised by the scheduler's signal
    trackers: Trackers | None = None  # train.loggers (rank 0)
    partial: dict | None = None  # resumed mid-epoch: the batches taken and the epoch's sums so far


def fit(
    cfg: C.RunConfig,
    run_dir: str | Path | None = None,
    resume: bool = False,
    console: Console | None = None,
    progress: bool = True,
    report: Callable[[Path], Path] | None = None,
) -> dict:
    """Train one run; return its summary (also written to ``summary.json``). ``report`` draws the trained
    run's report (the CLI passes :func:`selfsup.report.write_run_report`), which the trackers of
    ``train.loggers`` get as an artifact. Under torchrun every process calls this
    (:mod:`selfsup.train.distributed`); rank 0 writes and prints, and returns the summary, the other ranks
    return ``{"run_dir": ..., "rank": r}``."""
    t_start = time.perf_counter()
    with distributed.joined(pick_device(cfg.train.device)) as world, preempt.watching() as stop:
        console = console or Console()
        if not world.main:
            console, progress = Console(quiet=True), False
        # the data, model, views and optimisers, checked before anything is written
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        data = load_data(cfg)
        check_batch_size(cfg, data)
        distributed.check_global_batch(cfg.train.batch_size)
        c = build(cfg, data, init_weights=not resume)
        precision(c)  # reads $SELFSUP_AMX: a bad value stops the run here, before its directory exists
        run = new_run(c, world)
        run.stop = stop
        # the run directory: rank 0 creates it (or checks it for a resume), every rank learns its path
        run.dir, resume = distributed.from_main(_open_run_dir, cfg, run_dir, resume)
        with run_lock(run.dir) if world.main else contextlib.nullcontext():
            if resume:
                _resume(c, run, console)
            if world.main:
                C.save(cfg, run.dir / "config.yaml")
                truncate_metrics(run.dir / "metrics.jsonl", run.epoch)
            with Trackers(cfg, run.dir, run.epoch, enabled=world.main) as run.trackers:
                try:
                    summary = _train(c, run, console, progress)
                except Stopped as stopped:  # every process stopped at the same step, checkpointed there
                    raise Stopped(f"{stopped}; {preempt.requeue()}" if world.main else "") from None
                if not world.main:
                    return {"run_dir": str(run.dir), "rank": world.rank}
                summary.update(train_seconds=time.perf_counter() - t_start, **_resources(c, world))
                (run.dir / "summary.json").write_text(json.dumps(summary, indent=2))
                run.trackers.finish(summary, report(run.dir) if report is not None else None)
    console.print(_summary_line(summary))
    return summary


def _resources(c: Components, world: distributed.World) -> dict:
    """What the run ran on: the precision of its steps, its processes, its peak memory."""
    used = {"train_precision": precision(c), "processes": world.size, "peak_rss_mb": peak_rss_mb()}
    if c.device.type == "cuda":
        used["peak_device_mb"] = torch.cuda.max_memory_allocated(c.device) / 2**20
    return used


def _train(c: Components, run: Run, console: Console, progress: bool) -> dict:
    """The epochs (one pass over the data, then monitor, log and checkpoint), then the final evaluation."""
    cfg, data = c.cfg, c.data
    x_train = data.train.x if data.train.streamed else data.train.x.to(c.device)
    batches = EpochBatches(
        len(data.train), cfg.train.batch_size, cfg.train.seed, run.world.rank, run.world.size
    )
    feed = Feed(x_train, batches, c.device, workers(cfg))  # DataLoader workers decode streamed data
    x_mon = monitor_subset(c)
    y_train = data.train.y.to(c.device) if run.probe is not None else None
    c.model.train()
    with _progress_bar(console, progress) as bar:
        while run.epoch < cfg.train.epochs:  # end_epoch advances run.epoch
            t0 = time.perf_counter()
            batches.set_epoch(run.epoch, start=run.partial["batches"] if run.partial else 0)
            record = train_epoch(c, run, feed, y_train, bar)
            record["epoch_time"] = time.perf_counter() - t0
            end_epoch(c, run, record, x_mon)
            bar.console.print(_epoch_line(record, cfg.train.epochs))
    feed.close()  # its worker processes are not needed for the final evaluation
    return final_summary(c, run.dir) if run.world.main else {}


def _resume(c: Components, run: Run, console: Console) -> None:
    """Continue from the newest good checkpoint; a run killed before its first checkpoint starts over
    (same seed, so it ends as an uninterrupted run would)."""
    found = distributed.from_main(_read_checkpoint, c, run.dir)  # rank 0 reads; every rank restores
    if found is None:
        console.print(f"no checkpoint in [bold]{run.dir}[/] yet: starting it over from epoch 1")
        return
    path, saved_precision = restore(c, run, *found)
    if saved_precision not in (None, precision(c)):  # resumed on a CPU with(out) AMX: not bit-exact
        console.print(
            f"[yellow]warning:[/] {path.name} was trained with {saved_precision} steps, this machine runs "
            f"{precision(c)} steps (train.amp): the resumed run continues correctly but not bit-exactly"
        )
    if run.epoch > c.cfg.train.epochs:
        raise distributed.collective(
            ConfigError(
                f"'{run.dir}' has trained {run.epoch} epochs; train.epochs={c.cfg.train.epochs} would undo "
                f"them (set train.epochs to {run.epoch} or more)"
            )
        )
    at = f", batch {run.partial['batches'] + 1}" if run.partial else ""
    console.print(f"resuming [bold]{run.dir}[/] from {path.name} (epoch {run.epoch + 1}{at})")


def _open_run_dir(cfg: C.RunConfig, run_dir: str | Path | None, resume: bool) -> tuple[Path, bool]:
    """Rank 0: a new run directory with its ``config.yaml``, or the one to resume, checked against ``cfg``.
    Under ``torchrun --max-restarts`` a restarted attempt resumes the run its first attempt created, and
    does not retry a run that diverged (it would diverge again at the same step); in a SLURM job the run is
    named from the job, and a requeued job resumes it."""
    if (diverged := distributed.noted("diverged")) is not None:
        raise DivergenceError(f"{diverged} (in an earlier attempt of this torchrun job: not retried)")
    if (restarted := distributed.noted("run_dir")) is not None and run_dir is None and not resume:
        run_dir, resume = restarted, True
    check_trackers(cfg)  # installed, their directory writable: before anything is written
    if run_dir is None and not resume and (job_dir := preempt.slurm_run_dir(cfg)) is not None:
        run_dir, resume = job_dir, (job_dir / "config.yaml").is_file()  # a requeued job: go on
    run_dir = open_run_dir(cfg, run_dir, resume)
    if not resume:
        C.save(cfg, run_dir / "config.yaml")
    distributed.note("run_dir", str(run_dir))
    return run_dir, resume


def _read_checkpoint(c: Components, run_dir: Path) -> tuple[dict, Path] | None:
    """The newest good checkpoint of the run and its path, checked against the config (None: none yet).
    Loaded on the CPU (the RNG states must be CPU tensors; the weights are copied to the device by
    ``load_state_dict``), so that it can also be handed to other processes."""
    ckpt.remove_temp_files(run_dir / "checkpoints")
    if not ckpt.list_checkpoints(run_dir / "checkpoints"):
        return None
    state, path = ckpt.load_latest(run_dir / "checkpoints", map_location="cpu", partial=True)
    check_checkpoint_config(state, c.cfg, run_dir, path)
    return state, path


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def new_run(c: Components, world: distributed.World | None = None) -> Run:
    """Optimiser of the model; the online linear probe (on detached backbone features) when labelled.
    With several processes: criteria gathering every process's rows, SyncBatchNorm when asked, and the
    model and probe in DDP (the BYOL target is updated from the averaged weights alike on every rank)."""
    world = world or distributed.World()
    if world.size > 1:
        c.model.gather_distributed = True
        c.model = distributed.sync_batch_norm(c.model, c.cfg.model.sync_bn, c.device)
        distributed.check_views(c.views)
    opt = build_optimizer(list(c.model.parameters()), c.cfg.optim)
    probe = probe_opt = None
    if c.cfg.train.online_probe and c.data.train.y is not None and c.data.num_classes:
        probe = nn.Linear(c.model.backbone.out_dim, c.data.num_classes).to(c.device)
        probe_opt = torch.optim.Adam(probe.parameters(), lr=1e-3, fused=fusable(list(probe.parameters())))
    step_probe = distributed.wrap(probe, c.device) if probe is not None else None
    return Run(opt, probe, probe_opt, distributed.wrap(c.model, c.device), step_probe, world)


def peak_rss_mb(ru_maxrss: int | None = None) -> float:
    """A peak resident memory in MiB: ``ru_maxrss`` of a ``getrusage``/``wait4`` result (default: this
    process's), which counts KiB on Linux and bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if ru_maxrss is None else ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def precision(c: Components) -> str:
    """The dtype the training steps run in on this machine (``train.amp``, :func:`use_amp`)."""
    return "bfloat16" if use_amp(c.cfg.train.amp, c.device) else "float32"


def restore(c: Components, run: Run, state: dict, path: Path) -> tuple[Path, str | None]:
    """Load a checkpoint's state into the model, optimisers, probe and RNGs; returns its path and the
    precision its steps ran in (None for checkpoints written before that was recorded)."""
    c.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    if run.probe is not None and state["probe"] is not None:
        run.probe.load_state_dict(state["probe"])
        run.probe_opt.load_state_dict(state["probe_optimizer"])
    torch.set_rng_state(state["rng_cpu"])
    if c.device.type == "cuda":  # the generator of this process's GPU
        saved = state.get("rng_device")
        if saved is None and state.get("rng_cuda"):  # checkpoints before rng_device: one process's GPUs
            trained_on = (c.device.index or 0) if run.world.size == 1 else 0
            saved = state["rng_cuda"][min(trained_on, len(state["rng_cuda"]) - 1)]
        if saved is not None:
            torch.cuda.set_rng_state(saved, c.device)
    run.partial = state.get("partial")  # a mid-epoch checkpoint: that epoch goes on from there
    run.epoch, run.step = state["epoch"] + (run.partial is None), state["step"]
    return path, state.get("precision")


def train_epoch(c: Components, run: Run, feed: Feed, y_train, bar: Progress) -> dict:
    """One pass over a seeded permutation of the training set (``feed``: the last incomplete batch is
    dropped). With several processes each takes its share of every (global) batch and draws its views as
    one process holding the whole batch would. A run resumed mid-epoch takes the rest of the epoch from
    where it stopped; a stop signal ends the epoch after the current step (:func:`_stop`)."""
    cfg, device = c.cfg, c.device
    bs, epoch = cfg.train.batch_size, run.epoch
    first_row = feed.batches.rows.start  # this process's rows of a global batch start here
    steps, start = len(feed.batches), feed.batches.start
    total_steps = steps * cfg.train.epochs
    loss_sum, correct, skipped_so_far = _epoch_sums(run, device)
    skipped_before = feed.skipped - skipped_so_far
    amp = use_amp(cfg.train.amp, device)
    task = bar.task_ids[0]
    bar.reset(task, total=steps, completed=start, epoch=f"{epoch + 1}/{cfg.train.epochs}", loss="-")
    for b, (idx, x) in enumerate(feed, start):
        # the batch (this process's rows) and its views
        set_lr(run.opt, cfg.optim.lr * lr_factor(run.step, cfg.optim, steps, total_steps))
        shard = batch_shard(first_row, bs) if run.world.size > 1 else contextlib.nullcontext()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp), shard:
            views, transform = draw_views(c.views, x, idx)  # transform: SIE's, for pairs
            # the loss (masked methods draw their masks, sharded as the views); a criterion refuses
            # non-finite embeddings, and every process hears of it, as of a stop signal
            try:
                loss, feats = run.step_model(views, idx, transform)
                failed = False
            except NonFiniteError:
                failed = True
        failed, stopping = distributed.any_ranks([failed, bool(run.stop)], device)
        if failed:
            _diverged(run, b)
        # the update (DDP averages the gradients), the EMA teacher, the online probe
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        c.model.after_backward(run.step)  # e.g. a head frozen for the first steps drops its gradients
        if cfg.optim.clip_grad:
            nn.utils.clip_grad_norm_(c.model.parameters(), cfg.optim.clip_grad)
        run.opt.step()
        run.step += 1
        c.model.update_target(run.step, total_steps)
        if run.probe is not None:
            correct += _online_probe_step(run, feats, y_train[idx])
        loss_sum += loss.detach()
        if stopping:  # the scheduler's signal: a checkpoint at this step, then every process leaves
            _stop(c, run, b + 1, loss_sum, correct, feed.skipped - skipped_before)
        shown = None
        if (b + 1) % LOG_EVERY == 0 or b + 1 == steps:  # the only host syncs of the loop
            mean = float(distributed.mean_over_ranks(loss_sum)) / (b + 1)
            if not math.isfinite(mean):
                _diverged(run, b)
            shown = f"{mean:.4g}"
        bar.update(task, advance=1, **({"loss": shown} if shown else {}))
    mean = float(distributed.mean_over_ranks(loss_sum)) / steps
    record = {"epoch": epoch + 1, "step": run.step, "loss": mean, "lr": run.opt.param_groups[0]["lr"]}
    if run.probe is not None:
        record["online_probe_train_acc"] = int(distributed.sum_over_ranks(correct)) / (steps * bs)
    skipped = feed.skipped - skipped_before  # samples that could not be decoded (the next one stood in)
    skipped = int(distributed.sum_over_ranks(torch.tensor(skipped, device=device)))
    if skipped:
        record["unreadable_samples"] = skipped
    return record


def _epoch_sums(run: Run, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The epoch's running loss sum, correct online-probe predictions and undecodable samples: zero, or
    where a stopped run left them (the loss on every process, the counts on rank 0: the sums over the
    processes are the stopped run's)."""
    saved, run.partial = run.partial or {}, None
    loss_sum = saved["loss_sum"].to(device) if saved else torch.zeros((), device=device)
    if not (saved and run.world.main):
        return loss_sum, torch.zeros((), dtype=torch.long, device=device), 0
    return loss_sum, saved["correct"].to(device), saved["skipped"]


def _stop(c: Components, run: Run, batches: int, loss_sum, correct, skipped: int) -> NoReturn:
    """Checkpoint the run after the first ``batches`` batches of this epoch (with every RNG state and the
    epoch's sums: the resume goes on exactly), then stop every process (:class:`Stopped`)."""
    partial = {
        "batches": batches,
        "loss_sum": distributed.mean_over_ranks(loss_sum).cpu(),
        "correct": distributed.sum_over_ranks(correct).cpu(),
        "skipped": int(distributed.sum_over_ranks(torch.tensor(skipped, device=c.device))),
    }
    path = ckpt.checkpoint_path(run.dir / "checkpoints", run.epoch, batches)
    if run.world.main:
        ckpt.save_checkpoint({**_state(c, run), "epoch": run.epoch, "partial": partial}, path)
    distributed.barrier()  # nobody leaves before the checkpoint is on disk
    raise Stopped(
        f"stopped by {run.stop.signal_name or 'another process'} at epoch {run.epoch + 1}, batch {batches} "
        f"(step {run.step}): {path}"
    )


def _online_probe_step(run: Run, feats: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One Adam step of the linear probe on detached features (no gradient reaches the backbone);
    returns the number of correct predictions, on the device."""
    logits = run.step_probe(feats.float())
    loss = F.cross_entropy(logits, y)
    run.probe_opt.zero_grad(set_to_none=True)
    loss.backward()
    run.probe_opt.step()
    return (logits.argmax(1) == y).sum()


def _diverged(run: Run, b: int) -> NoReturn:
    """Every process stops here at the same step; rank 0 says why (and tells torchrun's restarts)."""
    last = ckpt.list_checkpoints(run.dir / "checkpoints") if run.world.main else []
    err = DivergenceError(
        f"non-finite loss at epoch {run.epoch + 1} (by step {b + 1}). The last good checkpoint is kept "
        f"({last[0] if last else 'none yet'}). Lower optim.lr, set optim.clip_grad, or add warm-up "
        "(optim.warmup_epochs)."
    )
    if run.world.main:
        distributed.note("diverged", str(err))
    raise distributed.collective(err)


def end_epoch(c: Components, run: Run, record: dict, x_mon: torch.Tensor) -> None:
    """Monitor (every ``train.monitor_every`` epochs and at the last), log the epoch, checkpoint it."""
    cfg, epoch = c.cfg, run.epoch
    if (epoch + 1) % cfg.train.monitor_every == 0 or epoch + 1 == cfg.train.epochs:
        t_mon = time.perf_counter()
        record.update(monitor(c, x_mon, cfg.train.lidar_samples))
        if run.probe is not None and c.data.test is not None and c.data.test.y is not None:
            record["online_probe_test_acc"] = _online_probe_test_acc(c, run)
        record["monitor_time"] = time.perf_counter() - t_mon
    run.epoch += 1
    if not run.world.main:  # every rank monitors (its RNG stays in step with rank 0's); rank 0 writes
        return
    append_metrics(run.dir / "metrics.jsonl", record)
    run.trackers.log_epoch(record)
    path = ckpt.checkpoint_path(run.dir / "checkpoints", epoch)
    ckpt.save_checkpoint({**_state(c, run), "epoch": epoch}, path)
    ckpt.prune(run.dir / "checkpoints", cfg.train.keep_checkpoints)


def _state(c: Components, run: Run) -> dict:
    """What a checkpoint holds but its ``epoch``: the step, the weights and optimiser states, every RNG,
    the config, the precision the steps ran in."""
    return {
        "step": run.step,
        "model": c.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "probe": run.probe.state_dict() if run.probe is not None else None,
        "probe_optimizer": run.probe_opt.state_dict() if run.probe_opt is not None else None,
        "rng_cpu": torch.get_rng_state(),
        "rng_device": torch.cuda.get_rng_state(c.device) if c.device.type == "cuda" else None,
        "config": c.cfg.model_dump(mode="json"),
        "precision": precision(c),
    }


@torch.no_grad()
def _online_probe_test_acc(c: Components, run: Run) -> float:
    layer = resolve_layer("backbone", c.model.layer_names)
    z = embed(c.model, c.data.test.x, c.device, [layer], workers=workers(c.cfg))[layer]
    pred = run.probe(z).argmax(1).cpu()
    return float((pred == c.data.test.y).float().mean())


def _progress_bar(console: Console, enabled: bool) -> Progress:
    bar = Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=True,
    )
    bar.add_task("train", total=1, epoch=0, loss="-")
    return bar


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


def _summary_line(s: dict) -> str:
    if "linear_acc" not in s:
        why = s.get("probes_skipped", "no labels")
        return f"RankMe(backbone) {s['rankme_backbone']:.1f} (probes skipped: {why})"
    return (
        f"linear probe test accuracy [bold]{100 * s['linear_acc']:.2f} %[/], kNN (k={s['knn_k']}) "
        f"{100 * s['knn_acc']:.2f} %, RankMe(backbone) {s['rankme_backbone']:.1f}"
    )
