"""Prompt templates: how a Problem becomes the text the model sees."""

from __future__ import annotations

from typing import Any, Callable

from reasonlens.data.records import Problem
from reasonlens.errors import UserError

DEEPSEEK_MATH = (
    "User: {question}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\n\nAssistant:"
)
CHAT_INSTRUCTION = "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def _raw(problem: Problem, tokenizer: Any, system: str | None) -> str:
    return problem.question


def _deepseek_math(problem: Problem, tokenizer: Any, system: str | None) -> str:
    return DEEPSEEK_MATH.format(question=problem.question)


def _chat(problem: Problem, tokenizer: Any, system: str | None) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise UserError("--template chat: this model's tokenizer has no chat template (use raw or deepseek-math)")
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": CHAT_INSTRUCTION.format(question=problem.question)})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


TEMPLATES: dict[str, Callable[[Problem, Any, str | None], str]] = {
    "raw": _raw,
    "deepseek-math": _deepseek_math,
    "chat": _chat,
}


def render_prompt(problem: Problem, template: str, tokenizer: Any = None, system: str | None = None) -> str:
    """The prompt text for `problem` under `template` (raw, deepseek-math or chat)."""
    try:
        render = TEMPLATES[template]
    except KeyError:
        raise UserError(f"unknown --template '{template}' (choose from {', '.join(TEMPLATES)})") from None
    return render(problem, tokenizer, system)
