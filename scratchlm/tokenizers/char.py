"""Character-level tokenizer: one id per distinct character of the training text."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from scratchlm.errors import TokenizerError
from scratchlm.files import atomic_write
from scratchlm.tokenizers.batches import batches_of_texts

FORMAT = "scratchlm-char-tokenizer"
VERSION = 1


class CharTokenizer:
    """Maps each character of a fixed alphabet to an id (ids follow sorted code points)."""

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        if not chars:
            raise TokenizerError("a character tokenizer needs at least one character")
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise TokenizerError("the alphabet must be distinct single characters")
        self.chars: list[str] = chars
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The alphabet of `text`, sorted by code point."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            position = next(i for i, c in enumerate(text) if c not in self.stoi)
            bad = text[position]
            raise TokenizerError(
                f"character {bad!r} (U+{ord(bad):04X}) at position {position} is not in this tokenizer's "
                f"vocabulary of {self.vocab_size} characters"
            ) from None

    def encode_iter(self, texts: Iterable[str]) -> Iterator[list[int]]:
        """The ids of each text of `texts`, encoded lazily: the same as `encode` on each, in bounded memory."""
        for batch in batches_of_texts(texts):
            yield from map(self.encode, batch)

    def decode(self, ids: Iterable[int]) -> str:
        try:
            return "".join(self.chars[i] for i in ids)
        except (IndexError, TypeError):
            raise TokenizerError(f"ids must be integers in [0, {self.vocab_size})") from None

    def to_dict(self) -> dict[str, Any]:
        return {"type": "char", "format": FORMAT, "version": VERSION, "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> CharTokenizer:
        if state.get("format") != FORMAT or not isinstance(state.get("chars"), str):
            raise TokenizerError("not a scratchlm character tokenizer")
        if state.get("version") != VERSION:
            raise TokenizerError(f"character tokenizer version {state.get('version')} is not supported")
        return cls(state["chars"])

    def save(self, path: str | Path) -> None:
        """Write the alphabet as JSON, atomically."""
        with atomic_write(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"no tokenizer file at {path}")
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TokenizerError(f"{path} is not a character tokenizer file: {e}") from None
        if not isinstance(state, dict):
            raise TokenizerError(f"{path} is not a character tokenizer file")
        try:
            return cls.from_dict(state)
        except TokenizerError as e:
            raise TokenizerError(f"{path}: {e}") from None

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
