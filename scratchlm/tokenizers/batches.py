"""Texts in batches: how a tokenizer encodes a stream of texts of any length in bounded memory (`encode_iter`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

ENCODE_BATCH_CHARS = 1 << 20  # texts are encoded in batches of about 1 MB: one chunk table per batch


def batches_of_texts(texts: Iterable[str], batch_chars: int = ENCODE_BATCH_CHARS) -> Iterator[list[str]]:
    """Consecutive texts of `texts` grouped into lists of about `batch_chars` characters (a longer text is a
    batch of its own), read lazily: what `encode_iter` holds in memory at once."""
    batch, size = [], 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if size >= batch_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
