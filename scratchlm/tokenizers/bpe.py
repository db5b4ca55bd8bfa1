"""Byte-level BPE: the tokenizer of GPT-2 and GPT-4, trainable on our own text.

Encoding has three steps:
1. special tokens the caller allows (e.g. "<|endoftext|>") are cut out of the text and become their ids;
2. a regex pre-splits the rest into chunks (words with their leading space, numbers, punctuation runs,
   whitespace), so no token ever spans, say, the end of one word and the start of the next;
3. each chunk's UTF-8 bytes are merged into tokens by rank (`bpe_ranks.merge_chunk`).

The vocabulary is a rank table, token bytes -> id, exactly as in tiktoken. That is why the same class encodes
with OpenAI's published GPT-2/GPT-4 ranks (`from_tiktoken_file`) and with the merges we learn (`train`), and
why any of our tokenizers can be handed to tiktoken (`to_tiktoken`) and give the same ids. One exception: the
split patterns use the Unicode properties letter (\\p{L}) and number (\\p{N}), and each regex engine has its
own Unicode tables. A character that one engine's tables call a letter or number and the other's leave
unassigned (it was added in a Unicode version only one of them knows) splits differently, and its text gets
different ids. With regex 2026.5.9 (Unicode 17.0) and tiktoken 0.14.0 (Unicode 16.0) these are the 4,657
characters new in Unicode 17.0, such as U+A7CE and CJK Extension J (U+323B0..U+33479); every other code point
is split alike (tests/test_bpe_tiktoken.py sweeps them all).

Decoding joins the bytes of the ids. Arbitrary ids need not form valid UTF-8 (a token can hold half of a
character), so `decode` replaces invalid bytes with U+FFFD "\ufffd"; `decode_bytes` returns the raw bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import regex

from scratchlm.downloads import fetch
from scratchlm.errors import TokenizerError
from scratchlm.options import is_int
from scratchlm.tokenizers import bpe_files, hf_files
from scratchlm.tokenizers.batches import batches_of_texts
from scratchlm.tokenizers.bpe_ranks import merge_chunk, recover_merges
from scratchlm.tokenizers.bpe_train import learn_merges

# GPT-2's split (as tiktoken writes it: the possessive `++` only avoids backtracking, the chunks are those of
# the original `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`).
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

# GPT-4's split (cl100k_base): contractions in any case, numbers in groups of at most three digits,
# punctuation keeps the newlines that follow it, and newlines are split from the spaces that follow them.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
    r"""\s*[\r\n]|\s+(?!\S)|\s"""
)

# Published rank files this class can load by name, with the pattern and special tokens they go with.
PRETRAINED = {
    "r50k_base": (GPT2_SPLIT_PATTERN, {"<|endoftext|>": 50256}),
    "cl100k_base": (
        GPT4_SPLIT_PATTERN,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
}

SpecialTokens = Literal["all", "none"] | Collection[str]
Merge = tuple[tuple[int, int], int]


class BPETokenizer:
    """A byte-level BPE tokenizer: a rank table, an optional split pattern and optional special tokens.

    `mergeable_ranks` maps every token's bytes to its id, the ids exactly 0..n-1 (all 256 single bytes must
    be there); `pattern` is the pre-split regex (None: the whole text is one chunk; chunks are whole matches,
    and a pattern must match every character of the text it encodes); `special_tokens` maps names such as
    "<|endoftext|>" to ids after the ranks: integers from n on, leaving at most 1024 ids unused
    (`bpe_files.special_id_problem`; cl100k_base leaves 16), so that `vocab_size` stays within 1024 of the
    number of tokens. Build one with `train`, `load`, `from_tiktoken_file` or `from_pretrained` rather than
    by hand.

    Attributes for inspection: `ranks` (token bytes -> id), `vocab` (id -> token bytes, special tokens
    excluded), `special_tokens` (name -> id), `pattern`, and the `merges` property.
    """

    def __init__(
        self,
        mergeable_ranks: Mapping[bytes, int],
        pattern: str | None = GPT4_SPLIT_PATTERN,
        special_tokens: Mapping[str, int] | None = None,
    ):
        self.ranks: dict[bytes, int] = dict(mergeable_ranks)
        self.vocab: dict[int, bytes] = {i: token for token, i in self.ranks.items()}
        if len(self.vocab) != len(self.ranks) or not all(is_int(i) and i >= 0 for i in self.vocab):
            raise TokenizerError("token ids must be distinct non-negative integers")
        missing = [b for b in range(256) if bytes([b]) not in self.ranks]
        if missing:
            raise TokenizerError(f"the vocabulary lacks {len(missing)} single bytes (e.g. {missing[0]})")
        if max(self.vocab) != len(self.vocab) - 1:  # distinct ids >= 0: dense exactly when the largest is n - 1
            gap = next(i for i in range(len(self.vocab)) if i not in self.vocab)
            raise TokenizerError(
                f"the {len(self.vocab)} token ids must be 0..{len(self.vocab) - 1}, but id {gap} is missing "
                f"(the largest is {max(self.vocab)})"
            )
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        _check_special_tokens(self.special_tokens, self.vocab)
        self.pattern = pattern
        self._splitter = _compile(pattern)
        self._decoder = self.vocab | {i: name.encode("utf-8") for name, i in self.special_tokens.items()}
        self._vocab_size = max(self._decoder) + 1
        self._merges: list[Merge] | None = None

    # ----------------------------------------------------------------------------------------- training

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        pattern: str | None = GPT4_SPLIT_PATTERN,
        special_tokens: Sequence[str] | None = None,
        *,
        progress: bool = True,
    ) -> BPETokenizer:
        """Learn `vocab_size - 256 - len(special_tokens)` merges from `text`.

        `vocab_size` counts everything: the 256 byte tokens, the merges, then the special tokens, which are
        given as names and get the last ids in the order given. Special tokens are cut out of the training
        text first, so no merge learns to spell them. Ties between equally frequent pairs go to the pair with
        the smallest (left id, right id); training is deterministic. Raises `TokenizerError` if the text has
        too few distinct pairs to reach `vocab_size` (the message says how many merges it allows).
        """
        if isinstance(special_tokens, (str, Mapping)):
            raise TokenizerError("special_tokens for training is a list of names; their ids follow the merges")
        names = list(special_tokens or [])
        smallest = 256 + len(names)
        if not is_int(vocab_size) or vocab_size < smallest:  # a TokenizerError, not an options rule's ConfigError
            raise TokenizerError(
                f"vocab_size must be an integer of at least 256 (one token per byte)"
                f"{f' plus {len(names)} special tokens' if names else ''}, got {vocab_size!r}"
            )
        _check_special_names(names)
        chunk_counts = count_chunks(text, _compile(pattern), names)
        n_merges = vocab_size - smallest
        pairs = learn_merges(chunk_counts, n_merges, progress=progress)
        if len(pairs) < n_merges:
            raise TokenizerError(
                f"vocab_size={vocab_size} needs {n_merges} merges, but this text allows only {len(pairs)} "
                f"(after that no two adjacent tokens remain in any chunk); use vocab_size <= "
                f"{smallest + len(pairs)} or more text"
            )
        ranks = {bytes([b]): b for b in range(256)}
        merges = []
        for left, right in pairs:
            merges.append(((ranks[left], ranks[right]), len(ranks)))
            ranks[left + right] = len(ranks)
        tokenizer = cls(ranks, pattern, {name: len(ranks) + i for i, name in enumerate(names)})
        tokenizer._merges = merges
        return tokenizer

    # ----------------------------------------------------------------------------------------- encoding

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` with no special tokens: "<|endoftext|>" is just text here.

        Each distinct chunk is encoded once (in real text most chunks repeat), then the ids are looked up
        chunk by chunk. Lone surrogates, which UTF-8 cannot encode, become U+FFFD. A split pattern that leaves
        some of `text` unmatched raises `TokenizerError` (see `split_chunks`): tiktoken would silently drop
        that text, so `decode(encode_ordinary(text)) == text` holds whenever this returns.
        """
        return self._encode_ordinary_texts([text])[0]

    def encode_iter(self, texts: Iterable[str]) -> Iterator[list[int]]:
        """The ids of each text of `texts` (as `encode_ordinary` gives them), read and encoded lazily in batches of
        about 1 MB that share one table of encoded chunks: a corpus of any size in bounded memory, the same ids
        as encoding the whole list at once.

            for ids in tokenizer.encode_iter(open("corpus.txt")):   # line by line, never the whole file
                ...
        """
        for batch in batches_of_texts(texts):
            yield from self._encode_ordinary_texts(batch)

    def _encode_ordinary_texts(self, texts: list[str]) -> list[list[int]]:
        """Encode several texts sharing one table of encoded chunks (the pieces between special tokens)."""
        chunk_lists = [self._split(text) for text in texts]
        try:
            unique = set(chain.from_iterable(chunk_lists))
            table = {chunk: self._encode_chunk(chunk.encode("utf-8")) for chunk in unique}
        except UnicodeEncodeError:
            return self._encode_ordinary_texts([_without_surrogates(text) for text in texts])
        return [list(chain.from_iterable(map(table.__getitem__, chunks))) for chunks in chunk_lists]

    def _split(self, text: str) -> list[str]:
        return split_chunks(self._splitter, text)

    def _encode_chunk(self, data: bytes) -> list[int]:
        # A chunk that is itself a token is that token, even where the merges would not reach it: tiktoken
        # does the same, and it is the common case (most words are one token) made cheap.
        token = self.ranks.get(data)
        if token is not None:
            return [token]
        return [self.ranks[part] for part in merge_chunk(data, self.ranks)]

    def encode(
        self, text: str, *, allowed_special: SpecialTokens = "none", disallowed_special: SpecialTokens = "all"
    ) -> list[int]:
        """Encode `text`, turning the allowed special tokens into their ids.

        As in tiktoken: `allowed_special` ("all", "none" or a collection of names) are encoded as their
        special ids; `disallowed_special` ("all" means every special token not allowed) raise a
        `TokenizerError` if they occur, because text from users that happens to contain "<|endoftext|>"
        should not silently end a document. Special tokens neither allowed nor disallowed are encoded as
        ordinary text.
        """
        allowed = self._special_names(allowed_special, "allowed_special")
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = self._special_names(disallowed_special, "disallowed_special")
        if disallowed and (found := _special_regex(disallowed).search(text)):
            raise TokenizerError(
                f"the text contains the special token {found.group()!r} (at character {found.start()}); "
                f"pass allowed_special={{{found.group()!r}}} to encode it as id "
                f"{self.special_tokens[found.group()]}, or disallowed_special='none' to encode it as text"
            )
        if not allowed:
            return self.encode_ordinary(text)
        pieces, special_ids, start = [], [], 0
        for found in _special_regex(allowed).finditer(text):
            pieces.append(text[start : found.start()])
            special_ids.append(self.special_tokens[found.group()])
            start = found.end()
        pieces.append(text[start:])
        encoded = self._encode_ordinary_texts(pieces)
        ids = encoded[0]
        for special_id, piece_ids in zip(special_ids, encoded[1:], strict=True):
            ids.append(special_id)
            ids += piece_ids
        return ids

    def _special_names(self, spec: SpecialTokens, argument: str) -> set[str]:
        if spec == "all":
            return set(self.special_tokens)
        if spec == "none":
            return set()
        if isinstance(spec, str):
            raise TokenizerError(f"{argument} must be 'all', 'none' or a set of names, got the string {spec!r}")
        unknown = set(spec) - set(self.special_tokens)
        if unknown:
            raise TokenizerError(
                f"{argument} names {sorted(unknown)}, which are not special tokens of this tokenizer "
                f"(it has {sorted(self.special_tokens) or 'none'})"
            )
        return set(spec)

    # ----------------------------------------------------------------------------------------- decoding

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of the tokens `ids`, joined (special tokens give their names' UTF-8)."""
        ids = list(ids)
        try:
            return b"".join(map(self._decoder.__getitem__, ids))
        except (KeyError, TypeError):
            pass
        try:  # ids from a tensor or array: compare by value
            return b"".join(self._decoder[int(i)] for i in ids)
        except (KeyError, TypeError, ValueError):
            bad = next((i for i in ids if not is_int(i) or int(i) not in self._decoder), None)
            raise TokenizerError(f"id {bad!r} is not in this tokenizer's vocabulary") from None

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; bytes that are not valid UTF-8 (e.g. half a character) become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ----------------------------------------------------------------------------------------- inspecting

    @property
    def vocab_size(self) -> int:
        """One more than the largest id: the size of an embedding table for these ids."""
        return self._vocab_size

    @property
    def merges(self) -> list[Merge]:
        """The merges in order, as ((left id, right id), new id).

        For a published rank table they are recovered from the ranks the first time they are asked for
        (a second or so for GPT-4's 100k tokens).
        """
        if self._merges is None:
            self._merges = [
                ((self.ranks[left], self.ranks[right]), self.ranks[left + right])
                for left, right in recover_merges(self.ranks)
            ]
        return self._merges

    def __repr__(self) -> str:
        names = {GPT2_SPLIT_PATTERN: "GPT2_SPLIT_PATTERN", GPT4_SPLIT_PATTERN: "GPT4_SPLIT_PATTERN", None: "None"}
        pattern = names.get(self.pattern, repr(self.pattern))
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.ranks) - 256}, "
            f"special_tokens={len(self.special_tokens)}, pattern={pattern})"
        )

    # ----------------------------------------------------------------------------------------- saving

    def to_dict(self) -> dict[str, Any]:
        """A description made of plain str/int/list values (for checkpoints loaded with weights_only=True)."""
        if any(len(self.vocab.get(i, b"")) != 1 for i in range(256)):
            raise TokenizerError("only vocabularies whose ids 0..255 are the single bytes can be saved")
        merges = self.merges
        if [new_id for _, new_id in merges] != list(range(256, 256 + len(merges))):
            raise TokenizerError("only vocabularies with consecutive ids can be saved as merges")
        return {
            "type": "bpe",
            "format": bpe_files.FORMAT,
            "version": bpe_files.VERSION,
            "pattern": self.pattern,
            "byte_order": [self.vocab[i][0] for i in range(256)],
            "special_tokens": [[name, i] for name, i in sorted(self.special_tokens.items(), key=lambda x: x[1])],
            "merges": [[left, right] for (left, right), _ in merges],
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> BPETokenizer:
        """Rebuild a tokenizer from `to_dict()` output."""
        if not isinstance(state, dict) or state.get("format") != bpe_files.FORMAT:
            raise TokenizerError("not a scratchlm BPE tokenizer description")
        if state.get("version") != bpe_files.VERSION:
            raise TokenizerError(f"BPE tokenizer version {state.get('version')!r} is not supported")
        pattern, byte_order = state.get("pattern"), state.get("byte_order")
        special_tokens, merges = state.get("special_tokens"), state.get("merges")
        if not (
            (pattern is None or isinstance(pattern, str))
            and isinstance(byte_order, list)
            and isinstance(merges, list)
            and isinstance(special_tokens, list)
            and all(isinstance(s, (list, tuple)) and len(s) == 2 for s in special_tokens)
        ):
            raise TokenizerError("malformed BPE tokenizer description (pattern, byte_order, merges, special_tokens)")
        return cls._from_state(state, lambda n: f"merge {n}")

    @classmethod
    def _from_state(cls, state: dict[str, Any], where) -> BPETokenizer:
        ranks = bpe_files.ranks_from_merges(state["byte_order"], state["merges"], where)
        tokenizer = cls(ranks, state["pattern"], {name: i for name, i in state["special_tokens"]})
        tokenizer._merges = [((a, b), 256 + n) for n, (a, b) in enumerate(state["merges"])]
        return tokenizer

    def save(self, path: str | Path) -> None:
        """Write the tokenizer in the `scratchlm-bpe v1` text format (see `bpe_files`), atomically."""
        bpe_files.write_bpe_file(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a file written by `save`; a malformed file raises `TokenizerError` naming the line."""
        state, first_merge_line = bpe_files.read_bpe_file(path)
        return cls._from_state(state, lambda n: f"{path}, line {first_merge_line + n}")

    # ----------------------------------------------------------------------------------------- other formats

    @classmethod
    def from_tiktoken_file(
        cls, path: str | Path, pattern: str | None, special_tokens: Mapping[str, int] | None = None
    ) -> BPETokenizer:
        """Load a tiktoken rank file (`BASE64 RANK` per line), e.g. GPT-2's r50k_base.tiktoken.

        The ranks must be 0..n-1 (`bpe_files.read_tiktoken_ranks`) and the special tokens' ids must follow
        them (`bpe_files.special_id_problem`); any problem raises `TokenizerError` naming the file.
        """
        _compile(pattern)  # a bad pattern is the caller's, not the file's: report it without the path
        ranks = bpe_files.read_tiktoken_ranks(path)
        try:
            return cls(ranks, pattern, special_tokens)
        except TokenizerError as e:
            raise TokenizerError(f"{path}: {e}") from None

    @classmethod
    def from_hf_files(cls, path: str | Path) -> BPETokenizer:
        """A Hugging Face byte-level BPE: a `tokenizer.json`, GPT-2's `vocab.json` (its `merges.txt` beside
        it), or a folder holding either (`hf_files.read_hf_files`).

        Ids equal the `tokenizers` library's on the same files: Hugging Face's added tokens become special
        tokens, and since Hugging Face matches them wherever they occur, `encode(text, allowed_special="all")`
        gives its ids (`encode_ordinary` treats them as text). A file whose ids this class cannot reproduce
        (a normaliser, a pre-tokenizer other than ByteLevel, ids 0..255 that are not the single bytes, added
        tokens among the BPE's, ...) raises `TokenizerError` naming what is unsupported.
        """
        found = hf_files.read_hf_files(path)
        tokenizer = cls(found.ranks, GPT2_SPLIT_PATTERN if found.gpt2_split else None, found.special_tokens)
        tokenizer._merges = [(pair, 256 + k) for k, pair in enumerate(found.merges)]
        return tokenizer

    def save_hf_files(self, folder: str | Path) -> None:
        """Write Hugging Face's `tokenizer.json` and GPT-2's `vocab.json` + `merges.txt` into `folder`, which the
        `tokenizers` library (and `from_hf_files`) read with this tokenizer's ids.

        Hugging Face's ByteLevel pre-tokenizer splits with GPT-2's regex or not at all, so only a tokenizer with
        `GPT2_SPLIT_PATTERN` or no pattern can be written (vocab.json + merges.txt name no pre-tokenizer: readers
        assume GPT-2's split); like `to_dict`, ids 0..255 must be the single bytes.
        """
        if self.pattern not in (GPT2_SPLIT_PATTERN, None):
            raise TokenizerError(
                "Hugging Face's byte-level files split with GPT-2's pattern or not at all; this tokenizer's pattern "
                f"{self.pattern[:40]!r}... cannot be written (train with GPT2_SPLIT_PATTERN or pattern=None)"
            )
        self.to_dict()  # refuses vocabularies whose ids 0..255 are not the bytes or whose merges skip ids
        merges = [pair for pair, _ in self.merges]
        pairs = hf_files.HFBytePairs(self.ranks, self.pattern is not None, self.special_tokens, merges)
        hf_files.write_hf_files(folder, pairs)

    @classmethod
    def from_pretrained(cls, name: str) -> BPETokenizer:
        """GPT-2's ("r50k_base") or GPT-4's ("cl100k_base") tokenizer, fetched with `scratchlm.downloads.fetch`."""
        if name not in PRETRAINED:
            raise TokenizerError(f"unknown pretrained tokenizer {name!r}; known: {', '.join(PRETRAINED)}")
        pattern, special_tokens = PRETRAINED[name]
        return cls.from_tiktoken_file(fetch(name), pattern, special_tokens)

    def to_tiktoken(self, name: str | None = None):
        """The same tokenizer as a `tiktoken.Encoding` (same ids for every text; tiktoken must be installed)."""
        import tiktoken

        return tiktoken.Encoding(
            name or f"scratchlm_bpe_{self.vocab_size}",
            pat_str=self.pattern if self.pattern is not None else r"[\s\S]+",
            mergeable_ranks=dict(self.ranks),
            special_tokens=dict(self.special_tokens),
        )


def count_chunks(text: str, splitter: regex.Pattern | None, special_tokens: Collection[str] = ()) -> dict[bytes, int]:
    """How often each distinct chunk occurs in `text`, as UTF-8 bytes (special tokens are cut out first)."""
    text = _without_surrogates(text)
    pieces = _special_regex(special_tokens).split(text) if special_tokens else [text]
    counts: Counter[str] = Counter()
    for piece in pieces:
        counts.update(split_chunks(splitter, piece))
    return {chunk.encode("utf-8"): count for chunk, count in counts.items() if chunk}


def split_chunks(splitter: regex.Pattern | None, text: str) -> list[str]:
    """The chunks of `text`: the whole matches of the split pattern, in order (None: the text is one chunk).

    A chunk is always a whole match, never a capture group's text (`findall` would return the groups: with
    `(\\w)\\w*`, "hello" would become "h"); tiktoken, too, uses whole matches. Every character must lie in
    some match: a pattern that skips text (say `\\w+`, which skips spaces) raises `TokenizerError` naming the
    first unmatched character, instead of dropping it as tiktoken does.
    """
    if splitter is None:
        return [text] if text else []
    chunks = [m.group() for m in splitter.finditer(text)] if splitter.groups else splitter.findall(text)
    if sum(map(len, chunks)) != len(text):  # matches never overlap: equal lengths mean nothing was skipped
        raise _unmatched_text_error(splitter, text)
    return chunks


def _unmatched_text_error(splitter: regex.Pattern, text: str) -> TokenizerError:
    position = 0
    for match in splitter.finditer(text):
        if match.start() > position:
            break
        position = match.end()
    return TokenizerError(
        f"the split pattern {splitter.pattern[:60]!r} matches no chunk at character {position} "
        f"({text[position : position + 20]!r}), and a tokenizer must not drop text; give a pattern that "
        f"matches every character, e.g. by ending it with the alternative |[\\s\\S]"
    )


def _compile(pattern: str | None) -> regex.Pattern | None:
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise TokenizerError(f"the split pattern must be a string or None, got {type(pattern).__name__}")
    try:
        return regex.compile(pattern)
    except regex.error as e:
        raise TokenizerError(f"invalid split pattern {pattern[:60]!r}: {e}") from None


def _special_regex(names: Collection[str]) -> regex.Pattern:
    # longest first, so that a special token that starts another one does not hide it
    return regex.compile("|".join(regex.escape(name) for name in sorted(names, key=len, reverse=True)))


def _check_special_names(names: Sequence[str]) -> None:
    for name in names:
        if not isinstance(name, str) or not name:
            raise TokenizerError(f"a special token must be a non-empty string, got {name!r}")
    if len(set(names)) != len(names):
        raise TokenizerError(f"special tokens must be distinct, got {list(names)}")


def _check_special_tokens(special_tokens: Mapping[str, int], vocab: Mapping[int, bytes]) -> None:
    """Names non-empty and distinct; ids distinct and after the ranks (`bpe_files.special_id_problem`)."""
    _check_special_names(list(special_tokens))
    for name, token_id in special_tokens.items():
        if is_int(token_id) and token_id in vocab:
            raise TokenizerError(f"special token {name!r} has id {token_id}, which is already {vocab[token_id]!r}")
        if problem := bpe_files.special_id_problem(token_id, len(vocab), len(special_tokens)):
            raise TokenizerError(f"special token {name!r} {problem}")
    if len(set(special_tokens.values())) != len(special_tokens):
        raise TokenizerError(f"two special tokens have the same id: {special_tokens}")


def _without_surrogates(text: str) -> str:
    """Replace lone surrogates (which UTF-8 cannot encode) with U+FFFD, keeping valid surrogate pairs."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
