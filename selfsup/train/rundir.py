"""The run directory: its name, the resume check, and ``metrics.jsonl`` (one JSON object per epoch)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

from selfsup import config as C
from selfsup.errors import ConfigError, SelfsupError


def open_run_dir(cfg: C.RunConfig, run_dir: str | Path | None, resume: bool) -> Path:
    """A new run directory (``train.out_dir/train.name``, or a dated name; never an existing one), or, to
    resume, the given one after checking that its saved configuration matches ``cfg``."""
    if resume:
        run_dir = Path(run_dir)
        if _comparable(C.load_yaml(run_dir)) != _comparable(cfg.model_dump(mode="json")):
            raise ConfigError(
                f"cannot resume '{run_dir}' with a different configuration; rerun with its own config "
                f"(selfsup train --resume {run_dir}) or start a new run"
            )
        return run_dir
    run_dir = Path(run_dir) if run_dir else _new_name(cfg)
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def _comparable(cfg_dict: dict) -> dict:
    """The parts of a config that must match for a resume (epochs may grow, logging may change)."""
    d = json.loads(json.dumps(cfg_dict))
    for key in ("epochs", "name", "out_dir", "tensorboard", "device", "monitor_every"):
        d["train"].pop(key, None)
    return d


def _new_name(cfg: C.RunConfig) -> Path:
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
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path: Path, start_epoch: int) -> None:
    """On resume, drop records of epochs that will be redone (a kill after logging, before the checkpoint)."""
    if path.is_file():
        keep = [r for r in read_metrics(path) if r["epoch"] <= start_epoch]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))


def tensorboard_writer(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SelfsupError(
            "train.tensorboard=true needs the tensorboard package: pip install tensorboard"
        ) from None
    return SummaryWriter(str(run_dir / "tensorboard"))
