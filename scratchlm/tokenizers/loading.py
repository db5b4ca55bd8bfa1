"""One way to get a tokenizer from a name or a file, for every command and for `train`."""

from __future__ import annotations

import json
from pathlib import Path

from scratchlm.errors import TokenizerError
from scratchlm.tokenizers.base import Tokenizer


def load(spec: str | Path) -> Tokenizer:
    """A tokenizer from `spec`: a file saved by `CharTokenizer.save` (JSON) or `BPETokenizer.save` (a
    `scratchlm-bpe` header line), a JSON file of either's `to_dict()` (the `tokenizer.json` that `prepare` writes
    beside its shards), or the name of a published vocabulary (r50k_base: GPT-2, cl100k_base: GPT-4). A file of
    that name in the working folder wins over the published vocabulary."""
    from scratchlm.tokenizers.bpe import PRETRAINED, BPETokenizer
    from scratchlm.tokenizers.char import CharTokenizer

    path = Path(spec)
    if str(spec) in PRETRAINED and not path.exists():
        return BPETokenizer.from_pretrained(str(spec))
    if not path.is_file():
        raise TokenizerError(
            f"no BPE tokenizer file or character tokenizer file at {path}, nor a published vocabulary of that "
            f"name ({', '.join(PRETRAINED)})"
        )
    with open(path, "rb") as f:
        head = f.read(64)
    if head.lstrip().startswith(b"scratchlm-bpe"):
        return BPETokenizer.load(path)
    if head.lstrip().startswith(b"{"):  # JSON: a character tokenizer, or a to_dict() of either kind
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TokenizerError(f"{path} is not a readable tokenizer file ({e})") from None
        if isinstance(state, dict) and state.get("type") == "bpe":
            try:
                return BPETokenizer.from_dict(state)
            except TokenizerError as e:
                raise TokenizerError(f"{path}: {e}") from None
    return CharTokenizer.load(path)
