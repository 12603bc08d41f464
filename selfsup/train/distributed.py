"""Several processes, one run: ``torchrun`` + DistributedDataParallel, exact by construction.

``torchrun --nproc-per-node N -m selfsup train ...`` starts N copies of the trainer and gives each its
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`joined` makes the copy join the job (gloo on CPUs,
NCCL on CUDA, one GPU per process) and leave it at the end. How a run is shared:

- ``train.batch_size`` is the **global** batch: every process walks the same seeded permutation and takes
  its contiguous share of each batch; its views are drawn as one process holding the whole batch would
  (:func:`selfsup.views.batch_shard`), and the criteria gather the embeddings of every process
  (``gather_distributed``), so the loss and, after DDP's gradient averaging, the update are those of one
  process. Only BatchNorm differs: each process normalises its own share unless ``model.sync_bn``.
- Rank 0 alone touches the run directory: it opens it, reads the checkpoint to resume from and writes
  metrics, checkpoints, the summary; :func:`from_main` hands its result, or its error, to every rank.
- Verdicts are collective: a non-finite loss or embedding on any process, or a stop signal that reached
  any of them, stops every process at the same step (:func:`any_ranks`), so none is left waiting in a
  collective.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from selfsup.errors import ConfigError, SelfsupError, say_error

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank, number of processes, rank on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """The job this process has joined; ``World()`` (one process) outside one."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def launched_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 when not under torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number of processes") from None


@contextlib.contextmanager
def joined(device: torch.device) -> Iterator[World]:
    """Join the torchrun job of this process (when it has 2+ processes) for the duration of the block.

    ``device`` is the training device the config asks for: CUDA processes use NCCL and the GPU of their
    ``LOCAL_RANK``; CPU processes use gloo. A job already joined by the caller is used as it is.
    """
    if launched_size() == 1 or dist.is_initialized():
        yield world()
        return
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"several processes train on cpu (gloo) or cuda (nccl), not on '{device.type}'")
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", **_attempt_store())
    try:
        yield world()
    except RuntimeError as err:
        if not _lost_peer(err):
            raise
        raise SelfsupError(
            f"lost contact with another process of this job (it stopped, or its machine did): "
            f"{str(err).splitlines()[0]}; torchrun --max-restarts restarts the job from its last checkpoint"
        ) from err
    except SelfsupError as err:
        if getattr(err, "collective", False):
            # every rank stopped here: rank 0 says why, then all leave together (torchrun stops the
            # remaining processes as soon as one exits, which could cut rank 0's message short)
            if world().main:
                say_error(str(err))
            err.silent = True  # said: the CLI only exits 2
            dist.barrier()
        raise
    finally:
        dist.destroy_process_group()


@functools.cache
def _job_store() -> dist.Store | None:
    """The key-value store torchrun's agent keeps for the whole launch, restarts included (None when not
    launched by torchrun)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    return dist.TCPStore(addr, port, launched_size(), is_master=False)


def _attempt_store() -> dict:
    """Under torchrun: its store, under a prefix of this restart attempt. A restarted job reuses the store
    of the failed attempt, whose processes left their addresses in it; without a prefix a new process may
    read a dead one's address and fail to connect (seen here with gloo, 2 restarts in 3; with NCCL,
    pytorch/pytorch#167288). Elsewhere: {} (``init_process_group``'s own ``env://``)."""
    store = _job_store()
    if store is None:
        return {}
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    prefixed = dist.PrefixStore(f"selfsup/attempt-{attempt}", store)
    return {"store": prefixed, "rank": int(os.environ["RANK"]), "world_size": launched_size()}


def note(key: str, value: str) -> None:
    """Note ``value`` for the rest of this torchrun launch, restarts included (in torchrun's store, which
    lives as long as the launch and no longer); nothing outside torchrun."""
    store = _job_store()
    if store is not None:
        store.set(f"selfsup/{key}", value)


def noted(key: str) -> str | None:
    """What an earlier attempt of this torchrun launch noted under ``key`` (:func:`note`), or None."""
    store = _job_store()
    if store is None or not store.check([f"selfsup/{key}"]):
        return None
    return store.get(f"selfsup/{key}").decode()


def _lost_peer(err: RuntimeError) -> bool:
    """A collective that failed because another process went away (its connection reset or closed)."""
    text = str(err)
    return isinstance(err, dist.DistNetworkError) or any(
        k in text for k in ("Connection reset by peer", "Connection closed by peer")
    )


def process_device(device: torch.device) -> torch.device:
    """The device of this process: with several CUDA processes, the GPU of its ``LOCAL_RANK``."""
    w = world()
    if w.size == 1 or device.type != "cuda":
        return device
    if device.index is not None:  # the same verdict on every rank
        raise collective(
            ConfigError(
                f"train.device={device}: with several processes each one uses the GPU of its LOCAL_RANK; "
                "set train.device=cuda (or auto), and choose the GPUs with CUDA_VISIBLE_DEVICES"
            )
        )
    return torch.device("cuda", w.local_rank)


def check_global_batch(batch_size: int) -> None:
    size = world().size
    if batch_size % size:  # the same verdict on every rank
        raise collective(
            ConfigError(
                f"train.batch_size={batch_size} is the global batch; it must divide evenly among the {size} "
                f"processes (use a multiple of {size})"
            )
        )


def check_views(views: nn.Module) -> None:
    """Views that can share a batch between processes exactly (the kornia backend draws its own numbers)."""
    if any(getattr(v, "backend", "torch") == "kornia" for v in views.modules()):
        raise collective(
            ConfigError(
                "the kornia view backend cannot share a batch between processes exactly; use "
                "data.view_args.backend=torch with several processes"
            )
        )


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel (gradients averaged over the processes); alone: itself."""
    if world().size == 1:
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def sync_batch_norm(model: nn.Module, wanted: bool | None, device: torch.device) -> nn.Module:
    """BatchNorm layers that normalise over the global batch (``model.sync_bn``; default: on with CUDA and
    several processes). PyTorch's SyncBatchNorm runs on CUDA only."""
    if world().size == 1:
        return model
    if wanted is None:
        wanted = device.type == "cuda"
    if not wanted:
        return model
    if device.type != "cuda":
        raise collective(
            ConfigError(
                "model.sync_bn=true needs CUDA processes (PyTorch's SyncBatchNorm does not run on CPUs); set "
                "model.sync_bn=false: each process then normalises its own share of the batch"
            )
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def from_main(fn: Callable[..., T], *args) -> T:
    """``fn(*args)`` run by rank 0 alone; every rank returns its result or raises its error.

    The result is pickled to the other ranks (a checkpoint: load it on the CPU). Any other failure on
    rank 0 is re-raised there and stops the others with a message, so nobody waits for an answer.
    """
    w = world()
    if w.size == 1:
        return fn(*args)
    box: list = [None]
    if w.main:
        try:
            box[0] = ("ok", fn(*args))
        except SelfsupError as err:
            box[0] = ("error", err)
        except BaseException as err:
            dist.broadcast_object_list([("bug", f"{type(err).__name__}: {err}")], src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "ok":
        return value
    if kind == "error":
        raise collective(value)
    raise SelfsupError(f"process 0 failed ({value}); see its message")


def collective(err: SelfsupError) -> SelfsupError:
    """Mark an error that every rank raises at the same point: :func:`joined` has rank 0 say it once."""
    err.collective = True
    return err


def any_ranks(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag true on every rank when it is true on any of them (one all-reduce; the flags themselves in
    one process)."""
    if world().size == 1:
        return list(flags)
    t = torch.tensor([int(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def barrier() -> None:
    """Wait for every process (nothing in one process)."""
    if world().size > 1:
        dist.barrier()


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over the processes (a copy; ``t`` in one process)."""
    return sum_over_ranks(t) / world().size


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the processes (a copy; ``t`` in one process)."""
    if world().size == 1:
        return t
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def launch_local(nproc: int, args: list[str]) -> int:
    """``python -m selfsup ARGS`` in ``nproc`` processes on this machine, started by torchrun's engine
    (``torch.distributed.run``, standalone rendezvous): ``selfsup train --nproc N``. Returns the exit
    status: 0; 2 when a process stopped on a user error (it printed the message); 130 on Ctrl-C; 143 when
    stopped by SIGTERM or SIGUSR1 (checkpointed where it stopped: :mod:`selfsup.train.preempt`)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if launched_size() > 1:
        raise ConfigError("--nproc inside a torchrun job: give the number of processes to torchrun only")
    parsed = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--module", "selfsup", *args]
    )
    # torchrun passes these signals on to its processes; SLURM's early warning (SIGUSR1) too
    os.environ.setdefault("TORCHELASTIC_SIGNALS_TO_HANDLE", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1")
    try:
        run(parsed)
    except SignalException as err:  # passed on: the processes stopped (Ctrl-C: they said "interrupted")
        return 130 if err.sigval == signal.SIGINT else 143
    except ChildFailedError as err:
        codes = {f.exitcode for f in err.failures.values()}
        if codes == {143}:  # stopped by a scheduler's signal, checkpointed: rank 0 said where
            return 143
        if 2 in codes and 1 not in codes:  # a user error (a bug, exit 1, outranks it)
            return 2
        raise SelfsupError(
            f"a training process failed (exit codes {sorted(codes)}); its message is above"
        ) from None
    return 0
