"""Token sets for interventions: words, their token-id variants, and where the words came from.

The MI analysis writes token-set files (JSON lines {"word", "frequency", "token_ids"}) learnt from a run;
`reasonlens.analysis.tokens` reads and writes them and defines the one word -> ids expansion
(`word_token_ids`: the single tokens that spell a word whole, any case, with or without a leading
space/marker), which discovery, suppression, its random control and recycling all use.

This module turns a file (or the paper's list) into a `TokenSet` that also records its provenance, so a run
manifest can say which dataset split the words were learnt on and the CLI can warn when that is the
evaluation split (leakage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from reasonlens.analysis.tokens import read_token_set, words_ids
from reasonlens.errors import UserError

# The paper's thinking-token list for test-time scaling (SPEC A4).
PAPER_THINKING_WORDS: tuple[str, ...] = (
    "So",
    "Let",
    "Hmm",
    "I",
    "Okay",
    "First",
    "Wait",
    "But",
    "Now",
    "Then",
    "Since",
    "Therefore",
    "If",
    "Maybe",
    "To",
)
PAPER_SOURCE: dict[str, Any] = {"kind": "paper", "reference": "arXiv 2506.02867 (thinking tokens for TTTS)"}


@dataclass
class TokenSet:
    """An ordered list of words (most important first) and where they came from."""

    words: list[str]
    source: dict[str, Any] = field(default_factory=lambda: dict(PAPER_SOURCE))

    def top(self, k: int) -> "TokenSet":
        if k < 0:
            raise UserError(f"--top-words must be >= 0, got {k}")
        if k > len(self.words):
            raise UserError(f"--top-words {k}: the token set has only {len(self.words)} words")
        return TokenSet(self.words[:k], dict(self.source))

    def ids(self, tokenizer, include_split_starts: bool = False) -> list[int]:
        return words_ids(tokenizer, self.words, include_split_starts)

    def describe(self) -> dict[str, Any]:
        return {"words": list(self.words), **{f"source_{k}": v for k, v in self.source.items()}}


def paper_token_set() -> TokenSet:
    return TokenSet(list(PAPER_THINKING_WORDS), dict(PAPER_SOURCE))


def parse_words(text: str) -> list[str]:
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise UserError("--words: give at least one comma-separated word")
    return words


def _read_token_file(path: Path) -> list[dict[str, Any]]:
    return [{"word": w.word, "frequency": w.frequency} for w in read_token_set(path)]


def _recorded_source(path: Path) -> dict[str, Any]:
    """The ``source`` object `reasonlens tokens` writes on each line (empty for files without one)."""
    from reasonlens.runs.io import parse_json, read_bounded

    for line in read_bounded(path, "token-set file").decode("utf-8", "replace").splitlines():
        if line.strip():
            try:
                record = parse_json(line, str(path))
            except UserError:
                return {}
            source = record.get("source") if isinstance(record, dict) else None
            return source if isinstance(source, dict) else {}
    return {}


def _provenance(path: Path) -> dict[str, Any]:
    """Dataset and split of the run the token set was learnt from, from a manifest next to (or above) the file."""
    from reasonlens.runs.io import read_json_object
    from reasonlens.runs.rundir import RunDir

    source: dict[str, Any] = {"kind": "file", "path": str(path)}
    recorded = _recorded_source(path)
    if recorded.get("dataset") is not None:
        return source | {key: recorded[key] for key in ("dataset", "split", "model", "run") if key in recorded}
    for directory in (path.parent, path.parent.parent):
        manifest_path = RunDir(directory).manifest_path
        if manifest_path.is_file():
            try:
                manifest = read_json_object(manifest_path, "manifest")
            except UserError:
                continue
            origin = manifest.get("source_run_manifest") or manifest.get("source") or manifest
            if isinstance(origin, dict):
                for key in ("dataset", "split", "model"):
                    if origin.get(key) is not None:
                        source[key] = origin[key]
                if "dataset" in source:
                    source["manifest"] = str(manifest_path)
                    break
    return source


def load_token_set(path: str | Path, dataset: str | None = None, split: str | None = None) -> TokenSet:
    """Words of a token-set file, most frequent first; `dataset`/`split` override the detected provenance."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--token-set {path}: file not found")
    entries = _read_token_file(path)
    if not entries:
        raise UserError(f"--token-set {path}: no words in the file")
    entries = sorted(entries, key=lambda e: -(e.get("frequency") or 0))
    words: list[str] = []
    for entry in entries:
        if entry["word"] not in words:
            words.append(entry["word"])
    source = _provenance(path)
    if dataset is not None:
        source["dataset"] = dataset
    if split is not None:
        source["split"] = split
    return TokenSet(words, source)


def leakage_warning(source: dict[str, Any], eval_dataset: str, eval_split: str) -> str | None:
    """A one-line warning when the words were learnt on the split being evaluated (or the origin is unknown)."""
    if source.get("kind") in ("paper", "command line"):
        return None  # chosen by hand, not learnt from data
    dataset, split = source.get("dataset"), source.get("split")
    if dataset is None or split is None:
        return (
            f"token set {source.get('path', '?')}: its dataset/split is unknown, so it may have been learnt on "
            f"the evaluation data ({eval_dataset}:{eval_split}); pass --token-set-split/--token-set-dataset"
        )
    same_dataset = str(dataset).split(":")[0] == str(eval_dataset).split(":")[0]
    if same_dataset and split == eval_split:
        return (
            f"token set learnt on {dataset} split '{split}', the split being evaluated: results leak test "
            "information (learn the words on a training split)"
        )
    return None


def trace_word_counts(texts: Iterable[str]) -> dict[str, int]:
    """Case-insensitive counts of alphabetic words (keys are lower case)."""
    import re

    counts: dict[str, int] = {}
    for text in texts:
        for word in re.findall(r"[A-Za-z]+", text):
            key = word.lower()
            counts[key] = counts.get(key, 0) + 1
    return counts


def display_forms(texts: Iterable[str]) -> dict[str, str]:
    """Most common surface form of each lower-cased word."""
    import re
    from collections import Counter

    forms: dict[str, Counter] = {}
    for text in texts:
        for word in re.findall(r"[A-Za-z]+", text):
            forms.setdefault(word.lower(), Counter())[word] += 1
    return {key: counter.most_common(1)[0][0] for key, counter in forms.items()}
