"""What every tokenizer of the course offers, and turning a saved description back into one.

A tokenizer is stored inside checkpoints as a plain dict (`to_dict()`), tagged with its `type`, so a
checkpoint can be loaded with `torch.load(weights_only=True)` and still carry its vocabulary.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from scratchlm.errors import TokenizerError


@runtime_checkable
class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


def tokenizer_from_dict(state: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from `to_dict()` output, dispatching on its `type` field."""
    from scratchlm.tokenizers.bpe import BPETokenizer
    from scratchlm.tokenizers.char import CharTokenizer
    from scratchlm.tokenizers.extended import ExtendedTokenizer

    kinds = {"char": CharTokenizer, "bpe": BPETokenizer, "extended": ExtendedTokenizer}
    kind = state.get("type") if isinstance(state, dict) else None
    if kind not in kinds:
        raise TokenizerError(f"unknown tokenizer type {kind!r}; expected one of {sorted(kinds)}")
    if kind == "extended":  # a tokenizer around another: rebuild that one first
        return ExtendedTokenizer.from_dict(state, tokenizer_from_dict(state.get("base")))
    return kinds[kind].from_dict(state)


_VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"}


def visible(text: str) -> str:
    """`text` with its whitespace drawn: ␣ space, ⏎ newline, ⇥ tab, ␍ carriage return.

    Token boundaries are often whitespace (" the", "\\n\\n"), and a printed space or newline is invisible in a
    table or on a plot's axis; this is how the lessons label characters and tokens.
    """
    return "".join(_VISIBLE.get(c, c) for c in text)
