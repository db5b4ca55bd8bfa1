"""Attention patterns, induction scores and the logit lens (`scratchlm.evaluate.mechanistic`)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scratchlm.errors import ConfigError
from scratchlm.evaluate import (
    attention_capture,
    attention_patterns,
    head_summary,
    induction_attention,
    induction_score,
    logit_lens,
    logit_lens_nats,
    repeated_random_tokens,
)
from scratchlm.model import GPT, GPTConfig

CONFIGS = {
    "learned": dict(),
    "rope": dict(pos_embedding="rope"),
    "gqa": dict(n_head=4, n_kv_head=2),
    "mqa+rope": dict(n_head=4, n_kv_head=1, pos_embedding="rope"),
    "tiled": dict(attention="tiled"),
}


def small_gpt(**overrides) -> GPT:
    torch.manual_seed(0)
    fields = dict(vocab_size=17, block_size=12, n_layer=2, n_head=2, n_embd=16) | overrides
    return GPT(GPTConfig(**fields)).eval()


@pytest.mark.parametrize("name", CONFIGS)
def test_recomputed_weights_reproduce_what_the_attention_returned(name):
    model = small_gpt(**CONFIGS[name])
    idx = torch.randint(0, 17, (3, 12), generator=torch.Generator().manual_seed(1))
    returned = []
    handles = [b.attn.register_forward_hook(lambda m, a, out: returned.append(out)) for b in model.transformer.h]
    records, logits = attention_capture(model, idx)
    for h in handles:
        h.remove()
    torch.testing.assert_close(logits, model(idx)[0])
    assert len(records) == len(returned) == 2
    for block, record, out in zip(model.transformer.h, records, returned, strict=True):
        group = record.q.size(1) // record.v.size(1)
        y = record.pattern @ record.v.repeat_interleave(group, dim=1)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(3, 12, 16)
        torch.testing.assert_close(block.attn.c_proj(y), out, atol=1e-5, rtol=1e-4)


def test_patterns_are_causal_distributions():
    patterns = attention_patterns(small_gpt(), torch.randint(0, 17, (2, 12)))
    assert patterns.shape == (2, 2, 2, 12, 12)
    torch.testing.assert_close(patterns.sum(-1), torch.ones(2, 2, 2, 12))
    assert (patterns.triu(diagonal=1) == 0).all()
    with pytest.raises(ConfigError, match="block_size"):
        attention_patterns(small_gpt(), torch.zeros(1, 13, dtype=torch.long))


def test_head_summary_of_constructed_heads():
    T = 6
    previous = torch.zeros(T, T)
    previous[0, 0] = 1
    previous[torch.arange(1, T), torch.arange(T - 1)] = 1
    uniform = torch.ones(T, T).tril()
    uniform = uniform / uniform.sum(-1, keepdim=True)
    patterns = torch.stack((previous, torch.eye(T), uniform))[None, None]  # (L=1, B=1, H=3, T, T)
    summary = head_summary(patterns)
    torch.testing.assert_close(summary["previous"], torch.tensor([[1.0, 0.0, (1 / torch.arange(2, T + 1)).mean()]]))
    torch.testing.assert_close(summary["self"], torch.tensor([[0.0, 1.0, (1 / torch.arange(2, T + 1)).mean()]]))
    # a uniform head over t + 1 positions looks back t / 2 on average
    torch.testing.assert_close(summary["distance"], torch.tensor([[1.0, 0.0, (torch.arange(1, T) / 2).mean()]]))


def test_induction_attention_of_a_perfect_and_a_uniform_head():
    half = 5
    T = 2 * half
    perfect = torch.eye(T)
    for t in range(half, T):
        perfect[t] = 0
        perfect[t, t - half + 1] = 1
    uniform = torch.ones(T, T).tril()
    uniform = uniform / uniform.sum(-1, keepdim=True)
    scores = induction_attention(torch.stack((perfect, uniform))[None, None], half)
    expected_uniform = (1 / torch.arange(half + 1, T + 1)).mean()
    torch.testing.assert_close(scores, torch.tensor([[1.0, expected_uniform.item()]]))


def test_repeated_random_tokens():
    ids = repeated_random_tokens(vocab=20, half=8, batch=5, seed=3)
    assert ids.shape == (5, 16)
    assert (ids[:, :8] == ids[:, 8:]).all()
    assert all(len(set(row[:8].tolist())) == 8 for row in ids)  # distinct within a copy
    assert (ids == repeated_random_tokens(20, 8, 5, seed=3)).all()
    assert repeated_random_tokens(3, 8, 2).max() < 3  # more positions than tokens: drawn with replacement
    letters = torch.tensor([5, 7, 11, 13])
    assert torch.isin(repeated_random_tokens(letters, 3, 4), letters).all()


def test_induction_score_measures_the_model_it_is_given():
    model = small_gpt()
    result = induction_score(model, half=6, batch=4, seed=2)
    ids = repeated_random_tokens(17, 6, 4, seed=2)
    losses = F.cross_entropy(model(ids)[0][:, :-1].transpose(1, 2), ids[:, 1:], reduction="none").mean(0)
    torch.testing.assert_close(result.loss_by_position, losses)
    assert result.loss_first == pytest.approx(losses[:5].mean().item())
    assert result.loss_second == pytest.approx(losses[6:].mean().item())
    torch.testing.assert_close(result.scores, induction_attention(attention_patterns(model, ids), 6))
    assert result.scores.shape == result.previous_token.shape == (2, 2)
    with pytest.raises(ConfigError, match="do not fit"):
        induction_score(model, half=7)


@pytest.mark.parametrize("name", ["learned", "rope"])
def test_logit_lens_ends_with_the_model_and_starts_with_the_embedding(name):
    model = small_gpt(**CONFIGS[name])
    idx = torch.randint(0, 17, (2, 12))
    lens = logit_lens(model, idx)
    assert lens.shape == (3, 2, 12, 17)
    torch.testing.assert_close(lens[-1], model(idx)[0])
    x = model.transformer.wte(idx)
    if name == "learned":
        x = x + model.transformer.wpe(torch.arange(12))
    torch.testing.assert_close(lens[0], model.lm_head(model.transformer.ln_f(x)))
    windows = torch.randint(0, 17, (5, 13))
    nats = logit_lens_nats(model, windows, batch_size=2)
    expected = F.cross_entropy(model(windows[:, :-1])[0].transpose(1, 2), windows[:, 1:])
    assert nats[-1].item() == pytest.approx(expected.item(), rel=1e-5)
