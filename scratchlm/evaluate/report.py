"""A report card for one trained model: what the `eval` command computes, prints and writes.

    card = report_card(model, tokenizer, train_text, val_text, EvalConfig())
    print(format_card(card)); write_report(card, "eval/")

Five numbers, one per question the lesson asks: bits per byte on the held-out text (how much it knows, in a
unit every tokenizer shares), the expected calibration error of its next-token probabilities (how well it
knows what it knows), accuracy on a next-line cloze test against chance and a bigram model, with a positive
control (whether it uses more than one token of context), the best induction score of its heads (whether it
has learned to copy), and the novelty of its samples (whether it writes or recites).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from scratchlm.errors import ConfigError
from scratchlm.evaluate.calibration import next_token_predictions
from scratchlm.evaluate.choice import (
    HEADLINE,
    NORMALISATIONS,
    cloze_items,
    fit_bigram,
    score_choices,
    shuffled_line_items,
)
from scratchlm.evaluate.heldout import bits_per_byte, token_bytes, token_nats
from scratchlm.evaluate.mechanistic import attention_patterns, head_summary, induction_score
from scratchlm.evaluate.novelty import TrainingTextIndex
from scratchlm.files import atomic_write, output_folder
from scratchlm.generation import generate
from scratchlm.memory import check_fits, sampling_bytes
from scratchlm.options import POSITIVE_INT, TEXT, check_options, number, option, optional

REPORT_FILENAME = "report.json"
_PROBABILITY = number("in (0, 1)", lambda v: 0 < v < 1)


@dataclass(frozen=True)
class EvalConfig:
    """What the report card measures, and on how much. The defaults take about half a minute for the cpu-preset
    model on one CPU thread."""

    data: str | None = option(
        None,
        "the text to evaluate on: a data name or UTF-8 file (default: the checkpoint's training data)",
        optional(TEXT),
        metavar="NAME|PATH",
    )
    val_fraction: float | None = option(
        None, "held-out share of the data, its end (default: the checkpoint's)", optional(_PROBABILITY)
    )
    max_tokens: int = option(200_000, "score at most this many held-out tokens (its start)", POSITIVE_INT)
    stride: int | None = option(
        None,
        "windows advance by this many tokens (default: half the block, so contexts are long)",
        optional(POSITIVE_INT),
    )
    bins: int = option(10, "confidence bins of the reliability diagram and ECE", POSITIVE_INT)
    cloze_items: int = option(
        600, "questions of the next-line cloze test (600: a standard error near 1.8 points)", POSITIVE_INT
    )
    cloze_choices: int = option(4, "options per question (the true line and distractors)", POSITIVE_INT)
    cloze_lines: int = option(2, "lines of context before the line to pick", POSITIVE_INT)
    samples: int = option(8, "samples drawn for the novelty check", POSITIVE_INT)
    sample_tokens: int = option(200, "tokens per sample", POSITIVE_INT)
    temperature: float = option(1.0, "sampling temperature of the novelty check", number("> 0", lambda v: v > 0))
    novelty_n: int = option(
        10, "a sample's character n-grams of this length are checked against training", POSITIVE_INT
    )
    induction_batch: int = option(32, "repeated random sequences for the induction score", POSITIVE_INT)
    seed: int = option(
        0,
        "seed of the cloze items, samples and random sequences (not the training seed: the same items for every model)",
        number("in [0, 2**64)", lambda v: 0 <= v < 2**64),
    )

    def __post_init__(self) -> None:
        check_options(self)
        if self.cloze_choices < 2:
            raise ConfigError(f"cloze_choices must be at least 2, got {self.cloze_choices}")


def check_sizes(config: EvalConfig, model_config: Any, tokenizer: Any, device: torch.device) -> None:
    """Refuse what cannot work before anything runs (`scratchlm.memory`, as `train` does): more confidence bins
    than scored tokens, samples or induction sequences that cannot fit in memory, an n-gram longer than any sample
    can be."""
    if config.bins > config.max_tokens:
        raise ConfigError(f"bins={config.bins:,} is more than the {config.max_tokens:,} tokens scored (max_tokens)")
    check_fits(3 * 8 * config.bins, device, f"{config.bins:,} confidence bins")
    T = model_config.block_size
    kept = config.samples * config.sample_tokens * 8  # the samples' ids, then their text
    check_fits(sampling_bytes(model_config, config.samples, T + config.sample_tokens) + kept, device,
               f"{config.samples:,} samples of {config.sample_tokens:,} tokens")  # fmt: skip
    attention = config.induction_batch * model_config.n_layer * model_config.n_head * T * T * 4
    check_fits(sampling_bytes(model_config, config.induction_batch, T) + attention, device,
               f"{config.induction_batch:,} induction sequences")  # fmt: skip
    longest = config.sample_tokens * int(token_bytes(tokenizer).max())
    if config.novelty_n > longest:
        raise ConfigError(
            f"novelty_n={config.novelty_n:,} is longer than a sample of {config.sample_tokens:,} tokens can be "
            f"({longest:,} characters at most): no n-gram to check"
        )


def _first_token_ids(tokenizer: Any, text: str) -> list[int]:
    ids = tokenizer.encode(text[:1]) if text else []
    return ids or [0]


def induction_vocab(tokenizer: Any) -> torch.Tensor:
    """The ids the induction test draws from: a character tokenizer's letters (random symbols and digits are
    rare enough in training to be a test of their own), any other tokenizer's whole vocabulary."""
    chars = getattr(tokenizer, "chars", None)
    if chars is not None:
        letters = [i for i, c in enumerate(chars) if c.isalpha()]
        if len(letters) >= 2:
            return torch.tensor(letters)
    return torch.arange(tokenizer.vocab_size)


def cloze_card(
    model: nn.Module, bigram: nn.Module, tokenizer: Any, val_text: str, config: EvalConfig, n_bytes: torch.Tensor
) -> dict[str, Any]:
    """The cloze section of the card, one definition for the card, lesson 12 and the docs: `config.cloze_items`
    items of `config.cloze_choices` options after `config.cloze_lines` lines of `val_text`, drawn with
    `config.seed` (0 by default, whatever seed trained the model); the headline is the per-byte accuracy
    (`HEADLINE`), with its standard error near chance; the model and the counted `bigram` scored on the same items
    and on the positive control (true line against its characters shuffled)."""
    items = cloze_items(val_text, tokenizer, config.cloze_items, config.cloze_choices, config.cloze_lines, config.seed)
    control = shuffled_line_items(items, tokenizer, config.seed)
    scored = {name: (score_choices(m, items, n_bytes), score_choices(m, control, n_bytes))
              for name, m in (("model", model), ("bigram", bigram))}  # fmt: skip
    chance = scored["model"][0].chance
    return {
        "items": len(items),
        "choices": config.cloze_choices,
        "context_lines": config.cloze_lines,
        "seed": config.seed,
        "headline": HEADLINE,
        "chance": chance,
        "standard_error_at_chance": math.sqrt(chance * (1 - chance) / len(items)),
        "accuracy": {k: scored["model"][0].accuracy(k) for k in NORMALISATIONS},
        "bigram_accuracy": {k: scored["bigram"][0].accuracy(k) for k in NORMALISATIONS},
        "control": {
            "items": len(control),
            "accuracy": scored["model"][1].accuracy(HEADLINE),
            "bigram_accuracy": scored["bigram"][1].accuracy(HEADLINE),
        },
    }


def report_card(
    model: nn.Module,
    tokenizer: Any,
    train_text: str,
    val_text: str,
    config: EvalConfig | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Measure `model` on the held-out `val_text` (its tokenizer's text) and its samples against `train_text`.

    Returns plain data (the JSON of `write_report`), plus "_figures" data for the plots: `Reliability`,
    `InductionResult` and attention patterns, which `write_report` draws and leaves out of the JSON.
    """
    config = config or EvalConfig()
    start = time.perf_counter()
    block_size = model.config.block_size
    val_ids = torch.tensor(tokenizer.encode(val_text), dtype=torch.long)[: config.max_tokens]
    if len(val_ids) <= block_size:
        raise ConfigError(
            f"the held-out text has {len(val_ids)} tokens, too few to score with windows of block_size={block_size}; "
            "use more text (--data) or a larger --val-fraction"
        )
    stride = config.stride or max(block_size // 2, 1)
    if stride > block_size:
        raise ConfigError(f"--stride {stride} is larger than the model's block_size={block_size}")
    desc = "held-out" if progress else None
    n_bytes = token_bytes(tokenizer)
    nats, _ = token_nats(model, val_ids, stride, desc=desc)
    card: dict[str, Any] = {
        "heldout": {
            "tokens": len(val_ids),
            "bytes": int(n_bytes[val_ids].sum()),
            "stride": stride,
            "nats_per_token": float(nats.mean()),
            "bits_per_byte": bits_per_byte(nats, val_ids, n_bytes),
        }
    }

    predictions = next_token_predictions(model, val_ids, stride)
    reliability = predictions.reliability(config.bins)
    card["calibration"] = {
        "ece": reliability.ece,
        "max_gap": reliability.max_gap,
        "overconfidence": reliability.overconfidence,
        "top1_accuracy": predictions.accuracy,
        "mean_confidence": float(predictions.confidence.mean()),
        "bins": {
            "edges": reliability.edges.tolist(),
            "confidence": [None if math.isnan(v) else v for v in reliability.confidence.tolist()],
            "accuracy": [None if math.isnan(v) else v for v in reliability.accuracy.tolist()],
            "count": reliability.count.tolist(),
        },
    }

    train_ids = torch.tensor(tokenizer.encode(train_text), dtype=torch.long)
    card["cloze"] = cloze_card(model, fit_bigram(train_ids, tokenizer.vocab_size), tokenizer, val_text, config, n_bytes)

    induction = induction_score(model, batch=config.induction_batch, seed=config.seed, vocab=induction_vocab(tokenizer))
    best = divmod(int(induction.scores.argmax()), induction.scores.size(1))
    card["induction"] = {
        "half": block_size // 2,
        "loss_first": induction.loss_first,
        "loss_second": induction.loss_second,
        "max_score": induction.max_score,
        "best_head": list(best),
        "scores": induction.scores.tolist(),
        "previous_token": induction.previous_token.tolist(),
    }

    prompt = torch.tensor([_first_token_ids(tokenizer, val_text)] * config.samples, dtype=torch.long)
    out = generate(model, prompt, config.sample_tokens, config.temperature, seed=config.seed)
    texts = [tokenizer.decode(row[prompt.size(1) :].tolist()) for row in out.cpu()]
    index = TrainingTextIndex(train_text)
    matches = [index.longest_match(t) for t in texts]
    novel = [index.novel_fraction(t, config.novelty_n) for t in texts]
    novel = [v for v in novel if not math.isnan(v)]
    longest = max(matches, key=len)
    card["novelty"] = {
        "samples": config.samples,
        "tokens_per_sample": config.sample_tokens,
        "temperature": config.temperature,
        "n": config.novelty_n,
        "novel_ngram_fraction": sum(novel) / len(novel) if novel else None,
        "longest_match_chars": {"mean": sum(map(len, matches)) / len(matches), "max": len(longest)},
        "longest_match": longest.text,
        "sample": texts[0],
    }

    snippet = val_ids[:block_size][None]
    patterns = attention_patterns(model, snippet)
    summary = head_summary(patterns)
    card["heads"] = {name: values.tolist() for name, values in summary.items()}
    card["elapsed_s"] = time.perf_counter() - start
    card["config"] = asdict(config)
    card["_figures"] = {
        "reliability": reliability,
        "induction": induction,
        "patterns": patterns,
        "labels": [tokenizer.decode([i]) for i in snippet[0].tolist()],
    }
    return card


def format_card(card: dict[str, Any]) -> str:
    """The card as a few lines of text, one per question."""
    h, c, z, i, n = (card[k] for k in ("heldout", "calibration", "cloze", "induction", "novelty"))
    side = "over" if c["overconfidence"] > 0 else "under"
    lines = [
        f"held-out     {h['bits_per_byte']:.3f} bits per byte ({h['tokens']:,} tokens, "
        f"{h['nats_per_token']:.3f} nats per token, stride {h['stride']})",
        f"calibration  ECE {c['ece']:.3f} ({side}-confident by {abs(c['overconfidence']):.3f} on average; "
        f"top-1 accuracy {c['top1_accuracy']:.1%} at mean confidence {c['mean_confidence']:.1%})",
        f"cloze        {z['accuracy'][HEADLINE]:.1%} per byte (summed {z['accuracy']['sum']:.1%}) on {z['items']} "
        f"items, seed {z['seed']} (standard error near chance {z['standard_error_at_chance']:.1%}); chance "
        f"{z['chance']:.1%}, bigram {z['bigram_accuracy'][HEADLINE]:.1%}; control, the true line against it "
        f"shuffled: {z['control']['accuracy']:.1%} (bigram {z['control']['bigram_accuracy']:.1%})",
        f"induction    best head: layer {i['best_head'][0]}, head {i['best_head'][1]}, score {i['max_score']:.2f}; "
        f"loss on repeated random tokens {i['loss_first']:.2f} (first copy) -> {i['loss_second']:.2f} nats (second)",
    ]
    novel = n["novel_ngram_fraction"]
    lines.append(
        f"novelty      {'n/a' if novel is None else f'{novel:.1%}'} of {n['n']}-character n-grams of "
        f"{n['samples']} samples are not in the training text; longest copy {n['longest_match_chars']['max']} "
        f"characters (mean {n['longest_match_chars']['mean']:.1f}): {n['longest_match']!r}"
    )
    return "\n".join(lines)


def write_report(card: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write report.json and the plots (reliability.png, induction.png, attention.png) into `out_dir`.
    Returns the files written. Each is written atomically."""
    from matplotlib.figure import Figure

    from scratchlm.evaluate.plots import (
        plot_attention_gallery,
        plot_induction_scores,
        plot_reliability,
        plot_repeated_loss,
    )
    from scratchlm.tokenizers import visible

    out = output_folder(out_dir, "report folder")
    figures = card["_figures"]
    written = []
    path = out / REPORT_FILENAME
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump({k: v for k, v in card.items() if not k.startswith("_")}, f, indent=1, ensure_ascii=False)
    written.append(path)

    fig = Figure(figsize=(5.5, 5), layout="constrained")
    plot_reliability(fig.add_subplot(), figures["reliability"])
    fig.suptitle("reliability of next-token probabilities (held-out text)")
    written.append(_save(fig, out / "reliability.png"))

    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.4))
    plot_induction_scores(left, figures["induction"])
    plot_repeated_loss(right, figures["induction"])
    right.set_title("loss on a random sequence repeated twice")
    written.append(_save(fig, out / "induction.png"))

    patterns = figures["patterns"]
    L, _, H, _, _ = patterns.shape
    fig = Figure(figsize=(2.6 * H, 2.6 * L), layout="constrained")
    plot_attention_gallery(fig, patterns, [visible(s) for s in figures["labels"]])
    fig.suptitle("attention of every head on the start of the held-out text (queries down, keys across)")
    written.append(_save(fig, out / "attention.png"))
    return written


def _save(fig, path: Path) -> Path:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    return path
