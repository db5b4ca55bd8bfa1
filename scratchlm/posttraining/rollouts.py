"""Rollouts: sampled answers to task items, their rewards, and their log-probabilities under two models.

    rollouts = rollout(policy, reference, tokenizer, items, k=8, max_new_tokens=12, temperature=1.0, seed=0)
    rollouts.rewards.view(len(items), 8)            # one group of k answers per item
    rollouts.logprobs, rollouts.ref_logprobs        # (B, T): per-token log-probs of the answers, 0 elsewhere

Each item's chat prompt is repeated k times and decoded with `complete` (`generate`'s KV cache, prompts of equal
length in one batch). An answer is its ids up to and including `<|end|>`; one cut off by `max_new_tokens` has no
end. Its reward is the verifier's: 1 when the answer is exactly right *and* closed by `<|end|>` (a well-formed
reply), 0 otherwise.

The sequences are laid out as a next-token batch: x = sequence[:-1], y = sequence[1:], right-padded. Right padding
needs no attention mask: a causal model's logits at a position never depend on what comes after it. `mask` is 1
on the answer's targets (what the policy chose), 0 on the prompt and the padding, so every loss in
`scratchlm.posttraining.grpo` and `.dpo` is a masked sum over the tokens the policy produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.errors import ConfigError
from scratchlm.posttraining.chat import END, prompt_ids
from scratchlm.posttraining.scoring import complete
from scratchlm.posttraining.tasks import TaskItem


def token_logprobs(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log p(y_t | x_<=t) for every position: x, y (B, T) ids -> (B, T) float32 (gradients flow if enabled)."""
    logits, _ = model(x)
    return torch.gather(F.log_softmax(logits.float(), dim=-1), -1, y.unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class SequenceBatch:
    """Prompts followed by answers as a next-token batch. x, y, mask: (B, T); mask is 1.0 on the answer's targets."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor

    @property
    def answer_lengths(self) -> torch.Tensor:
        """(B,) the number of answer tokens of each sequence (its `<|end|>` included)."""
        return self.mask.sum(dim=1)


def sequence_batch(prompts: Sequence[list[int]], answers: Sequence[list[int]], pad_id: int = 0) -> SequenceBatch:
    """The next-token batch of prompt + answer sequences, right-padded with `pad_id` (masked out)."""
    if len(prompts) != len(answers) or not prompts:
        raise ConfigError(f"need as many answers as prompts (and at least one), got {len(prompts)} and {len(answers)}")
    length = max(len(p) + len(a) for p, a in zip(prompts, answers, strict=True)) - 1
    x = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    y = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), length)
    for row, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        seq = torch.tensor([*p, *a], dtype=torch.long)
        x[row, : len(seq) - 1] = seq[:-1]
        y[row, : len(seq) - 1] = seq[1:]
        mask[row, len(p) - 1 : len(seq) - 1] = 1.0  # targets len(p) .. end are the answer
    return SequenceBatch(x, y, mask)


@torch.no_grad()
def masked_logprobs(model: nn.Module, batch: SequenceBatch) -> torch.Tensor:
    """(B, T) per-token log-probs of the batch's answers under `model` (eval mode, no gradient), 0 off the mask."""
    was_training = model.training
    model.eval()
    try:
        return token_logprobs(model, batch.x, batch.y) * batch.mask
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class Rollouts:
    """k answers to each of the items, in item order (the k of item i are rows i*k .. i*k + k - 1).

    batch: the sequences. logprobs / ref_logprobs: (B, T) per-token log-probs under the policy that sampled them
    and under the frozen reference (0 off the mask). rewards, correct, ended: (B,). texts: the decoded answers.
    """

    items: tuple[TaskItem, ...]
    k: int
    batch: SequenceBatch
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    rewards: torch.Tensor
    correct: torch.Tensor
    ended: torch.Tensor
    texts: tuple[str, ...]

    @property
    def group_rewards(self) -> torch.Tensor:
        """(len(items), k): the rewards of each item's group."""
        return self.rewards.view(len(self.items), self.k)


def rollout(
    policy: nn.Module,
    reference: nn.Module,
    tokenizer: Any,
    items: Sequence[TaskItem],
    *,
    k: int,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    seed: int | None = None,
) -> Rollouts:
    """Sample k answers per item from `policy` in the chat format; score them and take both models' log-probs."""
    if k < 1 or not items:
        raise ConfigError(f"a rollout needs k >= 1 answers of at least one item, got k={k} and {len(items)} items")
    end = tokenizer.special_id(END)
    prompts = [prompt_ids(item.messages()[:1], tokenizer) for item in items for _ in range(k)]
    replies = complete(policy, prompts, end, max_new_tokens, temperature, seed)
    # `complete` drops the stop id; an answer shorter than the budget stopped at it
    ended = [len(r) < max_new_tokens for r in replies]
    answers = [[*r, end] if e else list(r) for r, e in zip(replies, ended, strict=True)]
    texts = tuple(tokenizer.decode(r) for r in replies)
    correct = [e and items[i // k].verify(t) for i, (t, e) in enumerate(zip(texts, ended, strict=True))]
    batch = sequence_batch(prompts, answers)
    return Rollouts(
        items=tuple(items),
        k=k,
        batch=batch,
        logprobs=masked_logprobs(policy, batch),
        ref_logprobs=masked_logprobs(reference, batch),
        rewards=torch.tensor(correct, dtype=torch.float32),
        correct=torch.tensor(correct),
        ended=torch.tensor(ended),
        texts=texts,
    )
