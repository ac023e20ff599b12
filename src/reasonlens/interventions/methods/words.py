"""Shared by the word-based methods (suppress, rr, nowait): which words, which token ids, from where."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from reasonlens.analysis.tokens import WordTokenId, word_token_ids, words_ids
from reasonlens.errors import UserError
from reasonlens.interventions.tokens import TokenSet, leakage_warning, load_token_set, paper_token_set


def resolve_token_ids(
    lm, words: list[str], split_starts: bool, identity: dict[str, Any], provenance: dict[str, Any], warnings: list[str]
) -> list[WordTokenId]:
    """Fix the ids a run acts on: recorded with their text in the manifest (`token_ids`), their list in the
    identity (a resumed run whose words now map to other ids is refused)."""
    entries = word_token_ids(lm.tokenizer, words, include_split_starts=split_starts)
    identity["token_ids"] = sorted(t.token_id for t in entries)
    if split_starts:
        identity["split_starts"] = True
        pieces = [f"{t.word}->{t.text!r}" for t in entries if not t.whole]
        if pieces:
            warnings.append(
                "--split-starts also bans the first piece of split words, which starts other words "
                f"too: {', '.join(pieces)}"
            )
    provenance["token_ids"] = [t.to_json() for t in entries]
    covered = {t.word for t in entries}
    missing = [w for w in words if w not in covered]
    if missing:
        warnings.append(
            f"no single token spells {', '.join(missing)}: nothing of {'it' if len(missing) == 1 else 'them'}"
            " is banned (the tokenizer splits every form)"
        )
    return entries


def identity_token_ids(lm, identity: dict[str, Any]) -> list[int]:
    """The ids a resolved word-based method acts on: its words, with their split first pieces if it says so."""
    return words_ids(lm.tokenizer, identity["words"], identity.get("split_starts", False))


def format_token_ids(entries: Sequence[WordTokenId]) -> str:
    """`So: 'So'(1234) ' So'(2055); Then: ...` (split first pieces marked with *)."""
    by_word: dict[str, list[str]] = {}
    for t in entries:
        by_word.setdefault(t.word, []).append(f"{t.text!r}({t.token_id}){'' if t.whole else '*'}")
    return "; ".join(f"{word}: {' '.join(ids)}" for word, ids in by_word.items()) or "(none)"


def chosen_token_set(
    options: Any, dataset: str, split: str, provenance: dict[str, Any], warnings: list[str]
) -> TokenSet:
    """The word list of `options` (its `words`, else its `token_set` file, else the paper's list; top `k`), its
    description recorded in `provenance` and a leakage warning when it was learnt on the evaluated split."""
    if options.words:
        chosen = TokenSet(list(options.words), {"kind": "command line"})
    elif options.token_set is not None:
        chosen = load_token_set(options.token_set, options.token_set_dataset, options.token_set_split)
    else:
        chosen = paper_token_set()
    if options.k is not None:
        chosen = chosen.top(options.k)
    provenance["token_set"] = chosen.describe()
    leak = leakage_warning(chosen.source, dataset, split)
    if leak:
        warnings.append(leak)
    return chosen


def control_traces(control_run: Path | None, dataset: str, split: str) -> tuple[list[str], dict[str, Any], list[str]]:
    """The completions of a generate run (word frequencies for the random control), its source and warnings."""
    from reasonlens.runs import RunDir

    if control_run is None:
        raise UserError(
            "--control random needs --control-run RUN_DIR (a generate run of this model) for word frequencies"
        )
    run = RunDir(control_run)
    manifest = run.open_run()
    traces = [r.get("completion", "") for r in run.results()]
    if not traces:
        raise UserError(f"--control-run {control_run}: the run has no results")
    source = {
        "path": str(control_run),
        "dataset": manifest.get("dataset"),
        "split": manifest.get("split"),
        "model": manifest.get("model"),
        "n_traces": len(traces),
    }
    warning = leakage_warning({"kind": "run", **source}, dataset, split)
    return traces, source, [f"control run: {warning}"] if warning else []
