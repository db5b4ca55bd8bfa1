import math

import pytest
import torch

from scratchlm.attention import CausalSelfAttention
from scratchlm.errors import ConfigError
from scratchlm.model import MLP, Block, GPTConfig


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(n_embd=100, n_head=3), "n_embd=100 is not divisible by n_head=3"),
        (dict(n_layer=0), "n_layer must be a positive integer, got 0"),
        (dict(vocab_size=2.5), "vocab_size must be a positive integer, got 2.5"),
        (dict(block_size=True), "block_size must be a positive integer, got True"),
        (dict(dropout=1.0), "dropout must be in [0, 1), got 1.0"),
        (dict(dropout=-0.1), "dropout must be in [0, 1), got -0.1"),
        (dict(bias="yes"), "bias must be True or False"),
    ],
)
def test_config_validation_messages(overrides, message, tiny_gpt_config):
    with pytest.raises(ConfigError) as error:
        GPTConfig(**{**tiny_gpt_config, **overrides})
    assert message in str(error.value)


def test_config_is_frozen(tiny_gpt_config):
    config = GPTConfig(**tiny_gpt_config)
    with pytest.raises(AttributeError):
        config.n_layer = 3


def test_forward_shapes_and_loss_only_with_targets(make_tiny_gpt):
    model = make_tiny_gpt()
    idx = torch.randint(0, 11, (3, 8))
    logits, loss = model(idx)
    assert logits.shape == (3, 8, 11) and loss is None
    logits, loss = model(idx[:, :5], idx[:, :5])
    assert logits.shape == (3, 5, 11) and loss.shape == ()


@pytest.mark.parametrize("module", [CausalSelfAttention, MLP, Block])
def test_blocks_keep_the_residual_shape(module, tiny_gpt_config):
    x = torch.randn(2, 5, 16)
    assert module(GPTConfig(**tiny_gpt_config))(x).shape == (2, 5, 16)


def test_loss_at_init_is_close_to_uniform(make_tiny_gpt):
    model = make_tiny_gpt(vocab_size=65, n_embd=32)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 65, (16, 8), generator=gen)
    targets = torch.randint(0, 65, (16, 8), generator=gen)
    _, loss = model(idx, targets)
    assert loss.item() == pytest.approx(math.log(65), abs=0.1)


@pytest.mark.parametrize("bias", [True, False])
def test_parameter_count_formula(bias, make_tiny_gpt):
    model = make_tiny_gpt(bias=bias)
    V, T, L, C = 11, 8, 2, 16
    per_block = 12 * C * C + (13 * C if bias else 2 * C)
    expected = V * C + T * C + L * per_block + (2 * C if bias else C)
    assert model.num_parameters() == expected
    assert model.num_parameters(non_embedding=True) == expected - T * C
    # each tensor counted once: the tied head is not a second matrix
    assert expected == sum(p.numel() for p in {p.data_ptr(): p for p in model.state_dict().values()}.values())


def test_output_head_is_tied_to_the_token_embedding(make_tiny_gpt):
    model = make_tiny_gpt()
    assert model.lm_head.weight is model.transformer.wte.weight
    _, loss = model(torch.randint(0, 11, (2, 8)), torch.randint(0, 11, (2, 8)))
    loss.backward()
    assert model.transformer.wte.weight.grad is model.lm_head.weight.grad


def test_gpt2_initialisation(make_tiny_gpt):
    model = make_tiny_gpt(n_layer=8, n_embd=64, n_head=4, vocab_size=500)
    assert model.transformer.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
    residual_std = 0.02 / math.sqrt(2 * 8)
    assert model.transformer.h[0].mlp.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.1)
    assert model.transformer.h[0].attn.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.1)
    assert torch.count_nonzero(model.transformer.h[0].attn.c_attn.bias) == 0


def test_causality_future_tokens_do_not_change_earlier_logits(make_tiny_gpt):
    model = make_tiny_gpt().eval()
    idx = torch.randint(0, 11, (1, 8))
    changed = idx.clone()
    changed[0, 5] = (idx[0, 5] + 1) % 11
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_attention_matches_explicit_masked_softmax(tiny_gpt_config):
    config = GPTConfig(**tiny_gpt_config)
    attn = CausalSelfAttention(config).eval()
    x = torch.randn(2, 6, 16)
    q, k, v = attn.c_attn(x).split(16, dim=2)
    heads = lambda t: t.view(2, 6, 2, 8).transpose(1, 2)
    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(8)
    scores = scores.masked_fill(~torch.tril(torch.ones(6, 6, dtype=torch.bool)), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 6, 16)
    torch.testing.assert_close(attn(x), attn.c_proj(y))


def test_sequence_longer_than_block_size_is_a_config_error(make_tiny_gpt):
    with pytest.raises(ConfigError, match="block_size is 8"):
        make_tiny_gpt()(torch.zeros(1, 9, dtype=torch.long))


def test_flops_per_token_and_mfu(make_tiny_gpt):
    model = make_tiny_gpt()
    n = model.num_parameters(non_embedding=True)
    assert model.flops_per_token() == 6 * n + 12 * 2 * 8 * 16
    assert model.flops_per_token(seq_len=4) == 6 * n + 12 * 2 * 4 * 16
    assert model.estimate_mfu(1000.0, peak_flops=model.flops_per_token() * 2000.0) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        model.estimate_mfu(1.0, peak_flops=0)


def test_dropout_is_active_only_in_training_mode(make_tiny_gpt):
    model = make_tiny_gpt(dropout=0.5)
    idx = torch.randint(0, 11, (2, 8))
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])


@pytest.mark.parametrize("extra", [{}, {"n_head": 4, "n_kv_head": 2}, {"pos_embedding": "rope"}])
def test_tiled_attention_kernel_trains_the_same_model(extra, make_tiny_gpt):
    """attention="tiled" swaps lesson 07's kernel into the GPT: same parameters, same logits, same gradients."""
    fused, tiled = make_tiny_gpt(**extra), make_tiny_gpt(attention="tiled", **extra)
    tiled.load_state_dict(fused.state_dict())
    idx = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(1))
    losses = []
    for model in (fused, tiled):
        _, loss = model(idx, idx)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[1], losses[0])
    for (name, p_fused), p_tiled in zip(fused.named_parameters(), tiled.parameters(), strict=True):
        torch.testing.assert_close(p_tiled.grad, p_fused.grad, msg=name)


def test_tiled_attention_kernel_decodes_with_the_cache(make_tiny_gpt):
    from scratchlm.generation import generate

    fused, tiled = make_tiny_gpt(), make_tiny_gpt(attention="tiled")
    tiled.load_state_dict(fused.state_dict())
    prompt = torch.tensor([[1, 2, 3]])
    expected = generate(fused, prompt, 12, seed=3)
    assert torch.equal(generate(tiled, prompt, 12, seed=3), expected)
    assert torch.equal(generate(tiled, prompt, 12, seed=3, use_cache=False), expected)


def test_tiled_attention_kernel_refuses_dropout(tiny_gpt_config):
    with pytest.raises(ConfigError, match="attention='tiled' has no dropout"):
        GPTConfig(**tiny_gpt_config, attention="tiled", dropout=0.1)
    with pytest.raises(ConfigError, match="attention"):
        GPTConfig(**tiny_gpt_config, attention="flash")
