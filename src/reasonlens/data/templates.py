"""Prompt templates: how a Problem becomes the text the model sees."""

from __future__ import annotations

from typing import Any, Callable

from reasonlens.data.records import Problem
from reasonlens.errors import UserError

DEEPSEEK_MATH = (
    "User: {question}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\n\nAssistant:"
)
CHAT_INSTRUCTION = "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}."

# Worked examples of the few-shot templates: one-step word problems in the style of ``word-arith`` but with
# names, objects and arithmetic that set never uses (no example is one of its problems; a test checks), each
# answered by its arithmetic and one answer sentence. Small chat models follow a shown format where a "reason
# step by step" instruction makes them ramble (SmolLM2-135M-Instruct: docs/results.md).
FEW_SHOT_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Owen has 11 shells. He finds 4 more shells. How many shells does Owen have now?",
        "Owen had 11 shells and found 4 more, so we add: 11 + 4 = 15. The answer is 15.",
    ),
    (
        "Ruby has 23 buttons. She gives away 8 buttons. How many buttons does Ruby have now?",
        "Ruby had 23 buttons and gave away 8, so we subtract: 23 - 8 = 15. The answer is 15.",
    ),
    (
        "Finn has 20 crayons. He gets 6 more crayons. How many crayons does Finn have now?",
        "Finn had 20 crayons and got 6 more, so we add: 20 + 6 = 26. The answer is 26.",
    ),
)


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


def _few_shot(problem: Problem, tokenizer: Any, system: str | None) -> str:
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in FEW_SHOT_EXAMPLES)
    return f"{shots}Question: {problem.question}\nAnswer:"


def _chat_few_shot(problem: Problem, tokenizer: Any, system: str | None) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise UserError("--template chat-few-shot: this model's tokenizer has no chat template (use few-shot)")
    messages = [{"role": "system", "content": system}] if system else []
    for question, answer in FEW_SHOT_EXAMPLES:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": problem.question})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


TEMPLATES: dict[str, Callable[[Problem, Any, str | None], str]] = {
    "raw": _raw,
    "deepseek-math": _deepseek_math,
    "chat": _chat,
    "few-shot": _few_shot,
    "chat-few-shot": _chat_few_shot,
}


# templates rendered by the tokenizer's chat template, which writes the special tokens (BOS, role markers) itself
CHAT_TEMPLATES = frozenset({"chat", "chat-few-shot"})


def adds_special_tokens(template: str) -> bool:
    """Whether prompts under `template` need the tokenizer's special tokens (False: the chat template wrote them)."""
    return template not in CHAT_TEMPLATES


def render_prompt(problem: Problem, template: str, tokenizer: Any = None, system: str | None = None) -> str:
    """The prompt text for `problem` under `template` (one of TEMPLATES)."""
    try:
        render = TEMPLATES[template]
    except KeyError:
        raise UserError(f"unknown --template '{template}' (choose from {', '.join(TEMPLATES)})") from None
    return render(problem, tokenizer, system)
