"""Data curation before tokenization: exact and near-duplicate removal, a filter for generated files, and a check
that no validation document has a near-duplicate in training.

    report = curate(corpus.documents(), in_val)       # in_val(position) -> bool: the split prepare will use
    report.keep[position], report.dropped, report.summary()

Why: real corpora repeat themselves. A repeated document is seen more often than the data says it should be, and a
copy on each side of the train/val split makes the validation loss measure memory, not generalisation. Python's
standard library is an example: `encodings/` holds some 80 code-page modules generated from one template (256
lines of `'\\x00'  # 0x00 -> NULL` each), 11% of the corpus, and a dozen CJK codec modules identical but for names.

What is dropped, in corpus order (the first of a group is kept):

- exact duplicates: the same text, byte for byte (a sha256);
- generated files: at least `GENERATED_FRACTION` of the non-blank lines are table-like (only literals, numbers and
  punctuation outside a comment: `0x0080: 0x00c7,  # LATIN CAPITAL LETTER C WITH CEDILLA`) and at least
  `GENERATED_RUN` of them come in one run. A property of the text, not of its name: hand-written code has short
  literal runs (a tuple of constants), prose has none;
- near duplicates: an earlier kept document shares at least `NEAR_DUPLICATE` of its word 5-gram shingles
  (Jaccard similarity), estimated by MinHash (Broder 1997): `SIGNATURE` hash functions, each document's minimum
  over its shingles; two documents' minima agree with probability equal to their Jaccard similarity. Candidates
  come from locality-sensitive hashing (`DEDUP_BANDS` bands of the signature: documents sharing a band are
  compared), so the work grows with the number of documents, not its square;
- validation documents overlapping training: a val document that shares at least `VAL_OVERLAP` of its shingles
  with a kept training document (a looser threshold than deduplication, searched with more, narrower bands).

Documents shorter than `MIN_CHARS` characters are never dropped as duplicates: a repeated short line ("My lord.")
is part of the language, not a copy. Signatures are 128 uint32 per document (512 bytes), so a million documents
need half a gigabyte.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

SHINGLE = 5  # words per shingle
SIGNATURE = 128  # MinHash functions
DEDUP_BANDS = 16  # 16 bands of 8 rows: a pair with Jaccard 0.8 becomes a candidate with probability 0.94
VAL_BANDS = 32  # 32 bands of 4 rows: Jaccard 0.5 -> 0.87, 0.6 -> 0.99
NEAR_DUPLICATE = 0.8
VAL_OVERLAP = 0.5
GENERATED_FRACTION = 0.5
GENERATED_RUN = 100
MIN_CHARS = 100

REASONS = ("exact_duplicate", "generated", "near_duplicate", "val_overlaps_train")

_WORD = re.compile(r"\w+")
_TABLE_LINE = re.compile(
    r"""^((?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[-+]?(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?)|[,:()\[\]{} \t])+)"""
    r"""(?:#.*)?$"""
)
_PUNCTUATION = ",:()[]{} \t"
SALTS = np.random.default_rng(20260101).integers(1, 2**63, size=SIGNATURE, dtype=np.uint64)


def table_like_lines(text: str) -> tuple[int, int, int]:
    """(non-blank lines, table-like lines, the longest run of consecutive table-like lines) of `text`.

    A line is table-like when, outside a trailing comment, it holds only string and number literals and the
    punctuation of a table (`, : ( ) [ ] { }`), and at least one literal."""
    lines = table = run = longest = 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        lines += 1
        match = _TABLE_LINE.match(stripped)
        if match is not None and match.group(1).strip(_PUNCTUATION):
            table += 1
            run += 1
            longest = max(longest, run)
        else:
            run = 0
    return lines, table, longest


def looks_generated(text: str) -> tuple[bool, str]:
    """(whether `text` looks like a generated table, the figures behind the verdict)."""
    lines, table, longest = table_like_lines(text)
    fraction = table / lines if lines else 0.0
    verdict = fraction >= GENERATED_FRACTION and longest >= GENERATED_RUN
    return verdict, f"{fraction:.0%} of {lines} lines table-like, longest run {longest}"


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit mixing function (SplitMix64's finaliser), elementwise on uint64 (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def shingle_hashes(text: str) -> np.ndarray:
    """The distinct 64-bit hashes of `text`'s word `SHINGLE`-grams (words: runs of letters, digits, underscores),
    uint64; empty when the text has fewer than SHINGLE words. Stable across processes (crc32 of each word, then a
    polynomial over the window), unlike Python's salted `hash`."""
    words = _WORD.findall(text)
    if len(words) < SHINGLE:
        return np.empty(0, dtype=np.uint64)
    cache: dict[str, int] = {}
    ids = np.fromiter((cache.setdefault(w, zlib.crc32(w.encode("utf-8"))) for w in words), dtype=np.uint64,
                      count=len(words))  # fmt: skip
    n = len(words) - SHINGLE + 1
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(SHINGLE):
            h = h * np.uint64(1_000_003) + ids[i : i + n]
    return np.unique(_splitmix64(h))


def minhash(shingles: np.ndarray) -> np.ndarray:
    """The MinHash signature of a set of shingle hashes: for each of `SIGNATURE` hash functions (the mixer applied
    to shingle XOR salt), the minimum over the set, kept as its top 32 bits: (SIGNATURE,) uint32. An empty set
    has no signature (all ones, which match nothing real by more than chance)."""
    if len(shingles) == 0:
        return np.full(SIGNATURE, 2**32 - 1, dtype=np.uint32)
    out = np.empty(SIGNATURE, dtype=np.uint64)
    step = max(1, 2**22 // len(shingles))  # bound the (shingles, salts) block to about 32 MB
    with np.errstate(over="ignore"):
        for start in range(0, SIGNATURE, step):
            block = _splitmix64(shingles[:, None] ^ SALTS[None, start : start + step])
            out[start : start + step] = block.min(axis=0)
    return (out >> np.uint64(32)).astype(np.uint32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The MinHash estimate of two documents' Jaccard similarity: the fraction of signature entries that agree."""
    return float(np.mean(a == b))


class _Bands:
    """Locality-sensitive hashing over signatures: each of `bands` slices of the signature is a bucket key;
    documents sharing any bucket are candidates."""

    def __init__(self, bands: int):
        self.rows = SIGNATURE // bands
        self.buckets: list[dict[bytes, list[int]]] = [defaultdict(list) for _ in range(bands)]

    def keys(self, signature: np.ndarray) -> list[bytes]:
        return [signature[b * self.rows : (b + 1) * self.rows].tobytes() for b in range(len(self.buckets))]

    def candidates(self, signature: np.ndarray) -> set[int]:
        found: set[int] = set()
        for bucket, key in zip(self.buckets, self.keys(signature), strict=True):
            found.update(bucket.get(key, ()))
        return found

    def add(self, position: int, signature: np.ndarray) -> None:
        for bucket, key in zip(self.buckets, self.keys(signature), strict=True):
            bucket[key].append(position)


@dataclass(frozen=True)
class Dropped:
    """One document curation removed: its position in the corpus, why (one of `REASONS`), its UTF-8 bytes, the
    kept document it duplicates or overlaps (None for a generated one) and a detail (similarity, line figures)."""

    position: int
    reason: str
    bytes: int
    of: int | None
    detail: str


@dataclass
class CurationReport:
    """keep[position]: whether the document survives; dropped: what did not and why; documents, bytes: the input."""

    keep: list[bool] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    documents: int = 0
    bytes: int = 0

    def counts(self) -> dict[str, dict[str, int]]:
        """{reason: {"documents": n, "bytes": b}} for every reason."""
        docs = Counter(d.reason for d in self.dropped)
        size: Counter[str] = Counter()
        for d in self.dropped:
            size[d.reason] += d.bytes
        return {r: {"documents": docs[r], "bytes": size[r]} for r in REASONS}

    def summary(self) -> str:
        """One line: what was dropped and why."""
        parts = [f"{c['documents']} {r.replace('_', ' ')} ({c['bytes'] / 1e6:.2f} MB)"
                 for r, c in self.counts().items() if c["documents"]]  # fmt: skip
        kept = self.bytes - sum(d.bytes for d in self.dropped)
        dropped = ", ".join(parts) if parts else "nothing"
        return f"curation dropped {dropped}; kept {sum(self.keep):,} of {self.documents:,} documents, " + (
            f"{kept / max(self.bytes, 1):.1%} of the bytes"
        )

    def to_dict(self) -> dict[str, Any]:
        """For the index: the thresholds, the counts per reason and every dropped document."""
        return {
            "settings": settings(),
            "dropped": self.counts(),
            "documents": [
                {"position": d.position, "reason": d.reason, "bytes": d.bytes, "of": d.of, "detail": d.detail}
                for d in self.dropped
            ],
        }


def settings() -> dict[str, Any]:
    """The thresholds curation ran with (recorded in the index, so a change of rule makes different shards)."""
    return {"shingle_words": SHINGLE, "signature": SIGNATURE, "dedup_bands": DEDUP_BANDS, "val_bands": VAL_BANDS,
            "near_duplicate": NEAR_DUPLICATE, "val_overlap": VAL_OVERLAP, "generated_fraction": GENERATED_FRACTION,
            "generated_run": GENERATED_RUN, "min_chars": MIN_CHARS}  # fmt: skip


def curate(documents: Iterable[str], in_val: Callable[[int], bool], *, progress: bool = False) -> CurationReport:
    """Decide, in one pass over `documents`, which to keep (module docstring); `in_val(position)` says which split
    a document goes to, for the validation-overlap check (run after the pass, against the kept training ones)."""
    report = CurationReport()
    seen: dict[bytes, int] = {}
    dedup = _Bands(DEDUP_BANDS)
    signatures: dict[int, np.ndarray] = {}
    sizes: dict[int, int] = {}
    bar = tqdm(desc="curating", unit="doc", disable=not progress)
    for position, text in enumerate(documents):
        bar.update(1)
        size = len(text.encode("utf-8"))
        report.documents += 1
        report.bytes += size
        report.keep.append(True)
        verdict = _first_verdict(position, text, size, seen, dedup, signatures)
        if verdict is not None:
            report.keep[position] = False
            report.dropped.append(verdict)
            continue
        sizes[position] = size
    bar.close()
    _drop_val_overlapping_train(report, in_val, signatures, sizes)
    return report


def _first_verdict(position, text, size, seen, dedup, signatures) -> Dropped | None:
    """Why document `position` is dropped (exact duplicate, generated, near duplicate), or None if kept; a kept
    document joins the indexes the later ones are compared with."""
    short = len(text) < MIN_CHARS
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    if not short and digest in seen:
        return Dropped(position, "exact_duplicate", size, seen[digest], "identical text")
    generated, figures = looks_generated(text)
    if generated:
        return Dropped(position, "generated", size, None, figures)
    shingles = shingle_hashes(text)
    if short or len(shingles) == 0:  # nothing to compare by similarity: kept, and left out of those searches
        if not short:
            seen[digest] = position
        return None
    signature = minhash(shingles)
    scores = [(similarity(signature, signatures[other]), other) for other in dedup.candidates(signature)]
    best, best_of = max(scores, default=(0.0, None))
    if best >= NEAR_DUPLICATE:
        return Dropped(position, "near_duplicate", size, best_of, f"estimated Jaccard {best:.2f}")
    seen[digest] = position
    dedup.add(position, signature)
    signatures[position] = signature
    return None


def _drop_val_overlapping_train(report, in_val, signatures, sizes) -> None:
    train_bands = _Bands(VAL_BANDS)
    for position, signature in signatures.items():
        if not in_val(position):
            train_bands.add(position, signature)
    for position, signature in signatures.items():
        if not in_val(position) or not report.keep[position]:
            continue
        scores = [(similarity(signature, signatures[o]), o) for o in train_bands.candidates(signature)]
        best, other = max(scores, default=(0.0, None))
        if best >= VAL_OVERLAP:
            report.keep[position] = False
            detail = f"estimated Jaccard {best:.2f} with a training document"
            report.dropped.append(Dropped(position, "val_overlaps_train", sizes[position], other, detail))
