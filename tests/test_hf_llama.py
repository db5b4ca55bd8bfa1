"""A Llama-style `GPT` and Hugging Face's `LlamaForCausalLM` / `Qwen3ForCausalLM`: the same function both ways.

Random weights (larger than at init, norms included, so nothing matches by luck); logits within 1e-4, greedy
generations identical, round trips exact, and what the other side cannot represent refused in one line.
"""

import pytest
import torch

from scratchlm.errors import ConfigError
from scratchlm.generation import generate
from scratchlm.model import GPT, GPTConfig, swiglu_hidden_size
from scratchlm.rope import apply_rope, rope_cache

transformers = pytest.importorskip("transformers")

from scratchlm.hf import from_hf, to_hf  # noqa: E402
from scratchlm.hf_llama import rope_permutation  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = dict(vocab_size=50, block_size=24, n_layer=2, n_head=4, n_embd=32)
VARIANTS = {
    "untied": dict(),
    "tied": dict(tie_embeddings=True),
    "gqa": dict(n_kv_head=2),
    "mqa tied": dict(n_kv_head=1, tie_embeddings=True),
    "biases": dict(bias=True, n_kv_head=2),
    "qk_norm (qwen3)": dict(qk_norm=True, n_kv_head=2),
    "qk_norm tied, eps, base": dict(qk_norm=True, tie_embeddings=True, norm_eps=1e-6, rope_base=500_000.0),
}


def randomise(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)


def llama_gpt(seed: int = 0, **options) -> GPT:
    model = GPT(GPTConfig(arch="llama", **{**SIZES, **options})).eval()
    randomise(model, seed)
    return model


def hf_llama(kind: str = "llama", seed: int = 0, **options):
    """A random-weight HF LlamaForCausalLM or Qwen3ForCausalLM of SIZES (our SwiGLU width)."""
    config = dict(
        vocab_size=50, hidden_size=32, intermediate_size=swiglu_hidden_size(32), num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=24, head_dim=8,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    config.update(options)
    if kind == "qwen3":
        model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**config))
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))
    randomise(model, seed)
    return model.eval()


def tokens(seed: int, shape=(3, 24)) -> torch.Tensor:
    return torch.randint(0, 50, shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ RoPE's layout


def test_rope_layouts_differ_by_the_channel_permutation():
    # ours rotates interleaved pairs (x[2i], x[2i+1]); HF's rotate_half the halves (x[i], x[i + D/2])
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    D, T = 8, 6
    q, k = torch.randn(2, 1, 3, T, D).unbind(0)
    cos, sin = rope_cache(D, T, base=10_000.0)
    ours_q, ours_k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    hf_cos, hf_sin = torch.cat((cos, cos), -1)[None], torch.cat((sin, sin), -1)[None]  # HF's (1, T, D) tables
    perm = rope_permutation(D)
    assert perm.tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    hf_q, hf_k = apply_rotary_pos_emb(q[..., perm], k[..., perm], hf_cos, hf_sin)
    torch.testing.assert_close(hf_q, ours_q[..., perm])  # the same rotation, channels listed in HF's order
    torch.testing.assert_close(hf_q @ hf_k.transpose(-1, -2), ours_q @ ours_k.transpose(-1, -2))  # same scores
    unpermuted, _ = apply_rotary_pos_emb(q, k, hf_cos, hf_sin)
    assert not torch.allclose(unpermuted, ours_q, atol=1e-3)  # without the permutation the layouts disagree


# ------------------------------------------------------------------------------------------------ same logits


@pytest.mark.parametrize("name", VARIANTS)
def test_ours_to_hf_gives_the_same_logits(name):
    ours = llama_gpt(**VARIANTS[name])
    hf = to_hf(ours)
    expected = "Qwen3ForCausalLM" if ours.config.qk_norm else "LlamaForCausalLM"
    assert type(hf).__name__ == expected
    assert (hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()) == ours.config.tie_embeddings
    idx = tokens(1)
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx)[0], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "kind, options",
    [
        ("llama", dict()),
        ("llama", dict(tie_word_embeddings=True, num_key_value_heads=4)),
        (
            "llama",
            dict(num_key_value_heads=1, rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 5e5}),
        ),
        ("llama", dict(attention_bias=True, mlp_bias=True)),
        ("qwen3", dict()),
        ("qwen3", dict(tie_word_embeddings=True)),
    ],
    ids=str,
)
def test_hf_to_ours_gives_the_same_logits(kind, options):
    hf = hf_llama(kind, seed=2, **options)
    ours = from_hf(hf)
    c = ours.config
    assert (c.norm, c.mlp, c.pos_embedding, c.qk_norm) == ("rmsnorm", "swiglu", "rope", kind == "qwen3")
    assert c.tie_embeddings == options.get("tie_word_embeddings", False) and c.kv_heads == hf.config.num_key_value_heads
    assert c.norm_eps == hf.config.rms_norm_eps and c.rope_base == hf.config.rope_parameters["rope_theta"]
    idx = tokens(3)
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_round_trip_is_exact(name):
    ours = llama_gpt(seed=4, **VARIANTS[name])
    back = from_hf(to_hf(ours))
    assert back.config == ours.config
    for (key, a), b in zip(ours.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("name", ["untied", "mqa tied", "qk_norm (qwen3)"])
def test_greedy_generations_are_identical(name):
    ours = llama_gpt(seed=5, **VARIANTS[name])
    hf = to_hf(ours)
    prompt = tokens(6, (2, 4))
    expected = generate(ours, prompt, max_new_tokens=16, temperature=0)
    generated = hf.generate(prompt, max_new_tokens=16, do_sample=False, attention_mask=torch.ones_like(prompt))
    assert torch.equal(generated, expected)
    assert torch.equal(generate(from_hf(hf), prompt, max_new_tokens=16, temperature=0), expected)


# ------------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(pos_embedding="learned"), "a model with pos_embedding='learned' cannot be converted to LlamaForCausalLM"),
        (dict(qk_norm=True, bias=True), "Qwen 3 .* has no biases in its MLP"),
        (dict(norm="layernorm"), "cannot be converted to GPT2LMHeadModel"),  # a LayerNorm model is GPT-2's family
    ],
    ids=str,
)
def test_ours_that_hf_cannot_represent_is_refused_in_one_line(options, message):
    with pytest.raises(ConfigError, match=message) as refused:
        to_hf(GPT(GPTConfig(arch="llama", **{**SIZES, **options})))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "kind, options, message",
    [
        ("llama", dict(hidden_act="gelu"), "activation is 'gelu', not SwiGLU's silu"),
        ("llama", dict(intermediate_size=64), "intermediate_size=64 differs from our SwiGLU width .* \\(88,"),
        ("llama", dict(head_dim=16), "head_dim=16 is not hidden_size / heads"),
        ("llama", dict(attention_bias=True), "attention_bias=True but mlp_bias=False; ours has one bias flag"),
        (
            "llama",
            dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
            "RoPE is scaled \\(rope_type='linear'\\)",
        ),
        ("qwen3", dict(attention_bias=True), "this Qwen 3 cannot be converted: it has attention_bias=True"),
        ("qwen3", dict(use_sliding_window=True, sliding_window=8), "sliding-window attention"),
    ],
    ids=str,
)
def test_hf_models_we_cannot_represent_are_refused_in_one_line(kind, options, message):
    with pytest.raises(ConfigError, match=message) as refused:
        from_hf(hf_llama(kind, **options))
    assert "\n" not in str(refused.value)


def test_other_hf_models_are_refused():
    config = transformers.MistralConfig(
        vocab_size=50, hidden_size=32, intermediate_size=88, num_hidden_layers=1, num_attention_heads=4
    )
    with pytest.raises(ConfigError, match="expected a GPT-2, Llama or Qwen 3 model, got model_type='mistral'"):
        from_hf(transformers.MistralForCausalLM(config))
