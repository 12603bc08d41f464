"""Plots (matplotlib) and a static, self-contained HTML report for a run directory."""

from selfsup.report.run_report import write_run_report

__all__ = ["write_run_report"]
