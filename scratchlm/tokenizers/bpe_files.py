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
- `special N` is followed by N lines `ID NAME`, the name a JSON string; the ids come after the merges' and
  leave at most 1024 ids unused (`special_id_problem`).
- `merges N` is followed by N lines `A B`: line n makes token 256 + n from tokens A and B, both earlier.

Every problem is reported as a `TokenizerError` that names the file and the line.

tiktoken's files have one token per line: its bytes in base64, a space, its rank (which is its id); the ranks
are 0..n-1 (`read_tiktoken_ranks`).
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
from scratchlm.options import is_int

FORMAT = "scratchlm-bpe"
VERSION = 1
HEADER = f"{FORMAT} v{VERSION}"
IDENTITY = list(range(256))

# Special tokens take the ids after the ranks, with room for gaps (GPT-4's cl100k_base leaves 16 ids unused
# among its five) but not for an id such as 10**8, whose vocab_size would make a model allocate an embedding
# table of 10**8 rows.
MAX_UNUSED_IDS = 1024


def special_id_problem(token_id: object, n_ranks: int, n_specials: int) -> str | None:
    """Why `token_id` cannot be a special token's id, or None if it can.

    The rule: ranks are the ids 0..n_ranks-1; a special token's id is an integer from n_ranks up to, not
    including, n_ranks + n_specials + MAX_UNUSED_IDS. So vocab_size (one more than the largest id) exceeds the
    number of tokens by at most MAX_UNUSED_IDS = 1024 (GPT-2: 50257 ids, none unused; cl100k_base: 100277
    ids, 16 unused; a model's embedding table has one row per id).
    """
    if not is_int(token_id) or token_id < 0:
        return f"needs a non-negative integer id, got {token_id!r}"
    if token_id < n_ranks:
        return f"has id {token_id}, which is already an ordinary token's (the ranks are 0..{n_ranks - 1})"
    limit = n_ranks + n_specials + MAX_UNUSED_IDS
    if token_id >= limit:
        return (
            f"has id {token_id}, but special-token ids must lie below {limit}: they follow the {n_ranks} ranks "
            f"and may leave at most {MAX_UNUSED_IDS} ids unused (vocab_size would be {token_id + 1})"
        )
    return None


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
        if not _is_number(value):
            raise self.error(f"expected '{keyword} N' with a count N, got {value[:60]!r}")
        return int(value)


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise TokenizerError(f"no {what} at {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path} is not a {what}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _is_number(text: str | bytes) -> bool:
    """A non-negative integer in ASCII digits, at most 18 of them (int() of more is slow, or refused)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


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
    if len(fields) != n or not all(map(_is_number, fields)):
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
        if not _is_number(token_id):
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
        if problem := special_id_problem(token_id, 256 + n_merges, len(special_tokens)):
            raise lines.error(f"special token {name!r} {problem}", number)
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
    """Read a tiktoken rank file: one `BASE64 RANK` line per token, the ranks exactly 0..n-1 (in any order).

    Anything else raises `TokenizerError` naming the file and the line, or the gap: a blank line, a line that
    is not two fields, a token that is not base64, a token or a rank given twice, a missing rank
    (a rank file that lost lines, or a rank such as 10**14 far beyond the others). (tiktoken itself skips
    blank lines and accepts any ranks.) A file cut short at the end of a line is still a valid rank file;
    `fetch` checks the published ones against their sha256, and special-token ids far beyond the last rank
    are refused (`special_id_problem`).
    """
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"no tiktoken rank file at {path}")
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        try:
            token, rank = base64.b64decode(fields[0], validate=True), int(fields[1])
        except (IndexError, binascii.Error, ValueError):
            token = b""
        if not token or len(fields) != 2 or token in ranks or not _is_number(fields[1]):
            raise _rank_line_error(path, number, fields, ranks)
        ranks[token] = rank
    if not ranks:
        raise TokenizerError(f"{path} holds no tokens (an empty tiktoken rank file)")
    if max(ranks.values()) != len(ranks) - 1 or len(set(ranks.values())) != len(ranks):
        raise _rank_gap_error(path, lines)
    return ranks


def _rank_line_error(path: Path, number: int, fields: list[bytes], ranks: dict[bytes, int]) -> TokenizerError:
    """What is wrong with line `number` (split into `fields`) of a tiktoken rank file; earlier lines were fine."""
    where = f"{path}, line {number}"
    if not fields:
        return TokenizerError(f"{where} is blank; a rank file has one 'BASE64 RANK' line per token")
    if len(fields) != 2 or not _is_number(fields[1]):
        shown = b" ".join(fields)[:60].decode("utf-8", "replace")
        return TokenizerError(f"{where}: expected 'BASE64 RANK', got {shown!r}")
    try:
        token = base64.b64decode(fields[0], validate=True)
    except (binascii.Error, ValueError):
        return TokenizerError(f"{where}: {fields[0][:60].decode('utf-8', 'replace')!r} is not base64")
    if token in ranks:
        return TokenizerError(f"{where}: token {token!r} already has rank {ranks[token]}")
    return TokenizerError(f"{where}: a token must have at least one byte")


def _rank_gap_error(path: Path, lines: list[bytes]) -> TokenizerError:
    """Name the rank given twice, or the first missing one, in a rank file whose lines are each well formed."""
    line_of_rank: dict[int, int] = {}
    for number, line in enumerate(lines, start=1):
        rank = int(line.split()[1])
        if rank in line_of_rank:
            return TokenizerError(
                f"{path}, line {number}: rank {rank} is given to two tokens (also on line {line_of_rank[rank]})"
            )
        line_of_rank[rank] = number
    largest = max(line_of_rank)
    missing = next(r for r in range(len(line_of_rank)) if r not in line_of_rank)
    return TokenizerError(
        f"{path}: the {len(line_of_rank)} ranks must be 0..{len(line_of_rank) - 1}, but rank {missing} is "
        f"missing (the largest is {largest}, on line {line_of_rank[largest]})"
    )
