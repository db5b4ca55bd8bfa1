"""The bigram language model of lesson 01: the next token depends only on the current one."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BigramLanguageModel(nn.Module):
    """A lookup table of next-token logits: row `i` holds the logits that follow token `i`.

    Trained by gradient descent it converges to the log of the normalised bigram count matrix, so its
    best loss is the entropy of the counting model (lesson 01 checks this).
    """

    def __init__(self, vocab_size: int):
        super().__init__()
        if vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}")
        self.vocab_size = vocab_size
        self.logits_table = nn.Embedding(vocab_size, vocab_size)
        nn.init.zeros_(self.logits_table.weight)  # start from the uniform distribution: loss = ln(vocab)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`idx` (B, T) token ids → logits (B, T, vocab) and, given `targets` (B, T), the mean cross-entropy."""
        logits = self.logits_table(idx)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, self.vocab_size), targets.reshape(-1))
        return logits, loss
