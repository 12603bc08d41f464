"""Wall time of each study preset (``configs/study/*.yaml``): one ``selfsup train`` run alone, start to exit.

    python -m benchmarks.studies.study_presets

A study preset must run in at most 60 s on 2 CPU cores (the seeded selection sweeps run 12 of them per
sweep). Writes ``benchmarks/results/selection/study_presets.json``: per preset the wall seconds, the peak
memory, the linear-probe accuracy; the objects3d data is generated and cached by a first, untimed run.
"""

from __future__ import annotations

import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks._common import ROOT, write_result

LIMIT_S = 60.0


def timed_run(config: Path, out: str, name: str) -> dict:
    selfsup = str(ROOT / ".venv" / "bin" / "selfsup")
    cmd = [selfsup, "train", "--config", str(config), f"train.out_dir={out}", f"train.name={name}"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    summary = json.loads((Path(out) / name / "summary.json").read_text())
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far, MiB
    return {"wall_s": wall, "peak_mib_so_far": peak, "linear_acc": summary.get("linear_acc")}


def main() -> None:
    configs = sorted((ROOT / "configs" / "study").glob("*.yaml"))
    with tempfile.TemporaryDirectory() as out:
        timed_run(configs[0], out, "warm-up")  # generates and caches the data
        results = {c.stem: timed_run(c, out, c.stem) for c in configs}
    for r in results.values():
        r["within_limit"] = r["wall_s"] <= LIMIT_S
    write_result(
        ROOT / "benchmarks/results/selection/study_presets.json", {"limit_s": LIMIT_S, "presets": results}
    )
    for name, r in results.items():
        print(f"{name}: {r['wall_s']:.1f} s, linear {100 * r['linear_acc']:.1f} %")


if __name__ == "__main__":
    main()
