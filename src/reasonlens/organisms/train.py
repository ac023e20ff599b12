"""Train, evaluate and ship the small model organisms (LlamaForCausalLM on synthetic reasoning corpora).

A training run is a pure function of its ``OrganismConfig`` (seeded data, tokenizer, init and batch order);
only the wall time depends on the machine. The output directory is a Hugging Face model directory
(``config.json``, ``model.safetensors``, tokenizer files) plus a model card (``README.md``, ``card.json``).
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from reasonlens.data import synthetic
from reasonlens.errors import UserError
from reasonlens.organisms import ORGANISMS_DIR
from reasonlens.organisms.artifacts import EvalResult, TrainResult, swap_into_place
from reasonlens.organisms.tokenizer import build_tokenizer, save_tokenizer

IGNORE_INDEX = -100
LOG_EVERY = 100  # steps between loss lines (they also land in logs when stdout is not a terminal)
BOXED_PATTERN = re.compile(r"\\boxed\{(-?\d+)\}")


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


REASONER_DATASET = "synthetic-reasoner:1-6"
ORGANISMS: dict[str, OrganismConfig] = {
    "organism-cot": OrganismConfig(name="organism-cot", dataset="synthetic-arith-small:1-3", target="cot"),
    "organism-direct": OrganismConfig(name="organism-direct", dataset="synthetic-arith-small:1-3", target="direct"),
    # The controls of the instrument (docs/organisms.md): one world, three answer formats, one budget.
    "organism-reasoner": OrganismConfig(
        name="organism-reasoner", dataset=REASONER_DATASET, target="cot", steps=1000, vocab_size=2048, threads=1
    ),
    "organism-reasoner-direct": OrganismConfig(
        name="organism-reasoner-direct",
        dataset=REASONER_DATASET,
        target="direct",
        steps=1000,
        vocab_size=2048,
        threads=1,
    ),
    "organism-reasoner-noreflect": OrganismConfig(
        name="organism-reasoner-noreflect",
        dataset=REASONER_DATASET,
        target="noreflect",
        steps=1000,
        vocab_size=2048,
        threads=1,
    ),
}


# Organisms trained by code elsewhere (e.g. the recurrent-depth model) plug into `reasonlens organisms train`:
# trainer(output_dir or None, overrides, command) -> TrainResult.
ExternalTrainer = Callable[[Path | None, dict[str, Any], str], "TrainResult"]
_EXTERNAL_TRAINERS: dict[str, ExternalTrainer] = {}


def register_trainer(name: str, trainer: ExternalTrainer) -> None:
    """Let ``reasonlens organisms train NAME`` call ``trainer`` for an organism not configured here."""
    _EXTERNAL_TRAINERS[name] = trainer


def _train_recurrent_organism(output_dir: Path | None, overrides: dict[str, Any], command: str) -> "TrainResult":
    from reasonlens.recurrent.organism import train_recurrent_organism  # imported late: it needs the recurrent stack

    return train_recurrent_organism(output_dir, overrides, command)


register_trainer("organism-recurrent", _train_recurrent_organism)


def trainable_names() -> list[str]:
    return sorted(set(ORGANISMS) | set(_EXTERNAL_TRAINERS))


def organism_config(name: str) -> OrganismConfig:
    try:
        return ORGANISMS[name]
    except KeyError:
        known = ", ".join(trainable_names())
        raise UserError(f"organism: unknown name {name!r} (trainable here: {known})") from None


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


def learning_rate_at(step: int, config: OrganismConfig) -> float:
    """Linear warmup, then cosine decay to ``min_learning_rate_ratio`` of the peak."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.min_learning_rate_ratio
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# ---------------------------------------------------------------------------------------------------------
# evaluation


def extract_boxed(text: str) -> str | None:
    """The integer inside the last ``\\boxed{}``, or None."""
    found = BOXED_PATTERN.findall(text)
    return found[-1] if found else None


def bootstrap_ci(correct: Sequence[bool], n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% bootstrap interval of the mean of 0/1 outcomes."""
    if not correct:
        return (float("nan"), float("nan"))
    generator = torch.Generator().manual_seed(seed)
    values = torch.tensor([float(c) for c in correct])
    draws = torch.randint(0, len(values), (n_resamples, len(values)), generator=generator)
    means = values[draws].mean(dim=1)
    return float(torch.quantile(means, 0.025)), float(torch.quantile(means, 0.975))


def generate_answers(
    model: Any, tokenizer: Any, questions: Sequence[str], max_new_tokens: int, batch_size: int = 64
) -> list[str]:
    """Greedy completions (text after the prompt, special tokens dropped) from the toolkit's one decode loop."""
    from reasonlens.decode import DecodeConfig, decode
    from reasonlens.models import LoadedModel

    model.eval()
    lm = LoadedModel.wrap(model, tokenizer, name="organism", spec="organism")
    generations = decode(lm, list(questions), DecodeConfig(max_new_tokens=max_new_tokens, batch_size=batch_size))
    return [g.text for g in generations]


def evaluate(
    model: Any, tokenizer: Any, dataset: str, n: int, max_new_tokens: int, seed: int = synthetic.DEFAULT_SEED
) -> EvalResult:
    """Exact match of the boxed integer on the first ``n`` test problems of ``dataset``, greedy decoding."""
    items = synthetic.generate(dataset, split="test", n=n, seed=seed)
    completions = generate_answers(model, tokenizer, [item.question for item in items], max_new_tokens)
    correct = [extract_boxed(text) == str(item.answer) for item, text in zip(items, completions)]
    low, high = bootstrap_ci(correct)
    by_level: dict[str, list[bool]] = {}
    for item, ok in zip(items, correct):
        by_level.setdefault(str(item.level), []).append(ok)
    return EvalResult(
        n=len(correct),
        n_correct=sum(correct),
        accuracy=sum(correct) / len(correct),
        ci_low=low,
        ci_high=high,
        by_level={level: sum(v) / len(v) for level, v in sorted(by_level.items())},
        outcomes="".join("1" if ok else "0" for ok in correct),
    )


# ---------------------------------------------------------------------------------------------------------
# training


def train_model(config: OrganismConfig, show_progress: bool = True) -> tuple[Any, Any, list[float]]:
    """Build the tokenizer and model from the config and train; returns (model, tokenizer, loss per step)."""
    from rich.progress import Progress

    torch.set_num_threads(config.threads)
    random.seed(config.seed)
    items = synthetic.generate(config.dataset, split="train", n=config.n_train, seed=config.data_seed)
    tokenizer = build_tokenizer(tokenizer_corpus(config, items), vocab_size=config.vocab_size)
    examples = encode_examples(tokenizer, items, config.target, config.max_positions)
    model = build_model(config, tokenizer)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.98),
    )
    order_generator = torch.Generator().manual_seed(config.seed)
    started = time.perf_counter()
    order: list[list[int]] = []
    losses: list[float] = []
    model.train()
    with Progress(disable=not show_progress) as progress:
        task = progress.add_task(f"train {config.name}", total=config.steps)
        for step in range(config.steps):
            if not order:
                order = length_bucketed_batches(examples, config.batch_size, order_generator)
            batch_indices = order.pop()
            batch = collate([examples[i] for i in batch_indices], tokenizer.pad_token_id)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, config)
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            losses.append(float(loss.detach()))
            progress.update(task, advance=1, description=f"train {config.name} loss {losses[-1]:.3f}")
            if show_progress and (step + 1) % LOG_EVERY == 0:
                recent = losses[-LOG_EVERY:]
                progress.console.log(
                    f"step {step + 1}/{config.steps} loss {sum(recent) / len(recent):.4f} "
                    f"elapsed {time.perf_counter() - started:.0f} s"
                )
    model.eval()
    return model, tokenizer, losses


def train_organism(
    name: str,
    output_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    evaluate_after: bool = True,
    command: str | None = None,
) -> TrainResult:
    """Train organism ``name`` and write the HF directory and model card to ``output_dir`` (atomically)."""
    if name in _EXTERNAL_TRAINERS and name not in ORGANISMS:
        target_dir = Path(output_dir) if output_dir is not None else None
        return _EXTERNAL_TRAINERS[name](
            target_dir, dict(overrides or {}), command or f"reasonlens organisms train {name}"
        )
    config = organism_config(name)
    if overrides:
        unknown = sorted(set(overrides) - set(OrganismConfig.__dataclass_fields__))
        if unknown:
            raise UserError(f"organism override: unknown field(s) {', '.join(unknown)}")
        config = replace(config, **overrides)
    target = Path(output_dir) if output_dir is not None else ORGANISMS_DIR / name
    started, cpu_started = time.perf_counter(), time.process_time()
    model, tokenizer, losses = train_model(config)
    wall_seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    evaluation = None
    if evaluate_after and config.eval_n > 0:
        evaluation = evaluate(model, tokenizer, config.dataset, config.eval_n, config.max_new_tokens, config.data_seed)
    n_parameters = count_parameters(model)
    card = model_card(config, wall_seconds, n_parameters, losses, evaluation, command, cpu_seconds)
    write_organism(target, model, tokenizer, card)
    return TrainResult(target, wall_seconds, n_parameters, losses, evaluation)


def cpu_model() -> str:
    """The CPU's model name (as ``lscpu`` prints it): byte-identical weights only hold on the same CPU type and
    thread count, because float reductions are ordered differently by different kernels."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


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
        "torch_version": torch.__version__,
        "cpu_model": cpu_model(),
    }


def card_markdown(card: dict[str, Any]) -> str:
    evaluation = card.get("test_accuracy")
    if evaluation:
        accuracy_line = (
            f"{100 * evaluation['accuracy']:.1f}% exact match ({evaluation['n_correct']}/{evaluation['n']}), "
            f"95% bootstrap CI [{100 * evaluation['ci_low']:.1f}, {100 * evaluation['ci_high']:.1f}]"
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
