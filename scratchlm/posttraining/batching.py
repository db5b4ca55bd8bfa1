"""Batches of conversations for fine-tuning: by padding, or by packing several into one window.

Every conversation becomes inputs and targets of its own length L (`example`): x = its ids, y[t] = ids[t + 1]
where the loss mask says that token is to be learned, else -1 (ignored by the loss), and y[L - 1] = -1. The
loss of a batch is then the mean over its learned tokens, however they are laid out.

Padding (`pad_batch`): one conversation per row, rows filled to the longest with a pad id whose targets are -1.
The pads sit after the real tokens (right padding), and causal attention never looks forward, so no real
position sees a pad: no attention mask is needed. The price is the compute spent on pads.

Packing (`pack`, `packed_batch`): conversations laid end to end in windows of `block_size` tokens, few pads.
Now a conversation would attend to the ones before it in its window, so each row carries document ids and the
attention mask is block-diagonal: a token sees the earlier tokens of its own conversation only. With rotary
position embeddings (relative positions) a packed conversation then gets exactly the logits it would get alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from scratchlm.errors import ConversationError
from scratchlm.posttraining.chat import Rendered

IGNORE = -1  # the target id the GPT's cross-entropy ignores


def example(rendered: Rendered) -> tuple[list[int], list[int]]:
    """(x, y) of one conversation, each of its length: y[t] = ids[t + 1] where learned, else -1."""
    ids, mask = rendered.ids, rendered.mask
    targets = [ids[t + 1] if mask[t + 1] else IGNORE for t in range(len(ids) - 1)]
    return list(ids), [*targets, IGNORE]


def check_length(rendered: Rendered, block_size: int, where: str = "a conversation") -> None:
    """Refuse (a one-line ConversationError) a conversation longer than the context: cutting it would cut an
    answer off from its question, so it is never truncated silently."""
    if len(rendered.ids) > block_size:
        raise ConversationError(
            f"{where} is {len(rendered.ids)} tokens long, more than the model's context of {block_size}: it is "
            "refused, not truncated; shorten it or drop it from the data"
        )


def pad_batch(conversations: Sequence[Rendered], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x, y (B, L) for B conversations, L the longest: right-padded with `pad_id` (targets -1)."""
    length = max(len(c.ids) for c in conversations)
    x = torch.full((len(conversations), length), pad_id, dtype=torch.long)
    y = torch.full((len(conversations), length), IGNORE, dtype=torch.long)
    for row, conversation in enumerate(conversations):
        ids, targets = example(conversation)
        x[row, : len(ids)] = torch.tensor(ids)
        y[row, : len(ids)] = torch.tensor(targets)
    return x, y


def pack(conversations: Sequence[Rendered], block_size: int) -> list[list[Rendered]]:
    """Group conversations, in order, into windows of at most `block_size` tokens: each goes into the current
    window if it fits, else starts the next one (each must fit alone: `check_length`)."""
    windows: list[list[Rendered]] = []
    used = block_size  # no window open yet
    for conversation in conversations:
        check_length(conversation, block_size)
        if used + len(conversation.ids) > block_size:
            windows.append([])
            used = 0
        windows[-1].append(conversation)
        used += len(conversation.ids)
    return windows


def packed_batch(
    windows: Sequence[Sequence[Rendered]], block_size: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, y, document ids, each (B, block_size), for B windows of packed conversations.

    Document ids number the conversations of a row 0, 1, ...; the pads at a row's end get -1 (targets -1),
    a document of their own that no real token attends to.
    """
    x = torch.full((len(windows), block_size), pad_id, dtype=torch.long)
    y = torch.full((len(windows), block_size), IGNORE, dtype=torch.long)
    documents = torch.full((len(windows), block_size), -1, dtype=torch.long)
    for row, window in enumerate(windows):
        start = 0
        for number, conversation in enumerate(window):
            ids, targets = example(conversation)
            end = start + len(ids)
            if end > block_size:
                raise ConversationError(f"window {row} holds {end} tokens, more than block_size={block_size}")
            x[row, start:end], y[row, start:end] = torch.tensor(ids), torch.tensor(targets)
            documents[row, start:end] = number
            start = end
    return x, y, documents
