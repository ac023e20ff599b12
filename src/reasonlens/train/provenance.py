"""Where a model was trained: what a card records so a byte-for-byte re-train can be attempted."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name (as ``lscpu`` prints it): byte-identical weights only hold on the same CPU type and
    thread count, because float reductions are ordered differently by different kernels."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def training_machine(threads: int) -> dict[str, Any]:
    """The card fields every trainer writes: torch version, torch threads and the CPU model."""
    import torch

    return {"torch_version": torch.__version__, "torch_threads": threads, "cpu_model": cpu_model()}
