"""Train, evaluate and ship the small model organisms (LlamaForCausalLM on synthetic reasoning corpora).

A training run is a pure function of its ``OrganismConfig`` (seeded data, tokenizer, init and batch order);
only the wall time depends on the machine. The configs are recipes (``reasonlens/recipes/<name>.json``, kind
``llama-organism``); training goes through the toolkit's one loop (:func:`reasonlens.train.train_loop`) and
the card's accuracy through an ordinary run of the runner (:mod:`reasonlens.organisms.evaluation`). The output
directory is a Hugging Face model directory (``config.json``, ``model.safetensors``, tokenizer files) plus a
model card (``README.md``, ``card.json``). ``train_organism`` trains any recipe, the recurrent-depth one too.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from reasonlens.data import synthetic
from reasonlens.errors import UserError
from reasonlens.organisms import ORGANISMS_DIR
from reasonlens.organisms.artifacts import EvalResult, TrainResult, swap_into_place
from reasonlens.organisms.tokenizer import build_tokenizer, save_tokenizer
from reasonlens.train import LoopOptions, OptimConfig, load_recipe, recipe_names, train_loop
from reasonlens.train.provenance import training_machine

IGNORE_INDEX = -100
CHECKPOINT_EVERY = 200  # steps between checkpoints of an interrupted `organisms train` (resumed on re-run)


@dataclass(frozen=True)
class OrganismConfig:
    """Everything that determines a trained organism."""

    name: str
    dataset: str  # synthetic dataset name with levels, e.g. "synthetic-arith:1-3"
    target: str  # "cot": question -> reasoning trace; "direct": question -> \boxed{N}; "noreflect": the trace
    # cut after its first "Therefore" sentence (synthetic-reasoner only: meta["noreflect_solution"])
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 512
    n_train: int = 20000
    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 3e-3
    min_learning_rate_ratio: float = 0.1
    warmup_steps: int = 60
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    data_seed: int = synthetic.DEFAULT_SEED
    threads: int = 2
    eval_n: int = 200  # test problems scored for the model card
    vocab_size: int = 1024  # upper bound; the BPE merges saturate well below it on this corpus

    @property
    def max_new_tokens(self) -> int:
        return 16 if self.target == "direct" else 400

    def optim(self) -> OptimConfig:
        """The optimizer and schedule part, as the one training loop takes it."""
        return OptimConfig(
            steps=self.steps,
            lr=self.learning_rate,
            min_lr_ratio=self.min_learning_rate_ratio,
            warmup_steps=self.warmup_steps,
            weight_decay=self.weight_decay,
            betas=(0.9, 0.98),
            grad_clip=self.grad_clip,
        )


LLAMA_KIND = "llama-organism"
RECURRENT_KIND = "recurrent-organism"


def trainable_names() -> list[str]:
    """Every organism `reasonlens organisms train` knows: one per organism recipe."""
    return sorted(recipe_names(LLAMA_KIND) + recipe_names(RECURRENT_KIND))


def organism_config(name: str) -> OrganismConfig:
    """The ``OrganismConfig`` of a ``llama-organism`` recipe (every field given, none unknown)."""
    recipe = load_recipe(name)
    if recipe.kind != LLAMA_KIND:
        raise UserError(f"{recipe.path}: kind {recipe.kind!r} is not a {LLAMA_KIND} recipe")
    known = [f.name for f in fields(OrganismConfig)]
    given = {"name": recipe.name, **recipe.fields}
    unknown = sorted(set(given) - set(known))
    missing = sorted(set(known) - set(given))
    if unknown or missing:
        problems = ([f"unknown field(s) {', '.join(unknown)}"] if unknown else []) + (
            [f"missing field(s) {', '.join(missing)}"] if missing else []
        )
        raise UserError(f"{recipe.path}: {'; '.join(problems)}")
    return OrganismConfig(**given)


# ---------------------------------------------------------------------------------------------------------
# data


def target_text(item: synthetic.SyntheticItem, target: str) -> str:
    if target == "noreflect":
        return item.meta["noreflect_solution"]
    return item.solution if target == "cot" else item.direct_solution


def training_text(question: str, answer_text: str) -> str:
    """The prompt is the raw question; the model continues with a newline, then the answer text."""
    return f"{question}\n{answer_text}"


def encode_examples(
    tokenizer: Any, items: Sequence[synthetic.SyntheticItem], target: str, max_positions: int
) -> list[tuple[list[int], int]]:
    """(token ids ending in EOS, number of prompt tokens excluded from the loss) per item."""
    examples = []
    for item in items:
        prompt_ids = tokenizer(item.question, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(training_text(item.question, target_text(item, target)), add_special_tokens=False)[
            "input_ids"
        ]
        if full_ids[: len(prompt_ids)] != prompt_ids:
            raise ValueError(f"prompt does not tokenize as a prefix of its training text: {item.id}")
        full_ids = full_ids + [tokenizer.eos_token_id]
        if len(full_ids) > max_positions:
            continue
        examples.append((full_ids, len(prompt_ids)))
    return examples


def collate(examples: Sequence[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels mask the prompt and the padding."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
        attention[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def length_bucketed_batches(
    examples: Sequence[tuple[list[int], int]], batch_size: int, generator: torch.Generator, chunk_batches: int = 16
) -> list[list[int]]:
    """One epoch of batches: shuffle, sort each chunk of ``chunk_batches`` batches by length, shuffle the batches.

    Similar lengths share a batch, so little compute goes to padding; order stays a function of the generator.
    """
    permutation = torch.randperm(len(examples), generator=generator).tolist()
    chunk = batch_size * chunk_batches
    batches: list[list[int]] = []
    for start in range(0, len(permutation), chunk):
        ordered = sorted(permutation[start : start + chunk], key=lambda i: len(examples[i][0]))
        batches.extend(ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size))
    batch_order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in batch_order]


class EpochBatches:
    """``length_bucketed_batches`` epoch after epoch, taken from the end of each epoch's list; ``batch(step)``
    is a pure function of (examples, seed, step), so a resumed run gets the batches of an uninterrupted one."""

    def __init__(self, examples: Sequence[tuple[list[int], int]], batch_size: int, seed: int):
        self.examples, self.batch_size = examples, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.epochs: list[list[list[int]]] = []
        self.first_step: list[int] = []  # step at which each epoch starts

    def __call__(self, step: int) -> list[int]:
        while not self.epochs or step >= self.first_step[-1] + len(self.epochs[-1]):
            start = self.first_step[-1] + len(self.epochs[-1]) if self.epochs else 0
            self.epochs.append(length_bucketed_batches(self.examples, self.batch_size, self.generator))
            self.first_step.append(start)
        epoch = max(i for i, first in enumerate(self.first_step) if first <= step)
        batches = self.epochs[epoch]
        return batches[len(batches) - 1 - (step - self.first_step[epoch])]


def tokenizer_corpus(config: OrganismConfig, items: Sequence[synthetic.SyntheticItem]) -> list[str]:
    """Texts the BPE merges are learned from: both answer formats, so CoT and direct twins share one vocabulary."""
    texts = [training_text(item.question, item.solution) for item in items[:5000]]
    texts += [item.direct_solution for item in items[:500]]
    return texts


# ---------------------------------------------------------------------------------------------------------
# model


def build_model(config: OrganismConfig, tokenizer: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_positions,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(model_config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.generation_config.do_sample = False
    return model


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


# ---------------------------------------------------------------------------------------------------------
# evaluation


def evaluate_trained(model: Any, tokenizer: Any, config: OrganismConfig, target: Path) -> EvalResult:
    """The card's accuracy of a freshly trained model: an ordinary run of the runner on the model in memory
    (the weights about to be written to ``target``), like ``reasonlens organisms check`` on the written one."""
    from reasonlens.models import LoadedModel
    from reasonlens.organisms.evaluation import OrganismEval, evaluate_organism

    model.eval()
    lm = LoadedModel.wrap(model, tokenizer, name=config.name, spec=str(target))
    evaluation = OrganismEval(config.dataset, config.eval_n, config.max_new_tokens, config.data_seed)
    return evaluate_organism(target, evaluation, lm=lm, quiet=False)


# ---------------------------------------------------------------------------------------------------------
# training


def train_model(
    config: OrganismConfig,
    show_progress: bool = True,
    checkpoint_dir: Path | None = None,
    stop_after: int | None = None,
) -> tuple[Any, Any, list[float]]:
    """Build the tokenizer and model from the config and train; returns (model, tokenizer, loss per step).

    With ``checkpoint_dir`` the run checkpoints there and resumes from it; a resumed run returns the losses of
    every step from the checkpoint's log (rounded to 5 decimals). ``stop_after`` ends this call after that many
    steps (checkpointing first), as an interruption would.
    """
    torch.set_num_threads(config.threads)
    random.seed(config.seed)
    items = synthetic.generate(config.dataset, split="train", n=config.n_train, seed=config.data_seed)
    tokenizer = build_tokenizer(tokenizer_corpus(config, items), vocab_size=config.vocab_size)
    examples = encode_examples(tokenizer, items, config.target, config.max_positions)
    model = build_model(config, tokenizer)
    batches = EpochBatches(examples, config.batch_size, config.seed)

    def batch_at(step: int) -> dict[str, torch.Tensor]:
        return collate([examples[i] for i in batches(step)], tokenizer.pad_token_id)

    def loss_of(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss

    options = LoopOptions(
        label=f"train {config.name}",
        checkpoint_dir=checkpoint_dir,
        run_identity={"organism": asdict(config)},
        checkpoint_every=CHECKPOINT_EVERY,
        log_every=1,
        print_every=100,
        stop_after=stop_after,
        quiet=not show_progress,
    )
    loop = train_loop(model, config.optim(), batch_at, loss_of, options)
    resumed = len(loop.losses) < len(loop.history)
    losses = [entry["loss"] for entry in loop.history] if resumed else loop.losses
    return model, tokenizer, losses


def train_organism(
    name: str,
    output_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    evaluate_after: bool = True,
    command: str | None = None,
) -> TrainResult:
    """Train organism ``name`` from its recipe and write the model directory and card to ``output_dir``.

    The directory is swapped into place only when complete; an interrupted run resumes from
    ``<output_dir>.work/checkpoint`` when re-run with the same recipe and overrides.
    """
    recipe = load_recipe(name)
    target = Path(output_dir) if output_dir is not None else ORGANISMS_DIR / name
    command = command or f"reasonlens organisms train {name}"
    if recipe.kind == RECURRENT_KIND:
        from reasonlens.recurrent.organism import train_recurrent_organism  # the recurrent stack, only when asked

        return train_recurrent_organism(target, dict(overrides or {}), command)
    config = organism_config(name)
    if overrides:
        unknown = sorted(set(overrides) - set(OrganismConfig.__dataclass_fields__))
        if unknown:
            raise UserError(f"organism override: unknown field(s) {', '.join(unknown)}")
        config = replace(config, **overrides)
    work = target.with_name(target.name + ".work")
    started, cpu_started = time.perf_counter(), time.process_time()
    model, tokenizer, losses = train_model(config, checkpoint_dir=work / "checkpoint")
    wall_seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    evaluation = None
    if evaluate_after and config.eval_n > 0:
        evaluation = evaluate_trained(model, tokenizer, config, target)
    n_parameters = count_parameters(model)
    card = model_card(config, wall_seconds, n_parameters, losses, evaluation, command, cpu_seconds)
    write_organism(target, model, tokenizer, card)
    shutil.rmtree(work, ignore_errors=True)
    return TrainResult(target, wall_seconds, n_parameters, losses, evaluation)


def model_card(
    config: OrganismConfig,
    wall_seconds: float,
    n_parameters: int,
    losses: Sequence[float],
    evaluation: EvalResult | None,
    command: str | None,
    cpu_seconds: float | None = None,
) -> dict[str, Any]:
    tail = losses[-50:] if losses else []
    return {
        "name": config.name,
        "architecture": "LlamaForCausalLM",
        "dataset": config.dataset.split(":", 1)[0],
        "dataset_spec": config.dataset,
        "eval_dataset": config.dataset,
        "split": "test",
        "train_split": "train",
        "target": config.target,
        "training_command": command or f"reasonlens organisms train {config.name}",
        "wall_time_seconds": round(wall_seconds, 1),
        "cpu_time_seconds": round(cpu_seconds, 1) if cpu_seconds is not None else None,
        "torch_threads": config.threads,
        "n_parameters": n_parameters,
        "seed": config.seed,
        "data_seed": config.data_seed,
        "final_train_loss": round(sum(tail) / len(tail), 4) if tail else None,
        "test_accuracy": evaluation.to_dict() if evaluation else None,
        "decoding": {"kind": "greedy", "prompt": "raw question", "max_new_tokens": config.max_new_tokens},
        "config": asdict(config),
        **{k: v for k, v in training_machine(config.threads).items() if k != "torch_threads"},
    }


def card_markdown(card: dict[str, Any]) -> str:
    evaluation = card.get("test_accuracy")
    if evaluation:
        accuracy_line = (
            f"{100 * evaluation['accuracy']:.1f}% exact match ({evaluation['n_correct']}/{evaluation['n']}), "
            f"95% Wilson CI [{100 * evaluation['ci_low']:.1f}, {100 * evaluation['ci_high']:.1f}]"
        )
        levels = ", ".join(f"L{k}: {100 * v:.0f}%" for k, v in evaluation["by_level"].items())
    else:
        accuracy_line, levels = "not evaluated", ""
    return "\n".join(
        [
            f"# {card['name']}",
            "",
            f"A {card['n_parameters']:,}-parameter {card['architecture']} trained from scratch by reasonlens on "
            f"`{card['dataset_spec']}` ({card['target']} answers). It is a model organism: small enough to train "
            "on two CPU cores, good enough at its task that interventions can help or hurt it.",
            "",
            f"- Dataset: `{card['dataset_spec']}`, trained on split `train`, evaluated on split `test` "
            "(splits are disjoint by problem signature)",
            "- Prompt: the raw question; the model answers after a newline and ends with `\\boxed{N}` and EOS",
            f"- Training command: `{card['training_command']}`",
            f"- Wall time: {card['wall_time_seconds']:.0f} s with torch threads = {card['torch_threads']}, "
            f"process CPU time {card['cpu_time_seconds']} s (shared machine; see docs/organisms.md)",
            f"- Trained with torch {card.get('torch_version', '?')} on CPU `{card.get('cpu_model') or 'not recorded'}`"
            f" with {card['torch_threads']} threads: re-training reproduces these weights byte for byte only on the "
            "same CPU type and thread count (elsewhere the figures agree within their CIs)"
            + (f"; CPU: {card['cpu_model_note']}" if card.get("cpu_model_note") else ""),
            f"- Parameters: {card['n_parameters']:,}",
            f"- Seed: {card['seed']} (data seed {card['data_seed']})",
            f"- Final training loss (mean of last 50 steps): {card['final_train_loss']}",
            f"- Test accuracy (greedy, first {evaluation['n'] if evaluation else 0} test problems): {accuracy_line}",
            f"- Accuracy by level: {levels}" if levels else "",
            "",
            "Load with `transformers.AutoModelForCausalLM.from_pretrained(dir)` and `AutoTokenizer.from_pretrained(dir)`,",
            f'or by name: `reasonlens.models.load("{card["name"]}")`.',
            "",
        ]
    )


def write_organism(target: Path, model: Any, tokenizer: Any, card: dict[str, Any]) -> Path:
    """Save model, tokenizer and card into a staging dir, then swap it into place."""

    def fill(staging: Path) -> None:
        model.save_pretrained(staging, safe_serialization=True)
        save_tokenizer(tokenizer, staging)
        (staging / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        (staging / "README.md").write_text(card_markdown(card))

    return swap_into_place(target, fill)


def read_card(directory: str | Path) -> dict[str, Any] | None:
    from reasonlens.organisms import read_card as read_validated_card

    return read_validated_card(directory)


def shipped_organisms() -> dict[str, dict[str, Any] | None]:
    """Organism directories shipped in the package, with their cards (None if a directory has no card)."""
    found: dict[str, dict[str, Any] | None] = {}
    for directory in sorted(ORGANISMS_DIR.iterdir()):
        if directory.is_dir() and not directory.name.startswith((".", "_")) and (directory / "config.json").is_file():
            found[directory.name] = read_card(directory)
    return found
