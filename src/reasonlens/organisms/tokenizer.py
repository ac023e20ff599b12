"""A small word-level BPE tokenizer for the model organisms, saved in Hugging Face format.

Pre-tokenization keeps a leading space with the word that follows it (" Wait", " apples") and splits every
digit into its own piece, so BPE merges can build whole words but never multi-digit numbers. The base
alphabet is printable ASCII and anything else falls back to UTF-8 byte pieces, so any text encodes. The
decoder concatenates pieces, so ``decode(encode(text)) == text``.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"
UNK_TOKEN = "<|unk|>"
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)
# Byte-fallback pieces: any character outside the learned vocabulary is spelled as its UTF-8 bytes.
BYTE_TOKENS = [f"<0x{byte:02X}>" for byte in range(256)]
# Words a reasoner uses to steer; they must be single tokens so thinking-token analyses see them whole.
THINKING_WORDS = ("Let", "First", "So", "Then", "Hmm", "Wait", "Therefore", "Yes", "Next")
PIECE_PATTERN = r" ?[A-Za-z]+| ?[0-9]| ?[^A-Za-z0-9\s]|\s"
# One generic template: the prompt is the question followed by a newline, the model continues from there.
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}\n{% endfor %}"


def _alphabet() -> list[str]:
    printable = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
    return printable


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train the BPE merges on ``texts`` and wrap the result as a ``PreTrainedTokenizerFast``."""
    core = Tokenizer(models.BPE(unk_token=UNK_TOKEN, byte_fallback=True))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated")
    core.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS) + BYTE_TOKENS,
        initial_alphabet=_alphabet(),
        show_progress=False,
    )
    thinking_lines = [f"{word} {word}" for word in THINKING_WORDS] * 50  # keep them whole even if rare
    core.train_from_iterator(list(texts) + thinking_lines, trainer=trainer)
    for piece in (" ", *(f" {c}" for c in string.digits)):
        if core.token_to_id(piece) is None:
            core.add_tokens([piece])
    return wrap(core)


def wrap(core: Tokenizer) -> PreTrainedTokenizerFast:
    """The HF fast tokenizer around a ``tokenizers.Tokenizer`` with our special tokens set."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        clean_up_tokenization_spaces=False,
        padding_side="left",
        model_max_length=1024,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> Path:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    return directory
