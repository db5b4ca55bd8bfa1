"""Learning BPE merges with incremental pair counts.

The textbook trainer recounts every adjacent pair of the whole corpus after each merge: O(corpus × merges).
Two observations make it fast:

1. After pre-splitting, most chunks repeat (" the" occurs thousands of times), so we train on the *unique*
   chunks, each weighted by how often it occurs.
2. A merge only changes the pairs next to the places where it happens. We keep, for every pair, its
   weighted count and the positions where it occurs, and a heap to find the most frequent pair; a merge then
   costs time proportional to its occurrences, not to the corpus.

The chunks are laid end to end in one doubly linked list of tokens (a chunk's ends link to -1, so no pair
spans two chunks). Training without pre-splitting (one giant chunk) therefore costs the same per occurrence.

Choosing the pair: the highest weighted count wins; ties go to the pair with the smallest
(left id, right id). No dict or set order ever decides, so training is deterministic.

Applying the pair: its occurrences in a chunk are merged left to right ("aaa" with ("a", "a") gives
["aa", "a"]). That is exactly what the encoder's rule (`bpe_ranks.merge_chunk`: lowest rank first, leftmost
on a tie) does when the new token's rank is added, so encoding a training chunk with the learned ranks gives
the tokens the learner ended with (a test checks this). Because of that, a token's own bytes always encode
to the token itself, so no other pair can ever spell an existing token: no two ids get the same bytes.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from itertools import pairwise

from tqdm.auto import tqdm

Pair = tuple[bytes, bytes]
_END = -1  # the link after a chunk's last token and before its first
_SINGLE_BYTES = [bytes([b]) for b in range(256)]


class MergeLearner:
    """The training state: chunks as linked tokens, pair counts and positions, and the growing ranks.

    `chunk_counts` maps each unique chunk's bytes to how often it occurs. Token ids start as the byte
    values 0..255; the n-th learned token gets id 256 + n.
    """

    def __init__(self, chunk_counts: Mapping[bytes, int]):
        self.ranks: dict[bytes, int] = {token: b for b, token in enumerate(_SINGLE_BYTES)}
        self.tokens: list[bytes | None] = []  # the token starting at each position; None once merged away
        self.following: list[int] = []
        self.preceding: list[int] = []
        self.weight: list[int] = []  # how often the chunk holding each position occurs
        self.chunk_starts: dict[bytes, int] = {}
        self.counts: dict[Pair, int] = {}
        self.positions: dict[Pair, set[int]] = {}  # left position of every occurrence
        self._heap: list[tuple[int, int, int, Pair]] = []
        self._pushed: dict[Pair, int] = {}  # the count in each pair's newest heap entry
        self._changed: set[Pair] = set()
        for chunk, count in chunk_counts.items():
            if chunk:
                self._append_chunk(chunk, count)
        self._changed.update(self.counts)
        self._refresh_heap()

    def _append_chunk(self, chunk: bytes, count: int) -> None:
        start, end = len(self.tokens), len(self.tokens) + len(chunk)
        self.chunk_starts[chunk] = start
        tokens = [_SINGLE_BYTES[b] for b in chunk]
        self.tokens.extend(tokens)
        self.weight.extend([count] * len(chunk))
        self.following.extend(range(start + 1, end + 1))
        self.following[-1] = _END
        self.preceding.extend(range(start - 1, end - 1))
        self.preceding[start] = _END
        for position, pair in enumerate(pairwise(tokens), start):
            if pair in self.counts:
                self.counts[pair] += count
                self.positions[pair].add(position)
            else:
                self.counts[pair] = count
                self.positions[pair] = {position}

    def _add_pair_at(self, left: int) -> None:
        """Count the pair made by the token at `left` and the one after it."""
        pair = (self.tokens[left], self.tokens[self.following[left]])
        if pair in self.counts:
            self.counts[pair] += self.weight[left]
            self.positions[pair].add(left)
        else:
            self.counts[pair] = self.weight[left]
            self.positions[pair] = {left}
        self._changed.add(pair)

    def _remove_pair_at(self, left: int) -> None:
        pair = (self.tokens[left], self.tokens[self.following[left]])
        self.counts[pair] -= self.weight[left]
        self.positions[pair].discard(left)
        self._changed.add(pair)
        if not self.counts[pair]:
            del self.counts[pair], self.positions[pair]

    def _refresh_heap(self) -> None:
        """Push the new count of every pair that changed; outdated heap entries are skipped when popped."""
        for pair in self._changed:
            count = self.counts.get(pair, 0)
            if count and self._pushed.get(pair) != count:
                heapq.heappush(self._heap, (-count, self.ranks[pair[0]], self.ranks[pair[1]], pair))
                self._pushed[pair] = count
            elif not count:
                self._pushed.pop(pair, None)
        self._changed.clear()

    def most_frequent_pair(self) -> Pair | None:
        """The pair to merge next (highest count, then smallest ids), or None when no pair is left."""
        while self._heap:
            negative_count, _, _, pair = self._heap[0]
            if self.counts.get(pair) == -negative_count:
                return pair
            heapq.heappop(self._heap)
        return None

    def _merge_with_following(self, left: int) -> None:
        """Join the token at `left` with the next one, updating the counts of the pairs around them."""
        right = self.following[left]
        before, after = self.preceding[left], self.following[right]
        if before != _END:
            self._remove_pair_at(before)
        self._remove_pair_at(left)
        if after != _END:
            self._remove_pair_at(right)
        self.tokens[left] += self.tokens[right]
        self.tokens[right] = None
        self.following[left] = after
        if after != _END:
            self.preceding[after] = left
            self._add_pair_at(left)
        if before != _END:
            self._add_pair_at(before)

    def merge(self, pair: Pair) -> bytes:
        """Add the token `pair` makes, with the next id, and merge every occurrence. Returns the token."""
        new_token = pair[0] + pair[1]
        self.ranks[new_token] = len(self.ranks)
        for left in sorted(self.positions[pair]):
            # merging the occurrence just before may have consumed this one ("aaa" with ("a", "a"))
            right = self.following[left]
            if right != _END and self.tokens[left] == pair[0] and self.tokens[right] == pair[1]:
                self._merge_with_following(left)
        self._refresh_heap()
        return new_token

    def chunk_tokens(self) -> dict[bytes, list[bytes]]:
        """The current tokens of every unique chunk (equal to encoding it with `ranks`)."""
        result = {}
        for chunk, start in self.chunk_starts.items():
            tokens, position = [], start
            while position != _END:
                tokens.append(self.tokens[position])
                position = self.following[position]
            result[chunk] = tokens
        return result


def learn_merges(chunk_counts: Mapping[bytes, int], num_merges: int, progress: bool = True) -> list[Pair]:
    """Learn up to `num_merges` merges from weighted unique chunks; fewer if the chunks run out of pairs.

    Returns the merged pairs in order: the n-th pair's concatenation is token 256 + n.
    """
    learner = MergeLearner(chunk_counts)
    merges: list[Pair] = []
    with tqdm(total=num_merges, desc="learning BPE merges", unit="merge", disable=not progress) as bar:
        while len(merges) < num_merges and (pair := learner.most_frequent_pair()) is not None:
            learner.merge(pair)
            merges.append(pair)
            bar.update()
    return merges
