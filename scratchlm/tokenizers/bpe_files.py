"""Reading and writing BPE vocabularies: our versioned text format, and tiktoken's rank files.

Our format is meant to be read by a person. Example (a GPT-4-pattern tokenizer with one special token):

    scratchlm-bpe v1
    pattern "'(?i:[sdmt]|ll|ve|re)|..."
    bytes identity
    special 1
    4095 "<|endoftext|>"
    merges 3839
    32 116
    104 101
    ...

- `pattern` is the pre-split regex as a JSON string, or `none` for no pre-splitting.
- `bytes` gives the byte value of ids 0..255: `identity` (id b is byte b, as in our trained tokenizers) or
  256 numbers (GPT-2's ranks order the bytes differently).
- `special N` is followed by N lines `ID NAME`, the name a JSON string.
- `merges N` is followed by N lines `A B`: line n makes token 256 + n from tokens A and B, both earlier.

Every problem is reported as a `TokenizerError` that names the file and the line.

tiktoken's files have one token per line: its bytes in base64, a space, its rank (which is its id).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import regex

from scratchlm.errors import TokenizerError
from scratchlm.files import atomic_write

FORMAT = "scratchlm-bpe"
VERSION = 1
HEADER = f"{FORMAT} v{VERSION}"
IDENTITY = list(range(256))


def ranks_from_merges(
    byte_order: Sequence[int], merges: Sequence[Sequence[int]], where: Callable[[int], str]
) -> dict[bytes, int]:
    """Rebuild the rank table (token bytes -> id) from the byte order and the merges.

    `where(n)` names merge n in error messages (a line of a file, or an index in a dict).
    """
    if not all(isinstance(b, int) for b in byte_order) or sorted(byte_order) != IDENTITY:
        raise TokenizerError("the byte order must list each of the 256 byte values once")
    vocab = [bytes([b]) for b in byte_order]
    ranks = {token: i for i, token in enumerate(vocab)}
    for n, pair in enumerate(merges):
        new_id = len(vocab)
        valid = isinstance(pair, (list, tuple)) and len(pair) == 2
        if not valid or not all(isinstance(i, int) and 0 <= i < new_id for i in pair):
            raise TokenizerError(f"{where(n)}: a merge must be two ids of earlier tokens (below {new_id})")
        token = vocab[pair[0]] + vocab[pair[1]]
        if token in ranks:
            raise TokenizerError(f"{where(n)}: token {token!r} already has id {ranks[token]}")
        vocab.append(token)
        ranks[token] = new_id
    return ranks


def write_bpe_file(path: str | Path, state: dict[str, Any]) -> None:
    """Write a `to_dict()` state in the text format, atomically (a crash never leaves half a file)."""
    lines = [HEADER]
    lines.append("pattern none" if state["pattern"] is None else f"pattern {json.dumps(state['pattern'])}")
    if state["byte_order"] == IDENTITY:
        lines.append("bytes identity")
    else:
        lines.append("bytes " + " ".join(map(str, state["byte_order"])))
    lines.append(f"special {len(state['special_tokens'])}")
    lines.extend(f"{token_id} {json.dumps(name)}" for name, token_id in state["special_tokens"])
    lines.append(f"merges {len(state['merges'])}")
    lines.extend(f"{a} {b}" for a, b in state["merges"])
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


class _Lines:
    """The lines of a file with their numbers, so every error can say where it is."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.number = 0  # 1-based number of the line last returned

    def error(self, message: str, number: int | None = None) -> TokenizerError:
        return TokenizerError(f"{self.path}, line {self.number if number is None else number}: {message}")

    def next(self, what: str) -> str:
        if self.number >= len(self.lines):
            raise TokenizerError(f"{self.path}: the file ends after line {self.number}, expected {what}")
        self.number += 1
        return self.lines[self.number - 1].rstrip("\r")

    def keyword(self, keyword: str) -> str:
        """The rest of the next line, which must start with `keyword` and a space."""
        line = self.next(f"a '{keyword} ...' line")
        if not line.startswith(keyword + " "):
            raise self.error(f"expected a '{keyword} ...' line, got {line[:60]!r}")
        return line[len(keyword) + 1 :]

    def count(self, keyword: str) -> int:
        value = self.keyword(keyword)
        if not value.isdigit():
            raise self.error(f"expected '{keyword} N' with a count N, got {value[:60]!r}")
        return int(value)


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise TokenizerError(f"no {what} at {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path} is not a {what}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _json_string(lines: _Lines, text: str, what: str) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, str):
        raise lines.error(f"{what} must be a JSON string, got {text[:60]!r}")
    return value


def _int_fields(lines: _Lines, line: str, n: int, what: str) -> list[int]:
    fields = line.split()
    if len(fields) != n or not all(f.isdigit() for f in fields):
        raise lines.error(f"expected {what}, got {line[:60]!r}")
    return [int(f) for f in fields]


def read_bpe_file(path: str | Path) -> tuple[dict[str, Any], int]:
    """Parse a file written by `write_bpe_file` into a `to_dict()` state.

    Returns the state and the line number of the first merge (to name lines in later checks).
    """
    path = Path(path)
    lines = _Lines(path, _read_text(path, "BPE tokenizer file"))
    header = lines.next(f"the header {HEADER!r}")
    if header != HEADER:
        if header.startswith(FORMAT + " v"):
            raise lines.error(f"version {header.removeprefix(FORMAT + ' v')!r} is not supported (this is v1)")
        raise lines.error(f"not a scratchlm BPE tokenizer file (expected {HEADER!r}, got {header[:60]!r})")

    pattern_text = lines.keyword("pattern")
    pattern = None if pattern_text == "none" else _json_string(lines, pattern_text, "the pattern")
    if pattern is not None:
        try:
            regex.compile(pattern)
        except regex.error as e:
            raise lines.error(f"invalid split pattern: {e}") from None

    byte_text = lines.keyword("bytes")
    byte_order = IDENTITY if byte_text == "identity" else _int_fields(lines, byte_text, 256, "256 byte values")
    if sorted(byte_order) != IDENTITY:
        raise lines.error("the byte order must list each of the 256 byte values once")

    special_tokens, special_lines = [], []
    for _ in range(lines.count("special")):
        token_id, _, name_text = lines.next("a special token line 'ID NAME'").partition(" ")
        if not token_id.isdigit():
            raise lines.error(f"expected 'ID NAME' for a special token, got {token_id[:60]!r}")
        name = _json_string(lines, name_text, "a special token's name")
        if not name or any(name == other or int(token_id) == i for other, i in special_tokens):
            raise lines.error(f"special token {name!r} is empty, or its name or id {token_id} is repeated")
        special_tokens.append([name, int(token_id)])
        special_lines.append(lines.number)

    n_merges = lines.count("merges")
    first_merge_line = lines.number + 1
    merges = [_int_fields(lines, lines.next(f"{n_merges} merges"), 2, "a merge 'A B'") for _ in range(n_merges)]
    if lines.number < len(lines.lines):
        raise lines.error("unexpected text after the last merge", lines.number + 1)
    for (name, token_id), number in zip(special_tokens, special_lines, strict=True):
        if token_id < 256 + n_merges:
            raise lines.error(f"special token {name!r} has id {token_id}, already a byte's or merge's", number)
    state = {
        "type": "bpe",
        "format": FORMAT,
        "version": VERSION,
        "pattern": pattern,
        "byte_order": byte_order,
        "special_tokens": special_tokens,
        "merges": merges,
    }
    return state, first_merge_line


def read_tiktoken_ranks(path: str | Path) -> dict[bytes, int]:
    """Read a tiktoken rank file: `BASE64 RANK` per line (blank lines are skipped, as tiktoken does)."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"no tiktoken rank file at {path}")
    ranks: dict[bytes, int] = {}
    seen_ranks: set[int] = set()
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit():
                shown = line[:60].decode("utf-8", "replace").rstrip()
                raise TokenizerError(f"{path}, line {number}: expected 'BASE64 RANK', got {shown!r}")
            try:
                token = base64.b64decode(fields[0], validate=True)
            except (binascii.Error, ValueError):
                shown = fields[0][:60].decode("utf-8", "replace")
                raise TokenizerError(f"{path}, line {number}: {shown!r} is not base64") from None
            rank = int(fields[1])
            if not token:
                raise TokenizerError(f"{path}, line {number}: a token must have at least one byte")
            if token in ranks:
                raise TokenizerError(f"{path}, line {number}: token {token!r} already has rank {ranks[token]}")
            if rank in seen_ranks:
                raise TokenizerError(f"{path}, line {number}: rank {rank} is given to two tokens")
            ranks[token] = rank
            seen_ranks.add(rank)
    return ranks
