"""What an organism trainer hands back and how a trained organism is put in place (shared by every trainer:
the organisms' own and the recurrent-depth one), apart from the trainers so neither imports the other."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class EvalResult:
    n: int
    n_correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    by_level: dict[str, float]
    outcomes: str = ""  # "1"/"0" per evaluated problem, in test-split order (tests re-check a prefix exactly)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    wall_seconds: float
    n_parameters: int
    losses: list[float]
    evaluation: EvalResult | None


def swap_into_place(target: Path, fill: Callable[[Path], None]) -> Path:
    """Let ``fill`` write a staging dir beside ``target``, make it world-readable, then swap it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fill(staging)
        # mkdtemp makes a private directory; a shipped checkpoint must be readable by every user.
        staging.chmod(0o755)
        for path in staging.iterdir():
            path.chmod(0o644)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


SHIPPED_SKIP = ("checkpoint", "optimizer.safetensors", "trainer_state.json")


def write_recurrent_organism(source: Path, target: Path) -> Path:
    """Copy a trained model directory (minus training checkpoints) into a staging dir, then swap it into place."""

    def fill(staging: Path) -> None:
        for path in sorted(Path(source).iterdir()):
            if path.is_file() and path.name not in SHIPPED_SKIP:
                shutil.copyfile(path, staging / path.name)

    return swap_into_place(target, fill)
