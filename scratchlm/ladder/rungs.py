"""The rungs: each lesson's model, built from library pieces at the ladder's width.

Each rung adds one thing to the one before it, so the gap between two rungs is what that thing buys:

    bigram                one lookup table of next-token logits (lesson 01, `scratchlm.bigram`)
    one-head              + token and position embeddings and one causal `Head` of n_embd channels (lesson 02)
    multi-head            the head split into n_head heads with an output projection (`CausalSelfAttention`, 03)
    +mlp                  + the position-wise MLP after the attention, no residuals, no LayerNorm (03)
    +residual+layernorm   the same two sublayers as one Pre-LN `Block` (residual additions, LayerNorms) and a
                          final LayerNorm (03)
    gpt                   the library `GPT`: n_layer blocks, GPT-2 initialisation, tied embedding (04)
    gpt-bpe               the same GPT on a byte-level BPE vocabulary trained on the train split (06)
    tiled-attention       the GPT with lesson 07's tiled online-softmax kernel: the same function, other speed
    rope                  the GPT with rotary position embeddings instead of learned ones (08)
    gqa                   the GPT with n_kv_head < n_head key/value heads (09)

The lesson-02/03 rungs are one layer deep, as those lessons build them; they share `EmbeddedLM`, the frame of
lesson 02's single-head model (embeddings -> body -> output layer) with the body swapped. Every rung trains
with the same recipe (the library's training loop), so only the architecture differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.attention import CausalSelfAttention, Head
from scratchlm.bigram import BigramLanguageModel
from scratchlm.errors import ConfigError
from scratchlm.ladder.budget import LadderBudget
from scratchlm.model import GPT, MLP, Block, GPTConfig


class EmbeddedLM(nn.Module):
    """Token + position embeddings -> `body` -> (a final LayerNorm) -> a linear map to next-token logits.

    Lesson 02's single-head language model with the head replaced by any (B, T, C) -> (B, T, out) body, so
    lessons 02 and 03's models differ only in their body. `config.block_size` is the longest context (and the
    number of learned positions), as for the GPT.
    """

    def __init__(self, config: GPTConfig, body: nn.Module, body_out: int, final_norm: bool = False):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding = nn.Embedding(config.block_size, config.n_embd)
        self.body = body
        self.ln_f = nn.LayerNorm(body_out) if final_norm else nn.Identity()
        self.lm_head = nn.Linear(body_out, config.vocab_size)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`idx` (B, T) -> logits (B, T, vocab) and, given `targets` (B, T), the mean cross-entropy."""
        if idx.shape[1] > self.config.block_size:
            raise ConfigError(f"sequence length {idx.shape[1]} exceeds block_size={self.config.block_size}")
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.token_embedding(idx) + self.position_embedding(positions)
        logits = self.lm_head(self.ln_f(self.body(x)))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class AttentionThenMLP(nn.Module):
    """The two sublayers of a block, one after the other, with no residual additions and no LayerNorm."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


def _one_head(c: GPTConfig) -> nn.Module:
    return EmbeddedLM(c, Head(c.n_embd, c.n_embd, c.block_size), c.n_embd)


def _multi_head(c: GPTConfig) -> nn.Module:
    return EmbeddedLM(c, CausalSelfAttention(c), c.n_embd)


def _attention_mlp(c: GPTConfig) -> nn.Module:
    return EmbeddedLM(c, AttentionThenMLP(c), c.n_embd)


def _residual_layernorm(c: GPTConfig) -> nn.Module:
    return EmbeddedLM(c, Block(c), c.n_embd, final_norm=True)  # Pre-LN: x + attn(LN(x)), + mlp(LN(x))


def _bigram(c: GPTConfig) -> nn.Module:
    model = BigramLanguageModel(c.vocab_size)
    model.config = c  # the window length the ladder trains and scores it with (it could read any length)
    return model


@dataclass(frozen=True)
class Rung:
    """One rung: its name, the lesson that builds its model, what it adds, and how to build it.

    build(config) -> model, from a `GPTConfig` holding the ladder's sizes (vocab_size set); `gpt` rungs are the
    library `GPT` of that config with `changes` applied; `tokenizer` is "char" or "bpe".
    """

    name: str
    lesson: str
    adds: str
    build: Callable[[GPTConfig], nn.Module] = GPT
    layers: str = "one"  # "one" layer, or the budget's n_layer ("n_layer")
    changes: dict[str, Any] = field(default_factory=dict)
    tokenizer: str = "char"

    def model_config(self, budget: LadderBudget, vocab_size: int, block_size: int) -> GPTConfig:
        """The GPTConfig of this rung under `budget` (the lesson-02/03 rungs read only the sizes from it)."""
        config = GPTConfig(
            vocab_size=vocab_size,
            block_size=block_size,
            n_layer=budget.n_layer if self.layers == "n_layer" else 1,
            n_head=budget.n_head,
            n_embd=budget.n_embd,
        )
        changes = {k: (budget.n_kv_head if v == "budget" else v) for k, v in self.changes.items()}
        return config.replace(**changes)


_LADDER = (
    Rung("bigram", "01", "a table of next-token logits", _bigram),
    Rung("one-head", "02", "embeddings + one causal attention head", _one_head),
    Rung("multi-head", "03", "several heads and an output projection", _multi_head),
    Rung("+mlp", "03", "an MLP after the attention", _attention_mlp),
    Rung("+residual+layernorm", "03", "residual additions and LayerNorms (one Pre-LN block)", _residual_layernorm),
    Rung("gpt", "04", "n_layer blocks, GPT-2 init, tied embedding", layers="n_layer"),
    Rung("gpt-bpe", "06", "a byte-level BPE vocabulary", layers="n_layer", tokenizer="bpe"),
    Rung(
        "tiled-attention", "07", "lesson 07's tiled attention kernel", layers="n_layer", changes={"attention": "tiled"}
    ),
    Rung("rope", "08", "rotary position embeddings", layers="n_layer", changes={"pos_embedding": "rope"}),
    Rung(
        "gqa", "09", "grouped-query attention (n_kv_head < n_head)", layers="n_layer", changes={"n_kv_head": "budget"}
    ),
)
LADDER: dict[str, Rung] = {rung.name: rung for rung in _LADDER}
RUNGS: tuple[str, ...] = tuple(LADDER)


def get_rung(name: str) -> Rung:
    """The rung called `name`; a ConfigError naming the rungs otherwise."""
    if name not in LADDER:
        raise ConfigError(f"unknown rung {name!r}; the ladder's rungs are: {', '.join(RUNGS)}")
    return LADDER[name]
