import math

import pytest
import torch
import torch.nn.functional as F

from scratchlm.attention import Head
from scratchlm.bigram import BigramLanguageModel


def test_bigram_starts_uniform_and_matches_count_model_after_training():
    torch.manual_seed(0)
    text = torch.randint(0, 5, (2000,))
    model = BigramLanguageModel(5)
    x, y = text[:-1].view(1, -1), text[1:].view(1, -1)
    _, loss = model(x, y)
    assert loss.item() == pytest.approx(math.log(5), abs=1e-6)
    counts = torch.zeros(5, 5).index_put_((x.flatten(), y.flatten()), torch.ones(x.numel()), accumulate=True)
    count_nll = -(counts / counts.sum(1, keepdim=True)).log()[x.flatten(), y.flatten()].mean()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(300):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() == pytest.approx(count_nll.item(), abs=0.01)


def test_bigram_logits_shape_without_targets():
    logits, loss = BigramLanguageModel(7)(torch.zeros(2, 3, dtype=torch.long))
    assert logits.shape == (2, 3, 7) and loss is None


def test_head_matches_sdpa_and_is_causal():
    torch.manual_seed(0)
    head = Head(n_embd=16, head_size=8, block_size=10).eval()
    x = torch.randn(2, 10, 16)
    out, weights = head(x, return_weights=True)
    expected = F.scaled_dot_product_attention(head.query(x), head.key(x), head.value(x), is_causal=True)
    torch.testing.assert_close(out, expected)
    assert torch.all(weights.triu(1) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 10))
    x2 = x.clone()
    x2[:, 5:] += 1.0  # changing the future must not change the past
    torch.testing.assert_close(head(x2)[:, :5], out[:, :5])


def test_head_rejects_sequences_longer_than_its_block():
    with pytest.raises(ValueError, match="exceeds"):
        Head(8, 4, block_size=4)(torch.randn(1, 5, 8))
