import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlm import checkpoint
from scratchlm.errors import ConfigError
from scratchlm.model import GPT, GPTConfig
from scratchlm.rope import apply_rope, apply_rope_complex, rope_cache
from scratchlm.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def rotate(x: torch.Tensor, position: int, base: float = 10000.0) -> torch.Tensor:
    """x (..., D) as if it sat at `position`, through the table the model uses."""
    cos, sin = rope_cache(x.size(-1), position + 1, base, dtype=torch.float64)
    return apply_rope(x.view(1, 1, 1, -1), cos[position:], sin[position:]).view(x.shape)


@settings(max_examples=20, deadline=None)
@given(
    m=st.integers(0, 300),
    n=st.integers(0, 300),
    shifts=st.lists(st.integers(0, 500), min_size=1, max_size=4),
    half=st.integers(1, 16),
    seed=st.integers(0, 2**16),
)
def test_score_depends_only_on_the_offset(m, n, shifts, half, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 2 * half, generator=gen, dtype=torch.float64)
    score = rotate(q, m) @ rotate(k, n)
    for s in shifts:
        torch.testing.assert_close(rotate(q, m + s) @ rotate(k, n + s), score)


def test_the_score_does_change_with_the_offset():
    q, k = torch.randn(2, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scores = {round((rotate(q, 10) @ rotate(k, n)).item(), 9) for n in range(10)}
    assert len(scores) == 10


@pytest.mark.parametrize("start", [0, 5])
@pytest.mark.parametrize("base", [10000.0, 500.0])
def test_apply_rope_equals_the_complex_form(start, base):
    x = torch.randn(2, 3, 7, 8, generator=torch.Generator().manual_seed(1))
    cos, sin = rope_cache(8, start + 7, base)
    ours = apply_rope(x, cos[start:], sin[start:])
    torch.testing.assert_close(ours, apply_rope_complex(x, torch.arange(start, start + 7), base))
    # and the complex form is literally view_as_complex(x) * exp(i * theta * position)
    theta = base ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    angles = torch.arange(start, start + 7, dtype=torch.float64)[:, None] * theta
    expected = torch.view_as_real(torch.view_as_complex(x.double().reshape(2, 3, 7, 4, 2)) * torch.exp(1j * angles))
    torch.testing.assert_close(ours, expected.flatten(-2).float())


@pytest.mark.parametrize("layout", ["B H T D", "B T H D", "odd offset", "float64"])
def test_the_complex_multiply_and_the_real_form_agree_in_value_and_gradient(layout, monkeypatch):
    """apply_rope's fast path (pairs viewed as complex numbers, one multiply) against its real form, on the
    layouts the model uses: (B, H, T, D) with (T, D/2) tables and (B, T, H, D) with (T, 1, D/2) ones, a view
    `view_as_complex` cannot take as it is (an odd storage offset), and float64."""
    import scratchlm.rope as rope

    generator = torch.Generator().manual_seed(2)
    dtype = torch.float64 if layout == "float64" else torch.float32
    cos, sin = rope_cache(8, 5, dtype=dtype)
    base = torch.randn(2 * 3 * 5 * 8 + 1, generator=generator, dtype=dtype)
    if layout == "B T H D":
        shape, cos, sin = (2, 5, 3, 8), cos[:, None], sin[:, None]
    else:
        shape = (2, 3, 5, 8)
    start = 1 if layout == "odd offset" else 0
    assert rope._complex_pairs_pay(base)

    def rotated_and_grad(fast: bool):
        monkeypatch.setattr(rope, "_complex_pairs_pay", lambda x: fast)
        leaf = base.clone().requires_grad_()
        out = apply_rope(leaf[start : start + math.prod(shape)].view(shape), cos, sin)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=dtype).view(shape))
        return out.detach(), leaf.grad

    (fast, fast_grad), (real, real_grad) = rotated_and_grad(True), rotated_and_grad(False)
    torch.testing.assert_close(fast, real)
    torch.testing.assert_close(fast_grad, real_grad)
    assert fast.shape == shape and fast.dtype == dtype


def test_pairs_are_interleaved_and_pair_i_turns_at_base_to_the_minus_2i_over_d():
    D, position, base = 8, 3, 10000.0
    for i in range(D // 2):
        x = torch.zeros(1, 1, 1, D)
        x[..., 2 * i] = 1.0  # the real part of pair i
        cos, sin = rope_cache(D, position + 1, base)
        out = apply_rope(x, cos[position:], sin[position:]).flatten()
        angle = position * base ** (-2 * i / D)
        expected = torch.zeros(D)
        expected[2 * i], expected[2 * i + 1] = math.cos(angle), math.sin(angle)
        torch.testing.assert_close(out, expected)


def test_position_zero_is_the_identity_and_norms_are_kept():
    x = torch.randn(2, 2, 6, 16)
    cos, sin = rope_cache(16, 6)
    assert torch.equal(apply_rope(x[:, :, :1], cos[:1], sin[:1]), x[:, :, :1])
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))


def test_rope_cache_shapes_and_dtype():
    cos, sin = rope_cache(16, 10, dtype=torch.float64)
    assert cos.shape == sin.shape == (10, 8) and cos.dtype == torch.float64
    torch.testing.assert_close(cos**2 + sin**2, torch.ones(10, 8, dtype=torch.float64))
    with pytest.raises(ConfigError, match="head size must be even"):
        rope_cache(7, 10)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(pos_embedding="alibi"), "pos_embedding must be one of learned, rope, got 'alibi'"),
        (dict(pos_embedding="rope", n_embd=18, n_head=2), "head size must be even: n_embd=18 / n_head=2 = 9"),
        (dict(pos_embedding="rope", rope_base=1.0), "rope_base must be a number > 1"),
    ],
)
def test_config_validation_messages(overrides, message, tiny_gpt_config):
    with pytest.raises(ConfigError) as error:
        GPTConfig(**{**tiny_gpt_config, **overrides})
    assert message in str(error.value)


def test_rope_model_has_no_position_embedding_parameter(make_tiny_gpt):
    rope, learned = make_tiny_gpt(pos_embedding="rope"), make_tiny_gpt()
    assert "wpe" not in rope.transformer and not any("wpe" in name for name, _ in rope.named_parameters())
    assert learned.num_parameters() - rope.num_parameters() == 8 * 16  # block_size x n_embd
    assert rope.num_parameters(non_embedding=True) == learned.num_parameters(non_embedding=True)
    assert "rope_cos" not in rope.state_dict()  # a fixed table, rebuilt rather than saved


def test_rope_model_is_causal_and_trains(make_tiny_gpt):
    model = make_tiny_gpt(pos_embedding="rope")
    idx = torch.randint(0, 11, (2, 8))
    changed = idx.clone()
    changed[:, 5] = (idx[:, 5] + 1) % 11
    model.eval()
    torch.testing.assert_close(model(idx)[0][:, :5], model(changed)[0][:, :5])
    _, loss = model.train()(idx, idx)
    loss.backward()
    assert model.transformer.h[0].attn.c_attn.weight.grad.abs().sum() > 0


def test_rope_model_can_run_past_block_size_but_learned_cannot(make_tiny_gpt):
    rope = make_tiny_gpt(pos_embedding="rope").eval()
    long = torch.randint(0, 11, (1, 12))
    logits, _ = rope(long)  # angles for positions >= block_size are computed on the fly
    torch.testing.assert_close(logits[:, :8], rope(long[:, :8])[0])
    with pytest.raises(ConfigError, match="block_size is 8"):
        make_tiny_gpt()(long)


def test_checkpoint_round_trips_the_new_fields(tmp_path, tiny_gpt_config):
    torch.manual_seed(0)
    config = GPTConfig(**{**tiny_gpt_config, "n_head": 4}, pos_embedding="rope", n_kv_head=2, rope_base=500.0)
    model = GPT(config).eval()
    checkpoint.save(tmp_path, model)
    loaded = checkpoint.load(tmp_path).build_model()
    assert loaded.config == config
    idx = torch.randint(0, 11, (2, 8))
    assert torch.equal(loaded(idx)[0], model(idx)[0])


def test_checkpoints_from_before_rope_still_load(tmp_path, make_tiny_gpt):
    model = make_tiny_gpt().eval()
    path = checkpoint.save(tmp_path, model)
    payload = torch.load(path, weights_only=True)
    payload.pop("checksum")
    for name in ("pos_embedding", "n_kv_head", "rope_base"):  # an older scratchlm did not write these
        del payload["model_config"][name]
    payload["checksum"] = checkpoint._digest(payload)
    torch.save(payload, path)
    loaded = checkpoint.load(path).build_model()
    assert loaded.config == model.config and loaded.config.pos_embedding == "learned"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(pos_embedding="sinusoidal"), "pos_embedding must be one of learned, rope"),
        (dict(n_head=6, n_embd=48, n_kv_head=4), "n_head=6 is not divisible by n_kv_head=4"),
        (dict(n_kv_head=0), "n_kv_head must be a positive integer or None, got 0"),
        (dict(pos_embedding="rope", n_head=2, n_embd=18), "RoPE needs an even head size"),
    ],
)
def test_train_config_validates_the_new_fields(overrides, message):
    with pytest.raises(ConfigError) as error:
        TrainConfig().replace(**overrides)
    assert message in str(error.value)


def test_train_config_passes_the_new_fields_to_the_model():
    config = TrainConfig().replace(pos_embedding="rope", n_kv_head=2).model_config(vocab_size=7)
    assert (config.pos_embedding, config.n_kv_head, config.kv_heads) == ("rope", 2, 2)


def test_hf_conversion_of_a_rope_model_is_a_config_error(make_tiny_gpt):
    pytest.importorskip("transformers")
    from scratchlm.hf import to_hf

    with pytest.raises(ConfigError, match="learned absolute position embeddings"):
        to_hf(make_tiny_gpt(pos_embedding="rope"))
