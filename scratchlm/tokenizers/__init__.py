"""Tokenizers: characters (lesson 01) and byte-level BPE (lesson 05), either with special tokens appended
(`ExtendedTokenizer`, the chat tokens of lesson 14); `load(spec)` opens a tokenizer file or a published vocabulary
by name."""

from scratchlm.tokenizers.base import Tokenizer, tokenizer_from_dict, visible
from scratchlm.tokenizers.bpe import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer
from scratchlm.tokenizers.char import CharTokenizer
from scratchlm.tokenizers.extended import ExtendedTokenizer
from scratchlm.tokenizers.loading import load

__all__ = [
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "BPETokenizer",
    "CharTokenizer",
    "ExtendedTokenizer",
    "Tokenizer",
    "load",
    "tokenizer_from_dict",
    "visible",
]
