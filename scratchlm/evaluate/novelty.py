"""Memorisation and novelty: how much of a sample was copied from the training text?

A suffix array of the training text (the start positions of all its suffixes, in sorted order) answers "does
this string occur in the text, and what is the longest prefix of it that does?" with a binary search: the
suffixes that share the longest prefix with a pattern sit right next to where the pattern would be inserted.
Doing that from every position of a sample gives its *matching statistics*: match[i] = the length of the
longest substring starting at sample[i] that occurs somewhere in the training text. From them:

- the longest copied substring is max(match) (and where it starts);
- the character n-gram starting at i is novel (never seen in training) exactly when match[i] < n, so the
  fraction of novel n-grams for every n comes from the same numbers.

Building the array by prefix doubling (sort the suffixes by their first 1, 2, 4, ... characters, each round
one NumPy sort of (rank, rank k ahead) pairs) takes about a second on the 1 MB of Tiny Shakespeare;
a query costs O(len(sample) * log(len(text))) string comparisons, done by Python's C string compare.
`ngram_set`/`novel_ngram_fraction` do the same job for n-grams of words or tokens by hashing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scratchlm.errors import ConfigError
from scratchlm.evaluate.sampling import ngrams


def suffix_array(text: str) -> np.ndarray:
    """The start positions of all suffixes of `text`, sorted (by code point): (len(text),) int64.

    Prefix doubling: after the round with step k, rank[i] orders the suffixes by their first 2k characters;
    it stops when all ranks differ, after about log2(longest repeated substring) rounds.
    """
    n = len(text)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rank = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    _, rank = np.unique(rank, return_inverse=True)  # dense ranks 0 .. alphabet - 1
    rank = rank.astype(np.int64)
    order = np.argsort(rank, kind="stable")
    k = 1
    while True:
        ahead = np.full(n, -1, dtype=np.int64)  # a suffix shorter than k sorts before any longer one
        ahead[: n - k] = rank[k:] if k < n else ahead[:0]
        key = rank * (n + 1) + (ahead + 1)  # ranks < n, so the pair (rank, ahead) is one int64
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        new_rank = np.empty(n, dtype=np.int64)
        new_rank[order] = np.concatenate(([0], np.cumsum(sorted_key[1:] != sorted_key[:-1])))
        rank = new_rank
        if rank[order[-1]] == n - 1 or k >= n:  # all distinct: the order is final
            return order
        k *= 2


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]: bisect on the length, each test one C compare
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class Match:
    """The longest substring of a sample found in the training text: its text, where it starts in the sample
    (`start`) and in the training text (`source`)."""

    text: str
    start: int
    source: int

    def __len__(self) -> int:
        return len(self.text)


class TrainingTextIndex:
    """A suffix array over a training text, for copy detection in samples (see the module docstring)."""

    def __init__(self, text: str, max_match: int = 10_000):
        """max_match: the longest match looked for (a sample that copies more is reported as copying this much)."""
        if not text:
            raise ConfigError("the training text is empty: nothing to compare samples with")
        self.text = text
        self.max_match = max_match
        self.order = suffix_array(text)

    def _suffix(self, i: int, length: int) -> str:
        start = int(self.order[i])
        return self.text[start : start + length]

    def longest_prefix(self, pattern: str) -> tuple[int, int]:
        """(length, position): the longest prefix of `pattern` occurring in the text, and one place it starts."""
        pattern = pattern[: self.max_match]
        m = len(pattern)
        lo, hi = 0, len(self.order)  # binary search for pattern's insertion point among the sorted suffixes
        while lo < hi:
            mid = (lo + hi) // 2
            if self._suffix(mid, m) < pattern:
                lo = mid + 1
            else:
                hi = mid
        best, where = 0, 0
        for i in (lo - 1, lo):  # the neighbours of the insertion point share the longest prefix with it
            if 0 <= i < len(self.order):
                length = _common_prefix(pattern, self._suffix(i, m))
                if length > best:
                    best, where = length, int(self.order[i])
        return best, where

    def matching_lengths(self, sample: str) -> np.ndarray:
        """match[i] = length of the longest substring starting at sample[i] that occurs in the text: (len,)."""
        return np.array([self.longest_prefix(sample[i:])[0] for i in range(len(sample))], dtype=np.int64)

    def longest_match(self, sample: str) -> Match:
        """The longest substring of `sample` that occurs in the text (the first one, if several are as long)."""
        best = Match("", 0, 0)
        for i in range(len(sample)):
            if len(sample) - i <= len(best):
                break  # no later start can beat it
            length, where = self.longest_prefix(sample[i:])
            if length > len(best):
                best = Match(sample[i : i + length], i, where)
        return best

    def novel_fraction(self, sample: str, n: int) -> float:
        """Fraction of the sample's character n-grams that never occur in the text. NaN if it has none."""
        if n < 1:
            raise ConfigError(f"n must be positive, got {n}")
        if len(sample) < n:
            return float("nan")
        # the n-gram at i occurs in the text exactly when the longest match from i is at least n long
        novel = [self.longest_prefix(sample[i : i + n])[0] < n for i in range(len(sample) - n + 1)]
        return sum(novel) / len(novel)


def ngram_set(sequence: Sequence[Any], n: int) -> set[tuple[Any, ...]]:
    """Every n-gram of a training sequence (words, token ids), for `novel_ngram_fraction`."""
    return set(ngrams(sequence, n))


def novel_ngram_fraction(sample: Sequence[Any], seen: Iterable[tuple[Any, ...]] | set, n: int) -> float:
    """Fraction of the sample's n-grams that are not in `seen` (an `ngram_set` of the training sequence)."""
    seen = seen if isinstance(seen, (set, frozenset)) else set(seen)
    grams = ngrams(sample, n)
    if not grams:
        return float("nan")
    return sum(g not in seen for g in grams) / len(grams)
