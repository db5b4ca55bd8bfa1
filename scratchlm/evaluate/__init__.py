"""Evaluating a language model: what it knows (held-out scores), how sure it is, and how it does it.

Held-out scoring (`heldout`; lessons 06 and 08 derive it):

    token_bytes(tokenizer) -> (V,) int64                      UTF-8 bytes of each token id
    token_nats(model, ids, stride=None, batch_size=64, desc=None, *, block_size=None)
        -> (nats, context), each (len(ids) - 1,)             sliding or side-by-side windows, every target once
    bits_per_byte(nats, ids, n_bytes) -> float               code length of the text per byte
    loss_by_position(model, windows, context=None, stride=None, batch_size=32)
        -> (N, L) losses for windows (N, L + 1)              [:, t] predicts token t + 1 with t + 1 tokens of
                                                             context, or at most `context` tokens (sliding)

The rest, one module per question:

    calibration   is it as sure as it is right?        next_token_predictions, reliability, expected_calibration_error
    sampling      quality against diversity             distinct_n, repetition_rate, reference_nats, sample_sweep
    novelty       copied from the training text?        TrainingTextIndex (suffix array), novel_ngram_fraction
    choice        multiple choice by log-likelihood     score_choices, cloze_items, shuffled_line_items (the control),
                                                        fit_bigram (the baseline)
    mechanistic   how it does it                        attention_patterns, head_summary, induction_score, logit_lens
    report        all of it for one checkpoint          EvalConfig, report_card (the `eval` command)
    plots         their pictures on the caller's Axes   plot_reliability, plot_induction_scores, plot_attention_gallery
"""

from scratchlm.evaluate.calibration import (
    Predictions,
    Reliability,
    expected_calibration_error,
    next_token_predictions,
    reliability,
)
from scratchlm.evaluate.choice import (
    ChoiceItem,
    ChoiceResult,
    cloze_items,
    fit_bigram,
    option_logprobs,
    score_choices,
    shuffled_line_items,
)
from scratchlm.evaluate.heldout import (
    bits_per_byte,
    loss_by_position,
    score_windows,
    scoring,
    token_bytes,
    token_nats,
)
from scratchlm.evaluate.mechanistic import (
    AttentionRecord,
    InductionResult,
    attention_capture,
    attention_patterns,
    causal_softmax,
    head_summary,
    induction_attention,
    induction_score,
    logit_lens,
    logit_lens_nats,
    repeated_random_tokens,
)
from scratchlm.evaluate.novelty import Match, TrainingTextIndex, ngram_set, novel_ngram_fraction, suffix_array
from scratchlm.evaluate.sampling import (
    SamplingSetting,
    distinct_n,
    ngrams,
    reference_nats,
    repetition_rate,
    sample_sweep,
)

__all__ = [
    "AttentionRecord",
    "ChoiceItem",
    "ChoiceResult",
    "InductionResult",
    "Match",
    "Predictions",
    "Reliability",
    "SamplingSetting",
    "TrainingTextIndex",
    "attention_capture",
    "attention_patterns",
    "bits_per_byte",
    "causal_softmax",
    "cloze_items",
    "distinct_n",
    "expected_calibration_error",
    "fit_bigram",
    "head_summary",
    "induction_attention",
    "induction_score",
    "logit_lens",
    "logit_lens_nats",
    "loss_by_position",
    "next_token_predictions",
    "ngram_set",
    "ngrams",
    "novel_ngram_fraction",
    "option_logprobs",
    "reference_nats",
    "reliability",
    "repeated_random_tokens",
    "repetition_rate",
    "sample_sweep",
    "score_choices",
    "score_windows",
    "scoring",
    "shuffled_line_items",
    "suffix_array",
    "token_bytes",
    "token_nats",
]
