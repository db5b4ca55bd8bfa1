"""Hugging Face's byte-level BPE files: `tokenizer.json`, and GPT-2's `vocab.json` + `merges.txt`.

These files store tokens as *text*, not bytes: GPT-2's authors mapped each of the 256 byte values to a
printable Unicode character (`byte_to_unicode`), so that a token's bytes become a string without spaces,
control characters or half-characters, and a merge can be written as the line "Ġt he". A file's token
string is turned back into bytes character by character (`unicode_to_bytes`).

The vocabulary maps those strings to ids and the merges list the pairs in the order they were learned.
Hugging Face encodes by applying the earliest-listed merge first; `BPETokenizer` encodes by merging the pair
whose result has the lowest id (`bpe_ranks`, tiktoken's rule). The two agree when merge k makes id 256 + k and
the rank rule reaches each token by the pair the file names, which `ranks_from_hf` checks; a file that breaks
either condition is refused, as is any part of `tokenizer.json` that changes the ids in a way `BPETokenizer`
cannot express (a normaliser, a post-processor adding tokens, a pre-tokenizer other than GPT-2's). Each
refusal is one `TokenizerError` line naming the file and what is unsupported. `write_hf_files` writes the
three files from a tokenizer of ours (`BPETokenizer.save_hf_files`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from scratchlm.errors import TokenizerError
from scratchlm.files import atomic_write, output_folder
from scratchlm.options import is_int
from scratchlm.tokenizers.bpe_ranks import recover_merges


@dataclass(frozen=True)
class HFBytePairs:
    """What a Hugging Face byte-level BPE file holds, in `BPETokenizer`'s terms.

    `ranks`: token bytes -> id; `gpt2_split`: whether the text is first split with GPT-2's regex (the
    ByteLevel pre-tokenizer's `use_regex`, whose chunks are `bpe.GPT2_SPLIT_PATTERN`'s) or encoded as one
    chunk; `special_tokens`: name -> id, matched wherever they occur in the text (Hugging Face's added
    tokens); `merges`: (left id, right id) in order, merge k making id 256 + k.
    """

    ranks: dict[bytes, int]
    gpt2_split: bool
    special_tokens: dict[str, int]
    merges: list[tuple[int, int]]


@cache
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's table from byte values to the characters that stand for them in the files (`bytes_to_unicode`).

    The 188 bytes whose Latin-1 character is printable and not a space stand for themselves: '!'..'~'
    (33..126), '¡'..'¬' (161..172) and '®'..'ÿ' (174..255). The other 68 (the controls 0..32, DEL and the
    C1 controls 127..160, and the soft hyphen 173) take the characters U+0100, U+0101, ... in byte order: the
    space (32) is the 33rd of them, U+0120 'Ġ', which is why GPT-2's tokens for words begin with 'Ġ'.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + n) for n, b in enumerate(others)})
    return dict(sorted(table.items()))


@cache
def _unicode_to_byte() -> dict[str, int]:
    return {char: b for b, char in byte_to_unicode().items()}


def unicode_to_bytes(token: str) -> bytes | None:
    """The bytes a file's token string stands for, or None if a character is not in the byte-level table."""
    table = _unicode_to_byte()
    try:
        return bytes(table[char] for char in token)
    except KeyError:
        return None


def bytes_to_unicode_string(token: bytes) -> str:
    """The string a file writes for a token's bytes (the inverse of `unicode_to_bytes`)."""
    table = byte_to_unicode()
    return "".join(table[b] for b in token)


# ------------------------------------------------------------------------------------------------ reading


def read_hf_files(path: str | Path) -> HFBytePairs:
    """Read a `tokenizer.json`, a `vocab.json` (with `merges.txt` beside it: `gpt2-vocab.json` goes with
    `gpt2-merges.txt`), or a folder holding either (tokenizer.json first)."""
    path = Path(path)
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return read_tokenizer_json(path / "tokenizer.json")
        if (path / "vocab.json").is_file():
            return read_vocab_and_merges(path / "vocab.json", path / "merges.txt")
        raise TokenizerError(f"{path} holds neither a tokenizer.json nor a vocab.json with its merges.txt")
    if is_tokenizer_json(_read_json(path, "Hugging Face tokenizer file")):
        return read_tokenizer_json(path)
    return read_vocab_and_merges(path, merges_beside(path))


def is_tokenizer_json(state: Any) -> bool:
    """Whether parsed JSON is a Hugging Face tokenizer.json (it has a 'model' object)."""
    return isinstance(state, dict) and isinstance(state.get("model"), dict)


def is_vocab_json(state: Any) -> bool:
    """Whether parsed JSON looks like a vocab.json: a non-empty object from strings to integer ids."""
    return isinstance(state, dict) and bool(state) and all(is_int(i) for i in state.values())


def merges_beside(vocab_path: Path) -> Path:
    """The merges.txt that goes with a vocab.json: same folder, "vocab.json" in the name become "merges.txt"."""
    prefix = vocab_path.name.removesuffix("vocab.json") if vocab_path.name.endswith("vocab.json") else ""
    return vocab_path.with_name(prefix + "merges.txt")


def read_tokenizer_json(path: str | Path) -> HFBytePairs:
    """Parse a Hugging Face `tokenizer.json` holding a byte-level BPE (its added tokens become special tokens).

    The pre-tokenizer must be ByteLevel (alone, or alone in a Sequence) without `add_prefix_space`; with
    `use_regex=false` the whole text is one chunk.
    """
    path = Path(path)
    state = _read_json(path, "tokenizer.json")
    if not is_tokenizer_json(state):
        raise TokenizerError(f"{path} is not a Hugging Face tokenizer.json (no 'model' object)")
    model = state["model"]
    unsupported = _unsupported_parts(state, model)
    if unsupported:
        raise TokenizerError(f"{path}: {unsupported}; BPETokenizer cannot represent it")
    gpt2_split = _byte_level_split(path, state.get("pre_tokenizer"))
    vocab, merges = model.get("vocab"), model.get("merges")
    if not isinstance(vocab, dict) or not isinstance(merges, list):
        raise TokenizerError(f"{path}: the model needs a 'vocab' object and a 'merges' list")
    added = _added_tokens(path, state.get("added_tokens") or [], vocab)
    ranked = {token: i for token, i in vocab.items() if added.get(token) != i}
    ranks, merge_ids = ranks_from_hf(path, ranked, [_merge_pair(path, m) for m in merges])
    return HFBytePairs(ranks, gpt2_split, added, merge_ids)


def read_vocab_and_merges(vocab_path: str | Path, merges_path: str | Path) -> HFBytePairs:
    """Parse GPT-2's `vocab.json` + `merges.txt` (as `read_tokenizer_json` does a tokenizer.json).

    These files carry no pre-tokenizer: GPT-2's split is implied. Entries of vocab.json after the last
    merge's id (GPT-2's "<|endoftext|>", 50256) are returned as special tokens, named by their string.
    """
    vocab_path, merges_path = Path(vocab_path), Path(merges_path)
    vocab = _read_json(vocab_path, "vocab.json")
    if not is_vocab_json(vocab):
        raise TokenizerError(f"{vocab_path} is not a vocab.json (an object from token strings to ids)")
    if not merges_path.is_file():
        raise TokenizerError(f"no merges.txt at {merges_path} (vocab.json needs its merges beside it)")
    lines = _read_text(merges_path, "merges.txt").splitlines()
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    merges = [_merge_pair(merges_path, line) for line in lines if line]
    n_ranks = 256 + len(merges)
    ranked = {token: i for token, i in vocab.items() if i < n_ranks}
    special = {token: i for token, i in vocab.items() if i >= n_ranks}
    ranks, merge_ids = ranks_from_hf(vocab_path, ranked, merges)
    return HFBytePairs(ranks, True, special, merge_ids)


def ranks_from_hf(
    path: Path, vocab: Mapping[str, int], merges: Sequence[tuple[str, str]]
) -> tuple[dict[bytes, int], list[tuple[int, int]]]:
    """The rank table (token bytes -> id) of a byte-level vocabulary and its merges, checked to encode alike.

    Requires: ids 0..255 are the 256 single bytes (in any order: Hugging Face's trainer sorts them by their
    character, GPT-2 puts the printable ones first); merge k joins two earlier tokens into id 256 + k; no
    other tokens; and the rank rule, given only the tokens below a merge's id, splits its token into the
    pair the file names (`recover_merges`), so that applying merges by rank is applying them in the file's
    order.
    """
    ranks: dict[bytes, int] = {}
    for token, i in vocab.items():
        token_bytes = unicode_to_bytes(token)
        if token_bytes is None:
            raise TokenizerError(
                f"{path}: token {token!r} (id {i}) is not byte-level: a character is not in GPT-2's "
                "byte-to-unicode table"
            )
        if not is_int(i) or i < 0:
            raise TokenizerError(f"{path}: token {token!r} has id {i!r}, not a non-negative integer")
        ranks[token_bytes] = i
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise TokenizerError(
            f"{path}: the vocabulary lacks {len(missing)} of the 256 single bytes (e.g. {missing[0]}); "
            "BPETokenizer needs them all as ids 0..255 (train with the ByteLevel alphabet as initial_alphabet)"
        )
    by_id = {i: token for token, i in vocab.items()}
    n = 256 + len(merges)
    if sorted(by_id) != list(range(n)):
        odd = sorted(set(by_id) ^ set(range(n)))
        raise TokenizerError(
            f"{path}: the 256 bytes and {len(merges)} merges need ids 0..{n - 1}, but the vocabulary has "
            f"{len(vocab)} tokens{f' (id {odd[0]} does not fit)' if odd else ''}: tokens that are neither a byte "
            "nor a merge's are not supported"
        )
    not_a_byte = next((i for i in range(256) if len(unicode_to_bytes(by_id[i]) or b"") != 1), None)
    if not_a_byte is not None:
        raise TokenizerError(
            f"{path}: ids 0..255 must be the 256 single bytes, but id {not_a_byte} is {by_id[not_a_byte]!r}"
        )
    merge_ids = []
    for k, (left, right) in enumerate(merges):
        left_id, right_id, made = vocab.get(left), vocab.get(right), vocab.get(left + right)
        if left_id is None or right_id is None or made != 256 + k:
            raise TokenizerError(
                f"{path}: merge {k} ({left!r} + {right!r}) must join two tokens of the vocabulary into id "
                f"{256 + k}, but it makes {'no token' if made is None else f'id {made}'}: BPETokenizer needs "
                "the merges in the vocabulary's order"
            )
        merge_ids.append((left_id, right_id))
    if problem := rank_rule_mismatch(ranks, merge_ids):
        raise TokenizerError(f"{path}: {problem}")
    return ranks, merge_ids


def rank_rule_mismatch(ranks: Mapping[bytes, int], merges: Sequence[tuple[int, int]]) -> str | None:
    """The first merge (merge k: (left id, right id) making id 256 + k) that merging by rank does not make from
    the same pair, or None: then applying merges in order (Hugging Face) and by rank (us) agree."""
    vocab = {i: token for token, i in ranks.items()}
    for k, (left, right) in enumerate(recover_merges(ranks)):
        if (ranks[left], ranks[right]) != tuple(merges[k]):
            a, b = (bytes_to_unicode_string(vocab[i]) for i in merges[k])
            return (
                f"merge {k} makes {a + b!r} from {a!r} + {b!r}, but merging by rank (BPETokenizer's and tiktoken's "
                f"rule) reaches it as {bytes_to_unicode_string(left)!r} + {bytes_to_unicode_string(right)!r}, so "
                "their ids could differ"
            )
    return None


def _unsupported_parts(state: dict[str, Any], model: dict[str, Any]) -> str | None:
    """What in a tokenizer.json changes the ids in a way BPETokenizer cannot express, or None."""
    if model.get("type", "BPE") != "BPE":
        return f"its model is {model.get('type')!r}, not a BPE"
    for key, harmless in (
        ("dropout", (None, 0, 0.0)),
        ("continuing_subword_prefix", (None, "")),
        ("end_of_word_suffix", (None, "")),
        ("byte_fallback", (None, False)),
    ):
        if model.get(key) not in harmless:
            return f"its BPE has {key}={model[key]!r}"
    if state.get("normalizer") is not None:
        return f"it has a normalizer ({_kind(state['normalizer'])})"
    post = state.get("post_processor")
    if post is not None and post.get("type") != "ByteLevel":
        return f"its post-processor {_kind(post)} adds or changes ids after encoding"
    if state.get("truncation") is not None or state.get("padding") is not None:
        return "it truncates or pads"
    return None


def _kind(part: Any) -> str:
    return repr(part.get("type")) if isinstance(part, dict) else repr(part)


def _byte_level_split(path: Path, pre_tokenizer: Any) -> bool:
    """Whether a ByteLevel pre-tokenizer (alone or the only one of a Sequence) splits by GPT-2's regex."""
    if isinstance(pre_tokenizer, dict) and pre_tokenizer.get("type") == "Sequence":
        steps = pre_tokenizer.get("pretokenizers") or []
        pre_tokenizer = steps[0] if len(steps) == 1 else {"type": "Sequence of " + str(len(steps))}
    if not isinstance(pre_tokenizer, dict) or pre_tokenizer.get("type") != "ByteLevel":
        raise TokenizerError(
            f"{path}: its pre-tokenizer is {_kind(pre_tokenizer)}, not ByteLevel; BPETokenizer cannot represent it"
        )
    if pre_tokenizer.get("add_prefix_space"):
        raise TokenizerError(
            f"{path}: its ByteLevel pre-tokenizer has add_prefix_space=true (a space added before the text); "
            "BPETokenizer cannot represent it"
        )
    return bool(pre_tokenizer.get("use_regex", True))


def _added_tokens(path: Path, added: list[Any], vocab: Mapping[str, int]) -> dict[str, int]:
    """The added tokens (name -> id): plain strings matched anywhere, with ids after the BPE's tokens."""
    tokens: dict[str, int] = {}
    for entry in added:
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str) or not is_int(entry.get("id")):
            raise TokenizerError(f"{path}: an added token needs a 'content' string and an integer 'id'")
        flags = [flag for flag in ("single_word", "lstrip", "rstrip") if entry.get(flag)]
        if flags:
            raise TokenizerError(
                f"{path}: added token {entry['content']!r} has {', '.join(flags)}=true (matching that depends "
                "on its neighbours); BPETokenizer cannot represent it"
            )
        if entry["content"] in vocab and vocab[entry["content"]] != entry["id"]:
            raise TokenizerError(
                f"{path}: added token {entry['content']!r} has id {entry['id']} but the vocabulary gives it "
                f"{vocab[entry['content']]}"
            )
        tokens[entry["content"]] = entry["id"]
    n_ranked = len(vocab) - sum(1 for name, i in tokens.items() if vocab.get(name) == i)
    middle = sorted((i, name) for name, i in tokens.items() if i < n_ranked)
    if middle:
        i, name = middle[0]
        raise TokenizerError(
            f"{path}: added token {name!r} has id {i}, among the BPE's tokens (they must take ids 0..{n_ranked - 1}, "
            "bytes first); BPETokenizer needs special tokens after them"
        )
    return tokens


def _merge_pair(path: Path, merge: Any) -> tuple[str, str]:
    """A merge as written: the string "a b" (merges.txt, older tokenizer.json) or the list ["a", "b"]."""
    parts = merge.split(" ") if isinstance(merge, str) else merge if isinstance(merge, list) else []
    if len(parts) != 2 or not all(isinstance(p, str) and p for p in parts):
        raise TokenizerError(f"{path}: a merge must be two tokens, got {str(merge)[:60]!r}")
    return parts[0], parts[1]


# ------------------------------------------------------------------------------------------------ writing


def write_hf_files(folder: str | Path, found: HFBytePairs) -> None:
    """Write `tokenizer.json`, `vocab.json` and `merges.txt` into `folder` (created if missing), atomically each.

    The inverse of `read_hf_files`: merge k is written as the two token strings that make id 256 + k; the
    special tokens become added tokens (tokenizer.json) and trailing vocabulary entries (vocab.json).
    """
    if problem := rank_rule_mismatch(found.ranks, found.merges):
        raise TokenizerError(f"cannot write Hugging Face files whose ids would differ from ours: {problem}")
    folder = output_folder(folder)
    by_id = {i: bytes_to_unicode_string(token) for token, i in found.ranks.items()}
    vocab = {by_id[i]: i for i in range(len(by_id))}
    merges = [[by_id[left], by_id[right]] for left, right in found.merges]
    added = [
        {"id": i, "content": name, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}
        for name, i in sorted(found.special_tokens.items(), key=lambda item: item[1])
    ]  # fmt: skip
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": found.gpt2_split}
    model = {
        "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
        "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
        "vocab": vocab, "merges": merges,
    }  # fmt: skip
    state = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": byte_level, "post_processor": None, "decoder": byte_level, "model": model,
    }  # fmt: skip
    with atomic_write(folder / "tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(state, f, ensure_ascii=False, indent=1)
    with atomic_write(folder / "vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab | {name: i for name, i in found.special_tokens.items()}, f, ensure_ascii=False)
    with atomic_write(folder / "merges.txt", "w", encoding="utf-8", newline="\n") as f:
        f.write("#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges))


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise TokenizerError(f"no {what} at {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path} is not a {what}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(_read_text(path, what))
    except json.JSONDecodeError as e:
        raise TokenizerError(f"{path} is not a {what}: not JSON ({e.msg} at line {e.lineno})") from None
