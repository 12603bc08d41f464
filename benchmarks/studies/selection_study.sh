#!/usr/bin/env bash
# The label-free selection study (RankMe-driven sweeps): five one-hyper-parameter sweeps on MNIST-1D
# (VICReg covariance weight, learning rate, weight decay; SimCLR temperature, learning rate), 26 runs in all.
# Each sweep's summary (Kendall tau, Spearman rho, label-free pick vs labelled oracle) and plots are copied to
# benchmarks/results/selection/, and benchmarks.studies.selection_table aggregates them into summary.json.
# Usage: bash benchmarks/studies/selection_study.sh   (about 20 minutes on 2 cores)
# `bash benchmarks/studies/selection_study.sh full` runs the full-length sweeps instead
# (configs/sweeps/*-mnist1d-full.yaml: every run the main job as it is, about 85 s a run with 2 workers) into
# benchmarks/results/selection/full/. A sweep that is already complete is not run again.
set -euo pipefail
cd "$(dirname "$0")/../.."
SELFSUP=${SELFSUP:-.venv/bin/selfsup}
OUT=benchmarks/results/selection${1:+/$1}
mkdir -p "$OUT"
for f in configs/sweeps/*-mnist1d${1:+-$1}.yaml; do
  name=$(basename "$f" .yaml)
  "$SELFSUP" sweep --config "$f" --quiet
  "$SELFSUP" sweep summary "sweeps/$name" --json > "$OUT/$name.json"
  cp "sweeps/$name/report.html" "$OUT/$name.html"
done
.venv/bin/python -m benchmarks.studies.selection_table "$OUT"
