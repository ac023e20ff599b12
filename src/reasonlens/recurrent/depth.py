"""Depth scaling: accuracy at each fixed r, and adaptive exit's compute/accuracy trade-off (SPEC B3).

Generation goes through the one decode loop (`reasonlens.runs.execute`); the recurrent model's forward
kwargs (`num_steps`, `exit_criterion`, ...) travel in `DecodeConfig.forward_kwargs`, and
`IterationAccounting` (an Observer) records the core iterations that produced every generated token.
Layout of RUN_DIR: one resumable run directory per setting (`r<r>/`, `exit-<criterion>/`) and a top-level
`summary.json`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reasonlens.decode.plugins import Observer, StepState
from reasonlens.errors import UserError
from reasonlens.recurrent.exit import CRITERIA, DEFAULT_THRESHOLDS


class IterationAccounting(Observer):
    """Collects, per sample key, the number of core iterations spent on each generated token."""

    layers: list = []

    def __init__(self) -> None:
        self.per_key: dict[Any, list[int]] = {}

    def on_step(self, state: StepState, hidden: dict, tokens: torch.Tensor) -> None:
        used = getattr(state.model_output, "iterations_used", None)
        if used is None:
            return
        used = used.tolist()
        for row in state.rows:
            if bool(state.active[row.row]):
                self.per_key.setdefault(row.key, []).append(int(used[row.row]))

    def record_hook(self, generation, record: dict) -> None:
        """Add `iterations` (per token) and `mean_iterations` to a result record (runner's record_hook)."""
        iterations = self.per_key.get(generation.key, [])
        record["iterations"] = iterations
        record["mean_iterations"] = sum(iterations) / len(iterations) if iterations else None


@dataclass
class DepthSpec:
    """What `reasonlens depth` runs."""

    model: str
    dataset: str
    out: Path
    steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    exit_criterion: str | None = None
    threshold: float | None = None
    split: str = "test"
    n: int | None = None
    template: str = "raw"
    max_new_tokens: int = 64
    batch_size: int = 8
    init_scale: float = 0.0
    warm_start: bool = False
    cache_slots: int | None = None
    model_dtype: str = "fp32"
    device: str = "cpu"
    extra_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "DepthSpec":
        if not self.steps or any(int(r) < 1 for r in self.steps):
            raise UserError(f"--recurrence must be positive integers, got {list(self.steps)}")
        if self.exit_criterion is not None and self.exit_criterion not in CRITERIA:
            raise UserError(f"--exit '{self.exit_criterion}' is unknown (choose from {', '.join(sorted(CRITERIA))})")
        if self.threshold is not None and self.exit_criterion is None:
            raise UserError("--threshold needs --exit")
        if self.threshold is not None and not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise UserError(f"--threshold must be a finite number >= 0, got {self.threshold}")
        if not math.isfinite(self.init_scale) or self.init_scale < 0:
            raise UserError(f"--init-scale must be a finite number >= 0, got {self.init_scale}")
        if self.cache_slots is not None and self.cache_slots < 1:
            raise UserError(f"--cache-slots must be >= 1, got {self.cache_slots}")
        return self


def _check_depth_folder(out: Path) -> None:
    """`--out` must be new, empty, or a depth folder written before (resumed): never someone's own folder."""
    from reasonlens.runs.io import read_json_object
    from reasonlens.runs.rundir import RunDir, check_empty_or_new

    summary = out / "summary.json"
    if summary.is_file() and read_json_object(summary, "depth summary").get("command") == "depth":
        return
    if (
        out.is_dir()
        and all(RunDir(child).manifest_path.is_file() for child in out.iterdir() if child.is_dir())
        and all(child.is_dir() for child in out.iterdir())
    ):
        return  # sub-runs of an interrupted depth run (the summary is written last)
    check_empty_or_new(out, "--out", "it is not a depth folder (no summary.json from `reasonlens depth`)")


def parse_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"--recurrence '{text}' must be comma-separated integers, e.g. 1,2,4,8") from None
    if not steps or min(steps) < 1:
        raise UserError(f"--recurrence '{text}' must list positive integers")
    return steps


def _iteration_stats(results: list[dict]) -> dict[str, Any]:
    per_token = [i for r in results for i in (r.get("iterations") or [])]
    histogram = Counter(per_token)
    return {
        "tokens": len(per_token),
        "mean_iterations_per_token": sum(per_token) / len(per_token) if per_token else None,
        "total_iterations": sum(per_token),
        "iterations_histogram": {str(k): histogram[k] for k in sorted(histogram)},
    }


def _problem_levels(spec: DepthSpec) -> dict[str, float]:
    """Problem id -> difficulty level (``meta['level']``, e.g. hops); empty when the dataset has no levels."""
    from reasonlens.data import load_problems

    levels = {}
    for problem in load_problems(spec.dataset, split=spec.split, n=spec.n):
        level = problem.meta.get("level")
        if isinstance(level, (int, float)) and not isinstance(level, bool):
            levels[problem.id] = float(level)
    return levels


def _level_key(level: float) -> str:
    return str(int(level)) if float(level).is_integer() else str(level)


def level_breakdown(results: list[dict], levels: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Per difficulty level: n, accuracy and mean core iterations per token."""
    grouped: dict[float, list[dict]] = {}
    for record in results:
        if record.get("id") in levels:
            grouped.setdefault(levels[record["id"]], []).append(record)
    breakdown = {}
    for level in sorted(grouped):
        records = grouped[level]
        per_token = [i for r in records for i in (r.get("iterations") or [])]
        per_item_max = [max(r["iterations"]) for r in records if r.get("iterations")]
        breakdown[_level_key(level)] = {
            "n": len(records),
            "accuracy": sum(1.0 for r in records if r.get("correct")) / len(records),
            "mean_iterations_per_token": sum(per_token) / len(per_token) if per_token else None,
            "mean_max_iterations": sum(per_item_max) / len(per_item_max) if per_item_max else None,
        }
    return breakdown


def difficulty_correlation(results: list[dict], levels: dict[str, float]) -> dict[str, Any] | None:
    """Spearman correlation between an item's level and the core iterations it used under adaptive exit.

    Two per-item compute measures: the mean over its generated tokens, and the maximum over them (the token
    that needed the most thought, usually the answer digit; the formatting tokens around it exit early).
    """
    from scipy.stats import spearmanr

    pairs = [(levels[r["id"]], r["iterations"]) for r in results if r.get("id") in levels and r.get("iterations")]
    if len(pairs) < 3 or len({level for level, _ in pairs}) < 2:
        return None
    level_values = [level for level, _ in pairs]
    out: dict[str, Any] = {"n": len(pairs), "method": "spearman"}
    for name, reduce in (("mean_iterations", lambda its: sum(its) / len(its)), ("max_iterations", max)):
        compute = [reduce(its) for _, its in pairs]
        if len(set(compute)) < 2:  # every item used the same compute (e.g. fixed depth): no correlation exists
            out[name] = {"rho": None, "p_value": None}
            continue
        rho, p_value = spearmanr(level_values, compute)
        out[name] = {"rho": float(rho), "p_value": float(p_value)}
    return out


def run_depth(spec: DepthSpec, lm=None, quiet: bool = False) -> dict[str, Any]:
    """Evaluate accuracy at every r in `spec.steps` (and adaptive exit up to max r); writes RUN_DIR/summary.json."""
    from reasonlens.decode import DecodeConfig
    from reasonlens.models import load
    from reasonlens.runs.io import atomic_write_json
    from reasonlens.runs.rundir import RunDir
    from reasonlens.runs.runner import RunSpec, execute

    spec.validate()
    if lm is None:
        lm = load(spec.model, dtype=spec.model_dtype, device=spec.device)
    if not getattr(lm.model, "is_recurrent_depth", False):
        raise UserError(f"--model '{spec.model}' is not a recurrent-depth model")
    out = Path(spec.out)
    _check_depth_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    base_kwargs: dict[str, Any] = {"init_scale": spec.init_scale, **spec.extra_kwargs}
    if spec.warm_start:
        base_kwargs["warm_start"] = True
    if spec.cache_slots is not None:
        base_kwargs["cache_slots"] = spec.cache_slots

    settings: list[tuple[str, dict[str, Any]]] = [(f"r{r}", {"num_steps": int(r)}) for r in spec.steps]
    r_max = max(spec.steps)
    if spec.exit_criterion is not None:
        threshold = DEFAULT_THRESHOLDS[spec.exit_criterion] if spec.threshold is None else spec.threshold
        settings.append(
            (
                f"exit-{spec.exit_criterion}",
                {"num_steps": r_max, "exit_criterion": spec.exit_criterion, "exit_threshold": threshold},
            )
        )

    levels = _problem_levels(spec)
    summary: dict[str, Any] = {
        "command": "depth",
        "model": spec.model,
        "dataset": spec.dataset,
        "split": spec.split,
        "init_scale": spec.init_scale,
        "steps": {},
        "adaptive": None,
    }
    for name, kwargs in settings:
        accounting = IterationAccounting()
        forward_kwargs = {**base_kwargs, **kwargs}
        decode = DecodeConfig(
            max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size, forward_kwargs=forward_kwargs
        )
        run_spec = RunSpec(
            out=out / name,
            model=spec.model,
            dataset=spec.dataset,
            command="depth",
            split=spec.split,
            n=spec.n,
            template=spec.template,
            decode=decode,
            model_dtype=spec.model_dtype,
            device=spec.device,
            method={"recurrent": forward_kwargs},
        )
        run_summary = execute(
            run_spec, lm=lm, plugins=lambda _lm, a=accounting: [a], record_hook=accounting.record_hook, quiet=quiet
        )
        results = RunDir(out / name).results()
        stats = _iteration_stats(results)
        entry = {
            "accuracy": run_summary["accuracy"],
            "accuracy_ci95": run_summary["accuracy_ci95"],
            "n": run_summary["n"],
            "n_correct": run_summary["n_correct"],
            **stats,
            "forward_kwargs": forward_kwargs,
        }
        if levels:
            entry["by_level"] = level_breakdown(results, levels)
        if name.startswith("exit-"):
            summary["adaptive"] = {
                "criterion": spec.exit_criterion,
                "threshold": kwargs["exit_threshold"],
                "max_steps": r_max,
                **entry,
                "level_iteration_correlation": difficulty_correlation(results, levels),
            }
        else:
            summary["steps"][str(kwargs["num_steps"])] = entry
    if summary["adaptive"] is not None:
        fixed = summary["steps"][str(r_max)]
        adaptive = summary["adaptive"]
        if fixed["mean_iterations_per_token"] and adaptive["mean_iterations_per_token"] is not None:
            adaptive["iterations_saved_vs_fixed_rmax"] = 1.0 - adaptive["mean_iterations_per_token"] / r_max
        adaptive["accuracy_change_vs_fixed_rmax"] = adaptive["accuracy"] - fixed["accuracy"]
    atomic_write_json(out / "summary.json", summary)
    return summary


def format_depth_table(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(setting, accuracy, mean iterations/token) rows for printing."""
    rows = []
    for r, entry in summary["steps"].items():
        rows.append((f"r={r}", f"{entry['accuracy']:.3f}", f"{entry['mean_iterations_per_token'] or 0:.2f}"))
    adaptive = summary.get("adaptive")
    if adaptive:
        rows.append(
            (
                f"exit {adaptive['criterion']} < {adaptive['threshold']:g} (max {adaptive['max_steps']})",
                f"{adaptive['accuracy']:.3f}",
                f"{adaptive['mean_iterations_per_token'] or 0:.2f}",
            )
        )
    return rows
