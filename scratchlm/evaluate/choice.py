"""Multiple-choice scoring by log-likelihood, the way evaluation harnesses run benchmarks on base models.

A question is a context and a few candidate continuations; the model "answers" with the continuation it finds
most likely: the largest sum of log p(token | everything before it) over the continuation's tokens. The sum
favours short answers (every token costs probability), so harnesses also report a length-normalised choice:
the mean log-probability per token, or per byte of text (lm-evaluation-harness's `acc_norm` divides by the
continuation's length in characters; per byte is the same for ASCII and does not depend on the tokenizer).

`cloze_items` builds such a test from a text without labels: the context is a few lines of the held-out play,
the true answer the line that follows, the distractors lines from elsewhere in it. Chance is 1 / choices;
`fit_bigram` gives the baseline a model with one token of context reaches. `shuffled_line_items` is the positive
control: the true line against the same characters shuffled, which any model that has learned something about the
language passes, so a result at chance on the real test means the test is hard, not that the scoring is broken.

The headline accuracy is the per-byte normalised one (`HEADLINE`): the sum mostly measures option length.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from scratchlm.bigram import BigramLanguageModel
from scratchlm.errors import ConfigError
from scratchlm.evaluate.heldout import scoring, token_nats

NORMALISATIONS = ("sum", "per_token", "per_byte")
HEADLINE = "per_byte"  # the accuracy the card, the lesson and the docs quote


@dataclass(frozen=True)
class ChoiceItem:
    """One question: context token ids, candidate continuations (token ids each), the index of the right one,
    and optionally their texts (for showing the item)."""

    context: list[int]
    options: list[list[int]]
    answer: int
    context_text: str = ""
    option_texts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.context:
            raise ConfigError("a multiple-choice item needs a context of at least one token")
        if len(self.options) < 2 or not all(self.options):
            raise ConfigError("a multiple-choice item needs at least two non-empty options")
        if not 0 <= self.answer < len(self.options):
            raise ConfigError(f"answer {self.answer} is not one of the {len(self.options)} options")


def option_logprobs(
    model: nn.Module, items: Sequence[ChoiceItem], batch_size: int = 64
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per item: (sum of log p over each option's tokens (n_options,), tokens per option (n_options,)).

    Each option is read after its context; a model with `config.block_size` sees at most that many tokens, the
    context cropped from the left. An option longer than block_size is read with `token_nats`'s sliding windows
    (stride half a block), so its later tokens see block_size / 2 to block_size tokens before them.
    Sequences are right-padded into batches: a causal model's predictions never look at the padding after them.
    """
    block_size = getattr(getattr(model, "config", None), "block_size", None)
    rows = []  # (item, option, input ids, number of option tokens)
    sums = [torch.empty(len(item.options), dtype=torch.float64) for item in items]
    for i, item in enumerate(items):
        for j, option in enumerate(item.options):
            sequence = list(item.context) + list(option)
            if block_size is not None and len(option) > block_size:
                nats, _ = token_nats(model, torch.tensor(sequence), max(block_size // 2, 1))
                sums[i][j] = -nats[-len(option) :].double().sum()
                continue
            if block_size is not None:
                sequence = sequence[-(block_size + 1) :]
            rows.append((i, j, sequence, len(option)))
    order = sorted(range(len(rows)), key=lambda r: len(rows[r][2]))  # similar lengths together: less padding
    with scoring(model) as device:
        for b in range(0, len(order), batch_size):
            batch = [rows[r] for r in order[b : b + batch_size]]
            width = max(len(seq) for _, _, seq, _ in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            for r, (_, _, seq, _) in enumerate(batch):
                ids[r, : len(seq)] = torch.tensor(seq)
            logprobs = torch.log_softmax(model(ids[:, :-1].to(device))[0].float(), dim=-1).cpu()  # [t] predicts t+1
            for r, (i, j, seq, k) in enumerate(batch):
                targets = torch.tensor(seq[-k:])
                positions = torch.arange(len(seq) - k - 1, len(seq) - 1)
                sums[i][j] = logprobs[r, positions, targets].double().sum()
    return [(sums[i], torch.tensor([len(o) for o in item.options])) for i, item in enumerate(items)]


@dataclass(frozen=True)
class ChoiceResult:
    """Scores of every option of every item: `logprob` (sum over its tokens), its `tokens` and `bytes`."""

    items: tuple[ChoiceItem, ...]
    logprob: tuple[torch.Tensor, ...]
    tokens: tuple[torch.Tensor, ...]
    bytes: tuple[torch.Tensor, ...]

    def scores(self, normalise: str = "sum") -> list[torch.Tensor]:
        """Each item's option scores: the summed log-probability, or divided by the tokens or bytes."""
        if normalise not in NORMALISATIONS:
            raise ConfigError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
        if normalise == "sum":
            return list(self.logprob)
        lengths = self.tokens if normalise == "per_token" else self.bytes
        return [lp / n for lp, n in zip(self.logprob, lengths, strict=True)]

    def predictions(self, normalise: str = "sum") -> list[int]:
        return [int(s.argmax()) for s in self.scores(normalise)]

    def accuracy(self, normalise: str = "sum") -> float:
        """Share of items whose highest-scoring option is the answer (ties go to the first option)."""
        hits = [p == item.answer for p, item in zip(self.predictions(normalise), self.items, strict=True)]
        return sum(hits) / len(hits)

    @property
    def chance(self) -> float:
        """The accuracy of guessing uniformly: the mean of 1 / options over the items."""
        return sum(1 / len(item.options) for item in self.items) / len(self.items)


def score_choices(
    model: nn.Module, items: Sequence[ChoiceItem], n_bytes: torch.Tensor | None = None, batch_size: int = 64
) -> ChoiceResult:
    """Score every option of every item (`option_logprobs`); n_bytes (`token_bytes(tokenizer)`) gives the
    per-byte normalisation (without it, per_byte equals per_token, i.e. one byte per token)."""
    if not items:
        raise ConfigError("no multiple-choice items to score")
    scored = option_logprobs(model, items, batch_size)
    byte_counts = tuple(
        torch.tensor([int(n_bytes[torch.tensor(o)].sum()) if n_bytes is not None else len(o) for o in item.options])
        for item in items
    )
    return ChoiceResult(tuple(items), tuple(s for s, _ in scored), tuple(n for _, n in scored), byte_counts)


def is_speaker_line(lines: Sequence[str], i: int) -> bool:
    """Whether lines[i] names a play's speaker ("ROMEO:", "First Citizen:", "Pedant:"): it opens a speech, so it
    follows a blank line (or starts the text), ends with a colon and holds at most 5 words. Recognised by its
    place, not its case: Tiny Shakespeare writes some speakers in capitals and others ("Nurse", "Widow",
    "Second Servingman") in title case. Its place alone gives it away as an option, whatever the model knows."""
    line = lines[i]
    return line.endswith(":") and (i == 0 or not lines[i - 1].strip()) and len(line.split()) <= 5


def cloze_items(
    text: str,
    tokenizer: Any,
    n_items: int,
    n_choices: int = 4,
    context_lines: int = 3,
    seed: int = 0,
) -> list[ChoiceItem]:
    """A next-line test built from `text`: which of `n_choices` lines follows these `context_lines` lines?

    The true line and the distractors are spoken lines (not blank, not a speaker's name: `is_speaker_line`), each
    option ends with its newline, and a distractor is a different line drawn from at least 20 lines away. The right
    answer's place among the options is random. Deterministic for a given seed.
    """
    if n_choices < 2 or n_items < 1 or context_lines < 1:
        raise ConfigError(
            f"need n_items >= 1, n_choices >= 2, context_lines >= 1, got {n_items}, {n_choices}, {context_lines}"
        )
    lines = text.split("\n")
    spoken = [i for i, line in enumerate(lines) if line.strip() and not is_speaker_line(lines, i)]
    candidates = [i for i in spoken if i >= context_lines]
    if len(candidates) < n_items or len(spoken) < n_choices + 40:
        raise ConfigError(
            f"the text has {len(spoken)} spoken lines, too few for {n_items} items of {n_choices} choices"
        )
    rng = random.Random(seed)
    items = []
    for i in rng.sample(candidates, n_items):
        truth = lines[i]
        distractors: list[str] = []
        while len(distractors) < n_choices - 1:
            j = rng.choice(spoken)
            if abs(j - i) >= 20 and lines[j] != truth and lines[j] not in distractors:
                distractors.append(lines[j])
        options = distractors[:]
        answer = rng.randrange(n_choices)
        options.insert(answer, truth)
        context = "\n".join(lines[i - context_lines : i]) + "\n"
        option_texts = tuple(o + "\n" for o in options)
        items.append(
            ChoiceItem(
                tokenizer.encode(context), [tokenizer.encode(o) for o in option_texts], answer, context, option_texts
            )
        )
    return items


def shuffled_line_items(items: Sequence[ChoiceItem], tokenizer: Any, seed: int = 0) -> list[ChoiceItem]:
    """The positive control of a cloze test: each item's context with two options, its true line and the same
    characters in a random order (the newline kept at the end), at a random place. Both options have the same
    bytes, so per-byte scores compare like with like; chance is 50 %. A line whose characters cannot be reordered
    into another string (one repeated character) is left out."""
    rng = random.Random(seed)
    out = []
    for item in items:
        truth = item.option_texts[item.answer]
        body = list(truth[:-1])
        if len(set(body)) < 2:
            continue
        shuffled = truth
        while shuffled == truth:
            rng.shuffle(body)
            shuffled = "".join(body) + truth[-1]
        answer = rng.randrange(2)
        texts = [shuffled]
        texts.insert(answer, truth)
        out.append(ChoiceItem(item.context, [tokenizer.encode(t) for t in texts], answer, item.context_text,
                              tuple(texts)))  # fmt: skip
    return out


def fit_bigram(ids: torch.Tensor, vocab_size: int, smoothing: float = 1.0) -> BigramLanguageModel:
    """The bigram model of `ids` by counting: row a of its table is log((count(a, b) + smoothing) / row total).

    This is where lesson 01's gradient-trained bigram model converges (to the counts' log-probabilities), got in
    one pass; add-`smoothing` (Laplace) keeps pairs never seen in training possible.
    """
    ids = torch.as_tensor(ids)
    if ids.dim() != 1 or len(ids) < 2:
        raise ConfigError("a bigram model needs a 1-D sequence of at least 2 token ids")
    if smoothing <= 0:
        raise ConfigError(f"smoothing must be positive (a zero count would be log 0), got {smoothing}")
    counts = torch.zeros(vocab_size * vocab_size, dtype=torch.float64)
    counts.index_add_(0, ids[:-1] * vocab_size + ids[1:], torch.ones(len(ids) - 1, dtype=torch.float64))
    counts = counts.view(vocab_size, vocab_size) + smoothing
    model = BigramLanguageModel(vocab_size)
    with torch.no_grad():
        model.logits_table.weight.copy_((counts / counts.sum(1, keepdim=True)).log())
    return model.eval()
