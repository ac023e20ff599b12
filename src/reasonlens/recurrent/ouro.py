"""Ouro / LoopLM (arXiv 2510.25741): a decoder stack looped R times with a learned exit gate, loaded natively.

Written from the paper and the public HF-layout checkpoints (config.json + safetensors, `model_type` "ouro");
no remote code runs. One loop applies every decoder layer and the final norm; the normed state is both the
next loop's input and what the LM head and the exit gate read:

    s_0 = embed(x);  s_i = norm(layers(s_{i-1}));  logits_i = lm_head(s_i);  lambda_i = sigmoid(gate(s_i))

Each decoder layer is a sandwich block (`input_layernorm` -> attention -> `input_layernorm_2`, residual;
`post_attention_layernorm` -> gated SiLU MLP -> `post_attention_layernorm_2`, residual) with grouped-query
attention and half-split RoPE. Loop i of layer j has its own KV entry, i.e. the cache of a recurrent-depth
core: `RecurrentCache(batch, 0, n_layers, 0)`, so fixed depth, adaptive exit (only active rows computed),
per-loop states (`output_latents`), `reasonlens depth` and `reasonlens latent` work as for Huginn models.

Exit: the reference selects, per token, the loop whose cumulative exit probability first reaches a threshold
but computes every loop for every token. Here the `ouro-gate` criterion (reasonlens.recurrent.exit) stops the
loop instead; a later token then reads an exited position at its deepest loop (as for Huginn). Without a
criterion, `num_steps` loops run (default `total_ut_steps`), which equals the reference's default threshold 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reasonlens.errors import UserError
from reasonlens.recurrent.cache import RecurrentCache
from reasonlens.recurrent.exit import make_criterion
from reasonlens.recurrent.model import (
    DepthIterationMixin,
    RecurrentDepthLM,
    RecurrentOutput,
    RMSNorm,
    _Context,
    _read_safetensors,
    _resolve_dtype,
    _split_num_steps,
    attend,
    load_checked_weights,
)

OURO_MODEL_TYPE = "ouro"
OURO_ARCHITECTURE = "OuroForCausalLM"
# Chat-template ids of the released Ouro tokenizer; the upstream config.json sets bos = eos = pad = 0
# (<|endoftext|>), which never stops a chat turn. The loader uses these when the tokenizer has them.
OURO_CHAT_TOKENS = {"bos": "<|im_start|>", "eos": "<|im_end|>", "pad": "<|endoftext|>"}


@dataclass
class OuroConfig:
    """The fields of an Ouro config.json that define the computation (HF names); the rest is kept in `extra`."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    total_ut_steps: int = 4
    early_exit_threshold: float | None = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise UserError(
                f"config: num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            raise UserError(f"config: head_dim {self.head_dim} must be even for RoPE")
        if self.hidden_act != "silu":
            raise UserError(f"config: hidden_act '{self.hidden_act}' is not supported (silu)")
        if self.total_ut_steps < 1:
            raise UserError(f"config: total_ut_steps must be >= 1, got {self.total_ut_steps}")

    # names the rest of reasonlens.recurrent reads
    @property
    def n_embd(self) -> int:
        return self.hidden_size

    @property
    def mean_recurrence(self) -> int:
        return self.total_ut_steps

    @property
    def model_type(self) -> str:
        return OURO_MODEL_TYPE

    @property
    def eos_token_id(self) -> int | list[int] | None:
        return self.extra.get("eos_token_id")

    @property
    def bos_token_id(self) -> int | None:
        return self.extra.get("bos_token_id")

    @property
    def pad_token_id(self) -> int | None:
        return self.extra.get("pad_token_id")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "OuroConfig":
        rope_scaling = data.get("rope_scaling")
        if rope_scaling not in (None, {}) and (rope_scaling.get("rope_type") or rope_scaling.get("type")) != "default":
            raise UserError(f"{source}: rope_scaling {rope_scaling} is not supported (default RoPE only)")
        layer_types = data.get("layer_types") or []
        if data.get("use_sliding_window") or any(t != "full_attention" for t in layer_types):
            raise UserError(f"{source}: sliding-window attention layers are not supported")
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            if key not in kwargs:
                raise UserError(f"{source}: missing field '{key}'")
        extra = {k: v for k, v in data.items() if k not in known}
        try:
            return cls(**kwargs, extra=extra)
        except TypeError as exc:
            raise UserError(f"{source}: {exc}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> "OuroConfig":
        from reasonlens.runs.io import read_json_object

        path = Path(path)
        return cls.from_dict(read_json_object(path, "config"), source=str(path))


def is_ouro_config(data: dict[str, Any]) -> bool:
    return data.get("model_type") == OURO_MODEL_TYPE or OURO_ARCHITECTURE in (data.get("architectures") or [])


def rope_cos_sin(positions: Tensor, head_dim: int, base: float) -> Tensor:
    """[B, S, 2, head_dim]: cos and sin for half-split RoPE at integer positions [B, S] (fp32)."""
    inv_freq = 1.0 / (
        base ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float() / head_dim)
    )
    freqs = positions.float()[..., None] * inv_freq
    angles = torch.cat([freqs, freqs], dim=-1)
    return torch.stack([angles.cos(), angles.sin()], dim=2)


def _rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


class OuroAttention(nn.Module):
    def __init__(self, config: OuroConfig):
        super().__init__()
        self.n_head, self.n_kv, self.head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.q_proj = nn.Linear(config.hidden_size, self.n_head * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, config.hidden_size, bias=False)

    def forward(self, x: Tensor, ctx: _Context, write_kv) -> Tensor:
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        cos, sin = ctx.rope[:, None, :, 0].to(q.dtype), ctx.rope[:, None, :, 1].to(q.dtype)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        if write_kv is not None:
            k, v = write_kv(k, v)
        groups = self.n_head // self.n_kv
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        y = attend(q, k, v, ctx.mask)
        return self.o_proj(y.transpose(1, 2).reshape(batch, seq, -1))


class OuroMLP(nn.Module):
    def __init__(self, config: OuroConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class OuroDecoderLayer(nn.Module):
    def __init__(self, config: OuroConfig):
        super().__init__()
        eps = config.rms_norm_eps
        self.self_attn = OuroAttention(config)
        self.mlp = OuroMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps)
        self.input_layernorm_2 = RMSNorm(config.hidden_size, eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps)
        self.post_attention_layernorm_2 = RMSNorm(config.hidden_size, eps)

    def forward(self, x: Tensor, ctx: _Context, write_kv=None) -> Tensor:
        x = x + self.input_layernorm_2(self.self_attn(self.input_layernorm(x), ctx, write_kv))
        return x + self.post_attention_layernorm_2(self.mlp(self.post_attention_layernorm(x)))


class _OuroBackbone(nn.Module):
    """`model.*` of the checkpoint: embeddings, the looped layers, the per-loop norm and the exit gate."""

    def __init__(self, config: OuroConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(OuroDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.early_exit_gate = nn.Linear(config.hidden_size, 1)


class OuroLM(DepthIterationMixin, nn.Module):
    """Ouro / LoopLM with the forward protocol of `RecurrentDepthLM` (num_steps = loops, exit criteria, cache)."""

    main_input_name = "input_ids"
    is_recurrent_depth = True

    def __init__(self, config: OuroConfig):
        super().__init__()
        self.config = config
        self.model = _OuroBackbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        # Parameter-free markers for capture hooks: the final loop state (per row: at its exit) and the logits input.
        self.core_output = nn.Identity()
        self.final_output = nn.Identity()
        if not any(p.is_meta for p in self.parameters()):
            self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        std = float(self.config.extra.get("initializer_range", 0.02))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def make_cache(self, batch_size: int, slots: int | None = None) -> RecurrentCache:
        """Per-(loop, layer) KV cache; `slots=N` keeps N loops per layer."""
        return RecurrentCache(batch_size, 0, self.config.num_hidden_layers, 0, slots=slots)

    def exit_gate_probability(self, state: Tensor) -> Tensor:
        """lambda = sigmoid(gate(s)) of normed loop states [..., d] -> [...] (fp32): the per-loop exit probability."""
        return torch.sigmoid(self.model.early_exit_gate(state).squeeze(-1)).float()

    def core_step(self, state: Tensor, embeds: Tensor, ctx: _Context, iteration: int) -> Tensor:
        """One loop: every decoder layer (loop `iteration` of the cache), then the shared final norm."""
        x = state
        for index, layer in enumerate(self.model.layers):
            write = None
            if ctx.cache is not None:

                def write(k, v, _i=index):
                    return ctx.cache.update_core(_i, iteration, k, v, ctx.rows)

            x = layer(x, ctx, write)
        return self.model.norm(x)

    def decode_state(self, state: Tensor, ctx: _Context, hidden: list[Tensor] | None = None) -> Tensor:
        """Logits (fp32) of a loop state: the LM head reads the normed state directly."""
        if hidden is not None:
            hidden.append(state)
        return self.lm_head(state).float()

    _positions = RecurrentDepthLM._positions
    _attention_mask = staticmethod(RecurrentDepthLM._attention_mask)

    def forward(
        self,
        input_ids: Tensor,
        num_steps: int | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: RecurrentCache | None = None,
        use_cache: bool = False,
        exit_criterion: Any = None,
        exit_threshold: float | None = None,
        exit_min_steps: int = 1,
        cache_slots: int | None = None,
        output_latents: bool = False,
        output_hidden_states: bool = False,
        logits_to_keep: int = 0,
        init_scale: float = 0.0,
        warm_start: bool = False,
        labels: Tensor | None = None,
        input_states: Tensor | None = None,
        **unused: Any,
    ) -> RecurrentOutput:
        """Run `num_steps` loops (default `total_ut_steps`), or until the exit criterion fires per row.

        `init_scale` is accepted for the shared depth/latent tools and ignored: an Ouro loop starts from the
        embeddings. `iteration_states` ([r, B, S, d], with output_latents) are the normed states after each loop,
        the reference's per-loop hidden states; `hidden_states` are (embeddings, final state).
        """
        if input_ids.dim() != 2:
            raise UserError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
        if warm_start or input_states is not None:
            raise UserError(
                "Ouro models start every loop from the token embeddings: warm_start / input_states do not apply"
            )
        if labels is not None:
            raise UserError("Ouro models are inference-only in reasonlens (no labels / training)")
        del init_scale, unused
        batch, seq = input_ids.shape
        split = _split_num_steps(num_steps)
        n_no_grad, n_grad = split if split is not None else (self.config.total_ut_steps, 0)
        criterion = make_criterion(exit_criterion, exit_threshold) if exit_criterion not in (None, "none") else None
        if criterion is not None:
            criterion.bind(self)
        if use_cache and past_key_values is None:
            past_key_values = self.make_cache(batch, slots=cache_slots)
        if past_key_values is not None and not isinstance(past_key_values, RecurrentCache):
            if past_key_values.get_seq_length() != 0:
                raise UserError("past_key_values must be a RecurrentCache (use model.make_cache(batch_size))")
            past_key_values = self.make_cache(batch, slots=cache_slots)
        cache = past_key_values
        past_length = cache.begin(seq) if cache is not None else 0
        if cache is not None:
            cache.reserve(n_no_grad + n_grad)
        positions = self._positions(input_ids, attention_mask, position_ids, past_length)
        ctx = _Context(
            rope=rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta),
            mask=self._attention_mask(attention_mask, batch, seq, past_length, input_ids.device),
            cache=cache,
        )
        hidden: list[Tensor] | None = [] if output_hidden_states else None
        embeds = self.model.embed_tokens(input_ids)
        if hidden is not None:
            hidden.append(embeds)
        if criterion is None:
            state, used, per_iteration, exit_values = self._iterate_fixed(
                embeds, embeds, ctx, n_no_grad, n_grad, output_latents
            )
            state = self.core_output(state)
            logits = self.decode_state(self.final_output(state), ctx, hidden=hidden)
        else:
            state, used, per_iteration, exit_values, logits = self._iterate_adaptive(
                embeds, embeds, ctx, n_no_grad + n_grad, criterion, exit_min_steps, output_latents, hidden
            )
            state = self.final_output(self.core_output(state))
        if cache is not None:
            cache.commit(used)
            cache.last_state = state[:, -1].detach()
        if logits_to_keep > 0:
            logits = logits[:, -logits_to_keep:]
        return RecurrentOutput(
            logits=logits,
            latent_states=state.detach(),
            final_state=state,
            iteration_states=torch.stack(per_iteration) if per_iteration else None,
            iterations_used=used,
            exit_values=exit_values,
            hidden_states=tuple(hidden) if hidden is not None else None,
            past_key_values=cache,
        )

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, dtype: torch.dtype | str | None = None, device: str | torch.device = "cpu"
    ) -> "OuroLM":
        """Load an Ouro checkpoint directory (config.json + model.safetensors or a sharded index), HF layout."""
        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise UserError(f"{directory}: no config.json (not an Ouro model directory)")
        config = OuroConfig.from_json_file(directory / "config.json")
        tensors = _read_safetensors(directory)
        tied = "model.embed_tokens.weight" if config.tie_word_embeddings else None
        target = _resolve_dtype(dtype if dtype is not None else "fp32", None)
        return load_checked_weights(cls, config, directory, tensors, target, device, tied)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())


def fix_special_token_ids(model: OuroLM, tokenizer) -> None:
    """Use the chat-template ids when the upstream config's bos = eos = pad quirk is present (see OURO_CHAT_TOKENS)."""
    extra = model.config.extra
    ids = {extra.get("bos_token_id"), extra.get("eos_token_id"), extra.get("pad_token_id")}
    if tokenizer is None or len(ids) != 1:
        return
    vocab = tokenizer.get_vocab()
    if not all(token in vocab for token in OURO_CHAT_TOKENS.values()):
        return
    for role, token in OURO_CHAT_TOKENS.items():
        extra[f"{role}_token_id"] = vocab[token]
    tokenizer.eos_token = OURO_CHAT_TOKENS["eos"]
    tokenizer.pad_token = OURO_CHAT_TOKENS["pad"]
