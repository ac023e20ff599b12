"""Named hook points on a model's layer stack: the one mechanism that reads or rewrites hidden states.

Hook points have stable names whatever the family (TransformerLens-style):
- `blocks.{l}.resid_pre`: the input of decoder layer l (`blocks.0.resid_pre` = the token embeddings, plus
  learned positions where the family adds them; HF `hidden_states[0]`);
- `blocks.{l}.resid_post`: the output of decoder layer l (HF `hidden_states[l + 1]`, before the final norm);
- `ln_final.out`: the output of the final norm (what the LM head reads).
`l` may be negative (counted from the last layer). Capture (`record_layers`), the layer re-run's input recorder
and the decode loop's `HiddenStateHook` plug-ins (steering, activation patching) all attach through
`attach_hooks`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch

from reasonlens.errors import UserError
from reasonlens.models.adapters import LayerAdapter, LayerKey

HOOK_POINTS = ("blocks.{l}.resid_pre", "blocks.{l}.resid_post", "ln_final.out")

# A hook function gets the point's hidden state [B, S, d]; it returns None (read only) or a replacement.
HookFn = Callable[[torch.Tensor], "torch.Tensor | None"]


_MUTED: set[int] = set()  # ids of modules whose hooks do not fire now (their output is being replayed)


@contextmanager
def muted(modules: Sequence[torch.nn.Module]) -> Iterator[None]:
    """While active, hooks attached through `attach_hooks` to `modules` do not fire: a layer re-run replays
    these layers' saved outputs, which are not new states (and must not be steered twice)."""
    ids = {id(module) for module in modules} - _MUTED
    _MUTED.update(ids)
    try:
        yield
    finally:
        _MUTED.difference_update(ids)


def first_tensor(output) -> torch.Tensor:
    """Decoder layers return a tensor (transformers 5) or a tuple whose first item is the hidden state."""
    return output[0] if isinstance(output, (tuple, list)) else output


def replace_first(output, hidden: torch.Tensor):
    """`output` with its hidden state (see `first_tensor`) replaced by `hidden`."""
    if isinstance(output, tuple):
        return (hidden,) + tuple(output[1:])
    if isinstance(output, list):
        return [hidden] + list(output[1:])
    return hidden


def hook_name(key: LayerKey) -> str:
    """The hook point of a layer key: k -> `blocks.k.resid_post`, "embed" -> `blocks.0.resid_pre`,
    "final" -> `ln_final.out`."""
    if key == "embed":
        return "blocks.0.resid_pre"
    if key == "final":
        return "ln_final.out"
    return f"blocks.{int(key)}.resid_post"


def resolve_hook_point(adapter: LayerAdapter, name: str) -> tuple[torch.nn.Module, str, str]:
    """(module, "pre" | "post", canonical name with a non-negative layer) of a hook point name."""
    parts = name.strip().split(".")
    if parts == ["ln_final", "out"]:
        return adapter.final_norm, "post", "ln_final.out"
    if len(parts) == 3 and parts[0] == "blocks" and parts[2] in ("resid_pre", "resid_post"):
        try:
            layer = int(parts[1])
        except ValueError:
            layer = None
        if layer is not None:
            index = adapter.resolve(layer)
            phase = "pre" if parts[2] == "resid_pre" else "post"
            return adapter.decoder_layers[index], phase, f"blocks.{index}.{parts[2]}"
    raise UserError(f"unknown hook point {name!r}; expected one of {', '.join(HOOK_POINTS)}")


@contextmanager
def attach_hooks(adapter: LayerAdapter, hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
    """While active, every forward calls each `(point, fn)` on that point's hidden state, in the order given
    (a replacement returned by one function is what the next one and the rest of the model see)."""
    by_point: dict[str, tuple[torch.nn.Module, str, list[HookFn]]] = {}
    for name, fn in hooks:
        module, phase, canonical = resolve_hook_point(adapter, name)
        by_point.setdefault(canonical, (module, phase, []))[2].append(fn)
    handles = []

    def pre_hook(fns: list[HookFn]):
        def hook(module, args, kwargs):
            if _MUTED and id(module) in _MUTED:
                return None
            hidden = args[0] if args else kwargs["hidden_states"]
            changed = False
            for fn in fns:
                new = fn(hidden)
                if new is not None:
                    hidden, changed = new, True
            if not changed:
                return None
            if args:
                return (hidden,) + tuple(args[1:]), kwargs
            return args, {**kwargs, "hidden_states": hidden}

        return hook

    def post_hook(fns: list[HookFn]):
        def hook(module, args, output):
            if _MUTED and id(module) in _MUTED:
                return None
            hidden = first_tensor(output)
            changed = False
            for fn in fns:
                new = fn(hidden)
                if new is not None:
                    hidden, changed = new, True
            return replace_first(output, hidden) if changed else None

        return hook

    try:
        for module, phase, fns in by_point.values():
            if phase == "pre":
                handles.append(module.register_forward_pre_hook(pre_hook(fns), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(post_hook(fns)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record_layers(
    adapter: LayerAdapter, keys: list[LayerKey], store: dict[LayerKey, torch.Tensor], last_only: bool = True
) -> Iterator[dict[LayerKey, torch.Tensor]]:
    """While active, every forward writes each chosen layer's output into `store[key]`.

    With `last_only` only the last position is kept ([B, d]); otherwise the whole sequence ([B, S, d]).
    Integer keys are decoder layer outputs (before the final norm); "final" is the final norm's output;
    "embed" is the input of the first decoder layer (HF `hidden_states[0]`: token embeddings, plus learned
    positions where the family adds them). See `hook_name` for the hook point of each key.
    """

    def keeper(key: LayerKey) -> HookFn:
        def keep(hidden: torch.Tensor) -> None:
            store[key] = hidden[:, -1, :].detach() if last_only else hidden.detach()

        return keep

    with attach_hooks(adapter, [(hook_name(key), keeper(key)) for key in keys]):
        yield store
