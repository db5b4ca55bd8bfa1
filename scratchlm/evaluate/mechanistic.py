"""Looking inside a trained GPT: attention patterns, induction heads and the logit lens.

The model runs attention in a fused kernel that never materialises the (T, T) matrix of weights, so the
patterns are recomputed from what goes into it: a forward hook on each block's `attn.c_attn` (the Linear that
makes queries, keys and values) records its output, and `attention_capture` redoes the few steps between that
Linear and the kernel (split into heads, RoPE on q and k, the causal softmax(q k^T / sqrt(D)), grouped-query
heads shared) in the open. The tests check that these weights times the values, through `c_proj`, give exactly
what the block's attention returned, so the picture is the computation the model ran.

- Induction heads (Elhage et al. 2021, Olsson et al. 2022): on a random token sequence repeated twice, a head
  that has learned "find the previous occurrence of the current token and attend to the token after it"
  puts its weight on position t - half + 1 when reading position t of the second copy, and the model's loss on
  the second copy drops far below the first (it copies). `induction_score` measures both.
- The logit lens (nostalgebraist 2020): decode the residual stream after every block through the final
  LayerNorm and the output head, as if the model ended there, to see at which depth the prediction forms.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.errors import ConfigError
from scratchlm.evaluate.heldout import scoring
from scratchlm.rope import apply_rope, rope_cache


@dataclass(frozen=True)
class AttentionRecord:
    """One block's attention on one input: q (B, H, T, D) after RoPE, k and v (B, H_kv, T, D) (k after RoPE),
    and the weights `pattern` (B, H, T, T), row t over the positions 0 .. t it may see."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    pattern: torch.Tensor


@contextmanager
def _capture_outputs(modules: list[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """Record the output of each module on the next forward pass (hooks removed afterwards)."""
    outputs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _args, out: outputs.append(out)) for m in modules]
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()


def _blocks(model: nn.Module) -> nn.ModuleList:
    transformer = getattr(model, "transformer", None)
    if transformer is None or "h" not in transformer:
        raise ConfigError(f"{type(model).__name__} is not a scratchlm GPT (it has no transformer.h blocks)")
    return transformer.h


def causal_softmax(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) with the causal mask: q (B, H, T, D), k (B, H_kv, T, D) -> (B, H, T, T).

    With H_kv < H each key head serves H // H_kv consecutive query heads (grouped-query attention)."""
    group = q.size(1) // k.size(1)
    if group > 1:
        k = k.repeat_interleave(group, dim=1)
    T = q.size(2)
    scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.size(-1))
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def attention_capture(model: nn.Module, idx: torch.Tensor) -> tuple[list[AttentionRecord], torch.Tensor]:
    """Run `model` on idx (B, T) (T <= block_size) and return every block's `AttentionRecord`, and the logits."""
    blocks = _blocks(model)
    config = model.config
    idx = torch.as_tensor(idx)
    T = idx.size(-1)
    if config.block_size < T:
        raise ConfigError(f"attention patterns are recomputed for at most block_size={config.block_size} tokens")
    H, H_kv, D = config.n_head, config.kv_heads, config.head_size
    with scoring(model) as device, _capture_outputs([b.attn.c_attn for b in blocks]) as outputs:
        logits = model(idx.to(device))[0]
    records = []
    for qkv in outputs:
        B = qkv.size(0)
        q, k, v = qkv.split((H * D, H_kv * D, H_kv * D), dim=2)
        q = q.view(B, T, H, D).transpose(1, 2)
        k = k.view(B, T, H_kv, D).transpose(1, 2)
        v = v.view(B, T, H_kv, D).transpose(1, 2)
        if config.pos_embedding == "rope":
            cos, sin = rope_cache(D, T, config.rope_base, q.device)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        records.append(AttentionRecord(q, k, v, causal_softmax(q, k)))
    return records, logits


def attention_patterns(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """The attention weights of every block and head: idx (B, T) -> (n_layer, B, H, T, T), on the CPU."""
    records, _ = attention_capture(model, idx)
    return torch.stack([r.pattern.cpu() for r in records])


def head_summary(patterns: torch.Tensor) -> dict[str, torch.Tensor]:
    """What each head attends to, averaged over the batch and the positions t >= 1: patterns (L, B, H, T, T)
    -> dict of (L, H): `previous` (weight on t - 1), `self` (on t), `first` (on position 0) and `distance`
    (the mean of t - s under the weights: how far back the head looks)."""
    T = patterns.size(-1)
    if T < 2:
        raise ConfigError("head statistics need at least 2 positions")
    t = torch.arange(1, T)
    rows = patterns[..., 1:, :]  # (L, B, H, T - 1, T): queries 1 .. T - 1
    offsets = (torch.arange(T)[None, :] - torch.arange(T)[:, None]).neg().clamp(min=0).float()  # [t, s] = t - s
    return {
        "previous": rows[..., torch.arange(T - 1), t - 1].mean(dim=(1, 3)),
        "self": rows[..., torch.arange(T - 1), t].mean(dim=(1, 3)),
        "first": rows[..., 0].mean(dim=(1, 3)),
        "distance": (rows * offsets[1:]).sum(-1).mean(dim=(1, 3)),
    }


def repeated_random_tokens(vocab: int | torch.Tensor, half: int, batch: int, seed: int = 0) -> torch.Tensor:
    """(batch, 2 * half) ids: each row a random sequence of `half` tokens followed by the same sequence again.

    vocab: draw from ids 0 .. vocab - 1, or from the ids in a 1-D tensor (say, a character model's letters, so
    that the sequence is odd but not made of symbols the model has hardly seen). Within a copy the tokens are
    distinct when half <= the number of ids (drawn without replacement), so every token of the second copy has
    exactly one previous occurrence and "the token after it" is unambiguous.
    """
    choices = torch.arange(vocab) if isinstance(vocab, int) else torch.as_tensor(vocab).flatten()
    if half < 2 or len(choices) < 2 or batch < 1:
        raise ConfigError(f"need half >= 2, at least 2 ids, batch >= 1, got {half}, {len(choices)}, {batch}")
    g = torch.Generator().manual_seed(seed)
    if half <= len(choices):
        picks = torch.stack([torch.randperm(len(choices), generator=g)[:half] for _ in range(batch)])
    else:
        picks = torch.randint(0, len(choices), (batch, half), generator=g)
    first = choices[picks]
    return torch.cat((first, first), dim=1)


def induction_attention(patterns: torch.Tensor, half: int) -> torch.Tensor:
    """Per head, the mean weight that queries of the second copy put on the token after their previous
    occurrence: patterns (L, B, H, 2 * half, 2 * half) -> (L, H). 1 is a perfect induction head; a head that
    spreads its weight evenly gets about mean(1 / (t + 1)) over the second copy's positions t."""
    t = torch.arange(half, 2 * half)
    return patterns[..., t, t - half + 1].mean(dim=(1, 3))


@dataclass(frozen=True)
class InductionResult:
    """`induction_score`'s measurements: the loss (nats) on the first and second copy, the loss at each
    position (2 * half - 1,), and per head (n_layer, n_head) the induction and previous-token attention."""

    loss_first: float
    loss_second: float
    loss_by_position: torch.Tensor
    scores: torch.Tensor
    previous_token: torch.Tensor

    @property
    def max_score(self) -> float:
        return float(self.scores.max())

    @property
    def loss_drop(self) -> float:
        """How much better the model predicts the second copy than the first (nats per token)."""
        return self.loss_first - self.loss_second


def induction_score(
    model: nn.Module,
    half: int | None = None,
    batch: int = 32,
    seed: int = 0,
    vocab: int | torch.Tensor | None = None,
    first_copies: torch.Tensor | None = None,
) -> InductionResult:
    """Run `model` on sequences repeated twice and measure its induction behaviour.

    By default the sequences are random tokens (`repeated_random_tokens`: `batch` of them, `half` tokens long,
    default block_size // 2, drawn from `vocab`, default the whole vocabulary); `first_copies` (B, half) gives
    them instead (a snippet of real text, say). The first copy is predictable only as far as the model knows
    the language; the second also by copying. loss_first averages the predictions of tokens 1 .. half - 1,
    loss_second those of tokens half + 1 .. 2 * half - 1 (token half, the second copy's first, cannot be
    inferred). The attention target of query t in the second copy is t - half + 1, the position after the same
    place in the first copy.
    """
    config = model.config
    if first_copies is not None:
        first_copies = torch.as_tensor(first_copies)
        if first_copies.dim() != 2 or first_copies.size(1) < 2:
            raise ConfigError(f"first_copies must be (B, half) ids with half >= 2, got {tuple(first_copies.shape)}")
        half = first_copies.size(1)
    half = half or config.block_size // 2
    if 2 * half > config.block_size:
        raise ConfigError(f"two copies of {half} tokens do not fit block_size={config.block_size}")
    if first_copies is not None:
        ids = torch.cat((first_copies, first_copies), dim=1)
    else:
        ids = repeated_random_tokens(config.vocab_size if vocab is None else vocab, half, batch, seed)
    records, logits = attention_capture(model, ids)
    losses = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:].to(logits.device), reduction="none")
    by_position = losses.mean(0).cpu()  # [t] predicts token t + 1
    patterns = torch.stack([r.pattern.cpu() for r in records])
    return InductionResult(
        loss_first=float(by_position[: half - 1].mean()),
        loss_second=float(by_position[half:].mean()),
        loss_by_position=by_position,
        scores=induction_attention(patterns, half),
        previous_token=head_summary(patterns)["previous"],
    )


def logit_lens(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """The residual stream after the embedding and after every block, decoded through the final LayerNorm and
    the output head: idx (B, T) -> logits (n_layer + 1, B, T, V). The last entry is the model's own output."""
    blocks = _blocks(model)
    with scoring(model) as device, _capture_outputs([model.transformer.drop, *blocks]) as streams:
        model(torch.as_tensor(idx).to(device))
        return torch.stack([model.lm_head(model.transformer.ln_f(x)).float() for x in streams])


def logit_lens_nats(model: nn.Module, windows: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Mean cross-entropy of the logit lens at each depth: windows (N, T + 1) ids -> (n_layer + 1,) nats;
    depth 0 is the embedding alone (a bigram-like guess), the last is the model's own loss."""
    windows = torch.as_tensor(windows)
    if windows.dim() != 2 or windows.size(1) < 2:
        raise ConfigError(f"windows must be (N, T + 1) token ids, got shape {tuple(windows.shape)}")
    total = torch.zeros(len(_blocks(model)) + 1, dtype=torch.float64)
    for chunk in windows.split(batch_size):
        lens = logit_lens(model, chunk[:, :-1])  # (L + 1, B, T, V)
        targets = chunk[:, 1:].to(lens.device).expand(lens.size(0), -1, -1)
        ce = F.cross_entropy(lens.flatten(0, 2), targets.flatten(), reduction="none").view(lens.shape[:3])
        total += ce.sum(dim=(1, 2)).double().cpu()
    return (total / (windows.size(0) * (windows.size(1) - 1))).float()
