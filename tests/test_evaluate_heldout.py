"""Held-out scoring (`scratchlm.evaluate.heldout`) on models whose every probability is known in advance."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlm.errors import ConfigError
from scratchlm.evaluate import bits_per_byte, loss_by_position, token_bytes, token_nats
from scratchlm.model import GPT, GPTConfig
from scratchlm.tokenizers import BPETokenizer, CharTokenizer


class Uniform(nn.Module):
    """Every token has probability 1 / V, whatever the context: -ln p = ln V for every target."""

    def __init__(self, vocab_size: int, block_size: int):
        super().__init__()
        self.config = SimpleNamespace(block_size=block_size)
        self.vocab_size = vocab_size
        self.dummy = nn.Parameter(torch.zeros(()))  # so that the scorer can find a device

    def forward(self, idx):
        return torch.zeros(*idx.shape, self.vocab_size) + self.dummy, None


class PositionModel(Uniform):
    """The logits depend only on the position in the window (token 1's logit is 0.3 * position), so the loss of
    a prediction reveals how many tokens the model was shown: a wrong context gives a different number."""

    def forward(self, idx):
        logits = torch.zeros(*idx.shape, self.vocab_size) + self.dummy
        logits[..., 1] = 0.3 * torch.arange(idx.size(1), dtype=torch.float32)
        return logits, None

    def loss_with_context(self, c: int, target: int) -> float:
        """-ln p(target) for a prediction made after reading c tokens (at position c - 1 of its window)."""
        logits = torch.zeros(self.vocab_size)
        logits[1] = 0.3 * (c - 1)
        return -torch.log_softmax(logits, 0)[target].item()


def side_by_side_contexts(n: int, T: int, stride: int) -> list[int]:
    """The documented contexts, computed another way: target p is scored by the last window that starts at a
    multiple of stride and still covers it with at most T tokens, else by the tail window ending at n - 1."""
    contexts = []
    for p in range(1, n):
        starts = [s for s in range(0, n - T, stride) if s < p <= s + T]
        if starts:
            contexts.append(p - starts[0])  # the first window that reaches it scores it
        else:
            contexts.append(p - (n - 1 - T))  # only the tail window reaches it
    return contexts


def test_contexts_of_side_by_side_and_strided_windows():
    ids = torch.zeros(10, dtype=torch.long)
    _, context = token_nats(Uniform(5, 4), ids)
    assert context.tolist() == [1, 2, 3, 4, 1, 2, 3, 4, 4]  # the tail window scores only target 9
    _, context = token_nats(Uniform(5, 4), ids, stride=2)
    assert context.tolist() == [1, 2, 3, 4, 3, 4, 3, 4, 4]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 60), T=st.integers(1, 12), data=st.data())
def test_every_target_is_scored_once_with_the_documented_context(n, T, data):
    stride = data.draw(st.integers(1, T))
    batch_size = data.draw(st.integers(1, 5))
    ids = torch.tensor(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    model = PositionModel(4, T)
    nats, context = token_nats(model, ids, stride, batch_size=batch_size)
    assert len(nats) == len(context) == n - 1
    expected_context = side_by_side_contexts(n, min(T, n - 1), stride)
    assert context.tolist() == expected_context
    expected = [model.loss_with_context(c, ids[p].item()) for p, c in zip(range(1, n), expected_context, strict=True)]
    torch.testing.assert_close(nats, torch.tensor(expected))
    if n - 1 > T:  # after the first window, at least T - stride + 1 tokens of context
        assert context[T:].min().item() >= T - stride + 1


def test_uniform_model_costs_log2_vocab_bits_per_character():
    text = "To be, or not to be, that is the question.\n" * 5
    tok = CharTokenizer.from_text(text)
    ids = torch.tensor(tok.encode(text))
    nats, _ = token_nats(Uniform(tok.vocab_size, 16), ids, stride=5)
    torch.testing.assert_close(nats, torch.full((len(ids) - 1,), math.log(tok.vocab_size)))
    assert bits_per_byte(nats, ids, token_bytes(tok)) == pytest.approx(math.log2(tok.vocab_size))


def test_uniform_model_bits_per_byte_with_multibyte_tokens():
    text = "Café → naïve façade, déjà vu. " * 30
    tok = BPETokenizer.train(text, 280, progress=False)
    ids = torch.tensor(tok.encode(text))
    n_bytes = token_bytes(tok)
    assert n_bytes[ids].sum().item() == len(text.encode("utf-8"))  # every byte in exactly one token
    nats, _ = token_nats(Uniform(tok.vocab_size, 8), ids)
    scored_bytes = len(text.encode("utf-8")) - len(tok.decode_bytes(ids[:1].tolist()))
    expected = math.log2(tok.vocab_size) * (len(ids) - 1) / scored_bytes
    assert bits_per_byte(nats, ids, n_bytes) == pytest.approx(expected)


def test_token_bytes_of_characters_counts_utf8():
    tok = CharTokenizer(["a", "é", "→", "😀"])
    assert token_bytes(tok).tolist() == [1, 2, 3, 4]


def test_token_nats_of_a_gpt_matches_reading_each_context_directly():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, pos_embedding="rope")).eval()
    ids = torch.randint(0, 11, (30,))
    for stride in (8, 3):
        nats, context = token_nats(model, ids, stride, batch_size=2)
        for p in range(1, 30):
            c = context[p - 1].item()
            logits, _ = model(ids[p - c : p][None])
            torch.testing.assert_close(nats[p - 1], F.cross_entropy(logits[0, -1:], ids[p : p + 1]))


def test_token_nats_leaves_the_model_in_its_mode():
    model = Uniform(3, 4).train()
    token_nats(model, torch.zeros(9, dtype=torch.long))
    assert model.training


def test_bad_input_is_a_config_error():
    model = Uniform(3, 4)
    with pytest.raises(ConfigError, match="at least 2"):
        token_nats(model, torch.zeros(1, dtype=torch.long))
    with pytest.raises(ConfigError, match="stride"):
        token_nats(model, torch.zeros(9, dtype=torch.long), stride=5)
    with pytest.raises(ConfigError, match="block_size"):
        token_nats(nn.Linear(2, 2), torch.zeros(9, dtype=torch.long))
    with pytest.raises(ConfigError, match="expected 8"):
        bits_per_byte(torch.zeros(5), torch.zeros(9, dtype=torch.long), torch.ones(3, dtype=torch.long))
    with pytest.raises(ConfigError, match="windows"):
        loss_by_position(model, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ConfigError, match="stride"):
        loss_by_position(model, torch.zeros(2, 9, dtype=torch.long), context=4, stride=6)


def test_loss_by_position_whole_windows_see_t_plus_one_tokens():
    model = PositionModel(4, 64)
    windows = torch.randint(0, 4, (5, 21), generator=torch.Generator().manual_seed(1))
    losses = loss_by_position(model, windows, batch_size=2)
    assert losses.shape == (5, 20)
    for t in range(20):
        for w in range(5):
            assert losses[w, t].item() == pytest.approx(model.loss_with_context(t + 1, windows[w, t + 1].item()))


@pytest.mark.parametrize("L, context, stride", [(20, 8, 4), (21, 8, 5), (20, 8, None), (9, 8, 3), (5, 8, 2)])
def test_loss_by_position_sliding_never_reads_more_than_context(L, context, stride):
    model = PositionModel(4, 64)
    windows = torch.randint(0, 4, (3, L + 1), generator=torch.Generator().manual_seed(2))
    losses = loss_by_position(model, windows, context=context, stride=stride)
    s = stride or context
    expected_context = []  # column t: t + 1 in the first window; then c - stride + 1 .. c; the tail ends at L
    end = min(context, L)
    expected_context += list(range(1, end + 1))
    while end < L:
        new_end = min(end + s, L)
        expected_context += [t - new_end + context + 1 for t in range(end, new_end)]
        end = new_end
    assert max(expected_context) <= context
    for t, c in enumerate(expected_context):
        for w in range(3):
            assert losses[w, t].item() == pytest.approx(model.loss_with_context(c, windows[w, t + 1].item()))


def test_sliding_loss_by_position_of_a_gpt_matches_its_whole_window_within_context():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=2, n_embd=8)).eval()
    windows = torch.randint(0, 7, (4, 25))
    sliding = loss_by_position(model, windows, context=8, stride=3)
    torch.testing.assert_close(sliding[:, :8], loss_by_position(model, windows[:, :9]))
    # a later column equals the model reading exactly the 8 tokens the window showed it: column 23 was scored
    # by the last window, inputs 16..23
    logits, _ = model(windows[:, 16:24])
    torch.testing.assert_close(sliding[:, 23], F.cross_entropy(logits[:, -1], windows[:, 24], reduction="none"))
