"""Scoring a model on the task suite: its answers, accuracy per skill with a 95% interval, pass@k.

    items = held_out_items(100)
    scores = task_accuracy(model, tokenizer, items)            # greedy, zero-shot, in the chat format
    scores["reverse"].rate, scores["reverse"].interval          # 0.62, (0.52, 0.71)

An accuracy is a claim about a sample: k right out of n. Its interval is Wilson's score interval, which, unlike
rate ± 1.96 standard errors, stays inside [0, 1] and does not collapse to a point at 0 or n right.
pass@k, the chance that at least one of k samples is right, is estimated without bias from n >= k samples of
which c are right (Chen et al., 2021): 1 - C(n - c, k) / C(n, k).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from scratchlm.errors import ConfigError
from scratchlm.generation import stream
from scratchlm.posttraining.chat import END, prompt_ids
from scratchlm.posttraining.tasks import TaskItem

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for a proportion of `correct` out of `total` (95% by default)."""
    if total <= 0 or not 0 <= correct <= total:
        raise ConfigError(f"need 0 <= correct <= total and total > 0, got {correct} of {total}")
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    # at 0 or all right the bound is exactly 0 or 1; rounding would put it a hair inside
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == total else min(1.0, centre + half)
    return low, high


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from n samples with c correct: 1 - C(n - c, k) / C(n, k)."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ConfigError(f"need 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every draw of k contains a correct one
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))  # C(n-c,k)/C(n,k) as a stable product


@dataclass(frozen=True)
class Accuracy:
    """`correct` right answers out of `total`: `rate` and its 95% Wilson `interval`."""

    correct: int
    total: int

    @property
    def rate(self) -> float:
        return self.correct / self.total

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.total)

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.rate:.0%} [{low:.0%}, {high:.0%}] ({self.correct}/{self.total})"


def accuracy_by_skill(items: Sequence[TaskItem], correct: Sequence[bool]) -> dict[str, Accuracy]:
    """Accuracy of each skill (in the items' order of first appearance) from one verdict per item."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item, ok in zip(items, correct, strict=True):
        tally[item.skill][0] += bool(ok)
        tally[item.skill][1] += 1
    return {skill: Accuracy(c, n) for skill, (c, n) in tally.items()}


@torch.no_grad()
def most_common_answer_accuracy(items: Sequence[TaskItem]) -> dict[str, Accuracy]:
    """Per skill, the accuracy of always giving that skill's most common answer among `items`: the floor a
    model must clear before its accuracy says it learned anything (about 1/4 for `count`'s four answers, one item
    for a skill whose answers are all different)."""
    answers: dict[str, Counter] = defaultdict(Counter)
    for item in items:
        answers[item.skill][item.answer] += 1
    return {skill: Accuracy(c.most_common(1)[0][1], c.total()) for skill, c in answers.items()}


def complete(
    model: nn.Module,
    prompts: Sequence[list[int]],
    stop_id: int,
    max_new_tokens: int = 16,
    temperature: float = 0.0,
    seed: int | None = None,
) -> list[list[int]]:
    """The ids each prompt is continued with, up to (not including) `stop_id` or `max_new_tokens`.

    Prompts of equal length are decoded together as one batch (with the KV cache), so no padding is needed.
    temperature 0 is greedy; with a seed, sampling is reproducible for the same prompts in the same order.
    """
    replies: list[list[int] | None] = [None] * len(prompts)
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_length[len(p)].append(i)
    for group_number, (_, members) in enumerate(sorted(by_length.items())):
        batch = torch.tensor([prompts[i] for i in members], dtype=torch.long)
        rows: list[list[int]] = [[] for _ in members]
        done = [False] * len(members)
        group_seed = None if seed is None else seed + group_number
        for token in stream(model, batch, max_new_tokens, temperature=temperature, seed=group_seed):
            for row, t in enumerate(token[:, 0].tolist()):
                if not done[row]:
                    done[row] = t == stop_id
                    if not done[row]:
                        rows[row].append(t)
            if all(done):
                break
        for i, row in zip(members, rows, strict=True):
            replies[i] = row
    return replies  # type: ignore[return-value]


def answer(
    model: nn.Module,
    tokenizer: Any,
    items: Sequence[TaskItem],
    *,
    prompt: Callable[[TaskItem], list[int]] | None = None,
    stop: int | None = None,
    max_new_tokens: int = 16,
    temperature: float = 0.0,
    seed: int | None = None,
) -> list[str]:
    """The model's reply to each item. By default zero-shot in the chat format (a user turn, then
    `<|assistant|>`, stopping at `<|end|>`); `prompt` and `stop` replace that (a base model's few-shot text
    prompt, stopping at a newline id)."""
    if prompt is None:
        prompt = lambda item: prompt_ids(item.messages()[:1], tokenizer)
        stop = tokenizer.special_id(END)
    if stop is None:
        raise ConfigError("give the stop id that ends a reply along with a prompt function")
    replies = complete(model, [prompt(item) for item in items], stop, max_new_tokens, temperature, seed)
    return [tokenizer.decode(r) for r in replies]


def task_accuracy(model: nn.Module, tokenizer: Any, items: Sequence[TaskItem], **kwargs: Any) -> dict[str, Accuracy]:
    """Accuracy per skill of the model's replies (`answer`, greedy by default) to `items`."""
    replies = answer(model, tokenizer, items, **kwargs)
    return accuracy_by_skill(items, [item.verify(r) for item, r in zip(items, replies, strict=True)])


def pass_at_k_by_skill(
    model: nn.Module, tokenizer: Any, items: Sequence[TaskItem], n: int, k: int, temperature: float = 1.0,
    seed: int = 0, **kwargs: Any,
) -> dict[str, float]:  # fmt: skip
    """Mean unbiased pass@k per skill from `n` samples per item at `temperature`."""
    repeated = [item for item in items for _ in range(n)]
    replies = answer(model, tokenizer, repeated, temperature=temperature, seed=seed, **kwargs)
    per_skill: dict[str, list[float]] = defaultdict(list)
    for j, item in enumerate(items):
        c = sum(item.verify(r) for r in replies[j * n : (j + 1) * n])
        per_skill[item.skill].append(pass_at_k(n, c, k))
    return {skill: sum(v) / len(v) for skill, v in per_skill.items()}
