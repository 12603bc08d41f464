"""The run directory: its name, the resume check, and ``metrics.jsonl`` (one JSON object per epoch)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import socket
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from selfsup import config as C
from selfsup.errors import ConfigError, SelfsupError
from selfsup.paths import check_output_dir

#: The ``train`` keys a resume may change: epochs may grow; names, logging and the device may change.
RESUME_MAY_CHANGE = (
    *("epochs", "name", "out_dir", "device", "monitor_every"),
    *("loggers", "experiment", "tracking_dir"),  # the trackers (train.trackers)
)


def open_run_dir(cfg: C.RunConfig, run_dir: str | Path | None, resume: bool) -> Path:
    """A new run directory (``train.out_dir/train.name``, or a dated name; never an existing one), or, to
    resume, the given one after checking that its saved configuration matches ``cfg``. Nothing is written
    when a check fails."""
    if resume:
        run_dir = Path(run_dir)
        differ = config_differences(read_run_config(run_dir), cfg.model_dump(mode="json"))
        if differ:
            raise ConfigError(
                f"cannot resume '{run_dir}' with a different configuration ({', '.join(differ)}); rerun with "
                f"its own config (selfsup train --resume {run_dir}) or start a new run"
            )
        return run_dir
    run_dir = Path(run_dir) if run_dir else _new_name(cfg)
    check_output_dir(run_dir.parent, "train.out_dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except OSError as err:
        raise SelfsupError(f"cannot create the run directory '{run_dir}': {err.strerror or err}") from None
    return run_dir


def read_run_config(run_dir: Path) -> dict:
    """A run directory's ``config.yaml`` as a dict; an empty or unreadable one is refused."""
    data = C.load_yaml(run_dir, what="run config", hint="is this a selfsup run directory?")
    if not data:
        raise ConfigError(f"'{run_dir / 'config.yaml'}' is empty; it is not the config of a selfsup run")
    return data


def config_differences(saved: dict, current: dict) -> list[str]:
    """Dotted keys whose values differ between two configs, ignoring what may change on resume (epochs may
    grow; device, logging and names may change). Both are completed with today's defaults first, so that a
    run saved before a key existed compares equal when it used what is now that key's default."""
    a, b = flat_config(_comparable(_completed(saved))), flat_config(_comparable(_completed(current)))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def check_checkpoint_config(state: dict, cfg: C.RunConfig, run_dir: Path, checkpoint: Path) -> None:
    """The run's configuration must be the one its checkpoint was trained with: an edited config.yaml is
    refused, naming the keys (the weights would not fit, or training would go on under new settings)."""
    differ = config_differences(state["config"], cfg.model_dump(mode="json"))
    if differ:
        raise ConfigError(
            f"'{run_dir / 'config.yaml'}' differs from the configuration its checkpoint {checkpoint.name} "
            f"was trained with ({', '.join(differ)}); undo the edit, or start a new run"
        )


def _completed(cfg_dict: dict) -> dict:
    try:
        return C.RunConfig.model_validate(cfg_dict).model_dump(mode="json")
    except ValueError:  # not a valid config today: compare it as it is
        return cfg_dict


def flat_config(d: dict, prefix: str = "") -> dict:
    """A config dict with dotted keys (``optim.lr``); free-form dicts (``params``, ``*_args``) stay values."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "params" and not k.endswith("_args"):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _comparable(cfg_dict: dict) -> dict:
    """The parts of a config that must match for a resume (epochs may grow, logging may change)."""
    d = json.loads(json.dumps(cfg_dict))
    for key in RESUME_MAY_CHANGE:
        d.get("train", {}).pop(key, None)
    return d


def _new_name(cfg: C.RunConfig) -> Path:
    name = cfg.train.name
    if name is not None and (not name.strip() or "/" in name or "\\" in name or name in (".", "..")):
        raise ConfigError(
            f"train.name={name!r} must be a plain directory name inside train.out_dir (no '/', not '..')"
        )
    stamp = f"{cfg.method.name}-{cfg.data.dataset.split(':')[0]}-{datetime.now():%Y%m%d-%H%M%S}"
    name = cfg.train.name or stamp
    run_dir = Path(cfg.train.out_dir) / name
    i = 1
    while run_dir.exists():
        i += 1
        run_dir = Path(cfg.train.out_dir) / f"{name}-{i}"
    return run_dir


def append_metrics(path: Path, record: dict) -> None:
    """One line of ``metrics.jsonl``; non-finite numbers are written as null."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    with open(path, "a") as f:
        f.write(json.dumps(clean) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    """The records of ``metrics.jsonl``. A torn last line (a kill while appending) is dropped with a warning;
    a bad line elsewhere means the file is not ours and is refused."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise SelfsupError(f"'{path}' is not a text file of JSON lines") from None
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                warnings.warn(f"'{path}': dropped a half-written last line (a killed run)", stacklevel=2)
                break
            raise SelfsupError(f"'{path}' line {i + 1} is not JSON; the file is damaged") from None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise SelfsupError(f"'{path}' line {i + 1} is not an epoch record; the file is damaged")
        records.append(record)
    return records


def truncate_metrics(path: Path, start_epoch: int) -> None:
    """On resume, drop records of epochs that will be redone (a kill after logging, before the checkpoint)."""
    if path.is_file():
        keep = [r for r in read_metrics(path) if r["epoch"] <= start_epoch]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``run_dir/.lock`` while training, so that two processes never write one
    run. The kernel drops the lock when its process dies, so a lock left by a killed run is no obstacle; the
    file names the owner (host and PID) for the message a second writer gets."""
    lock = run_dir / ".lock"
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 256).decode(errors="replace").split()
            os.close(fd)
            who = f"process {owner[1]} on {owner[0]}" if len(owner) == 2 else "another process"
            raise SelfsupError(f"run '{run_dir}' is in use by {who}; wait for it to finish") from None
        if _same_file(lock, fd):  # not a file its previous owner unlinked while we opened it
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{socket.gethostname()} {os.getpid()}".encode())
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still holding it: nobody can have taken it meanwhile
        os.close(fd)


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
