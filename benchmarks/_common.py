"""What every benchmark and study script shares: the repository root, running a command, the machine it
ran on, and the one schema of a result file.

A result file in ``benchmarks/results/`` is a JSON object ``{date, machine, git_rev, command, results}``:
``results`` holds the script's measurements; ``benchmarks/render.py`` turns them into the tables of
``docs/results/``.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SCHEMA = ("date", "machine", "git_rev", "command", "results")


def sh(cmd: list[str], **kwargs) -> float:
    """Run ``cmd`` from the repository root, echoed as ``+ cmd`` (failing loudly); return its wall time in
    seconds."""
    print("+", shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, **kwargs)
    return time.perf_counter() - t0


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict:
    """Where a measurement ran: CPU, cores, load, platform and library versions (and the GPU, if any)."""
    import torch

    info = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def git_rev() -> str | None:
    """The commit the measured code is at (``+dirty`` with uncommitted changes), or None outside git."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    if rev.returncode:
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def this_command() -> str:
    """How this script was invoked, as a command line to rerun it from the repository root."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    head = f"python -m {spec.name}" if spec is not None else f"python {sys.argv[0]}"
    return " ".join([head, *map(shlex.quote, sys.argv[1:])])


def write_result(path: str | Path, results, command: str | None = None, machine: dict | None = None) -> Path:
    """Write ``results`` to ``path`` (relative paths: under ``benchmarks/results/``) in the one schema."""
    path = Path(path)
    path = path if path.is_absolute() else RESULTS / path
    doc = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine if machine is not None else machine_info(),
        "git_rev": git_rev(),
        "command": command or this_command(),
        "results": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def read_result(path: str | Path) -> dict:
    """A result file's ``results`` (relative paths: under ``benchmarks/results/``)."""
    path = Path(path)
    doc = json.loads((path if path.is_absolute() else RESULTS / path).read_text())
    return doc["results"]
