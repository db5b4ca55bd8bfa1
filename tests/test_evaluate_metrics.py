"""Calibration, diversity, novelty and multiple-choice scoring (`scratchlm.evaluate`) on cases with known answers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlm.errors import ConfigError
from scratchlm.evaluate import (
    ChoiceItem,
    SamplingSetting,
    TrainingTextIndex,
    cloze_items,
    distinct_n,
    expected_calibration_error,
    fit_bigram,
    next_token_predictions,
    ngram_set,
    novel_ngram_fraction,
    reference_nats,
    reliability,
    repetition_rate,
    sample_sweep,
    score_choices,
    shuffled_line_items,
    suffix_array,
    token_bytes,
)
from scratchlm.evaluate.choice import is_speaker_line
from scratchlm.model import GPT, GPTConfig
from scratchlm.tokenizers import CharTokenizer


class FixedDistribution(nn.Module):
    """p(next token) = probs, whatever came before: every log-probability is known."""

    def __init__(self, probs, block_size: int = 16):
        super().__init__()
        self.register_buffer("logp", torch.tensor(probs, dtype=torch.float64).log().float())
        self.config = SimpleNamespace(block_size=block_size, vocab_size=len(probs))
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, idx, targets=None):
        return self.logp.expand(*idx.shape, -1) + self.dummy, None


# ----------------------------------------------------------------------------------------------- calibration


def test_ece_of_a_predictor_with_known_miscalibration():
    # 100 predictions at 0.9 of which 90 right (calibrated), 100 at 0.35 of which 55 right (0.2 under-confident)
    confidence = torch.cat((torch.full((100,), 0.9), torch.full((100,), 0.35)))
    correct = torch.cat((torch.arange(100) < 90, torch.arange(100) < 55))
    r = reliability(confidence, correct, n_bins=10)
    assert r.ece == pytest.approx(0.5 * 0.0 + 0.5 * 0.2)
    assert r.max_gap == pytest.approx(0.2)
    assert r.overconfidence == pytest.approx(-0.1)  # under-confident on average
    assert r.count.tolist() == [0, 0, 0, 100, 0, 0, 0, 0, 100, 0]  # (0.3, 0.4] and (0.8, 0.9]
    assert r.accuracy[3].item() == pytest.approx(0.55) and r.confidence[8].item() == pytest.approx(0.9)
    assert torch.isnan(r.accuracy[0])


def test_ece_is_zero_for_a_perfectly_calibrated_predictor_and_the_gap_for_a_constant_one():
    confidence = torch.tensor([0.25] * 4 + [0.75] * 4 + [1.0] * 3)
    correct = torch.tensor([1, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1])  # 1/4 at 0.25, 3/4 at 0.75, 3/3 at 1
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(torch.full((10,), 0.8), torch.arange(10) < 6) == pytest.approx(0.2)
    # a confidence of exactly 0 or 1 lands in the first or last bin
    r = reliability(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), n_bins=4)
    assert r.count.tolist() == [1, 0, 0, 1]


def test_reliability_rejects_bad_input():
    with pytest.raises(ConfigError, match="probabilities"):
        reliability(torch.tensor([1.5]), torch.tensor([1]))
    with pytest.raises(ConfigError, match="as many"):
        reliability(torch.tensor([0.5, 0.5]), torch.tensor([1]))


def test_next_token_predictions_of_a_fixed_distribution():
    model = FixedDistribution([0.7, 0.2, 0.1])
    ids = torch.tensor([0, 0, 1, 0, 2, 0, 0, 1, 0, 2, 0])  # targets (after the first token): 0 six times in 10
    pred = next_token_predictions(model, ids, stride=4)
    assert torch.allclose(pred.confidence, torch.full((10,), 0.7))
    assert pred.correct.tolist() == (ids[1:] == 0).tolist()
    torch.testing.assert_close(pred.target_prob, torch.tensor([0.7, 0.2, 0.1])[ids[1:]])
    assert pred.reliability().ece == pytest.approx(abs(0.7 - 0.6))  # accuracy 6/10 at confidence 0.7


# ----------------------------------------------------------------------------------------------- diversity


def test_distinct_n_and_repetition_rate_on_constructed_sequences():
    assert distinct_n(["abcd", "efgh"], 1) == 1.0
    assert distinct_n(["aaaa"], 1) == 0.25
    assert distinct_n(["abab", "abab"], 2) == pytest.approx(2 / 6)  # ab, ba among 6 bigrams
    assert math.isnan(distinct_n(["a"], 2))
    assert repetition_rate("abcabcabc", 3) == pytest.approx(4 / 7)  # abc bca cab new, then 4 repeats
    assert repetition_rate("abcdef", 2) == 0.0
    assert repetition_rate([1, 1, 1, 1], 1) == pytest.approx(3 / 4)


def test_reference_nats_of_a_fixed_distribution():
    model = FixedDistribution([0.5, 0.25, 0.25], block_size=4)
    samples = torch.tensor([[2, 0, 1, 1, 0, 0, 0, 2, 1, 0]])  # longer than block_size: read with a sliding window
    expected = -torch.tensor([0.5, 0.25, 0.25]).log()[samples[0, 3:]].mean().item()
    assert reference_nats(model, samples, prompt_len=3) == pytest.approx(expected)


def test_sample_sweep_greedy_loops_and_hot_sampling_does_not():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=1, n_head=2, n_embd=16))
    prompts = torch.tensor([[1, 2], [3, 4]])
    records = sample_sweep(model, prompts, [SamplingSetting(0.0), SamplingSetting(2.0)], 40, reference=model, seed=3)
    greedy, hot = records
    assert greedy["label"] == "greedy" and hot["label"] == "T=2"
    assert greedy["samples"].shape == (2, 42)
    assert greedy["self_nats"] == greedy["reference_nats"]
    # a model near uniform, sampled hot, is diverse; its greedy decoding repeats itself
    assert hot["distinct_n"] > greedy["distinct_n"] and greedy["repetition"] > hot["repetition"]
    assert greedy["self_nats"] < hot["self_nats"]


# ----------------------------------------------------------------------------------------------- novelty


@settings(max_examples=80, deadline=None)
@given(text=st.text(alphabet="abc\n", min_size=1, max_size=60))
def test_suffix_array_sorts_every_suffix(text):
    assert suffix_array(text).tolist() == sorted(range(len(text)), key=lambda i: text[i:])


@settings(max_examples=80, deadline=None)
@given(text=st.text(alphabet="abcé", min_size=1, max_size=50), sample=st.text(alphabet="abcdé", max_size=20))
def test_longest_match_agrees_with_brute_force(text, sample):
    index = TrainingTextIndex(text)
    best = max((j - i for i in range(len(sample)) for j in range(i, len(sample) + 1) if sample[i:j] in text), default=0)
    match = index.longest_match(sample)
    assert len(match) == best
    assert match.text == sample[match.start : match.start + best] == text[match.source : match.source + best]
    for n in (1, 3):
        grams = [sample[i : i + n] for i in range(len(sample) - n + 1)]
        if grams:
            assert index.novel_fraction(sample, n) == pytest.approx(sum(g not in text for g in grams) / len(grams))


def test_memorised_and_invented_samples():
    text = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
    index = TrainingTextIndex(text)
    assert index.longest_match("xx that is the question:\nyy").text == " that is the question:\n"
    assert index.novel_fraction("Whether 'tis nobler", 5) == 0.0
    assert index.novel_fraction("qqqqqq", 2) == 1.0
    words = ngram_set(text.split(), 2)
    assert novel_ngram_fraction(["not", "to", "be,", "that"], words, 2) == 0.0
    assert novel_ngram_fraction(["to", "be,", "that", "question"], words, 2) == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------------------------- multiple choice


def test_sum_prefers_short_options_and_normalising_removes_that():
    model = FixedDistribution([0.5, 0.3, 0.2])  # log p: token 0 -0.69, 1 -1.20, 2 -1.61
    # option A: [2] (sum -1.61, per token -1.61); option B: [0, 0, 0] (sum -2.08, per token -0.69)
    items = [ChoiceItem([1], [[2], [0, 0, 0]], answer=1)] * 3
    result = score_choices(model, items, batch_size=2)
    torch.testing.assert_close(result.logprob[0], torch.tensor([0.2, 0.125]).log().double())
    assert result.accuracy("sum") == 0.0 and result.accuracy("per_token") == 1.0
    assert result.chance == 0.5
    n_bytes = torch.tensor([1, 1, 9])  # token 2 is a long token: per byte it looks cheap
    assert score_choices(model, items, n_bytes).predictions("per_byte") == [0, 0, 0]


def test_scoring_crops_the_context_to_block_size_and_pads_without_leaking():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=9, block_size=6, n_layer=1, n_head=1, n_embd=8)).eval()
    context, options = [0, 1, 2, 3, 4, 5, 6, 7, 1, 2], [[3], [4, 5, 6]]
    result = score_choices(model, [ChoiceItem(context, options, 0)], batch_size=8)
    for j, option in enumerate(options):
        seq = torch.tensor((context + option)[-7:])
        logp = torch.log_softmax(model(seq[None, :-1])[0][0], -1)
        k = len(option)
        expected = logp[torch.arange(6 - k, 6), seq[-k:]].sum()
        assert result.logprob[0][j].item() == pytest.approx(expected.item(), abs=1e-5)


def test_fit_bigram_recovers_the_transition_probabilities():
    ids = torch.tensor([0, 1, 0, 1, 0, 2] * 50)
    model = fit_bigram(ids, 3, smoothing=1e-9)
    probs = torch.softmax(model(torch.tensor([[0, 1, 2]]))[0][0], -1)
    torch.testing.assert_close(probs[0], torch.tensor([0.0, 2 / 3, 1 / 3]), atol=1e-6, rtol=0)
    torch.testing.assert_close(probs[1], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="smoothing"):
        fit_bigram(ids, 3, smoothing=0)


def test_cloze_items_hold_the_true_next_line_among_distractors():
    lines = []
    for i in range(120):
        lines += [f"SPEAKER {i % 3}:".replace("0", "A").replace("1", "B").replace("2", "C"), f"line number {i}", ""]
    text = "\n".join(lines)
    tok = CharTokenizer.from_text(text)
    items = cloze_items(text, tok, n_items=20, n_choices=4, context_lines=2, seed=1)
    assert len(items) == 20 and {len(it.options) for it in items} == {4}
    assert len({it.answer for it in items}) > 1  # the answer's place varies
    for it in items:
        truth = it.option_texts[it.answer]
        assert (it.context_text + truth) in text + "\n"
        assert all(o.startswith("line number") and o.endswith("\n") for o in it.option_texts)
        assert len(set(it.option_texts)) == 4
        assert tok.decode(it.options[it.answer]) == truth
    assert cloze_items(text, tok, 20, seed=1) == cloze_items(text, tok, 20, seed=1)
    with pytest.raises(ConfigError, match="too few"):
        cloze_items("a\nb\nc\n", tok, 5)


def test_title_case_speakers_are_never_options_regression():
    """The speaker filter knew only ALL-CAPS names, so Tiny Shakespeare's title-case speakers ("Pedant:",
    "Second Servingman:") became options, and their place after a blank line gave them away."""
    lines = []
    names = ["PEDANT", "Pedant", "Second Servingman", "First Citizen", "Nurse"]
    for i in range(150):
        lines += [f"{names[i % len(names)]}:", f"a spoken line {i} that ends with a colon:", f"and line {i}", ""]
    text = "\n".join(lines)
    tok = CharTokenizer.from_text(text)
    items = cloze_items(text, tok, n_items=60, n_choices=4, context_lines=2, seed=3)
    options = {o.rstrip("\n") for it in items for o in it.option_texts}
    assert not options & {f"{n}:" for n in names}
    assert any(o.startswith("a spoken line") for o in options)  # a spoken line may end with a colon
    split = text.split("\n")
    assert is_speaker_line(split, 0) and is_speaker_line(split, 4) and not is_speaker_line(split, 1)


def test_the_positive_control_pits_the_true_line_against_its_characters_shuffled():
    lines = []
    for i in range(120):
        lines += ["SPEAKER:", f"line number {i} goes here", ""]
    text = "\n".join(lines)
    tok = CharTokenizer.from_text(text)
    items = cloze_items(text, tok, n_items=30, n_choices=4, context_lines=2, seed=1)
    control = shuffled_line_items(items, tok, seed=1)
    assert len(control) == 30 and len({c.answer for c in control}) == 2
    for item, c in zip(items, control, strict=True):
        truth, other = c.option_texts[c.answer], c.option_texts[1 - c.answer]
        assert truth == item.option_texts[item.answer] and other != truth
        assert sorted(other) == sorted(truth) and other.endswith("\n")
    # a bigram model counted on the text passes it; a model that knows nothing scores at chance on both tests
    bigram = fit_bigram(torch.tensor(tok.encode(text)), tok.vocab_size)
    assert score_choices(bigram, control, token_bytes(tok)).accuracy("per_byte") > 0.9
    uniform = FixedDistribution([1 / tok.vocab_size] * tok.vocab_size, block_size=64)
    assert score_choices(uniform, control, token_bytes(tok)).accuracy("per_byte") <= 0.7


def test_an_option_longer_than_block_size_is_read_with_a_sliding_window():
    model = FixedDistribution([0.5, 0.3, 0.2], block_size=4)
    result = score_choices(model, [ChoiceItem([1, 1], [[0] * 9, [2]], answer=0)])
    assert result.logprob[0][0].item() == pytest.approx(9 * torch.tensor(0.5).log().item())
    torch.testing.assert_close(result.tokens[0], torch.tensor([9, 1]))
