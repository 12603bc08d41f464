"""Where the main job's wall time goes, start-up to report: a phase table for one `selfsup train`.

The library's phase functions are wrapped with timers from outside (nothing in selfsup knows about this
script), then the same code path as `selfsup train` runs in this process. Training steps are the epochs'
time minus the monitor; "other" is what no timer covers (rich output, process exit is not counted).

    python benchmarks/profile_main_job.py [--label NAME] [overrides ...]        # e.g. train.epochs=4
    PYTHONPATH=OLD_CHECKOUT python benchmarks/profile_main_job.py --label before   # older code, same script

Writes benchmarks/results/profile_main_job[-NAME].json (phase -> seconds, calls) and prints the table.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
LABEL = sys.argv.pop(2) if sys.argv[1:2] == ["--label"] else None
OVERRIDES = sys.argv[2:] if LABEL else sys.argv[1:]
OUT = ROOT / "benchmarks" / "results" / f"profile_main_job{'-' + LABEL if LABEL else ''}.json"
PHASES: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])


def timed(module, name: str, phase: str) -> None:
    """Replace ``module.name`` by a wrapper adding its wall time to ``PHASES[phase]``."""
    fn = getattr(module, name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            PHASES[phase][0] += time.perf_counter() - t0
            PHASES[phase][1] += 1

    setattr(module, name, wrapper)


def main() -> None:
    import torch  # noqa: F401  (import time is its own phase)

    import selfsup
    import selfsup.cli  # noqa: F401
    from selfsup import config as C
    from selfsup.report import write_run_report
    from selfsup.train import checkpoint as ckpt
    from selfsup.train import loop
    from selfsup.train import measure as evaluate

    PHASES["import torch + selfsup"] = [time.perf_counter() - T_START, 1]
    timed(loop, "load_dataset", "load data")
    timed(loop, "build", "build model + views")
    timed(loop, "train_epoch", "epochs: training steps")
    timed(loop, "monitor", "epochs: monitor (RankMe, LiDAR, ...)")
    timed(loop, "_online_probe_test_acc", "epochs: online probe test accuracy")
    timed(ckpt, "save_checkpoint", "epochs: checkpoint")
    timed(evaluate, "embed", "  of which: embed (monitor and final)")
    timed(evaluate, "quality_report", "  of which: quality reports (monitor and final)")
    timed(evaluate, "linear_probe", "  of which: final linear probe (L-BFGS)")
    timed(evaluate, "knn_probe", "  of which: final kNN probe")
    cfg = C.resolve(None, OVERRIDES + ["train.out_dir=runs/bench", f"train.name=profile-{LABEL or 'now'}"])
    shutil.rmtree(ROOT / "runs" / "bench" / f"profile-{LABEL or 'now'}", ignore_errors=True)
    t0 = time.perf_counter()
    summary = loop.fit(cfg, progress=False)
    PHASES["fit (total)"] = [time.perf_counter() - t0, 1]
    t0 = time.perf_counter()
    write_run_report(summary["run_dir"])
    PHASES["report"] = [time.perf_counter() - t0, 1]
    wall = time.perf_counter() - T_START
    rows = {k: {"seconds": round(v[0], 2), "calls": v[1]} for k, v in PHASES.items()}
    print(f"{'phase':<48}{'s':>8}{'calls':>7}")
    for k, v in rows.items():
        print(f"{k:<48}{v['seconds']:>8.2f}{v['calls']:>7}")
    print(f"{'wall (this process)':<48}{wall:>8.2f}")
    OUT.write_text(
        json.dumps(
            {
                "benchmark": "profile_main_job",
                "overrides": OVERRIDES,
                "code": str(Path(selfsup.__file__).resolve().parent.parent),
                "wall_s": round(wall, 2),
                "linear_acc": summary.get("linear_acc"),
                "phases": rows,
                "note": "'of which' rows are parts of the rows above them (monitor or fit), not extra time",
                "date": datetime.now(timezone.utc).isoformat(),
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
