"""Configuration of the recurrent-depth LM, spelled with huginn-0125's config.json field names."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError

# model_type / architecture strings written by huginn-0125 (and by our save_pretrained, for compatibility).
HUGINN_MODEL_TYPE = "huginn_raven"
HUGINN_ARCHITECTURE = "RavenForCausalLM"

# huginn-0125 fields that describe training-time machinery we do not model; accepted and kept for round trips.
_PASSTHROUGH_KEYS = (
    "architectures",
    "auto_map",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "torch_dtype",
    "transformers_version",
    "architecture_class_name",
    "block_class_name",
    "norm_class_name",
    "mlp_class_name",
    "nonlin_name",
    "init_strategy",
    "init_orthogonal",
    "sampling_scheme",
    "activation_checkpoint_impl",
    "padding_multiple",
    "padded_vocab_size",
    "model_type",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_size",
    "num_hidden_layers",
    "head_dim",
    "effective_expected_depth",
    "init_values",
    "tie_word_embeddings",
    "test_time_noise",
    "test_time_noise_type",
    "dtype",
)

# keys recomputed from our fields on save; not kept as extras
_DERIVED_KEYS = frozenset(
    {
        "model_type",
        "architectures",
        "padded_vocab_size",
        "tie_word_embeddings",
        "num_attention_heads",
        "num_key_value_heads",
        "hidden_size",
        "num_hidden_layers",
        "head_dim",
        "effective_expected_depth",
        "init_values",
    }
)
_ALIASES = {"num_attention_heads": "n_heads", "hidden_size": "n_embd", "num_hidden_layers": "n_layers"}


@dataclass
class RecurrentDepthConfig:
    """Hyper-parameters of a prelude / recurrent core / coda model (SPEC B1).

    Field names follow huginn-0125's config.json so that its file loads unchanged.
    `state_init` "like-init" draws s0 from a truncated normal with the init std sqrt(2 / (5 h)),
    scaled by sqrt(h) like the embeddings; "zero" starts from the zero state.
    """

    n_embd: int = 5280
    n_heads: int = 55
    n_layers: int = 8
    block_size: int = 4096
    vocab_size: int = 65536
    intermediate_size: int = 17920
    n_layers_in_prelude: int = 2
    n_layers_in_recurrent_block: int = 4
    n_layers_in_coda: int = 2
    mean_recurrence: int = 32
    mean_backprop_depth: int = 8
    injection_type: str = "linear"
    state_init: str = "like-init"
    qk_bias: bool = True
    bias: bool = False
    rope_base: float = 50_000.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_heads:
            raise UserError(f"config: n_embd ({self.n_embd}) must be divisible by n_heads ({self.n_heads})")
        if self.head_dim % 2:
            raise UserError(f"config: head size n_embd / n_heads = {self.head_dim} must be even for RoPE")
        if self.injection_type not in ("linear", "add"):
            raise UserError(f"config: injection_type '{self.injection_type}' is not supported ('linear' or 'add')")
        if self.state_init not in ("like-init", "zero"):
            raise UserError(f"config: state_init '{self.state_init}' is not supported ('like-init' or 'zero')")
        for name in ("n_layers_in_prelude", "n_layers_in_recurrent_block", "n_layers_in_coda", "vocab_size"):
            if getattr(self, name) < (1 if name in ("n_layers_in_recurrent_block", "vocab_size") else 0):
                raise UserError(f"config: {name} = {getattr(self, name)} is out of range")
        self.n_layers = self.n_layers_in_prelude + self.n_layers_in_recurrent_block + self.n_layers_in_coda

    # ---- derived quantities (names as in the reference config) ----
    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_heads

    @property
    def hidden_size(self) -> int:
        return self.n_embd

    @property
    def num_attention_heads(self) -> int:
        return self.n_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layers

    @property
    def eos_token_id(self) -> int | list[int] | None:
        """From the huginn config.json when present (read by the decode loop's stop handling)."""
        return self.extra.get("eos_token_id")

    @property
    def bos_token_id(self) -> int | None:
        return self.extra.get("bos_token_id")

    @property
    def pad_token_id(self) -> int | None:
        return self.extra.get("pad_token_id")

    @property
    def model_type(self) -> str:
        return HUGINN_MODEL_TYPE

    @property
    def effective_expected_depth(self) -> int:
        return (
            self.n_layers_in_prelude + self.n_layers_in_coda + self.n_layers_in_recurrent_block * self.mean_recurrence
        )

    @property
    def init_std(self) -> float:
        """Standard deviation of the weight init and of the initial state (before the sqrt(h) scale)."""
        return math.sqrt(2 / (5 * self.n_embd))

    @property
    def out_proj_std(self) -> float:
        return self.init_std / math.sqrt(2 * self.effective_expected_depth)

    @property
    def embed_scale(self) -> float:
        return math.sqrt(self.n_embd)

    # ---- (de)serialisation ----
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "RecurrentDepthConfig":
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        for alias, name in _ALIASES.items():  # some huginn configs spell only the HF names
            if name not in data and alias in data:
                kwargs[name] = data[alias]
        extra: dict[str, Any] = dict(data.get("extra", {}))
        for key, value in data.items():
            if key in known:
                kwargs[key] = value
            elif key != "extra" and key not in _DERIVED_KEYS:
                if key not in _PASSTHROUGH_KEYS:
                    extra.setdefault("unknown_fields", []).append(key)
                extra[key] = value
        for key in ("n_embd", "n_heads", "vocab_size", "intermediate_size"):
            if key not in kwargs:
                raise UserError(f"{source}: missing field '{key}'")
        try:
            return cls(**kwargs, extra=extra)
        except TypeError as exc:
            raise UserError(f"{source}: {exc}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> "RecurrentDepthConfig":
        from reasonlens.runs.io import read_json_object

        path = Path(path)
        return cls.from_dict(read_json_object(path, "config"), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """huginn-0125-style dict: our fields plus the identifying keys the reference expects."""
        data = asdict(self)
        extra = data.pop("extra")
        out: dict[str, Any] = {k: v for k, v in extra.items() if k != "unknown_fields"}
        out.update(data)
        out["model_type"] = HUGINN_MODEL_TYPE
        out["architectures"] = [HUGINN_ARCHITECTURE]
        out["padded_vocab_size"] = self.vocab_size
        out["tie_word_embeddings"] = self.tie_embeddings
        return out

    def to_json_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
