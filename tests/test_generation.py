import pytest
import torch
import torch.nn as nn

from scratchlm.bigram import BigramLanguageModel
from scratchlm.errors import ConfigError
from scratchlm.generation import filter_logits, generate
from scratchlm.model import GPT, GPTConfig


class FixedLogits(nn.Module):
    """A fake model whose next-token logits are always `logits`, whatever the context."""

    def __init__(self, logits: list[float]):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits), requires_grad=False)

    def forward(self, idx, targets=None):
        return self.logits.expand(idx.size(0), idx.size(1), -1), None


def tiny_gpt(dropout: float = 0.0) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=dropout))


def test_output_shape_and_prompt_kept():
    prompt = torch.randint(0, 13, (3, 4))
    out = generate(tiny_gpt(), prompt, max_new_tokens=5, seed=0)
    assert out.shape == (3, 9)
    assert torch.equal(out[:, :4], prompt)
    assert generate(tiny_gpt(), prompt[0], max_new_tokens=2, seed=0).shape == (6,)  # 1-D in, 1-D out


def test_prompt_longer_than_the_context_is_cropped_not_an_error():
    model = tiny_gpt()
    long_prompt = torch.randint(0, 13, (2, 20))
    out = generate(model, long_prompt, max_new_tokens=3, temperature=0)
    # greedy continuation depends on the last block_size tokens only
    same = generate(model, long_prompt[:, -8:], max_new_tokens=3, temperature=0)
    assert torch.equal(out[:, -3:], same[:, -3:])


def test_same_seed_same_text_and_global_rng_untouched():
    model = tiny_gpt()
    prompt = torch.zeros(2, 1, dtype=torch.long)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = generate(model, prompt, 30, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = generate(model, prompt, 30, seed=7)
    c = generate(model, prompt, 30, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_temperature_zero_is_greedy():
    out = generate(FixedLogits([0.0, 3.0, 1.0, 2.0]), torch.zeros(2, 1, dtype=torch.long), 10, temperature=0)
    assert (out[:, 1:] == 1).all()


def test_top_k_restricts_to_the_k_most_likely():
    model = FixedLogits([0.0, 3.0, 1.0, 2.5, -1.0])
    out = generate(model, torch.zeros(64, 1, dtype=torch.long), 20, top_k=2, seed=0)
    assert set(out[:, 1:].unique().tolist()) == {1, 3}


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([0.05, 0.5, 0.3, 0.15])
    model = FixedLogits(probs.log().tolist())
    out = generate(model, torch.zeros(64, 1, dtype=torch.long), 20, top_p=0.75, seed=0)
    assert set(out[:, 1:].unique().tolist()) == {1, 2}  # 0.5 + 0.3 >= 0.75; 0.5 alone is not
    out = generate(model, torch.zeros(8, 1, dtype=torch.long), 20, top_p=0.4, seed=0)
    assert (out[:, 1:] == 1).all()  # the most likely token is always kept


def test_filter_logits_top_k_and_top_p_together():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    filtered = filter_logits(logits, top_k=3, top_p=1.0)
    assert torch.isinf(filtered[0, 3]) and torch.isfinite(filtered[0, :3]).all()


def test_high_temperature_flattens_the_distribution():
    model = FixedLogits([0.0, 2.0])
    prompt = torch.zeros(400, 1, dtype=torch.long)
    cold = generate(model, prompt, 1, temperature=0.5, seed=0)[:, 1].float().mean()
    hot = generate(model, prompt, 1, temperature=5.0, seed=0)[:, 1].float().mean()
    assert cold > hot > 0.5


def test_tiny_temperature_is_greedy_not_nan():
    """Regression: logits / 1e-45 overflowed to inf, and softmax turned inf - inf into nan probabilities."""
    model = FixedLogits([0.0, 3.0, 1.0, 2.5])
    out = generate(model, torch.zeros(2, 1, dtype=torch.long), 6, temperature=1e-45, seed=0)
    assert out[:, 1:].eq(1).all()
    out = generate(model, torch.zeros(1, 1, dtype=torch.long), 6, temperature=1e-45, top_p=0.5, top_k=2, seed=0)
    assert out[:, 1:].eq(1).all()


def test_works_with_the_bigram_model_which_has_no_block_size():
    model = BigramLanguageModel(7)
    out = generate(model, torch.zeros(1, 50, dtype=torch.long), 5, seed=0)
    assert out.shape == (1, 55)


def test_mode_is_restored():
    model = tiny_gpt(dropout=0.5)
    model.train()
    generate(model, torch.zeros(1, 1, dtype=torch.long), 3, seed=0)
    assert model.training
    model.eval()
    generate(model, torch.zeros(1, 1, dtype=torch.long), 3, seed=0)
    assert not model.training


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(temperature=-1.0), "temperature must be a finite number >= 0"),
        (dict(temperature=float("inf")), "temperature must be a finite number >= 0"),
        (dict(temperature=float("nan")), "temperature must be a finite number >= 0"),
        (dict(top_p=0.0), "top_p must be in (0, 1]"),
        (dict(top_p=1.5), "top_p must be in (0, 1]"),
        (dict(top_k=0), "top_k must be an integer >= 1"),
        (dict(max_new_tokens=-1), "max_new_tokens must be a non-negative integer"),
    ],
)
def test_invalid_arguments(kwargs, message):
    kwargs = {"max_new_tokens": 2, **kwargs}
    with pytest.raises(ConfigError) as error:
        generate(tiny_gpt(), torch.zeros(1, 1, dtype=torch.long), **kwargs)
    assert message in str(error.value)


def test_empty_prompt_is_an_error():
    with pytest.raises(ConfigError, match="empty"):
        generate(tiny_gpt(), torch.zeros(1, 0, dtype=torch.long), 2)
