"""Latent-trajectory analysis of recurrent-depth models (SPEC B3) and MI in depth.

For a token sequence, one forward pass with `star_steps` core iterations (zero initial state by default)
yields the state s_i of every token after every iteration i. From it:

- convergence: ||s_i - s*|| per token and iteration, s* = the state after `star_steps` iterations
  (heatmap with a log colour scale);
- PCA trajectories: each token's path s_1..s_R projected on its own top 2 and 6 principal components,
  coloured by iteration;
- a label per token, from the last `window` fraction of its trajectory (at least 4 iterations):
  rel_step = mean ||s_j - s_{j-1}|| / mean ||s_j||,  drift = ||s_end - s_start|| / sum ||s_j - s_{j-1}||;
  "fixed-point" if rel_step < `fixed_tol` (default 0.01), else "slider" if drift >= `slider_ratio`
  (default 0.7: it keeps moving one way), else "orbit" (it keeps moving but comes back);
- MI in depth: the paper-mode HSIC score (`reasonlens.mi.paper_hsic`, sigma 50) between s_i of each token
  and the gold representation (the final state s* of the last token of the gold text, same model and r).

Outputs: `<sample>_convergence.png`, `<sample>_pca2.png`, `<sample>_pca6.png`, `<sample>_mi_depth.png`,
`latents.parquet` (sample, position, token, iteration, dist_to_star, rel_step, mi), `tokens.parquet`
(sample, position, token, label, rel_step, drift) and `summary.json`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from reasonlens.errors import UserError

LABELS = ("fixed-point", "orbit", "slider")


@dataclass
class LatentConfig:
    max_steps: int = 32  # iterations shown in the plots and tables
    star_steps: int = 64  # s* = state after this many iterations (>= max_steps)
    init_scale: float = 0.0
    window: float = 0.25
    fixed_tol: float = 0.01
    slider_ratio: float = 0.7
    max_tokens: int = 64  # analyse at most the last this-many positions of each sequence
    pca_tokens: int = 6  # tokens drawn in the PCA figures
    mi: bool = True
    mi_sigma: float = 50.0

    def validate(self) -> "LatentConfig":
        if self.max_steps < 2 or self.star_steps < self.max_steps:
            raise UserError(f"latent: need 2 <= --max-steps <= --star-steps (got {self.max_steps}, {self.star_steps})")
        if not 0 < self.window <= 1:
            raise UserError(f"latent: --window must be in (0, 1], got {self.window}")
        if self.max_tokens < 1:
            raise UserError(f"latent: --last-tokens must be >= 1, got {self.max_tokens}")
        if not math.isfinite(self.init_scale) or self.init_scale < 0:
            raise UserError(f"latent: --init-scale must be a finite number >= 0, got {self.init_scale}")
        return self


@dataclass
class LatentItem:
    key: str
    text: str
    gold: str | None = None


@torch.no_grad()
def trajectories(model, ids: Tensor, steps: int, init_scale: float = 0.0) -> Tensor:
    """Raw core states after each iteration for one sequence: [steps, T, d] (fp32, CPU)."""
    out = model(ids.view(1, -1).to(model.device), num_steps=steps, init_scale=init_scale, output_latents=True)
    return out.iteration_states[:, 0].float().cpu()


def convergence(states: Tensor, star: Tensor) -> Tensor:
    """||s_i - s*|| per iteration and token: [R, T]."""
    return (states - star[None]).norm(dim=-1)


def relative_steps(states: Tensor, initial: Tensor) -> Tensor:
    """||s_i - s_{i-1}|| / ||s_i|| per iteration and token: [R, T] (s_0 = initial)."""
    previous = torch.cat([initial[None], states[:-1]])
    return (states - previous).norm(dim=-1) / states.norm(dim=-1).clamp(min=1e-12)


def classify_trajectory(path: Tensor, config: LatentConfig) -> tuple[str, float, float]:
    """(label, rel_step, drift) of one token's path [R, d] (see the module docstring for the thresholds)."""
    length = max(4, math.ceil(config.window * path.shape[0]))
    tail = path[-min(length, path.shape[0]) :]
    step_sizes = (tail[1:] - tail[:-1]).norm(dim=-1)
    scale = tail.norm(dim=-1).mean().clamp(min=1e-12)
    rel_step = float(step_sizes.mean() / scale)
    drift = float((tail[-1] - tail[0]).norm() / step_sizes.sum().clamp(min=1e-12))
    if rel_step < config.fixed_tol:
        return "fixed-point", rel_step, drift
    if drift >= config.slider_ratio:
        return "slider", rel_step, drift
    return "orbit", rel_step, drift


def pca_project(path: Tensor, components: int) -> Tensor:
    """Project a path [R, d] on its own top principal components: [R, components] (zero-padded if rank is low)."""
    centred = path - path.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred.double(), full_matrices=False)
    k = min(components, v.shape[0])
    coords = (centred.double() @ v[:k].T).float()
    if k < components:
        coords = torch.cat([coords, coords.new_zeros(path.shape[0], components - k)], dim=1)
    return coords


def _token_texts(tokenizer, ids: list[int]) -> list[str]:
    if tokenizer is None:
        return [str(i) for i in ids]
    return [tokenizer.decode([i]) for i in ids]


def _plots(
    prefix: Path,
    dist: Tensor,
    coords2: list[Tensor],
    coords6: list[Tensor],
    labels: list[str],
    mi: Tensor | None,
    tokens: list[str],
    chosen_tokens: list[str],
) -> list[str]:
    """Convergence and MI heatmaps ([R, T]: iteration on y, token on x) and PCA panels of the chosen tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    written = []
    ticks = [t.replace("\n", "\\n") for t in tokens]
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(tokens) + 2), 4))
    data = dist.numpy().clip(min=1e-6)
    norm = LogNorm(vmin=float(data.min()), vmax=max(float(data.max()), float(data.min()) * 10))
    image = ax.imshow(
        data,
        aspect="auto",
        origin="lower",
        norm=norm,
        cmap="magma",
        extent=(-0.5, data.shape[1] - 0.5, 0.5, data.shape[0] + 0.5),
    )
    ax.set_xlabel("token")
    ax.set_ylabel("core iteration")
    ax.set_xticks(range(len(ticks)), ticks, rotation=90, fontsize=6)
    fig.colorbar(image, ax=ax, label="||s_i - s*|| (log)")
    fig.tight_layout()
    fig.savefig(f"{prefix}_convergence.png", dpi=110)
    plt.close(fig)
    written.append(f"{prefix.name}_convergence.png")

    fig, axes = plt.subplots(1, len(coords2), figsize=(3 * len(coords2), 3), squeeze=False)
    for ax, coords, label, token in zip(axes[0], coords2, labels, chosen_tokens):
        points = coords.numpy()
        ax.plot(points[:, 0], points[:, 1], color="0.7", linewidth=0.8)
        ax.scatter(points[:, 0], points[:, 1], c=range(len(points)), cmap="viridis", s=10)
        ax.set_title(f"{token!r}: {label}", fontsize=8)
        ax.set_xlabel("PC1", fontsize=8)
        ax.set_ylabel("PC2", fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{prefix}_pca2.png", dpi=110)
    plt.close(fig)
    written.append(f"{prefix.name}_pca2.png")

    fig, axes = plt.subplots(len(coords6), 3, figsize=(9, 2.6 * len(coords6)), squeeze=False)
    for row, (coords, token) in enumerate(zip(coords6, chosen_tokens)):
        points = coords.numpy()
        for pair in range(3):
            ax = axes[row][pair]
            ax.plot(points[:, 2 * pair], points[:, 2 * pair + 1], color="0.7", linewidth=0.8)
            ax.scatter(points[:, 2 * pair], points[:, 2 * pair + 1], c=range(len(points)), cmap="viridis", s=8)
            ax.set_title(f"{token!r}", fontsize=7)
            ax.set_xlabel(f"PC{2 * pair + 1}", fontsize=7)
            ax.set_ylabel(f"PC{2 * pair + 2}", fontsize=7)
    fig.tight_layout()
    fig.savefig(f"{prefix}_pca6.png", dpi=100)
    plt.close(fig)
    written.append(f"{prefix.name}_pca6.png")

    if mi is not None:
        fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(tokens) + 2), 4))
        image = ax.imshow(
            mi.numpy(),
            aspect="auto",
            origin="lower",
            cmap="viridis",
            extent=(-0.5, mi.shape[1] - 0.5, 0.5, mi.shape[0] + 0.5),
        )
        ax.set_xlabel("token")
        ax.set_ylabel("core iteration")
        ax.set_xticks(range(len(ticks)), ticks, rotation=90, fontsize=6)
        fig.colorbar(image, ax=ax, label="paper HSIC(s_i, gold)")
        fig.tight_layout()
        fig.savefig(f"{prefix}_mi_depth.png", dpi=110)
        plt.close(fig)
        written.append(f"{prefix.name}_mi_depth.png")
    return written


def gold_representation(model, tokenizer, gold: str, steps: int, init_scale: float = 0.0) -> Tensor:
    """The final raw core state s* of the last token of the gold text (raw text, no template): [d]."""
    ids = torch.tensor(tokenizer(gold if gold else " ", add_special_tokens=False)["input_ids"])
    return trajectories(model, ids, steps, init_scale)[-1, -1]


def analyze_sequence(model, tokenizer, ids: list[int], config: LatentConfig, gold: str | None = None) -> dict[str, Any]:
    """Per-iteration tensors and per-token labels for one sequence (the last `max_tokens` positions)."""
    states = trajectories(model, torch.tensor(ids), config.star_steps, config.init_scale)
    start = max(0, len(ids) - config.max_tokens)
    states = states[:, start:]
    star = states[-1]
    shown = states[: config.max_steps]
    dist = convergence(shown, star)
    rel = relative_steps(shown, torch.zeros_like(star))
    labels, rel_steps, drifts = [], [], []
    for position in range(states.shape[1]):
        label, rel_step, drift = classify_trajectory(states[:, position], config)
        labels.append(label)
        rel_steps.append(rel_step)
        drifts.append(drift)
    mi = None
    if config.mi and gold is not None and tokenizer is not None:
        from reasonlens.mi import paper_hsic

        y = gold_representation(model, tokenizer, gold, config.star_steps, config.init_scale)
        flat = shown.reshape(-1, shown.shape[-1])
        mi = paper_hsic(flat, y, sigma=config.mi_sigma).reshape(shown.shape[0], shown.shape[1]).float()
    return {
        "positions": list(range(start, len(ids))),
        "token_ids": ids[start:],
        "states": shown,
        "dist": dist,
        "rel": rel,
        "labels": labels,
        "rel_steps": rel_steps,
        "drifts": drifts,
        "mi": mi,
    }


def analyze_latents(
    lm, items: list[LatentItem], out: str | Path, config: LatentConfig | None = None, quiet: bool = False
) -> dict[str, Any]:
    """Run the analysis for every item and write PNGs, parquet tables and summary.json to `out`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reasonlens.runs.io import atomic_write_json
    from reasonlens.runs.progress import progress_bar

    config = (config or LatentConfig()).validate()
    if not getattr(lm.model, "is_recurrent_depth", False):
        raise UserError(f"latent: model '{lm.name}' is not a recurrent-depth model")
    if not items:
        raise UserError("latent: nothing to analyse (give --text, --dataset or a run directory with results)")
    for item in items:  # every input is checked before the output folder is created
        ids = lm.tokenizer(item.text, add_special_tokens=False)["input_ids"] if lm.tokenizer else None
        if not item.text.strip() or not ids:
            raise UserError(f"latent: sample '{item.key}' has no tokens (empty --text?)")
    out = Path(out)
    _check_latent_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list] = {
        k: [] for k in ("sample", "position", "token_id", "token", "iteration", "dist_to_star", "rel_step", "mi")
    }
    token_rows: dict[str, list] = {
        k: [] for k in ("sample", "position", "token_id", "token", "label", "rel_step", "drift")
    }
    figures: list[str] = []
    with progress_bar(transient=quiet) as bar:
        task = bar.add_task("latent", total=len(items), info="")
        for number, item in enumerate(items):
            ids = lm.tokenizer(item.text, add_special_tokens=False)["input_ids"] if lm.tokenizer else None
            if not ids:
                raise UserError(f"latent: sample '{item.key}' has no tokens")
            result = analyze_sequence(lm.model, lm.tokenizer, ids, config, item.gold)
            tokens = _token_texts(lm.tokenizer, result["token_ids"])
            n_iter, n_tok = result["dist"].shape
            for i in range(n_iter):
                for j in range(n_tok):
                    rows["sample"].append(item.key)
                    rows["position"].append(result["positions"][j])
                    rows["token_id"].append(int(result["token_ids"][j]))
                    rows["token"].append(tokens[j])
                    rows["iteration"].append(i + 1)
                    rows["dist_to_star"].append(float(result["dist"][i, j]))
                    rows["rel_step"].append(float(result["rel"][i, j]))
                    rows["mi"].append(None if result["mi"] is None else float(result["mi"][i, j]))
            for j in range(n_tok):
                token_rows["sample"].append(item.key)
                token_rows["position"].append(result["positions"][j])
                token_rows["token_id"].append(int(result["token_ids"][j]))
                token_rows["token"].append(tokens[j])
                token_rows["label"].append(result["labels"][j])
                token_rows["rel_step"].append(result["rel_steps"][j])
                token_rows["drift"].append(result["drifts"][j])
            chosen = list(range(max(0, n_tok - config.pca_tokens), n_tok))
            paths = [result["states"][:, j] for j in chosen]
            figures += _plots(
                out / f"{number:04d}",
                result["dist"],
                [pca_project(p, 2) for p in paths],
                [pca_project(p, 6) for p in paths],
                [result["labels"][j] for j in chosen],
                result["mi"],
                tokens,
                [tokens[j] for j in chosen],
            )
            bar.update(task, advance=1)
    pq.write_table(pa.table(rows), out / "latents.parquet")
    pq.write_table(pa.table(token_rows), out / "tokens.parquet")
    counts = {label: token_rows["label"].count(label) for label in LABELS}
    summary = {
        "command": "latent",
        "model": lm.spec,
        "n_samples": len(items),
        "n_tokens": len(token_rows["label"]),
        "label_counts": counts,
        "config": asdict(config),
        "figures": figures,
        "mean_dist_to_star_by_iteration": _mean_by_iteration(rows),
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def _check_latent_folder(out: Path) -> None:
    """`--out` must be new, empty, or a latent folder written before: never someone's own folder."""
    from reasonlens.runs.io import read_json_object
    from reasonlens.runs.rundir import check_empty_or_new

    summary = out / "summary.json"
    if summary.is_file() and read_json_object(summary, "latent summary").get("command") == "latent":
        return
    check_empty_or_new(out, "--out", "it is not a latent folder (no summary.json from `reasonlens latent`)")


def _mean_by_iteration(rows: dict[str, list]) -> list[float]:
    sums: dict[int, list[float]] = {}
    for iteration, value in zip(rows["iteration"], rows["dist_to_star"]):
        sums.setdefault(iteration, []).append(value)
    return [sum(v) / len(v) for _, v in sorted(sums.items())]


def items_from_source(
    source: str, texts: list[str] | None = None, dataset: str | None = None, split: str = "test", n: int = 4
) -> tuple[str, list[LatentItem]]:
    """(model spec, items) from a run directory (prompt + completion, gold solution) or a model spec + texts/dataset."""
    from reasonlens.runs.rundir import RunDir

    path = Path(source)
    run = RunDir(path)
    if run.manifest_path.is_file():
        model = run.manifest.get("model")
        if not model:
            raise UserError(f"{run.manifest_path}: no 'model' field")
        items = [
            LatentItem(
                str(r.get("id", r["index"])),
                str(r.get("prompt") or "") + str(r.get("completion") or ""),
                str(r.get("gold", "")),
            )
            for r in run.results()[:n]
        ]
        return model, items
    items = [LatentItem(f"text{i}", t) for i, t in enumerate(texts or [])]
    if dataset is not None:
        from reasonlens.data import load_problems

        for problem in load_problems(dataset, split=split, n=n):
            items.append(LatentItem(problem.id, problem.question + " " + problem.solution, problem.solution))
    return source, items
