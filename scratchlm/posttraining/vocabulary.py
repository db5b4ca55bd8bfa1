"""Growing a trained GPT's vocabulary: new rows in the embedding (and so in the tied head) for added tokens.

The chat tokens get ids after the base vocabulary (`scratchlm.tokenizers.ExtendedTokenizer`), so the old rows
keep their meaning and the new ones start where a fresh model's would: small random vectors (the GPT's own
initialisation, std 0.02). Each new row is both the new token's input embedding and, the head being tied, its
output direction; until fine-tuning trains them, the new tokens are rarely predicted (their logits are dot
products with small random vectors) and the base model's predictions barely change.

With LoRA the base is frozen, but new tokens must learn their rows: `train_new_rows_only` lets gradients reach
only those rows of the embedding.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from scratchlm.errors import ConfigError
from scratchlm.model import GPT


@torch.no_grad()
def grow_vocabulary(model: GPT, vocab_size: int, seed: int = 0) -> GPT:
    """A copy of `model` with `vocab_size` ids: the old embedding rows copied, the new ones drawn from
    N(0, 0.02^2) with a private generator seeded `seed`. The model's device, dtype and mode are kept."""
    old = model.config.vocab_size
    if vocab_size < old:
        raise ConfigError(f"cannot shrink the vocabulary from {old} to {vocab_size} ids")
    with torch.random.fork_rng(devices=[]):  # the throwaway initialisation leaves the global seed stream alone
        grown = GPT(dataclasses.replace(model.config, vocab_size=vocab_size))
    weight = model.transformer.wte.weight
    grown.to(device=weight.device, dtype=weight.dtype)
    state = model.state_dict()
    new_rows = torch.randn(vocab_size - old, weight.size(1), generator=torch.Generator().manual_seed(seed)) * 0.02
    state["transformer.wte.weight"] = torch.cat([weight, new_rows.to(weight)])
    state["lm_head.weight"] = state["transformer.wte.weight"]
    grown.load_state_dict(state)
    return grown.train(model.training)


def train_new_rows_only(embedding: nn.Embedding, first_new: int) -> torch.utils.hooks.RemovableHandle:
    """Make `embedding` trainable in rows `first_new` onward only: its gradient is zeroed on the older rows
    (tied to the head, the hook sees the sum of both uses). With weight decay 0 those rows then never change."""
    embedding.weight.requires_grad_(True)
    keep = torch.zeros(embedding.num_embeddings, 1, dtype=embedding.weight.dtype, device=embedding.weight.device)
    keep[first_new:] = 1
    return embedding.weight.register_hook(lambda grad: grad * keep)
