"""Rank-based byte-pair merging: the one rule that turns the bytes of a chunk into tokens.

A BPE vocabulary is a table `ranks: bytes -> int` in which every token's rank is also its id, and a token
made later has a higher rank. To encode a chunk we start from its single bytes and repeatedly merge the
adjacent pair whose concatenation has the *lowest* rank (the leftmost such pair on a tie) until no adjacent
pair is a token. This is how tiktoken encodes, and it needs only the table, so the same code serves GPT-2's
and GPT-4's published ranks and the tokenizers we train ourselves (`bpe_train` follows the same rule
while it learns, so training and encoding never disagree).

`recover_merges` goes the other way: it finds, for every token of a rank table, the two earlier tokens
that the rule joins to make it, which is what a file of merges (and a lesson) wants to show.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping

from scratchlm.errors import TokenizerError

Ranks = Mapping[bytes, int]

_NOT_A_TOKEN = 1 << 62  # larger than any rank, so `min` skips pairs that are not tokens
_SHORT_CHUNK = 64  # up to this many bytes the quadratic scan beats the heap's bookkeeping
_SINGLE_BYTES = [bytes([b]) for b in range(256)]


def merge_chunk(data: bytes, ranks: Ranks) -> list[bytes]:
    """Split `data` into tokens by merging the lowest-ranked adjacent pair until none is left.

    Returns the tokens as byte strings; they concatenate back to `data`. Every single byte must be in
    `ranks` for the result to be encodable, which the tokenizer checks once when it is built.
    """
    if len(data) <= _SHORT_CHUNK:
        return _merge_by_scanning(data, ranks.get)
    return _merge_with_heap(data, ranks)


def _merge_by_scanning(data: bytes, rank_of: Callable[[bytes, int], int]) -> list[bytes]:
    """The textbook loop: rank every adjacent pair, merge the best, re-rank its two neighbours.

    `rank_of(token, default)` is `ranks.get`, or a restricted version of it for `recover_merges`. Each step
    is a scan of the chunk (done by `min` and `list.index` in C), so the cost is quadratic in the chunk
    length: ideal for words, hopeless for a megabyte of text without pre-splitting.
    """
    parts = [_SINGLE_BYTES[b] for b in data]
    pair_ranks = [rank_of(parts[i] + parts[i + 1], _NOT_A_TOKEN) for i in range(len(parts) - 1)]
    while pair_ranks:
        best = min(pair_ranks)
        if best == _NOT_A_TOKEN:
            break
        i = pair_ranks.index(best)  # the leftmost pair with the lowest rank
        parts[i] += parts.pop(i + 1)
        del pair_ranks[i]
        if i > 0:
            pair_ranks[i - 1] = rank_of(parts[i - 1] + parts[i], _NOT_A_TOKEN)
        if i < len(pair_ranks):
            pair_ranks[i] = rank_of(parts[i] + parts[i + 1], _NOT_A_TOKEN)
    return parts


def _merge_with_heap(data: bytes, ranks: Ranks) -> list[bytes]:
    """The same merges in O(n log n): a heap of (rank, position) over a linked list of parts.

    Positions are byte offsets of where a part starts, so they keep text order and the heap's tie-break on
    position is the leftmost pair. An entry goes stale when either of its parts has since been merged into
    something else; it is recognised by re-ranking the pair now at that position and skipped.
    """
    rank_of = ranks.get
    parts: list[bytes | None] = [_SINGLE_BYTES[b] for b in data]
    if len(parts) < 2:
        return parts
    following = list(range(1, len(parts) + 1))
    following[-1] = -1
    preceding = list(range(-1, len(parts) - 1))
    heap = [(rank, i) for i in range(len(parts) - 1) if (rank := rank_of(parts[i] + parts[i + 1])) is not None]
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        j = following[i]
        if parts[i] is None or j < 0:
            continue
        merged = parts[i] + parts[j]
        if rank_of(merged) != rank:
            continue
        parts[i], parts[j] = merged, None
        k = following[i] = following[j]
        if k >= 0:
            preceding[k] = i
            if (right := rank_of(merged + parts[k])) is not None:
                heapq.heappush(heap, (right, i))
        h = preceding[i]
        if h >= 0 and (left := rank_of(parts[h] + merged)) is not None:
            heapq.heappush(heap, (left, h))
    return [part for part in parts if part is not None]


def recover_merges(ranks: Ranks, first: int | None = None) -> list[tuple[bytes, bytes]]:
    """For each token of two or more bytes, in rank order, the pair of earlier tokens that forms it.

    `first` stops after that many tokens (to show a few merges of a 100k vocabulary quickly).

    A published rank table (tiktoken's files) lists tokens, not merges. The pair is found by running the
    merge rule on the token's bytes with only lower-ranked tokens allowed: it stops at exactly two parts for
    a token the rule can reach (every token of GPT-2's and GPT-4's tables). A vocabulary could hold a token
    the rule never reaches (the encoder still emits it when a whole chunk equals it); for such a token any
    split into two lower-ranked tokens is recorded: it spells the same bytes, which is all a file needs.
    """
    merges = []
    by_rank = sorted(((t, r) for t, r in ranks.items() if len(t) > 1), key=lambda item: item[1])
    for token, rank in by_rank[:first]:
        splits = [
            (token[:i], token[i:])
            for i in range(1, len(token))
            if ranks.get(token[:i], rank) < rank and ranks.get(token[i:], rank) < rank
        ]
        if not splits:
            raise TokenizerError(f"token {rank} ({token!r}) is not the concatenation of two earlier tokens")
        if len(splits) > 1:
            reached = _merge_by_scanning(token, _ranks_below(ranks, rank))
            if len(reached) == 2:
                splits = [(reached[0], reached[1])]
        merges.append(splits[0])
    return merges


def _ranks_below(ranks: Ranks, limit: int) -> Callable[[bytes, int], int]:
    """`ranks.get` as if only the tokens ranked below `limit` existed."""

    def rank_of(token: bytes, default: int) -> int:
        rank = ranks.get(token, default)
        return rank if rank < limit else default

    return rank_of
