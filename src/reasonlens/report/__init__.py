"""The self-contained HTML report: run summary, token-level MI view, thinking tokens, MI plots, interventions,
accuracy-vs-budget curves and recurrent-depth results, built from run directories."""

from reasonlens.report.builder import ReportConfig, build_report, render_report
from reasonlens.report.sources import KINDS, RunSource, collect_sources, detect_kind

__all__ = ["KINDS", "ReportConfig", "RunSource", "build_report", "collect_sources", "detect_kind", "render_report"]
