"""Sampling quality against diversity: how the temperature and top-p trade one for the other.

Diversity is measured on the samples alone: `distinct_n` (Li et al. 2016) is the share of distinct n-grams
among all n-grams of a set of samples (1 when nothing repeats, near 0 when the samples loop or copy each
other), and `repetition_rate` the share of a sample's n-grams that already occurred earlier in it (greedy
decoding's loops score near 1). Quality needs a judge: `reference_nats` is the mean -ln p of the sampled tokens
under a reference model (a larger checkpoint, ideally), low when the text is what a better model would also
have written. Neither alone is enough: greedy text is very likely and very repetitive, temperature 2 is
diverse and nonsense. `sample_sweep` measures both over a list of settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

from scratchlm.errors import ConfigError
from scratchlm.evaluate.heldout import loss_by_position
from scratchlm.generation import generate


def ngrams(sequence: Sequence[Any], n: int) -> list[tuple[Any, ...]]:
    """The n-grams of a sequence (tokens, characters, words), in order: len(sequence) - n + 1 of them."""
    if n < 1:
        raise ConfigError(f"n must be positive, got {n}")
    return [tuple(sequence[i : i + n]) for i in range(len(sequence) - n + 1)]


def distinct_n(samples: Sequence[Sequence[Any]], n: int) -> float:
    """Distinct n-grams / all n-grams, pooled over `samples` (Li et al. 2016's distinct-n). NaN without n-grams."""
    grams = [g for sample in samples for g in ngrams(sample, n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def repetition_rate(sample: Sequence[Any], n: int) -> float:
    """Share of the sample's n-grams that already occurred earlier in the same sample. NaN without n-grams."""
    seen: set[tuple[Any, ...]] = set()
    repeats = 0
    grams = ngrams(sample, n)
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else float("nan")


def reference_nats(reference: nn.Module, samples: torch.Tensor, prompt_len: int, batch_size: int = 32) -> float:
    """Mean -ln p of the generated tokens (all after the first `prompt_len`) under `reference`.

    samples: (N, prompt_len + M) ids, prompt included. A reference with learned positions reads at most its
    block_size tokens: longer samples are scored with a sliding window (`loss_by_position`, stride a quarter
    block), so every generated token is judged with close to a full context.
    """
    samples = torch.as_tensor(samples)
    if samples.dim() != 2 or not 1 <= prompt_len < samples.size(1):
        raise ConfigError(f"need samples (N, prompt_len + M) with M >= 1 and prompt_len >= 1, got {samples.shape}")
    config = getattr(reference, "config", None)
    context = getattr(config, "block_size", None)
    stride = max(context // 4, 1) if context else None
    losses = loss_by_position(reference, samples, context, stride, batch_size)  # [:, t] predicts token t + 1
    return float(losses[:, prompt_len - 1 :].mean())


@dataclass(frozen=True)
class SamplingSetting:
    """One way to sample: temperature (0 = greedy), optional top-k and top-p."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    @property
    def label(self) -> str:
        parts = ["greedy" if self.temperature == 0 else f"T={self.temperature:g}"]
        if self.top_k is not None:
            parts.append(f"top-k {self.top_k}")
        if self.top_p is not None:
            parts.append(f"top-p {self.top_p:g}")
        return ", ".join(parts)


def sample_sweep(
    model: nn.Module,
    prompts: torch.Tensor,
    settings: Sequence[SamplingSetting],
    max_new_tokens: int,
    reference: nn.Module | None = None,
    seed: int = 0,
    n: int = 3,
) -> list[dict[str, Any]]:
    """Sample continuations of `prompts` (N, P) under each setting and measure them.

    Returns one record per setting: its fields, `label`, `samples` ((N, P + max_new_tokens) ids), `distinct_n`
    and `repetition` (mean `repetition_rate`) of the generated parts in n-grams of tokens, `self_nats` (-ln p
    under the sampling model itself, at temperature 1) and `reference_nats` (under `reference`, if given). Each
    setting draws with the same `seed`.
    """
    prompts = torch.as_tensor(prompts)
    if prompts.dim() != 2 or prompts.size(1) < 1:
        raise ConfigError(f"prompts must be (N, P) ids with P >= 1, got shape {tuple(prompts.shape)}")
    P = prompts.size(1)
    records = []
    for setting in settings:
        out = generate(
            model, prompts, max_new_tokens, setting.temperature, setting.top_k, setting.top_p, seed=seed
        ).cpu()
        generated = out[:, P:].tolist()
        record: dict[str, Any] = {**asdict(setting), "label": setting.label, "samples": out}
        record["distinct_n"] = distinct_n(generated, n)
        record["repetition"] = sum(repetition_rate(g, n) for g in generated) / len(generated)
        record["self_nats"] = reference_nats(model, out, P)
        if reference is not None:
            record["reference_nats"] = reference_nats(reference, out, P)
        records.append(record)
    return records
