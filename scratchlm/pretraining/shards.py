"""A tokenized corpus on disk: fixed-size token shards plus a JSON index, written once, read by memory map.

    index = prepare("python-stdlib", "r50k_base", "runs/stdlib-r50k", workers=2)
    index = ShardIndex.open("runs/stdlib-r50k")          # checks every shard against the index
    index.memmap("train", 0)                               # a numpy view of shard 0, nothing read yet

Why shards and a memory map instead of reading the text: a text must be decoded and tokenized at every start
(seconds to hours) and its ids held in RAM as Python ints or int64 (8 bytes a token); a shard is the ids already
made, 2 bytes a token (`uint16` when the vocabulary has at most 65,536 ids, else `uint32`), and `np.memmap` maps
it without reading it, so a run starts at once and the operating system pages in only the windows a step reads,
shared between the processes of a DDP run. Fixed-size shards keep each file manageable and let a run verify,
copy or stream them one at a time.

Layout of DIR:

    index.json        format, version; dtype; tokenizer (file, sha256, vocab_size); the document separator;
                      the input (corpus name, description, sha256, documents, bytes); settings (val_fraction,
                      seed, shard_tokens); per split: documents, tokens, bytes and the shards (file, tokens, sha256)
    tokenizer.json    the tokenizer (`to_dict()`), so a run needs nothing but DIR
    train_000000.bin  raw token ids, little-endian, one after the other
    val_000000.bin    ...

Documents: every document is preceded by the separator, so a window that starts on it starts a document, and
sampling from it starts one too. The separator is the tokenizer's "<|endoftext|>" (GPT-2's and GPT-4's
vocabularies, or a BPE trained with that special token); a tokenizer without one (a character tokenizer) uses
the encoding of a blank line, "\n\n", and the index says so. Documents are encoded without special tokens
(BPE's `encode_ordinary`), so a document whose text contains "<|endoftext|>" cannot forge a boundary.

Split: each document goes to val with probability val_fraction, decided by a hash of (seed, its position), so the
split is by document (no document is cut in two) and independent of the number of workers; should the draw leave
a split empty, the last document goes to val (or the first to train).

Re-running prepare on the same input with the same tokenizer and settings checks the shards and returns: a no-op.
Different input in a DIR that holds shards is refused unless overwrite=True.
"""

from __future__ import annotations

import collections
import hashlib
import json
import multiprocessing
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from scratchlm.data import sha256_of
from scratchlm.errors import DataError, OutputError
from scratchlm.files import atomic_write, folder_lock, remove_stale_temporaries
from scratchlm.memory import check_fits
from scratchlm.options import BOOL, NON_NEGATIVE_INT, POSITIVE_INT, TEXT, Rule, check_options, number, option, optional
from scratchlm.pretraining.corpora import DEFAULT_CORPUS, EOT_MARKER, Corpus, fingerprint, open_corpus

FORMAT = "scratchlm-shards"
VERSION = 1
INDEX_FILENAME = "index.json"
TOKENIZER_FILENAME = "tokenizer.json"
SPLITS = ("train", "val")
DEFAULT_SHARD_TOKENS = 2**24  # 16M tokens: 32 MiB as uint16
BLANK_LINE = "\n\n"
_TASK_BYTES = 1 << 20  # documents are sent to workers in batches of about 1 MB of text


def shard_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def separator_ids(tokenizer: Any) -> tuple[list[int], str]:
    """(ids, text) of the document separator for `tokenizer`: its "<|endoftext|>" token if it has one, else the
    encoding of a blank line (module docstring)."""
    special = getattr(tokenizer, "special_tokens", {}) or {}
    if EOT_MARKER in special:
        return [special[EOT_MARKER]], EOT_MARKER
    try:
        ids = tokenizer.encode(BLANK_LINE)
    except Exception as e:  # a character tokenizer of a text without newlines cannot encode it
        raise DataError(
            f"the tokenizer has no {EOT_MARKER} token and cannot encode a blank line to separate documents ({e})"
        ) from None
    return ids, BLANK_LINE


def _encoder(tokenizer: Any):
    """Encode a document as plain text (no special tokens)."""
    return getattr(tokenizer, "encode_ordinary", tokenizer.encode)


def goes_to_val(position: int, seed: int, val_fraction: float) -> bool:
    """Whether document number `position` belongs to the validation split: a uniform draw from a hash of
    (seed, position), so the decision needs no state and no worker count."""
    digest = hashlib.blake2b(f"{seed}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < val_fraction


def _val_rule(n_docs: int, seed: int, val_fraction: float):
    """`goes_to_val`, except that each split gets at least one document: if the draw gives val none, the last
    document goes there; if it gives train none, the first stays in train. Nothing is stored per document (the
    searches below stop at the first document of each kind), so the rule costs the same for any corpus size."""
    any_val = any(goes_to_val(i, seed, val_fraction) for i in range(n_docs))
    any_train = not all(goes_to_val(i, seed, val_fraction) for i in range(n_docs))

    def rule(position: int) -> bool:
        if not any_val and position == n_docs - 1:
            return True
        if not any_train and position == 0:
            return False
        return goes_to_val(position, seed, val_fraction)

    return rule


def _in_order(pool: Any, function: Any, tasks: Iterator[Any], window: int) -> Iterator[Any]:
    """`pool.imap(function, tasks)` with at most `window` tasks read ahead: imap's feeder thread reads every task
    at once, so a corpus larger than memory would be pulled into it while the workers are still busy."""
    pending: collections.deque = collections.deque()
    for task in tasks:
        pending.append(pool.apply_async(function, (task,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


# --- workers: each holds one tokenizer, rebuilt from its dict once -------------------------------------------

_worker_tokenizer = None


_worker_dtype = None


def _init_worker(tokenizer_state: dict[str, Any], dtype: str) -> None:
    global _worker_tokenizer, _worker_dtype
    from scratchlm.tokenizers import tokenizer_from_dict

    _worker_tokenizer = tokenizer_from_dict(tokenizer_state)
    _worker_dtype = np.dtype(dtype)


def _encode_documents(tokenizer: Any, documents: list[str]) -> list[list[int]]:
    """The ids of each document as plain text: `encode_iter` (one chunk table for the batch) where the tokenizer
    has it, else `encode_ordinary` or `encode` document by document."""
    if hasattr(tokenizer, "encode_iter"):
        return list(tokenizer.encode_iter(documents))
    return list(map(_encoder(tokenizer), documents))


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _encode_batch(documents: list[str]) -> list[tuple[int, np.ndarray]]:
    """(UTF-8 bytes, ids) of each document: the main process needs only these, not the text back. The ids come
    back as a compact array (2 or 4 bytes an id to pickle, not a Python int each)."""
    encoded = _encode_documents(_worker_tokenizer, documents)
    return [(_utf8_len(doc), np.asarray(ids, dtype=_worker_dtype)) for doc, ids in zip(documents, encoded, strict=True)]


def _batches(documents: Iterator[str]) -> Iterator[list[str]]:
    batch, size = [], 0
    for doc in documents:
        batch.append(doc)
        size += len(doc)
        if size >= _TASK_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# --- writing ---------------------------------------------------------------------------------------------------


class _ShardWriter:
    """Appends token ids to `{split}_NNNNNN.bin` files of exactly `shard_tokens` tokens (the last may be shorter),
    each written atomically with its sha256 computed on the way."""

    def __init__(self, out_dir: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.out_dir, self.split, self.dtype, self.shard_tokens = out_dir, split, dtype, shard_tokens
        self.buffer = np.empty(shard_tokens, dtype=dtype)
        self.filled = 0
        self.shards: list[dict[str, Any]] = []
        self.documents = self.tokens = self.bytes = 0

    def add(self, ids: list[int] | np.ndarray) -> None:
        ids = np.asarray(ids, dtype=self.dtype)
        while len(ids):
            take = min(len(ids), self.shard_tokens - self.filled)
            self.buffer[self.filled : self.filled + take] = ids[:take]
            self.filled += take
            ids = ids[take:]
            if self.filled == self.shard_tokens:
                self.flush()

    def flush(self) -> None:
        if not self.filled:
            return
        name = f"{self.split}_{len(self.shards):06d}.bin"
        data = self.buffer[: self.filled].astype(self.dtype.newbyteorder("<"), copy=False).tobytes()
        with atomic_write(self.out_dir / name, "wb") as f:
            f.write(data)
        self.shards.append({"file": name, "tokens": self.filled, "sha256": hashlib.sha256(data).hexdigest()})
        self.tokens += self.filled
        self.filled = 0

    def summary(self) -> dict[str, Any]:
        return {"documents": self.documents, "tokens": self.tokens, "bytes": self.bytes, "shards": self.shards}


@dataclass(frozen=True)
class PrepareConfig:
    """The options of `prepare` (the `prepare` command's flags come from these fields)."""

    data: str = option(DEFAULT_CORPUS, "a text file, a folder of text files, python-stdlib, tinyshakespeare or "
                       "hf:NAME[:SPLIT]", TEXT, metavar="PATH|NAME")  # fmt: skip
    tokenizer: str = option(
        "r50k_base", "a tokenizer file, r50k_base, cl100k_base, or char (the characters of the corpus)", TEXT,
        metavar="SPEC",
    )  # fmt: skip
    out_dir: str = option("runs/shards", "folder for the shards, index.json and tokenizer.json", TEXT,
                          flags=("--out",), metavar="DIR")  # fmt: skip
    val_fraction: float = option(0.02, "fraction of the documents held out for validation",
                                 number("between 0 and 1", lambda v: 0 < v < 1))  # fmt: skip
    seed: int = option(0, "seed of the train/val split", NON_NEGATIVE_INT)
    shard_tokens: int = option(DEFAULT_SHARD_TOKENS, "tokens per shard file (the last may hold fewer)",
                               Rule("an integer >= 2", lambda v: isinstance(v, int) and v >= 2))  # fmt: skip
    workers: int | None = option(None, "tokenizing processes (default: one per CPU; 1: in this process)",
                                 optional(POSITIVE_INT))  # fmt: skip
    overwrite: bool = option(False, "replace shards of other input or settings in --out", BOOL)
    progress: bool = option(True, "show a progress bar", BOOL)

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class PrepareStats:
    """What a `prepare` call did: seconds spent tokenizing, input MB/s over that time, workers, and whether it
    was a no-op (the shards already matched the input)."""

    seconds: float
    mb_per_s: float
    workers: int
    up_to_date: bool


def _resolve_tokenizer(spec: Any, corpus: Corpus):
    """A tokenizer object from `spec`: an object, "char" (the characters of the corpus, one extra pass), or
    anything `scratchlm.tokenizers.load` takes."""
    from scratchlm.tokenizers import CharTokenizer, load

    if not isinstance(spec, (str, Path)):
        return spec
    if str(spec) == "char":
        chars = set(BLANK_LINE)
        for doc in corpus.documents():
            chars.update(doc)
        return CharTokenizer(sorted(chars))
    return load(spec)


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def prepare(
    data: str | Path,
    tokenizer: Any,
    out_dir: str | Path,
    *,
    val_fraction: float = 0.02,
    seed: int = 0,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[ShardIndex, PrepareStats]:
    """Tokenize corpus `data` (`open_corpus`) with `tokenizer` (an object, a spec for `scratchlm.tokenizers.load`,
    or "char") into shards in `out_dir`; returns the verified index and what it took.

    workers: processes that encode (default: every CPU); 1 encodes in this process. The output is the same for
    any number of workers: batches of documents come back in order. A DIR already holding these very shards is
    checked and left alone; a DIR holding others is refused unless `overwrite`.
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if shard_tokens < 2:
        raise DataError(f"shard_tokens must be at least 2, got {shard_tokens}")
    # the two splits' shard buffers, at 2 bytes a token at least: an absurd size fails now, not after a pass
    check_fits(2 * shard_tokens * 2, torch.device("cpu"), f"shards of {shard_tokens:,} tokens")
    workers = workers or os.cpu_count() or 1
    corpus = open_corpus(data)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} is a file; --out must be a folder")
    tokenizer = _resolve_tokenizer(tokenizer, corpus)
    tokenizer_state = tokenizer.to_dict()
    tokenizer_bytes = _canonical_json(tokenizer_state)
    input_sha, n_docs, n_bytes = fingerprint(corpus.documents())
    if n_docs < 2:
        raise DataError(f"{corpus.name} holds {n_docs} document(s); a train/val split by document needs at least 2")
    sep_ids, sep_text = separator_ids(tokenizer)
    dtype = shard_dtype(tokenizer.vocab_size)
    settings = {"val_fraction": val_fraction, "seed": seed, "shard_tokens": shard_tokens}
    tokenizer_entry = {
        "file": TOKENIZER_FILENAME,
        "sha256": hashlib.sha256(tokenizer_bytes).hexdigest(),
        "vocab_size": tokenizer.vocab_size,
        "type": tokenizer_state.get("type"),
    }
    source = {"name": corpus.name, "description": corpus.description, "sha256": input_sha,
              "documents": n_docs, "bytes": n_bytes}  # fmt: skip

    out_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(out_dir):
        remove_stale_temporaries(out_dir)
        if (out_dir / INDEX_FILENAME).exists():
            old = _read_index_file(out_dir)
            same = (
                old.get("source", {}).get("sha256") == input_sha
                and old.get("tokenizer", {}).get("sha256") == tokenizer_entry["sha256"]
                and old.get("settings") == settings
            )
            if same:
                index = ShardIndex.open(out_dir)  # verifies every shard: a damaged one is an error, not a redo
                return index, PrepareStats(0.0, 0.0, workers, up_to_date=True)
            if not overwrite:
                raise OutputError(
                    f"{out_dir} already holds shards of other input or settings "
                    f"(corpus {old.get('source', {}).get('name')!r}); "
                    "use --overwrite to replace them, or another --out"
                )
            _remove_shards(out_dir, old)

        writers = {split: _ShardWriter(out_dir, split, dtype, shard_tokens) for split in SPLITS}
        in_val = _val_rule(n_docs, seed, val_fraction)
        position = 0
        start = time.perf_counter()
        desc = f"tokenizing ({workers} workers)"
        bar = tqdm(total=n_bytes, unit="B", unit_scale=True, desc=desc, disable=not progress)
        batches = _batches(corpus.documents())
        pool = None
        try:
            if workers > 1:
                pool = multiprocessing.get_context().Pool(workers, _init_worker, (tokenizer_state, dtype.name))
                encoded_batches = _in_order(pool, _encode_batch, batches, window=2 * workers)
            else:
                encoded_batches = (
                    list(zip(map(_utf8_len, batch), _encode_documents(tokenizer, batch), strict=True))
                    for batch in batches
                )
            for encoded in encoded_batches:
                for size, ids in encoded:
                    writer = writers["val" if in_val(position) else "train"]
                    writer.add(sep_ids)
                    writer.add(ids)
                    writer.documents += 1
                    writer.bytes += size
                    position += 1
                    bar.update(size)
            for writer in writers.values():
                writer.flush()
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
        seconds = time.perf_counter() - start
        for split, writer in writers.items():
            if writer.documents == 0:
                _remove_shards(out_dir, {"splits": {s: w.summary() for s, w in writers.items()}})
                raise DataError(
                    f"the {split} split of {corpus.name} got no documents ({n_docs} in all, val_fraction="
                    f"{val_fraction}); use more documents or another val_fraction"
                )
        with atomic_write(out_dir / TOKENIZER_FILENAME, "wb") as f:
            f.write(tokenizer_bytes)
        index = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": dtype.name,
            "tokenizer": tokenizer_entry,
            "separator": {"ids": sep_ids, "text": sep_text},
            "source": source,
            "settings": settings,
            "splits": {split: writer.summary() for split, writer in writers.items()},
            "prepared": {"workers": workers, "seconds": round(seconds, 3)},
        }
        with atomic_write(out_dir / INDEX_FILENAME, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=1)
    return ShardIndex.open(out_dir, verify=False), PrepareStats(seconds, n_bytes / 1e6 / seconds, workers, False)


def _read_index_file(out_dir: Path) -> dict[str, Any]:
    """The index in `out_dir`, checked field by field (`_check_index`): a damaged or foreign one is a one-line
    `DataError` naming the file and what is wrong, never a KeyError deep inside a run."""
    path = out_dir / INDEX_FILENAME
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{out_dir} holds no {INDEX_FILENAME}: prepare it first (scratchlm prepare)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not a readable shard index ({e})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"{path} is not a scratchlm shard index")
    if index.get("version") != VERSION:
        raise DataError(f"{path} has shard format version {index.get('version')!r}; this scratchlm reads {VERSION}")
    if problem := _index_problem(index):
        raise DataError(f"{path} is damaged: {problem}; prepare the folder again (or delete it)")
    return index


_SHARD_NAME = re.compile(r"(train|val)_\d{6}\.bin")  # what _ShardWriter names its files, and nothing else


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _index_problem(index: dict[str, Any]) -> str | None:
    """What is wrong with a parsed index (a key missing, a value of the wrong type, a shard file that is not one
    `prepare` writes, such as "../x" or an absolute path), or None if every field a reader uses is sound."""
    if index.get("dtype") not in ("uint16", "uint32"):
        return f"dtype is {index.get('dtype')!r}, not uint16 or uint32"
    tokenizer = index.get("tokenizer")
    if not isinstance(tokenizer, dict) or not isinstance(tokenizer.get("sha256"), str):
        return "tokenizer must be a record with a sha256"
    vocab = tokenizer.get("vocab_size")
    if not _is_count(vocab) or vocab == 0 or vocab > np.iinfo(index["dtype"]).max + 1:
        return f"tokenizer vocab_size {vocab!r} is not a positive integer that fits {index['dtype']}"
    separator = index.get("separator")
    ids = separator.get("ids") if isinstance(separator, dict) else None
    if not isinstance(ids, list) or not ids or not all(_is_count(i) and i < vocab for i in ids):
        return f"separator ids must be a non-empty list of ids below vocab_size {vocab}"
    source = index.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("sha256"), str):
        return "source must be a record with a sha256"
    if not isinstance(index.get("settings"), dict):
        return "settings must be a record"
    splits = index.get("splits")
    if not isinstance(splits, dict) or set(splits) != set(SPLITS):
        return f"splits must be exactly {' and '.join(SPLITS)}"
    for name in SPLITS:
        split = splits[name]
        if not isinstance(split, dict) or not all(_is_count(split.get(k)) for k in ("documents", "tokens", "bytes")):
            return f"split {name} needs documents, tokens and bytes as counts"
        shards = split.get("shards")
        if not isinstance(shards, list):
            return f"split {name}'s shards must be a list"
        for shard in shards:
            if (
                not isinstance(shard, dict)
                or not _is_count(shard.get("tokens"))
                or not isinstance(shard.get("sha256"), str)
            ):
                return f"a shard of split {name} needs a file, a token count and a sha256"
            file = shard.get("file")
            if not isinstance(file, str) or not _SHARD_NAME.fullmatch(file) or not file.startswith(name + "_"):
                return f"shard file {file!r} of split {name} is not a file that prepare writes in this folder"
        if sum(shard["tokens"] for shard in shards) != split["tokens"]:
            return f"split {name}'s shards do not add up to its {split['tokens']} tokens"
    return None


def _remove_shards(out_dir: Path, index: dict[str, Any]) -> None:
    """Delete what prepare wrote in `out_dir` according to `index` (already checked: every shard file is a plain
    name of this folder): its shards, the index and the tokenizer file. Nothing else, nothing outside."""
    for split in index.get("splits", {}).values():
        for shard in split.get("shards", []):
            if _SHARD_NAME.fullmatch(shard["file"]):
                (out_dir / shard["file"]).unlink(missing_ok=True)
    for name in (INDEX_FILENAME, TOKENIZER_FILENAME):
        (out_dir / name).unlink(missing_ok=True)


class ShardIndex:
    """A prepared folder: its index, its tokenizer and memory maps of its shards.

    `open(dir)` checks that every shard exists with the size the index gives it and, with verify=True (the
    default), that its bytes hash to the index's sha256; a shard that does not match is a `DataError` naming it.
    """

    def __init__(self, folder: Path, index: dict[str, Any]):
        self.folder = folder
        self.index = index
        self.dtype = np.dtype(index["dtype"]).newbyteorder("<")
        self._maps: dict[tuple[str, int], np.memmap] = {}

    @classmethod
    def open(cls, folder: str | Path, *, verify: bool = True) -> ShardIndex:
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"no prepared corpus at {folder} (a folder made by python -m scratchlm prepare)")
        index = _read_index_file(folder)
        dtype = np.dtype(index["dtype"])
        shards = [(s["file"], s["tokens"], s["sha256"]) for split in SPLITS for s in index["splits"][split]["shards"]]
        for name, tokens, sha in shards:
            path = folder / name
            if not path.is_file():
                raise DataError(f"shard {path} listed in the index is missing")
            if path.stat().st_size != tokens * dtype.itemsize:
                raise DataError(
                    f"shard {path} has {path.stat().st_size} bytes; the index says {tokens} tokens of {dtype.name} "
                    f"({tokens * dtype.itemsize} bytes): it does not match its index (re-run prepare with --overwrite)"
                )
            if verify and sha256_of(path) != sha:
                raise DataError(
                    f"shard {path} does not match its index (sha256 differs): it was changed or damaged after "
                    "prepare; re-run prepare with --overwrite"
                )
        tokenizer_path = folder / TOKENIZER_FILENAME
        if not tokenizer_path.is_file() or sha256_of(tokenizer_path) != index["tokenizer"]["sha256"]:
            raise DataError(f"{tokenizer_path} is missing or does not match the index's sha256")
        return cls(folder, index)

    def tokenizer(self) -> Any:
        """The tokenizer the shards were made with."""
        from scratchlm.tokenizers import tokenizer_from_dict

        state = json.loads((self.folder / TOKENIZER_FILENAME).read_text(encoding="utf-8"))
        return tokenizer_from_dict(state)

    @property
    def vocab_size(self) -> int:
        return int(self.index["tokenizer"]["vocab_size"])

    @property
    def separator(self) -> list[int]:
        """The ids that precede every document (the end-of-text token, or a blank line)."""
        return list(self.index["separator"]["ids"])

    def shard_tokens(self, split: str) -> list[int]:
        """The number of tokens in each shard of `split`."""
        return [int(s["tokens"]) for s in self._split(split)["shards"]]

    def tokens(self, split: str) -> int:
        return int(self._split(split)["tokens"])

    def bytes_per_token(self, split: str) -> float:
        """UTF-8 bytes of text per token in `split` (separators counted as tokens, not bytes): what converts a
        loss in nats per token into bits per byte."""
        s = self._split(split)
        return s["bytes"] / max(s["tokens"], 1)

    def memmap(self, split: str, shard: int) -> np.memmap:
        """A read-only memory map of shard number `shard` of `split` (made once, then reused)."""
        key = (split, shard)
        if key not in self._maps:
            entry = self._split(split)["shards"][shard]
            self._maps[key] = np.memmap(self.folder / entry["file"], dtype=self.dtype, mode="r")
        return self._maps[key]

    def read(self, split: str) -> np.ndarray:
        """Every token of `split` in one array (for small corpora and tests; a run uses `memmap`)."""
        return np.concatenate([np.asarray(self.memmap(split, i)) for i in range(len(self.shard_tokens(split)))])

    def _split(self, split: str) -> dict[str, Any]:
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return self.index["splits"][split]
