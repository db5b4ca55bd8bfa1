"""One way to get a tokenizer from a name or a file, for every command and for `train`."""

from __future__ import annotations

import json
from pathlib import Path

from scratchlm.errors import TokenizerError
from scratchlm.tokenizers import hf_files
from scratchlm.tokenizers.base import Tokenizer


def load(spec: str | Path) -> Tokenizer:
    """A tokenizer from `spec`: a file saved by `CharTokenizer.save` (JSON) or `BPETokenizer.save` (a
    `scratchlm-bpe` header line); a JSON file of either's `to_dict()` (the `tokenizer.json` that `prepare` writes
    beside its shards, or that folder); a Hugging Face byte-level BPE (a `tokenizer.json`, a `vocab.json` with its
    `merges.txt` beside it, or a folder holding either: `BPETokenizer.from_hf_files`); or the name of a
    published vocabulary (r50k_base: GPT-2, cl100k_base: GPT-4). A file of that name in the working folder
    wins over the published vocabulary."""
    from scratchlm.tokenizers.bpe import PRETRAINED, BPETokenizer
    from scratchlm.tokenizers.char import CharTokenizer

    path = Path(spec)
    if str(spec) in PRETRAINED and not path.exists():
        return BPETokenizer.from_pretrained(str(spec))
    if path.is_dir():
        if _own_state(path / "tokenizer.json") is not None:  # a folder made by prepare
            return _from_own_state(path / "tokenizer.json")
        return BPETokenizer.from_hf_files(path)
    if not path.is_file():
        raise TokenizerError(
            f"no BPE tokenizer file or character tokenizer file at {path} (nor a Hugging Face tokenizer.json, "
            f"vocab.json or their folder), nor a published vocabulary of that name ({', '.join(PRETRAINED)})"
        )
    with open(path, "rb") as f:
        head = f.read(64)
    if head.lstrip().startswith(b"scratchlm-bpe"):
        return BPETokenizer.load(path)
    if _own_state(path) is not None:
        return _from_own_state(path)
    if _is_hf_json(path):
        return BPETokenizer.from_hf_files(path)
    return CharTokenizer.load(path)


def _own_state(path: Path) -> dict | None:
    """The `to_dict()` of a scratchlm BPE tokenizer that `path` holds as JSON, or None (a character tokenizer's
    file is left to its own loader)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return state if isinstance(state, dict) and state.get("type") == "bpe" else None


def _from_own_state(path: Path) -> Tokenizer:
    from scratchlm.tokenizers.bpe import BPETokenizer

    try:
        return BPETokenizer.from_dict(_own_state(path))
    except TokenizerError as e:
        raise TokenizerError(f"{path}: {e}") from None


def _is_hf_json(path: Path) -> bool:
    """Whether `path` holds a Hugging Face tokenizer.json or vocab.json (anything else is left to the
    character tokenizer, whose loader names the problem)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return hf_files.is_tokenizer_json(state) or hf_files.is_vocab_json(state)
