"""Recurrent-depth causal LM (Huginn / "raven" architecture), written from the paper and SPEC B1.

Prelude P embeds, a core block R is iterated r times on `adapter(concat[s, e])`, a coda C decodes:
    e = P(sqrt(h) * wte(x));  s_i = R(adapter([s_{i-1}, e]));  logits = head(ln_f(C(ln_f(s_r))))
Parameter names are those of huginn-0125, so its safetensors load unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from reasonlens.errors import UserError
from reasonlens.recurrent.cache import RecurrentCache
from reasonlens.recurrent.config import RecurrentDepthConfig
from reasonlens.recurrent.exit import ExitCriterion, make_criterion

# ----------------------------------------------------------------------------------------------- building blocks


def sample_depth(mean_recurrence: float, sigma: float = 0.5, generator: torch.Generator | None = None) -> int:
    """r = 1 + Poisson(rate), rate ~ LogNormal(ln(mean) - sigma^2 / 2, sigma) (huginn's sampler; E[rate] = mean)."""
    mu = math.log(max(mean_recurrence, 1e-6)) - sigma**2 / 2
    rate = torch.exp(mu + sigma * torch.randn((), generator=generator))
    return int(torch.poisson(rate.reshape(1), generator=generator).item()) + 1


def split_depth(r: int, backprop_depth: int) -> tuple[int, int]:
    """(iterations without gradient, iterations with gradient) for a sampled depth r."""
    k = max(1, min(backprop_depth, r))
    return r - k, k


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32 and cast back before the weight (as in huginn)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rope_tables(positions: Tensor, head_dim: int, base: float) -> Tensor:
    """cos/sin tables [B, S, 1, head_dim/2, 2] for integer positions [B, S] (fp32)."""
    inv_freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    angles = positions.to(torch.float32)[..., None] * inv_freqs
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)[:, :, None]


def apply_rope_pairs(q: Tensor, k: Tensor, table: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate adjacent coordinate pairs (2i, 2i+1) of q and k ([B, S, H, hd]) by the angles in `table`."""
    heads = q.shape[2]
    pairs = torch.cat([q, k], dim=2).unflatten(-1, (-1, 2)).float()
    cos, sin = table[..., 0], table[..., 1]
    rotated = torch.stack(
        [pairs[..., 0] * cos - pairs[..., 1] * sin, pairs[..., 1] * cos + pairs[..., 0] * sin], dim=-1
    ).flatten(3)
    rotated = rotated.type_as(q)
    return rotated[:, :, :heads], rotated[:, :, heads:]


@dataclass
class _Context:
    """What every attention call of one forward pass shares (for the whole batch or a sub-batch of rows)."""

    rope: Tensor  # [B, S, 1, hd/2, 2]
    mask: Tensor | None  # bool [B, 1, S, S_total] (True = attend) or None for plain causal
    cache: RecurrentCache | None
    rows: Tensor | None = None  # LongTensor: the batch rows this context covers; None = every row

    def select(self, index: Tensor) -> "_Context":
        """The context of the sub-batch `index` (LongTensor, positions within this context's rows)."""
        return _Context(
            rope=self.rope.index_select(0, index),
            mask=None if self.mask is None else self.mask.index_select(0, index),
            cache=self.cache,
            rows=index if self.rows is None else self.rows.index_select(0, index),
        )


class CausalSelfAttention(nn.Module):
    def __init__(self, config: RecurrentDepthConfig):
        super().__init__()
        self.n_head = config.n_heads
        self.head_dim = config.head_dim
        self.n_embd = config.n_embd
        self.Wqkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        if config.qk_bias:
            self.qk_bias = nn.Parameter(torch.zeros(2, 1, self.n_head, self.head_dim))
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x: Tensor, ctx: _Context, write_kv) -> Tensor:
        batch, seq, _ = x.shape
        q, k, v = self.Wqkv(x).split(self.n_embd, dim=2)
        q = q.view(batch, seq, self.n_head, self.head_dim)
        k = k.view(batch, seq, self.n_head, self.head_dim)
        v = v.view(batch, seq, self.n_head, self.head_dim)
        if hasattr(self, "qk_bias"):
            q_bias, k_bias = self.qk_bias.split(1, dim=0)
            q, k = (q + q_bias).to(q.dtype), (k + k_bias).to(q.dtype)
        q, k = apply_rope_pairs(q, k, ctx.rope)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if write_kv is not None:
            k, v = write_kv(k, v)
        y = attend(q, k, v, ctx.mask)
        return self.proj(y.transpose(1, 2).reshape(batch, seq, self.n_embd))


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Causal attention of new queries [B, H, S, hd] on cached + new keys [B, H, S_total, hd] (padding in `mask`)."""
    if mask is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if q.shape[2] == k.shape[2]:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if q.shape[2] == 1:
        return F.scaled_dot_product_attention(q, k, v)
    lower_right = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril(k.shape[2] - q.shape[2])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=lower_right)


class GatedMLP(nn.Module):
    def __init__(self, config: RecurrentDepthConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 2 * config.intermediate_size, bias=False)
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.fc(x).chunk(2, dim=-1)
        return self.proj(F.silu(gate) * up)


class SandwichBlock(nn.Module):
    """x = n2(x + Attn(n1(x))); x = n4(x + MLP(n3(x)))."""

    def __init__(self, config: RecurrentDepthConfig):
        super().__init__()
        self.norm_1 = RMSNorm(config.n_embd, config.norm_eps)
        self.attn = CausalSelfAttention(config)
        self.norm_2 = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = GatedMLP(config)
        self.norm_3 = RMSNorm(config.n_embd, config.norm_eps)
        self.norm_4 = RMSNorm(config.n_embd, config.norm_eps)

    def forward(self, x: Tensor, ctx: _Context, write_kv=None) -> Tensor:
        x = self.norm_2(self.attn(self.norm_1(x), ctx, write_kv) + x)
        return self.norm_4(self.mlp(self.norm_3(x)) + x)


# ----------------------------------------------------------------------------------------------- outputs


@dataclass
class RecurrentOutput:
    """Result of `RecurrentDepthLM.forward`.

    `latent_states` is ln_f(s_r) (the coda input, as the reference returns it); `final_state` is the raw s_r used
    for warm starts; `iteration_states` ([r, B, S, d], raw s_i after each iteration i) only when
    `output_latents=True`; `iterations_used` (LongTensor [B]) counts the core iterations each row ran for the
    positions of this call; `exit_values` ([r_run, B]) holds the exit criterion's value at each check.
    `hidden_states` (with `output_hidden_states=True`): embeddings, each prelude block, ln_f(s_r), each coda
    block, final-normed output — `n_layers_in_prelude + n_layers_in_coda + 3` tensors [B, S, d].
    """

    logits: Tensor | None = None
    loss: Tensor | None = None
    latent_states: Tensor | None = None
    final_state: Tensor | None = None
    iteration_states: Tensor | None = None
    iterations_used: Tensor | None = None
    exit_values: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    past_key_values: RecurrentCache | None = None

    def __getitem__(self, key: str) -> Any:  # dict-style access, like HF ModelOutput
        return getattr(self, key)


# ----------------------------------------------------------------------------------------------- the model

NumSteps = int | Sequence[int] | Tensor | None


def _split_num_steps(num_steps: NumSteps) -> tuple[int, int] | None:
    """(no-grad iterations, grad iterations) from an int r (reference: all r without grad) or a pair."""
    if num_steps is None:
        return None
    if isinstance(num_steps, Tensor):
        num_steps = num_steps.tolist()
    if isinstance(num_steps, (list, tuple)):
        if len(num_steps) == 1:
            num_steps = num_steps[0]
        elif len(num_steps) == 2:
            no_grad, grad = int(num_steps[0]), int(num_steps[1])
            if no_grad < 0 or grad < 0 or no_grad + grad < 1:
                raise UserError(f"num_steps {tuple(num_steps)} must be non-negative with a positive sum")
            return no_grad, grad
        else:
            raise UserError(f"num_steps must be an int r or a pair (n_no_grad, n_grad), got {num_steps}")
    steps = int(num_steps)
    if steps < 1:
        raise UserError(f"num_steps must be >= 1, got {steps}")
    return steps, 0


class DepthIterationMixin:
    """Fixed-depth and adaptive-exit iteration of a looped block, shared by Huginn-style and Ouro models.

    The host model provides `core_step(state, embeds, ctx, iteration)` (one application of the looped block to
    the rows of `ctx`) and `decode_state(state, ctx, hidden=None)` (fp32 logits of a final state).
    """

    def _iterate_fixed(
        self, state: Tensor, embeds: Tensor, ctx: _Context, n_no_grad: int, n_grad: int, keep: bool
    ) -> tuple[Tensor, Tensor, list[Tensor], None]:
        per_iteration: list[Tensor] = []
        with torch.no_grad():
            for iteration in range(n_no_grad):
                state = self.core_step(state, embeds, ctx, iteration)
                if keep:
                    per_iteration.append(state.detach())
        for offset in range(n_grad):
            state = self.core_step(state, embeds, ctx, n_no_grad + offset)
            if keep:
                per_iteration.append(state)
        used = torch.full((state.shape[0],), n_no_grad + n_grad, dtype=torch.long, device=state.device)
        return state, used, per_iteration, None

    @torch.no_grad()
    def _iterate_adaptive(
        self,
        state: Tensor,
        embeds: Tensor,
        ctx: _Context,
        max_steps: int,
        criterion: ExitCriterion,
        min_steps: int,
        keep: bool,
        hidden: list[Tensor] | None,
    ):
        """Iterate until each row's criterion fires (judged on its last position) or max_steps is reached.

        Each iteration runs the core (and, for criteria that read logits, the coda) on the rows still active
        only: a sub-batch gathered with index_select, whose cache reads and writes touch only those rows. A row
        that exits keeps its state, logits and cache entries and costs nothing more until the next call. The
        criterion sees the whole batch's last-position state (exited rows frozen), so its per-row bookkeeping is
        that of a batch-1 run. Inference only (no gradients).
        """
        batch = state.shape[0]
        used = torch.full((batch,), max_steps, dtype=torch.long, device=state.device)
        criterion.reset(state[:, -1])
        last_state = state[:, -1].clone()  # what the criterion judges, for every row
        last_logits: Tensor | None = None
        logits: Tensor | None = None
        per_iteration: list[Tensor] = []
        values: list[Tensor] = []
        active = torch.arange(batch, device=state.device)
        sub_state, sub_embeds, sub_ctx = state, embeds, ctx
        state = state.clone()  # exited rows' final states are written here
        for iteration in range(max_steps):
            sub_state = self.core_step(sub_state, sub_embeds, sub_ctx, iteration)
            if keep:
                per_iteration.append(state.index_copy(0, active, sub_state))
            last = iteration == max_steps - 1
            sub_logits = None
            if criterion.needs_logits:
                sub_logits = self.decode_state(sub_state, sub_ctx)
            last_state.index_copy_(0, active, sub_state[:, -1])
            if criterion.needs_logits:
                if last_logits is None:
                    last_logits = sub_logits.new_zeros((batch, sub_logits.shape[-1]))
                last_logits.index_copy_(0, active, sub_logits[:, -1])
            value, exits = criterion.check(last_state, last_logits)
            values.append(value)
            exits = exits.index_select(0, active)
            if iteration + 1 < min_steps:
                exits = torch.zeros_like(exits)
            if last:
                exits = torch.ones_like(exits)
            if not bool(exits.any()):
                continue
            leaving = exits.nonzero().squeeze(1)
            rows = active.index_select(0, leaving)
            state.index_copy_(0, rows, sub_state.index_select(0, leaving))
            if sub_logits is not None:
                leaving_logits = sub_logits.index_select(0, leaving)
                if logits is None:
                    logits = leaving_logits.new_zeros((batch,) + tuple(leaving_logits.shape[1:]))
                logits.index_copy_(0, rows, leaving_logits)
            used.index_fill_(0, rows, iteration + 1)
            staying = (~exits).nonzero().squeeze(1)
            if staying.numel() == 0:
                break
            active = active.index_select(0, staying)
            sub_state = sub_state.index_select(0, staying)
            sub_embeds = sub_embeds.index_select(0, staying)
            sub_ctx = sub_ctx.select(staying)
        if logits is None:
            # Criteria on the state alone: the coda runs once, on every row's final state. Rows are independent
            # in the coda (their own positions, their own cache rows), so this equals decoding each at its exit.
            logits = self.decode_state(state, ctx, hidden=hidden)
        elif hidden is not None:
            # Exited rows kept their state, so re-decoding rewrites their coda entries; it records the stack.
            self.decode_state(state, ctx, hidden=hidden)
        return state, used, per_iteration, torch.stack(values), logits


class RecurrentDepthLM(DepthIterationMixin, nn.Module):
    """Huginn-style recurrent-depth LM with per-(iteration, layer) KV cache and per-row adaptive exit."""

    main_input_name = "input_ids"
    is_recurrent_depth = True  # tells reasonlens.models there is no plain decoder stack to hook

    def __init__(self, config: RecurrentDepthConfig):
        super().__init__()
        self.config = config
        modules: dict[str, nn.Module] = {
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "prelude": nn.ModuleList(SandwichBlock(config) for _ in range(config.n_layers_in_prelude)),
            "core_block": nn.ModuleList(SandwichBlock(config) for _ in range(config.n_layers_in_recurrent_block)),
            "coda": nn.ModuleList(SandwichBlock(config) for _ in range(config.n_layers_in_coda)),
            "ln_f": RMSNorm(config.n_embd, config.norm_eps),
        }
        if config.injection_type == "linear":
            modules["adapter"] = nn.Linear(2 * config.n_embd, config.n_embd, bias=config.bias)
        self.transformer = nn.ModuleDict(modules)
        # Parameter-free marker called once on the final core state s_r (per row: at its exit), so forward hooks
        # (hidden-state capture) can observe it; see reasonlens.recurrent.loading.recurrent_layer_adapter.
        self.core_output = nn.Identity()
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        if not any(p.is_meta for p in self.parameters()):
            self.init_weights()

    # ---- HF-like conveniences ----
    @property
    def device(self) -> torch.device:
        return self.transformer.wte.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.wte.weight.dtype

    def get_input_embeddings(self) -> nn.Module:
        return self.transformer.wte

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def make_cache(self, batch_size: int, slots: int | None = None) -> RecurrentCache:
        """A fresh per-(iteration, core layer) cache; `slots=N` compresses to N slots per core layer."""
        c = self.config
        return RecurrentCache(
            batch_size, c.n_layers_in_prelude, c.n_layers_in_recurrent_block, c.n_layers_in_coda, slots=slots
        )

    # ---- initialisation (huginn "takase" scheme: truncated normals at +-3 std) ----
    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        std, out_std = self.config.init_std, self.config.out_proj_std

        def normal_(tensor: Tensor, sd: float) -> None:
            nn.init.trunc_normal_(tensor, mean=0.0, std=sd, a=-3 * sd, b=3 * sd, generator=generator)

        for name, module in self.named_modules():
            if isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
            elif isinstance(module, nn.Embedding):
                normal_(module.weight, std)
            elif isinstance(module, nn.Linear):
                if name.endswith("Wqkv") or name == "transformer.adapter" or name == "lm_head":
                    if name == "lm_head" and self.config.tie_embeddings:
                        continue
                    normal_(module.weight, std)
                elif name.endswith("mlp.fc"):
                    half = module.weight.shape[0] // 2
                    normal_(module.weight[:half], std)
                    normal_(module.weight[half:], out_std)
                elif name.endswith("proj"):
                    normal_(module.weight, out_std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, CausalSelfAttention) and hasattr(module, "qk_bias"):
                module.qk_bias.zero_()

    def initialize_state(self, like: Tensor, init_scale: float = 1.0) -> Tensor:
        """s0: truncated normal (std sqrt(2/(5h)) * init_scale, cut at 3 std) times sqrt(h); zeros if the std is 0."""
        std = self.config.init_std * init_scale
        if self.config.state_init == "zero" or std <= 0:
            return torch.zeros_like(like)
        state = torch.randn_like(like)  # consumes the RNG like the reference does before refilling
        nn.init.trunc_normal_(state, mean=0.0, std=std, a=-3 * std, b=3 * std)
        return state * self.config.embed_scale

    # ---- pieces of the forward pass ----
    def _positions(
        self, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor | None, past_length: int
    ) -> Tensor:
        batch, seq = input_ids.shape
        if position_ids is not None:
            position_ids = position_ids.to(input_ids.device)
            return position_ids.expand(batch, seq) if position_ids.shape[0] == 1 else position_ids
        if attention_mask is not None:
            full = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            return full[:, -seq:]
        return torch.arange(past_length, past_length + seq, device=input_ids.device)[None].expand(batch, seq)

    @staticmethod
    def _attention_mask(
        attention_mask: Tensor | None, batch: int, seq: int, past_length: int, device: torch.device
    ) -> Tensor | None:
        """Bool [B, 1, S, S_total] = causal AND key not padding; None when no padding is present."""
        if attention_mask is None or bool(attention_mask.bool().all()):
            return None
        total = past_length + seq
        if attention_mask.shape[-1] != total:
            raise UserError(f"attention_mask has {attention_mask.shape[-1]} columns, expected cache + input = {total}")
        query_pos = torch.arange(past_length, total, device=device)[:, None]
        key_pos = torch.arange(total, device=device)[None, :]
        allowed = (key_pos <= query_pos)[None] & attention_mask.bool().to(device)[:, None, :]
        allowed = allowed | (key_pos == query_pos)[None]  # padded queries see themselves: no empty softmax rows
        return allowed[:, None]

    def _inject(self, state: Tensor, embeds: Tensor) -> Tensor:
        if self.config.injection_type == "add":
            return state + embeds
        return self.transformer.adapter(torch.cat([state, embeds.to(state.device)], dim=-1))

    def core_step(self, state: Tensor, embeds: Tensor, ctx: _Context, iteration: int) -> Tensor:
        """One application of the core block R(adapter([s, e])) to the rows of `ctx` (iteration index: cache slot)."""
        x = self._inject(state, embeds)
        for index, block in enumerate(self.transformer.core_block):
            write = None
            if ctx.cache is not None:

                def write(k, v, _i=index):
                    return ctx.cache.update_core(_i, iteration, k, v, ctx.rows)

            x = block(x, ctx, write)
        return x

    def decode_state(self, state: Tensor, ctx: _Context, hidden: list[Tensor] | None = None) -> Tensor:
        """Coda and head on a raw core state (the rows of `ctx`): logits (fp32) of head(ln_f(C(ln_f(s))))."""
        x = self.transformer.ln_f(state)
        if hidden is not None:
            hidden.append(x)
        for index, block in enumerate(self.transformer.coda):
            write = None
            if ctx.cache is not None:

                def write(k, v, _i=index):
                    return ctx.cache.update_coda(_i, k, v, ctx.rows)

            x = block(x, ctx, write)
            if hidden is not None:
                hidden.append(x)
        x = self.transformer.ln_f(x)
        if hidden is not None:
            hidden.append(x)
        return self.lm_head(x).float()

    def sample_num_steps(self) -> tuple[int, int]:
        """Training-time depth: r ~ 1 + Poisson(LogNormal(ln(mean) - 1/8, 0.5)), last k iterations with grad."""
        return split_depth(sample_depth(self.config.mean_recurrence), self.config.mean_backprop_depth)

    # ---- forward ----
    def forward(
        self,
        input_ids: Tensor,
        num_steps: NumSteps = None,
        input_states: Tensor | None = None,
        init_scale: float = 1.0,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: RecurrentCache | None = None,
        use_cache: bool = False,
        labels: Tensor | None = None,
        exit_criterion: str | ExitCriterion | None = None,
        exit_threshold: float | None = None,
        exit_min_steps: int = 1,
        warm_start: bool = False,
        cache_slots: int | None = None,
        output_latents: bool = False,
        output_hidden_states: bool = False,
        logits_to_keep: int = 0,
        **unused: Any,
    ) -> RecurrentOutput:
        """Run prelude, r core iterations (or until the exit criterion fires per row) and coda.

        num_steps: an int r (all r iterations without gradient, as in the reference), a pair (n_no_grad, n_grad)
          (truncated backprop through the last n_grad iterations), or None (training: sampled depth; eval:
          config.mean_recurrence).
        input_states: s0 [B, S, d]; otherwise drawn by `initialize_state` (init_scale 0 = zero state).
        exit_criterion / exit_threshold: per-row adaptive exit judged on the last position (see exit.py); with
          it, num_steps is the maximum. warm_start: s0 of the first new position = the cache's last final state.
        labels: aligned with the logits (no shift, as in the reference); ignore index -100.
        logits_to_keep: if > 0, only the last that many positions get logits.
        """
        if input_ids.dim() != 2:
            raise UserError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
        batch, seq = input_ids.shape
        split = _split_num_steps(num_steps)
        if split is None:
            split = self.sample_num_steps() if self.training else (self.config.mean_recurrence, 0)
        n_no_grad, n_grad = split
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
        if cache is not None and cache_slots is not None and len(cache) == 0 and cache.n_slots_allocated == 0:
            cache.slots = cache_slots
        past_length = cache.begin(seq) if cache is not None else 0
        if cache is not None:
            cache.reserve(n_no_grad + n_grad)

        positions = self._positions(input_ids, attention_mask, position_ids, past_length)
        ctx = _Context(
            rope=rope_tables(positions, self.config.head_dim, self.config.rope_base),
            mask=self._attention_mask(attention_mask, batch, seq, past_length, input_ids.device),
            cache=cache,
        )
        hidden: list[Tensor] | None = [] if output_hidden_states else None

        embeds = self.transformer.wte(input_ids) * self.config.embed_scale
        if hidden is not None:
            hidden.append(embeds)
        for index, block in enumerate(self.transformer.prelude):
            write = None
            if cache is not None:

                def write(k, v, _i=index):
                    return cache.update_prelude(_i, k, v)

            embeds = block(embeds, ctx, write)
            if hidden is not None:
                hidden.append(embeds)

        if input_states is not None:
            state = input_states.to(embeds.dtype).clone()
        else:
            state = self.initialize_state(embeds, init_scale)
            if warm_start and cache is not None and cache.last_state is not None:
                state[:, 0] = cache.last_state.to(state.dtype)

        if criterion is None:
            state, used, per_iteration, exit_values = self._iterate_fixed(
                state, embeds, ctx, n_no_grad, n_grad, output_latents
            )
            state = self.core_output(state)
            logits = self.decode_state(state, ctx, hidden=hidden)
        else:
            state, used, per_iteration, exit_values, logits = self._iterate_adaptive(
                state, embeds, ctx, n_no_grad + n_grad, criterion, exit_min_steps, output_latents, hidden
            )
            state = self.core_output(state)

        if cache is not None:
            cache.commit(used)
            cache.last_state = state[:, -1].detach()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).to(logits.device), ignore_index=-100
            )
        if logits_to_keep > 0:
            logits = logits[:, -logits_to_keep:]
        return RecurrentOutput(
            logits=logits,
            loss=loss,
            # .forward(): not a pass through the final norm as far as capture hooks on ln_f are concerned
            latent_states=self.transformer.ln_f.forward(state).detach(),
            final_state=state,
            iteration_states=torch.stack(per_iteration) if per_iteration else None,
            iterations_used=used,
            exit_values=exit_values,
            hidden_states=tuple(hidden) if hidden is not None else None,
            past_key_values=cache,
        )

    # ---- persistence ----
    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json (huginn field names) and model.safetensors (huginn parameter names; tied head omitted)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.to_json_file(directory / "config.json")
        tensors = {
            name: t.detach().contiguous().cpu()
            for name, t in self.state_dict().items()
            if not (self.config.tie_embeddings and name == "lm_head.weight")
        }
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        from reasonlens.runs.io import make_shared

        make_shared(directory / "model.safetensors")  # save_file creates 0600

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, dtype: torch.dtype | str | None = None, device: str | torch.device = "cpu"
    ) -> "RecurrentDepthLM":
        """Load a directory with config.json and model.safetensors (or a sharded index), huginn-0125 layout."""
        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise UserError(f"{directory}: no config.json (not a recurrent-depth model directory)")
        config = RecurrentDepthConfig.from_json_file(directory / "config.json")
        tensors = _read_safetensors(directory)
        tensors.pop("freqs_cis", None)  # the reference stores its RoPE table; we recompute it
        tied = "transformer.wte.weight" if config.tie_embeddings else None
        return load_checked_weights(cls, config, directory, tensors, _resolve_dtype(dtype, config), device, tied)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())


def load_checked_weights(
    model_cls: type[nn.Module],
    config: Any,
    directory: Path,
    tensors: dict[str, Tensor],
    dtype: torch.dtype,
    device: str | torch.device,
    tied_to: str | None,
) -> nn.Module:
    """`model_cls(config)` built on the meta device with `tensors` assigned in `dtype` on `device`, in eval mode.

    The names must match the model's state dict exactly (a one-line error naming `directory` otherwise);
    `tied_to` names the embedding weight that `lm_head.weight` shares (None: untied).
    """
    if tied_to:
        tensors.pop("lm_head.weight", None)
    with torch.device("meta"):
        model = model_cls(config)
    expected = {n for n in model.state_dict() if not (tied_to and n == "lm_head.weight")}
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if missing or unexpected:
        raise UserError(
            f"{directory}: weights do not match the config (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )
    tensors = {n: t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype) for n, t in tensors.items()}
    if tied_to:
        tensors["lm_head.weight"] = tensors[tied_to]
    model.load_state_dict(tensors, strict=True, assign=True)
    if tied_to:
        model.lm_head.weight = model.get_parameter(tied_to)
    return model.eval()


def _resolve_dtype(dtype: torch.dtype | str | None, config: RecurrentDepthConfig) -> torch.dtype:
    from reasonlens.models.dtypes import torch_dtype

    if isinstance(dtype, torch.dtype):
        return dtype
    return torch.float32 if dtype is None else torch_dtype(dtype, "dtype")


def _read_safetensors(directory: Path) -> dict[str, Tensor]:
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        from reasonlens.runs.io import inside, read_json_object

        weight_map = read_json_object(index, "shard index").get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise UserError(f"{index}: field 'weight_map' must map tensor names to file names")
        # a model folder from someone else must not make us read files outside it
        files = [inside(directory, name, what="weight shard") for name in sorted(set(weight_map.values()))]
    else:
        raise UserError(f"{directory}: no model.safetensors or model.safetensors.index.json")
    tensors: dict[str, Tensor] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    tensors[name] = handle.get_tensor(name)
        except Exception as exc:  # safetensors raises several error types for corrupt files
            raise UserError(f"{file}: cannot read safetensors ({exc})") from None
    return tensors
