"""Training checkpoints: ``model.safetensors`` + ``config.json`` (the model's own ``save_pretrained``),
``optimizer.safetensors`` (AdamW moments and the torch RNG state) and ``trainer_state.json`` (step counter,
param-group settings, history). Written to a temporary directory and renamed, so a checkpoint is never half
written; nothing is pickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from reasonlens.errors import UserError
from reasonlens.runs.io import read_json_object


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    history: list[dict],
    identity: dict[str, Any] | None = None,
) -> None:
    """Model + optimizer (safetensors) + JSON step counter; written to a temp dir then renamed (atomic)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    from reasonlens.runs.progress import quiet_transformers

    with quiet_transformers():  # no "Writing model shards" bar every checkpoint
        model.save_pretrained(tmp)
    state = optimizer.state_dict()
    tensors: dict[str, Tensor] = {"rng.torch": torch.get_rng_state()}
    for index, param_state in state["state"].items():
        for key, value in param_state.items():
            value = value if isinstance(value, Tensor) else torch.tensor(value)
            tensors[f"state.{index}.{key}"] = value.detach().contiguous().cpu()
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in state["param_groups"]]
    (tmp / "trainer_state.json").write_text(
        json.dumps({"step": step, "param_groups": groups, "history": history, "identity": identity})
    )
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        directory.rename(old)
        tmp.rename(directory)
        for item in old.iterdir():
            item.unlink()
        old.rmdir()
    else:
        tmp.rename(directory)


def _load_weights(directory: Path, model: torch.nn.Module) -> None:
    """Copy ``model.safetensors`` into the model's parameters by name (a tied head is filled through its twin)."""
    try:
        tensors = load_file(str(directory / "model.safetensors"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{directory}: unreadable checkpoint weights ({exc})") from None
    own = model.state_dict()
    unknown = sorted(set(tensors) - set(own))
    if unknown:
        raise UserError(f"{directory}/model.safetensors: tensors the model does not have: {', '.join(unknown[:5])}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            if own[name].shape != tensor.shape:
                raise UserError(
                    f"{directory}/model.safetensors: {name} has shape {tuple(tensor.shape)}, "
                    f"the model {tuple(own[name].shape)}"
                )
            own[name].copy_(tensor)


def load_checkpoint(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, identity: dict[str, Any] | None = None
) -> tuple[int, list[dict]]:
    """Restore weights, optimizer and RNG from ``directory``; returns (step, history).

    ``identity`` (the run's settings) must equal the one the checkpoint was written with, when both have one.
    """
    directory = Path(directory)
    trainer = read_json_object(directory / "trainer_state.json", "checkpoint state")
    if not isinstance(trainer.get("step"), int):
        raise UserError(f"{directory}/trainer_state.json: not a checkpoint (no integer 'step')")
    recorded = trainer.get("identity")
    if identity is not None and recorded is not None and json.loads(json.dumps(identity)) != recorded:
        raise UserError(
            f"{directory}: checkpoint of a run with other settings; delete it to start over, "
            "or re-run with the settings it was written with"
        )
    _load_weights(directory, model)
    tensors = load_file(str(directory / "optimizer.safetensors"))
    per_param: dict[int, dict[str, Tensor]] = {}
    for name, tensor in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            per_param.setdefault(int(index), {})[key] = tensor
    optimizer.load_state_dict({"state": per_param, "param_groups": trainer["param_groups"]})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return int(trainer["step"]), list(trainer.get("history", []))
