"""The smallest trainable LLaMA organism config, shared by the organism tests."""

from __future__ import annotations

from reasonlens.organisms import train as organism_train


def micro_organism(name: str, **overrides) -> organism_train.OrganismConfig:
    """A one-layer organism that trains in well under a second (reproducibility, resume and grading checks)."""
    settings = dict(
        dataset="synthetic-hops:1",
        target="direct",
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        intermediate_size=32,
        n_train=64,
        batch_size=8,
    )
    return organism_train.OrganismConfig(name=name, **{**settings, **overrides})
