"""Where a pretraining corpus comes from: a stream of documents, read again on demand.

`open_corpus(spec)` turns what `prepare --data` was given into a `Corpus`:

    a folder            every text file under it (sorted by path, recursively) is one document
    a text file         one document per paragraph (blank-line separated), or, if the file contains
                        "<|endoftext|>" markers (the form TinyStories' text dumps use), one per marked piece;
                        read in chunks, so a file of any size needs memory for one document at a time
    "python-stdlib"     the .py files of this Python's standard library, tests excluded (about 12 MB, 730 files
                        on CPython 3.11): one document per file
    "tinyshakespeare"   the course's 1.1 MB corpus (the data mirror's copy), one document per speech
    "hf:NAME[:SPLIT]"   a Hugging Face dataset's "text" column (needs `pip install scratchlm[hf]` and a network)

Why "python-stdlib" is the default: it is the only multi-megabyte text that every machine running this course
already has, offline, with no download and no licence question (PSF licence, shipped with Python). It is real
text written by many people over thirty years: code, but also docstrings, comments and error messages in English,
so a model has both long-range structure (indentation, matching brackets, names defined and used far apart) and
natural language to learn, and 12 MB is ten times Tiny Shakespeare, enough that a small model trained for minutes
does not memorise it. The trade-offs: it is code-flavoured, not prose, so its losses and samples are not
comparable to a story or web corpus; and it depends on the Python version (the index records the corpus's
sha256, so a different Python makes a different, never a silently mixed, set of shards).
"""

from __future__ import annotations

import hashlib
import re
import sys
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from scratchlm.data import REGISTRY, load_text
from scratchlm.errors import DataError

DEFAULT_CORPUS = "python-stdlib"
EOT_MARKER = "<|endoftext|>"
HF_PREFIX = "hf:"
_PARAGRAPHS = re.compile(r"\n[ \t]*\n+")
_TEST_FOLDERS = {"test", "tests", "idle_test"}


@dataclass(frozen=True)
class Corpus:
    """A named stream of documents. `documents()` starts a fresh pass each call (prepare reads twice: once to
    fingerprint the input, once to tokenize it). `description` says what it is, for the index."""

    name: str
    description: str
    documents: Callable[[], Iterator[str]]


def stdlib_files() -> list[Path]:
    """The standard library's .py files (site-packages and test folders excluded), sorted by path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if "site-packages" in parts or _TEST_FOLDERS & set(parts):
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _read_files(files: list[Path]) -> Iterator[str]:
    """Each file's UTF-8 text; a file that is not UTF-8 is an error naming it (silently skipping it would make
    the corpus depend on which files happened to decode)."""
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
        if text.strip():
            yield text


def split_text(text: str) -> Iterator[str]:
    """The documents of one text file: the pieces between "<|endoftext|>" markers if it has any, else its
    blank-line-separated paragraphs. Empty pieces are dropped."""
    yield from _documents_of(text.split(EOT_MARKER) if EOT_MARKER in text else _PARAGRAPHS.split(text))


_READ_CHARS = 1 << 20  # a text file is read 1M characters at a time


def _has_marker(path: Path) -> bool:
    """Whether the file holds "<|endoftext|>", read in blocks (a marker may straddle two of them)."""
    marker, tail = EOT_MARKER.encode(), b""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            if marker in tail + block[: len(marker)] or marker in block:
                return True
            tail = block[-(len(marker) - 1) :]
    return False


def _read_chunks(path: Path) -> Iterator[str]:
    """The file's UTF-8 text, `_READ_CHARS` characters at a time (newlines translated as `load_text` does)."""
    try:
        with open(path, encoding="utf-8") as f:
            yield from iter(lambda: f.read(_READ_CHARS), "")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason})") from None


def split_stream(chunks: Iterable[str], by_marker: bool) -> Iterator[str]:
    """`split_text` of the text that `chunks` make together, read lazily: the same documents, holding one
    chunk and the document in progress at a time, never the whole text. by_marker: cut at "<|endoftext|>"
    (`split_text` does when the text holds one), else at blank lines.

    A blank-line match that reaches the end of what has been read may grow with the next chunk, so the text
    from its start waits for it; any earlier match is final (the pattern looks one character past its end)."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        if by_marker:
            *pieces, buffer = buffer.split(EOT_MARKER)
        else:
            pieces, start = [], 0
            for match in _PARAGRAPHS.finditer(buffer):
                if match.end() == len(buffer):
                    break
                pieces.append(buffer[start : match.start()])
                start = match.end()
            buffer = buffer[start:]
        yield from _documents_of(pieces)
    yield from _documents_of([buffer])


def _documents_of(pieces: Iterable[str]) -> Iterator[str]:
    for piece in pieces:
        piece = piece.strip("\n")
        if piece.strip():
            yield piece


def _text_file(path: Path) -> Corpus:
    by_marker = _has_marker(path)
    return Corpus(str(path), f"the text file {path}", lambda: split_stream(_read_chunks(path), by_marker))


def _hf_documents(name: str, split: str) -> Iterator[str]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"the corpus {HF_PREFIX}{name} is a Hugging Face dataset, which needs the `datasets` package: "
            "pip install 'scratchlm[hf]' (and a network connection the first time)"
        ) from None
    try:
        dataset = datasets.load_dataset(name, split=split, streaming=True)
    except Exception as e:  # datasets raises many kinds (no network, no such dataset, gated access)
        raise DataError(f"cannot load the Hugging Face dataset {name!r} (split {split!r}): {e}") from None
    for row in dataset:
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise DataError(f"the Hugging Face dataset {name!r} has no 'text' column of strings")
        if text.strip():
            yield text


def open_corpus(spec: str | Path) -> Corpus:
    """The corpus `spec` names: a folder, a text file, a registered name or "hf:NAME[:SPLIT]" (module docstring)."""
    text_spec = str(spec)
    path = Path(spec)
    if path.is_dir():
        files = sorted((p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")), key=str)
        if not files:
            raise DataError(f"the folder {path} holds no files")
        return Corpus(str(path), f"{len(files)} files under {path}", lambda: _read_files(files))
    if path.is_file():
        return _text_file(path)
    if text_spec == "python-stdlib":
        version = ".".join(map(str, sys.version_info[:3]))
        files = stdlib_files()
        return Corpus(
            text_spec,
            f"the .py files of the Python {version} standard library, tests excluded ({len(files)} files)",
            lambda: _read_files(files),
        )
    if text_spec in REGISTRY and text_spec == "tinyshakespeare":
        return Corpus(text_spec, REGISTRY[text_spec].description, lambda: split_text(load_text(text_spec)))
    if text_spec.startswith(HF_PREFIX):
        name, _, split = text_spec[len(HF_PREFIX) :].partition(":")
        if not name:
            raise DataError("a Hugging Face corpus is named hf:NAME or hf:NAME:SPLIT, e.g. hf:roneneldan/TinyStories")
        return Corpus(text_spec, f"the Hugging Face dataset {name}", lambda: _hf_documents(name, split or "train"))
    raise DataError(
        f"no corpus {text_spec!r}: give a text file, a folder of text files, python-stdlib, tinyshakespeare "
        "or hf:NAME (a Hugging Face dataset)"
    )


def fingerprint(documents: Iterator[str]) -> tuple[str, int, int]:
    """(sha256, documents, UTF-8 bytes) of a stream of documents; the hash covers each document's length and
    bytes, so the same texts cut at different places hash differently."""
    digest = hashlib.sha256()
    count = total = 0
    for doc in documents:
        data = doc.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
        count += 1
        total += len(data)
    return digest.hexdigest(), count, total
