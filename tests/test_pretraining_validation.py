"""The validation estimate of pretraining: the whole split or a fixed random sample with its standard error, and
bits per byte over exactly the tokens scored (`scratchlm.pretraining.validation`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.pretraining.loader import ShardLoader
from scratchlm.pretraining.shards import ShardIndex
from scratchlm.pretraining.validation import score_windows, token_byte_lengths, validation_windows
from scratchlm.tokenizers import BPETokenizer, CharTokenizer

VOCAB, BLOCK = 16, 8
BYTES = np.array([0, 1] + [3] * (VOCAB - 2))  # token 0: a separator (no bytes); 1: one byte; the rest: three


class FavoursOne(nn.Module):
    """A stand-in model that always predicts token 1 with high confidence: its loss is near 0 on runs of 1s and
    about 10 nats on anything else, so a split made of both has parts with very different losses."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(VOCAB))
        with torch.no_grad():
            self.bias[1] = 10.0

    def forward(self, x, targets=None):
        return self.bias.expand(*x.shape, VOCAB), None


@pytest.fixture
def uneven_split(tmp_path):
    """A val split whose first third is easy (all 1s) and the rest hard (random ids 2..15): 600 windows."""
    rng = np.random.default_rng(0)
    n = 600 * BLOCK + 1
    tokens = np.concatenate([np.ones(n // 3, dtype=np.uint16), rng.integers(2, VOCAB, n - n // 3).astype(np.uint16)])
    tokens.tofile(tmp_path / "val_000000.bin")
    np.zeros(2 * BLOCK, dtype=np.uint16).tofile(tmp_path / "train_000000.bin")
    split = {"documents": 1, "bytes": 0}
    index = {"dtype": "uint16", "tokenizer": {"vocab_size": VOCAB},
             "splits": {"val": {**split, "tokens": n, "shards": [{"file": "val_000000.bin", "tokens": n}]},
                        "train": {**split, "tokens": 2 * BLOCK,
                                  "shards": [{"file": "train_000000.bin", "tokens": 2 * BLOCK}]}}}  # fmt: skip
    (tmp_path / "index.json").write_text(json.dumps(index))
    return ShardIndex(tmp_path, index), tokens


def _by_hand(tokens: np.ndarray, windows: np.ndarray) -> tuple[float, float]:
    """(mean loss, bits per byte) of FavoursOne over the targets of `windows`, computed directly."""
    log_probs = F.log_softmax(FavoursOne().bias.detach().double(), dim=0).numpy()
    targets = np.concatenate([tokens[w * BLOCK + 1 : w * BLOCK + BLOCK + 1] for w in windows])
    losses = -log_probs[targets]
    return losses.mean(), losses.sum() / math.log(2) / BYTES[targets].sum()


def test_the_whole_split_is_scored_exactly_where_its_first_batches_would_be_badly_biased(uneven_split):
    index, tokens = uneven_split
    loader = ShardLoader(index, "val", BLOCK, 16, shuffle=False)
    everything = validation_windows(loader.windows, 10_000, seed=0)
    score = score_windows(FavoursOne(), loader, everything, BYTES, torch.autocast("cpu", enabled=False))
    loss, bpb = _by_hand(tokens, np.arange(loader.windows))
    assert score.whole_split and score.windows == loader.windows == 600 and score.loss_se == 0.0
    assert score.loss == pytest.approx(loss, rel=1e-6) and score.bits_per_byte == pytest.approx(bpb, rel=1e-6)
    assert score.tokens == 600 * BLOCK
    first_batches, _ = _by_hand(tokens, np.arange(20 * 8))  # what "eval_iters=20 batches of 8 in file order" read
    assert first_batches < 0.05 < 5 < loss  # the old estimate: near 0 against a true loss above 5 nats


def test_a_sample_of_windows_is_fixed_unbiased_and_states_its_standard_error(uneven_split):
    index, tokens = uneven_split
    loader = ShardLoader(index, "val", BLOCK, 16, shuffle=False)
    truth, _ = _by_hand(tokens, np.arange(loader.windows))
    sample = validation_windows(loader.windows, 200, seed=7)
    assert np.array_equal(sample, validation_windows(loader.windows, 200, seed=7))  # the same at every evaluation
    assert len(set(sample.tolist())) == 200
    score = score_windows(FavoursOne(), loader, sample, BYTES, torch.autocast("cpu", enabled=False))
    loss, bpb = _by_hand(tokens, sample)
    assert score.loss == pytest.approx(loss, rel=1e-6) and score.bits_per_byte == pytest.approx(bpb, rel=1e-6)
    assert not score.whole_split and 0 < score.loss_se < 0.5
    assert abs(score.loss - truth) < 4 * score.loss_se
    # the standard error is that of a simple random sample of window means, finite-population corrected
    means = np.array([_by_hand(tokens, np.array([w]))[0] for w in sample])
    expected = means.std(ddof=1) / math.sqrt(200) * math.sqrt(1 - 200 / 600)
    assert score.loss_se == pytest.approx(expected, rel=1e-6)


def test_the_model_mode_is_restored_after_scoring(uneven_split):
    index, _ = uneven_split
    model = FavoursOne().train()
    loader = ShardLoader(index, "val", BLOCK, 16, shuffle=False)
    score_windows(model, loader, np.arange(4), BYTES, torch.autocast("cpu", enabled=False))
    assert model.training


def test_token_byte_lengths_count_the_bytes_each_id_decodes_to_and_none_for_end_of_text():
    bpe = BPETokenizer.train("hello hello world, héllo " * 20, 270, special_tokens=["<|endoftext|>"], progress=False)
    lengths = token_byte_lengths(bpe, bpe.vocab_size)
    eot = bpe.special_tokens["<|endoftext|>"]
    assert lengths[eot] == 0 and lengths[ord("a")] == 1
    text = "hello héllo world"
    assert lengths[bpe.encode_ordinary(text)].sum() == len(text.encode("utf-8"))
    chars = CharTokenizer(sorted(set("aé\n")))
    assert token_byte_lengths(chars, chars.vocab_size).tolist() == [1, 1, 2]
