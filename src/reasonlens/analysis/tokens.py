"""Thinking tokens (SPEC A4): decode MI peaks to tokens, group word variants, token-set files.

A peak at step ``t`` has two readings: the generated token ``t`` (row ``t`` of a shard is the state that
predicted it) and the LM-head argmax of the state itself (after the final norm unless the layer already is
``"final"``). With greedy decoding at the last layer the two agree; elsewhere they measure how "decided"
the state is. Counting groups every id of a word: case, a leading space, SentencePiece ``▁`` and GPT-2
``Ġ`` markers.

Token-set file: JSON lines, one ``{"word": str, "frequency": int, "token_ids": [int, ...]}`` per word,
most frequent first. :func:`read_token_set` validates it and names the file and line of any defect.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reasonlens.errors import UserError

WORD_MARKERS = (" ", "\u2581", "\u0120", "\t")  # space, SentencePiece "▁", GPT-2 byte-level "Ġ", tab
_ALPHABETIC = re.compile(r"^[A-Za-z]+$")  # the reference notebook's filter


def strip_markers(text: str) -> str:
    """The surface word of a token: leading/trailing whitespace and word-start markers removed."""
    text = text.strip()
    while text and text[0] in WORD_MARKERS:
        text = text[1:].lstrip()
    return text


def word_key(text: str) -> str:
    """Grouping key of a token's text: markers stripped, case folded."""
    return strip_markers(text).casefold()


def is_alphabetic(word: str) -> bool:
    return bool(_ALPHABETIC.match(word))


def token_text(tokenizer: Any, token_id: int) -> str:
    """Decoded text of one token id (special tokens kept)."""
    return tokenizer.decode([int(token_id)], skip_special_tokens=False)


def _surface_variants(word: str) -> list[str]:
    base = strip_markers(word)
    forms = [base, base.lower(), base.capitalize(), base.upper(), base.title()]
    return list(dict.fromkeys(f for f in forms if f))


@dataclass(frozen=True)
class WordTokenId:
    """One token id of a word: its decoded text and whether it spells the whole word (``whole``) or is only the
    first piece of a form the tokenizer splits (banned only with ``include_split_starts``)."""

    word: str
    token_id: int
    text: str
    whole: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"word": self.word, "id": self.token_id, "text": self.text, "whole": self.whole}


def word_token_ids(tokenizer: Any, words: Iterable[str], include_split_starts: bool = False) -> list[WordTokenId]:
    """The token ids of ``words``: every single token that spells a word whole, in any case, with or without a
    leading space/marker (``▁word``, ``Ġword``, the encoding of ``" " + word``), and without one in the casings
    that start a line (as given, capitalised, upper case: "So", "SO", not "so", which is mostly a piece of "sofa").

    This is the one word -> ids expansion of the project (token-set discovery, suppression, its random control
    and RR triggers all use it), so discovery and intervention agree on what "the word's ids" are.

    ``include_split_starts`` also adds the first piece of each form the tokenizer splits into several tokens
    (``whole=False``). Such a piece starts other words too (on SmolLM2 "Hmm" -> ``H``, "Let" -> `` L``), so
    banning it suppresses more than the word: it is off by default and callers that turn it on must say so.
    Each id appears once (under the first word that yields it); order: words in order, ids ascending.
    """
    out: list[WordTokenId] = []
    seen: set[int] = set()
    for word in words:
        if not strip_markers(word):
            raise UserError(f"word_token_ids: empty word {word!r}")
        whole, starts = _word_ids(tokenizer, word)
        entries = [(i, True) for i in sorted(whole)]
        if include_split_starts:
            entries += [(i, False) for i in sorted(starts - whole)]
        for token_id, is_whole in entries:
            if token_id not in seen:
                seen.add(token_id)
                out.append(WordTokenId(word, token_id, token_text(tokenizer, token_id), is_whole))
    return out


def _word_ids(tokenizer: Any, word: str) -> tuple[set[int], set[int]]:
    """(ids that spell ``word`` whole, first pieces of the forms the tokenizer splits)."""
    vocab = tokenizer.get_vocab()
    whole: set[int] = set()
    starts: set[int] = set()
    base = strip_markers(word)
    line_start = {base, base.capitalize(), base.upper()}
    for form in _surface_variants(word):
        # Without a leading space a word only starts a text or line, where it is written as given or capitalised;
        # other casings without a space are mostly pieces inside other words ("i" in "semi").
        bare = (form,) if form in line_start else ()
        for marked in (*bare, "\u2581" + form, "\u0120" + form, " " + form):
            if marked in vocab and word_key(token_text(tokenizer, vocab[marked])) == form.casefold():
                whole.add(int(vocab[marked]))
        for text in (*bare, " " + form):
            encoded = tokenizer.encode(text, add_special_tokens=False)
            pieces = [i for i in encoded if strip_markers(token_text(tokenizer, i))]  # drop bare-space pieces
            if len(pieces) == 1 and word_key(token_text(tokenizer, pieces[0])) == form.casefold():
                whole.add(int(pieces[0]))
            elif len(pieces) > 1:
                starts.add(int(pieces[0]))
    return whole, starts


def word_variant_ids(tokenizer: Any, word: str, include_split_starts: bool = False) -> list[int]:
    """Sorted ids of one word (see :func:`word_token_ids`)."""
    return sorted(t.token_id for t in word_token_ids(tokenizer, [word], include_split_starts))


def words_ids(tokenizer: Any, words: Iterable[str], include_split_starts: bool = False) -> list[int]:
    """Sorted ids of several words (see :func:`word_token_ids`)."""
    return sorted(t.token_id for t in word_token_ids(tokenizer, words, include_split_starts))


@dataclass
class WordCount:
    """One grouped word: its most frequent surface form, total count, and every id seen or known for it."""

    word: str
    frequency: int
    token_ids: list[int]

    def to_json(self) -> dict[str, Any]:
        return {"word": self.word, "frequency": self.frequency, "token_ids": self.token_ids}


@dataclass
class WordCounter:
    """Counts token ids and groups them into words (case, leading space and markers folded)."""

    tokenizer: Any
    alphabetic_only: bool = True
    _ids: Counter = field(default_factory=Counter)

    def add(self, token_ids: Iterable[int]) -> None:
        self._ids.update(int(i) for i in token_ids)

    def words(self, top: int | None = None, add_variants: bool = True) -> list[WordCount]:
        """Grouped counts, most frequent first (ties: alphabetical); ``add_variants`` adds the vocabulary's
        single-token variants of each word to its ``token_ids``."""
        groups: dict[str, Counter] = {}
        for token_id, count in self._ids.items():
            surface = strip_markers(token_text(self.tokenizer, token_id))
            if not surface or (self.alphabetic_only and not is_alphabetic(surface)):
                continue
            groups.setdefault(surface.casefold(), Counter())[(surface, token_id)] += count
        out = []
        for key, members in groups.items():
            by_surface: Counter = Counter()
            for (surface, _), count in members.items():
                by_surface[surface] += count
            display = sorted(by_surface.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
            ids = {tid for (_, tid) in members}
            if add_variants:
                ids.update(word_variant_ids(self.tokenizer, display))
            out.append(WordCount(display, sum(members.values()), sorted(ids)))
        out.sort(key=lambda w: (-w.frequency, w.word))
        return out[:top] if top is not None else out


def write_token_set(path: str | Path, words: Sequence[WordCount], source: dict[str, Any] | None = None) -> Path:
    """Write a token-set file (JSON lines) atomically; returns the path.

    ``source`` (the run's model, dataset, split and path) is repeated on every line as ``"source"`` so the
    file carries its provenance wherever it is copied: evaluation warns when words were learnt on the split
    it evaluates.
    """
    from reasonlens.runs.io import atomic_write_bytes

    path = Path(path)
    if path.is_dir():
        raise UserError(f"--out {path}: is a directory (give a file name such as tokens.jsonl)")
    extra = {"source": source} if source else {}
    text = "".join(json.dumps(w.to_json() | extra) + "\n" for w in words)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


MAX_TOKEN_SET_BYTES = 16 * 1024 * 1024


def read_token_set(path: str | Path) -> list[WordCount]:
    """Read and validate a token-set file; a malformed line raises UserError naming the file and line."""
    from reasonlens.runs.io import parse_json, read_bounded

    path = Path(path)
    try:
        lines = read_bounded(path, "token-set file", MAX_TOKEN_SET_BYTES).decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path}: token-set file is not valid UTF-8") from None
    words = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        record = parse_json(line, where)
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected a JSON object with word, frequency, token_ids")
        word, freq, ids = record.get("word"), record.get("frequency"), record.get("token_ids")
        if not isinstance(word, str) or not word.strip():
            raise UserError(f"{where}: field 'word' must be a non-empty string (not only whitespace)")
        if isinstance(freq, bool) or not isinstance(freq, int) or freq < 0:
            raise UserError(f"{where}: field 'frequency' must be a non-negative integer")
        if (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)
        ):
            raise UserError(f"{where}: field 'token_ids' must be a non-empty list of non-negative integers")
        words.append(WordCount(word, freq, list(ids)))
    return words


@torch.inference_mode()
def lm_head_argmax(lm: Any, states: torch.Tensor, layer: int | str, batch: int = 256) -> torch.Tensor:
    """Argmax token of the LM head on ``states [P, d]`` captured at ``layer`` -> ``[P]`` int64.

    ``lm.layers.final_norm`` is applied first unless ``layer == "final"`` (those states are already normed).
    """
    if lm.layers is None:
        raise UserError(f"model '{lm.name}' has no LM head view to decode states with")
    if states.dim() != 2:
        raise UserError(f"states must be [P, d], got shape {tuple(states.shape)}")
    out = []
    for start in range(0, states.shape[0], batch):
        chunk = states[start : start + batch].to(device=lm.device, dtype=lm.dtype)
        if str(layer) != "final":
            chunk = lm.layers.final_norm(chunk)
        out.append(lm.layers.lm_head(chunk).argmax(dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


@dataclass(frozen=True)
class PeakToken:
    """The two readings of one peak."""

    sample: int
    layer: str
    step: int
    generated_id: int
    argmax_id: int | None

    @property
    def agree(self) -> bool | None:
        return None if self.argmax_id is None else self.generated_id == self.argmax_id


def peak_tokens(
    sample: int,
    layer: int | str,
    steps: Sequence[int],
    token_ids: torch.Tensor,
    states: torch.Tensor | None = None,
    lm: Any = None,
) -> list[PeakToken]:
    """Readings of the peaks ``steps`` of one trace; the argmax reading needs ``states [T, d]`` and ``lm``."""
    steps = [int(s) for s in steps if 0 <= int(s) < token_ids.shape[0]]
    argmax: list[int | None] = [None] * len(steps)
    if steps and states is not None and lm is not None:
        argmax = lm_head_argmax(lm, states[torch.tensor(steps)], layer).tolist()
    return [PeakToken(sample, str(layer), s, int(token_ids[s]), a) for s, a in zip(steps, argmax)]


def agreement_rate(tokens: Sequence[PeakToken]) -> float | None:
    """Fraction of peaks whose generated token equals the LM-head argmax (None if never decoded)."""
    decided = [t.agree for t in tokens if t.agree is not None]
    return sum(decided) / len(decided) if decided else None
