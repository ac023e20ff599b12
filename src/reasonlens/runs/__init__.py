"""Run directories and the sample runner."""

from reasonlens.runs.rundir import FORMAT_VERSION, RunDir
from reasonlens.runs.runner import RunSpec, execute, summarize

__all__ = ["FORMAT_VERSION", "RunDir", "RunSpec", "execute", "summarize"]
