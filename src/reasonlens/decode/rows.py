"""How a row stops or goes on: the stopping rules and continuation policies applied to one row.

The HF decode loop calls this for every row at every step; the vLLM engine calls the same code for each token
of a finished request (`engines.vllm_engine.RowAdapter`), so both engines make the same decisions with the
same plug-in objects.
"""

from __future__ import annotations

from typing import Sequence

from reasonlens.decode.plugins import (
    Continuation,
    ContinuationPolicy,
    EosStop,
    RowState,
    StepState,
    StoppingRule,
    StopStrings,
    TokenBudget,
)


def default_stopping_rules(eos_ids: Sequence[int], stop_strings: Sequence[str] = (), tokenizer=None) -> list:
    """The built-in rules, in the order they are asked: EOS, stop strings (when given), the token budget."""
    rules: list[StoppingRule] = [EosStop(eos_ids)]
    if stop_strings:
        rules.append(StopStrings(stop_strings, tokenizer))
    rules.append(TokenBudget())
    return rules


class RowStopper:
    """Applies `rules` (first firing rule wins) and `policies` (first continuation wins) to one row at a time."""

    def __init__(self, rules: Sequence[StoppingRule], policies: Sequence[ContinuationPolicy]):
        self.rules = list(rules)
        self.dropping = [rule for rule in self.rules if rule.drops_token]
        self.policies = list(policies)

    def start(self, row: RowState) -> None:
        for policy in self.policies:
            policy.on_start(row)

    def settle(self, row: RowState, token: int, state: StepState) -> tuple[int, bool]:
        """(token the row takes this step, whether it was injected): its next queued injection; else `token`,
        unless a `drops_token` rule (EOS) fires on it and a policy continues, whose first token takes its place."""
        if row.queue:
            return row.queue.popleft(), True
        if self.dropping:
            row.token_ids.append(token)
            row.forced.append(False)
            fired = next((rule for rule in self.dropping if rule(row, state)), None)
            row.token_ids.pop()
            row.forced.pop()
            if fired is not None:
                continuation = self.ask(row, fired.reason, state)
                if continuation is not None and continuation.tokens:
                    row.queue.extend(continuation.tokens[1:])
                    return continuation.tokens[0], True
        return token, False

    def advance(self, row: RowState, token: int, forced: bool, state: StepState) -> str | None:
        """Append the settled token; the reason the row stops now, or None when it goes on (a continuation's
        tokens are queued)."""
        row.token_ids.append(token)
        row.forced.append(forced)
        for rule in self.rules:
            if not rule(row, state):
                continue
            if rule.drops_token:  # the policies were asked in `settle` and let it stop
                return rule.reason
            continuation = self.ask(row, rule.reason, state)
            if continuation is not None and continuation.tokens:
                row.queue.extend(continuation.tokens)
                return None
            return rule.reason
        return None

    def ask(self, row: RowState, reason: str, state: StepState) -> Continuation | None:
        """The first policy's continuation for this stop (recorded in the row's events), or None."""
        for policy in self.policies:
            continuation = policy.on_stop(row, reason, state)
            if continuation is not None:
                row.n_continuations += 1
                row.budget += continuation.extra_budget
                row.events.append(
                    {
                        "type": "continue",
                        "reason": reason,
                        "step": row.n_generated,
                        "tokens": list(continuation.tokens),
                        "note": continuation.note,
                    }
                )
                return continuation
        return None
