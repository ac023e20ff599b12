"""Latent-trajectory analysis: labels on known paths, tables, figures, MI in depth."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest
import torch

from reasonlens.models.loaded import LoadedModel, byte_level_tokenizer
from reasonlens.recurrent import RecurrentDepthConfig, RecurrentDepthLM
from reasonlens.recurrent.latent import (
    LABELS,
    LatentConfig,
    LatentItem,
    analyze_latents,
    classify_trajectory,
    convergence,
    pca_project,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def test_labels_of_known_paths():
    config = LatentConfig()
    steps = torch.arange(40, dtype=torch.float32)[:, None]
    base = torch.ones(1, 8) * 10
    fixed = base + 1e-5 * steps
    slider = base + 0.5 * steps * torch.tensor([[1.0] + [0.0] * 7])
    angle = steps * (2 * math.pi / 5)
    orbit = base.repeat(40, 1).clone()
    orbit[:, 0] += 3 * torch.cos(angle[:, 0])
    orbit[:, 1] += 3 * torch.sin(angle[:, 0])
    assert classify_trajectory(fixed, config)[0] == "fixed-point"
    assert classify_trajectory(slider, config)[0] == "slider"
    assert classify_trajectory(orbit, config)[0] == "orbit"


def test_convergence_and_pca_shapes():
    states = torch.randn(5, 3, 8)
    dist = convergence(states, states[-1])
    assert dist.shape == (5, 3) and torch.all(dist[-1] == 0)
    line = torch.arange(6.0)[:, None] * torch.ones(1, 8)
    coords = pca_project(line, 6)
    assert coords.shape == (6, 6)
    assert torch.allclose(coords[:, 1:], torch.zeros(6, 5), atol=1e-4)  # a line has one component


def test_analyze_latents_writes_tables_figures_and_mi(tmp_path):
    torch.manual_seed(0)
    config = RecurrentDepthConfig(
        n_embd=32,
        n_heads=4,
        vocab_size=300,
        intermediate_size=48,
        block_size=128,
        n_layers_in_prelude=1,
        n_layers_in_recurrent_block=1,
        n_layers_in_coda=1,
    )
    lm = LoadedModel(
        model=RecurrentDepthLM(config).eval(),
        tokenizer=byte_level_tokenizer(300),
        layers=None,
        name="tiny-rec",
        spec="tiny-rec",
    )
    items = [LatentItem("a", "x = 3. y = x + 1.", gold="4"), LatentItem("b", "hello")]
    summary = analyze_latents(lm, items, tmp_path, LatentConfig(max_steps=6, star_steps=10, max_tokens=8), quiet=True)
    table = pq.read_table(tmp_path / "latents.parquet").to_pylist()
    tokens = pq.read_table(tmp_path / "tokens.parquet").to_pylist()
    assert len(tokens) == 8 + 5 and {t["label"] for t in tokens} <= set(LABELS)
    assert len(table) == 6 * (8 + 5)
    assert all(r["mi"] is not None for r in table if r["sample"] == "a")
    assert all(r["mi"] is None for r in table if r["sample"] == "b")
    assert sum(summary["label_counts"].values()) == 13
    for name in ("0000_convergence.png", "0000_pca2.png", "0000_pca6.png", "0000_mi_depth.png", "0001_pca6.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert not (tmp_path / "0001_mi_depth.png").exists()
    # convergence distances shrink towards s* on average over the shown iterations
    means = summary["mean_dist_to_star_by_iteration"]
    assert len(means) == 6 and means[-1] < means[0]
