"""A tokenizer with special tokens appended after its vocabulary: how chat tokens join a pretrained one.

A base model's tokenizer (characters, or a BPE) has no ids for "<|user|>" or "<|end|>". Fine-tuning it into an
assistant adds them: each new name gets the next free id (base.vocab_size, base.vocab_size + 1, ...), and the
model's embedding and tied head grow by as many rows (`scratchlm.posttraining.grow_vocabulary`). The base ids
keep their meaning, so the pretrained weights keep theirs.

`encode` never produces a special id: text that spells "<|user|>" is encoded as its characters, so what a user
types cannot forge a turn. A special id is placed only by whoever builds the sequence (`special_id(name)`, the
chat template); `decode` writes it back as its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from scratchlm.errors import TokenizerError
from scratchlm.options import is_int

FORMAT = "scratchlm-extended-tokenizer"
VERSION = 1


class ExtendedTokenizer:
    """`base` plus `names` as special tokens with ids base.vocab_size, base.vocab_size + 1, ... in order."""

    def __init__(self, base: Any, names: Sequence[str]):
        names = list(names)
        if not names or any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
            raise TokenizerError(f"special token names must be distinct non-empty strings, got {names!r}")
        if isinstance(base, ExtendedTokenizer):
            raise TokenizerError("the tokenizer already has added tokens: extend its base instead")
        self.base = base
        self.special_tokens: dict[str, int] = {name: base.vocab_size + i for i, name in enumerate(names)}
        self._names = {i: name for name, i in self.special_tokens.items()}

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size + len(self.special_tokens)

    def special_id(self, name: str) -> int:
        """The id of special token `name` (a TokenizerError naming the ones there are otherwise)."""
        try:
            return self.special_tokens[name]
        except KeyError:
            raise TokenizerError(
                f"{name!r} is not a special token of this tokenizer (it has {', '.join(self.special_tokens)})"
            ) from None

    def encode(self, text: str) -> list[int]:
        """The base tokenizer's ids of `text`; special names in it are plain text."""
        if hasattr(self.base, "encode_ordinary"):  # a BPE: its own special tokens are text here too
            return self.base.encode_ordinary(text)
        return self.base.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`, each special id written as its name."""
        out, run = [], []
        for i in ids:
            if not is_int(i):
                i = int(i)
            if i in self._names:
                out.append(self.base.decode(run) + self._names[i])
                run = []
            else:
                run.append(i)
        return "".join(out) + self.base.decode(run)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "extended", "format": FORMAT, "version": VERSION, "base": self.base.to_dict(),
                "special_tokens": list(self.special_tokens)}  # fmt: skip

    @classmethod
    def from_dict(cls, state: dict[str, Any], base: Any) -> ExtendedTokenizer:
        """Rebuild from `to_dict()` output; `base` is its base tokenizer, already rebuilt from state["base"]
        (`tokenizer_from_dict` does both)."""
        if state.get("format") != FORMAT or not isinstance(state.get("special_tokens"), list):
            raise TokenizerError("not a scratchlm extended tokenizer description")
        if state.get("version") != VERSION:
            raise TokenizerError(f"extended tokenizer version {state.get('version')!r} is not supported")
        return cls(base, state["special_tokens"])

    def __repr__(self) -> str:
        return f"ExtendedTokenizer({self.base!r} + {list(self.special_tokens)})"
