import math

import pytest
import torch
import torch.nn as nn

from scratchlm.attention import CausalSelfAttention
from scratchlm.attention import causal as causal_module
from scratchlm.cli import main
from scratchlm.errors import ConfigError
from scratchlm.generation import generate
from scratchlm.kv_cache import KVCache, kv_cache_bytes
from scratchlm.model import GPT, Block, GPTConfig, mha_to_gqa

VARIANTS = [(pos, kv) for pos in ("learned", "rope") for kv in (None, 2, 1)]  # MHA, GQA, MQA

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_gpt_config(tiny_gpt_config):
    """Four query heads, so that there are 2 and 1 key/value heads to group them under; 13 tokens."""
    return {**tiny_gpt_config, "vocab_size": 13, "n_head": 4}


@pytest.fixture
def tiny(make_tiny_gpt):
    """`tiny(pos_embedding, n_kv_head, **overrides)`: a tiny GPT in eval mode."""

    def make(pos_embedding: str = "learned", n_kv_head: int | None = None, **overrides) -> GPT:
        return make_tiny_gpt(**overrides, pos_embedding=pos_embedding, n_kv_head=n_kv_head).eval()

    return make


# grouped-query attention


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(n_head=6, n_embd=48, n_kv_head=4), "n_head=6 is not divisible by n_kv_head=4"),
        (dict(n_kv_head=8), "n_head=4 is not divisible by n_kv_head=8"),
        (dict(n_kv_head=0), "n_kv_head must be a positive integer or None, got 0"),
        (dict(n_kv_head=True), "n_kv_head must be a positive integer or None, got True"),
    ],
)
def test_gqa_config_validation_messages(overrides, message, tiny_gpt_config):
    with pytest.raises(ConfigError) as error:
        GPTConfig(**{**tiny_gpt_config, **overrides})
    assert message in str(error.value)


def test_kv_head_properties(tiny_gpt_config):
    assert GPTConfig(**tiny_gpt_config).kv_heads == 4 and GPTConfig(**tiny_gpt_config).kv_group_size == 1
    mqa = GPTConfig(**tiny_gpt_config, n_kv_head=1)
    assert (mqa.kv_heads, mqa.kv_group_size, mqa.head_size, mqa.kv_head_size) == (1, 4, 4, 4)


@pytest.mark.parametrize("n_kv_head", [None, 4, 2, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_gqa_parameter_count_formula(n_kv_head, bias, tiny):
    model = tiny(n_kv_head=n_kv_head, bias=bias)
    V, T, L, C, H, D = 13, 8, 2, 16, 4, 4
    kv = n_kv_head or H
    qkv = (H + 2 * kv) * D  # output size of c_attn: every query head, and kv key and value heads
    per_block = C * qkv + C * C + 8 * C * C + ((qkv + C + 4 * C + C) + 4 * C if bias else 2 * C)
    expected = V * C + T * C + L * per_block + (2 * C if bias else C)
    assert model.num_parameters() == expected
    assert model.transformer.h[0].attn.c_attn.weight.shape == (qkv, C)


def reference_attention(attn: CausalSelfAttention, x: torch.Tensor, n_kv_head: int) -> torch.Tensor:
    """Loops over query heads; query head h reads key/value head h // (n_head / n_kv_head)."""
    T, H, D = x.size(1), 4, 4
    q, k, v = attn.c_attn(x).split((H * D, n_kv_head * D, n_kv_head * D), dim=2)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    heads = []
    for h in range(H):
        g = h // (H // n_kv_head)
        qh, kh, vh = q[..., h * D : (h + 1) * D], k[..., g * D : (g + 1) * D], v[..., g * D : (g + 1) * D]
        scores = (qh @ kh.transpose(-2, -1) / math.sqrt(D)).masked_fill(~causal, float("-inf"))
        heads.append(scores.softmax(-1) @ vh)
    return attn.c_proj(torch.cat(heads, dim=-1))


@pytest.mark.parametrize("sdpa_gqa", [True, False])  # enable_gqa=, or the repeat_interleave of torch < 2.5
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_gqa_attention_matches_an_explicit_loop_over_heads(n_kv_head, sdpa_gqa, monkeypatch, tiny_gpt_config):
    monkeypatch.setattr(causal_module, "_SDPA_HAS_GQA", sdpa_gqa)
    torch.manual_seed(0)
    attn = CausalSelfAttention(GPTConfig(**tiny_gpt_config, n_kv_head=n_kv_head)).eval()
    x = torch.randn(2, 6, 16)
    torch.testing.assert_close(attn(x), reference_attention(attn, x, n_kv_head))


# the cache inside the model


@pytest.mark.parametrize(("pos", "kv"), VARIANTS)
def test_prefill_step_and_chunk_equal_one_full_forward(pos, kv, tiny):
    model = tiny(pos, kv)
    idx = torch.randint(0, 13, (2, 8))
    full, _ = model(idx)
    cache = KVCache.for_model(model, batch_size=2)
    parts = [model(idx[:, :3], cache=cache)[0], model(idx[:, 3:4], cache=cache)[0]]
    parts.append(model(idx[:, 4:8], cache=cache)[0])  # several new tokens after a past: explicit mask
    assert cache.length == 8
    torch.testing.assert_close(torch.cat(parts, dim=1), full)


def test_cache_errors_are_clear(tiny):
    model = tiny()
    cache = KVCache.for_model(model, batch_size=1)
    model(torch.zeros(1, 6, dtype=torch.long), cache=cache)
    with pytest.raises(ConfigError, match="learned position embeddings stop at block_size=8"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ConfigError, match="the batch has 2 sequences but the KV cache was made for 1"):
        model(torch.zeros(2, 1, dtype=torch.long), cache=cache)
    with pytest.raises(ConfigError, match="KV cache is full"):
        tiny("rope")(torch.zeros(1, 9, dtype=torch.long), cache=KVCache.for_model(model, 1))
    with pytest.raises(ConfigError, match=r"make it with KVCache\.for_model"):
        tiny(n_kv_head=1)(torch.zeros(1, 1, dtype=torch.long), cache=KVCache.for_model(model, 1))
    cache.reset()
    assert cache.length == 0
    model(torch.zeros(1, 8, dtype=torch.long), cache=cache)  # fits again


def test_rope_cache_may_be_longer_than_block_size(tiny):
    model = tiny("rope")
    idx = torch.randint(0, 13, (1, 12))
    cache = KVCache.for_model(model, batch_size=1, max_len=12)
    steps = [model(idx[:, :8], cache=cache)[0]] + [model(idx[:, t : t + 1], cache=cache)[0] for t in range(8, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), model(idx)[0])


@pytest.mark.parametrize("n_kv_head", [None, 2, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nbytes_matches_the_formula(n_kv_head, dtype, tiny):
    model = tiny(n_kv_head=n_kv_head).to(dtype)
    cache = KVCache.for_model(model, batch_size=3)
    assert cache.k[0].dtype == dtype and cache.k[0].shape == (3, n_kv_head or 4, 8, 4)
    assert cache.nbytes == kv_cache_bytes(model.config, 3, 8, dtype)
    assert kv_cache_bytes(model.config, 3, 8, dtype) == 2 * 2 * (n_kv_head or 4) * 4 * 8 * 3 * dtype.itemsize
    assert KVCache.for_model(model, 1, max_len=5).nbytes == kv_cache_bytes(model.config, 1, 5, dtype)


# generation with and without the cache


@pytest.mark.parametrize(("pos", "kv"), VARIANTS)
def test_generation_is_identical_with_and_without_cache(pos, kv, tiny):
    model = tiny(pos, kv)
    prompt = torch.randint(0, 13, (3, 3), generator=torch.Generator().manual_seed(1))
    # 20 new tokens with block_size 8: the context fills up and then slides
    for kwargs in (dict(temperature=0), dict(temperature=1.0, seed=5), dict(temperature=0.8, top_k=5, seed=6)):
        cached = generate(model, prompt, 20, **kwargs)
        recomputed = generate(model, prompt, 20, use_cache=False, **kwargs)
        assert torch.equal(cached, recomputed), kwargs


def test_batched_prompts_generate_like_single_ones(tiny):
    model = tiny("rope", 2)
    prompts = torch.randint(0, 13, (3, 4), generator=torch.Generator().manual_seed(2))
    batched = generate(model, prompts, 6, temperature=0)
    for row in range(3):
        assert torch.equal(generate(model, prompts[row], 6, temperature=0), batched[row])


def test_prompt_longer_than_block_size_with_cache(tiny):
    model = tiny("rope")
    prompt = torch.randint(0, 13, (2, 11))
    assert torch.equal(generate(model, prompt, 4, seed=0), generate(model, prompt, 4, seed=0, use_cache=False))


def test_blocks_of_ones_own_and_models_without_a_cache_generate(tiny_gpt_config, tiny):
    class PostLNBlock(Block):  # as lesson 03 rewires blocks: the attention still gets rope, cache and layer
        def forward(self, x: torch.Tensor, *context) -> torch.Tensor:
            x = self.ln_1(x + self.attn(x, *context))
            return self.ln_2(x + self.mlp(x))

    model = tiny()
    model.transformer.h[0] = PostLNBlock(model.config)
    prompt = torch.zeros(1, 2, dtype=torch.long)
    assert torch.equal(generate(model, prompt, 12, seed=0), generate(model, prompt, 12, seed=0, use_cache=False))

    class NoCacheModel(nn.Module):  # any model with a config.block_size, such as a lesson's own GPT
        def __init__(self):
            super().__init__()
            self.config = GPTConfig(**tiny_gpt_config)
            self.emb = nn.Embedding(13, 13)

        def forward(self, idx, targets=None):
            return self.emb(idx), None

    assert generate(NoCacheModel(), prompt, 12, seed=0).shape == (1, 14)


# multi-head to grouped-query conversion


def test_mha_to_gqa_with_as_many_kv_heads_is_the_identity(tiny):
    model = tiny("rope")
    same = mha_to_gqa(model, 4)
    idx = torch.randint(0, 13, (2, 8))
    assert torch.equal(same(idx)[0], model(idx)[0])
    assert not same.training and same.config.kv_heads == 4


@pytest.mark.parametrize("n_kv_head", [2, 1])
def test_mha_to_gqa_means_each_group_of_key_and_value_heads(n_kv_head, tiny):
    model = tiny()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    gqa = mha_to_gqa(model, n_kv_head)
    assert torch.equal(torch.get_rng_state(), before)  # the new model's throwaway init drew no global numbers
    C, D, group = 16, 4, 4 // n_kv_head
    head = lambda t, h: t[h * D : (h + 1) * D]  # rows of head h in a k or v projection (weight or bias)
    for old_block, new_block in zip(model.transformer.h, gqa.transformer.h, strict=True):
        for name in ("weight", "bias"):
            q, k, v = getattr(old_block.attn.c_attn, name).split(C, dim=0)
            new_q, new_k, new_v = getattr(new_block.attn.c_attn, name).split((C, n_kv_head * D, n_kv_head * D))
            assert torch.equal(new_q, q)
            for g in range(n_kv_head):
                members = range(g * group, (g + 1) * group)  # the old heads that kv head g replaces
                torch.testing.assert_close(head(new_k, g), torch.stack([head(k, h) for h in members]).mean(0))
                torch.testing.assert_close(head(new_v, g), torch.stack([head(v, h) for h in members]).mean(0))
    old_state, new_state = model.state_dict(), gqa.state_dict()
    for name, tensor in old_state.items():
        if "c_attn" not in name:
            assert torch.equal(new_state[name], tensor), name
    prompt = torch.zeros(2, 1, dtype=torch.long)
    out = generate(gqa, prompt, 10, seed=0)
    assert out.shape == (2, 11) and torch.equal(out, generate(gqa, prompt, 10, seed=0, use_cache=False))


def test_mha_to_gqa_rejects_uneven_groups(tiny):
    with pytest.raises(ConfigError, match="n_head=4 is not divisible by n_kv_head=3"):
        mha_to_gqa(tiny(), 3)
    with pytest.raises(ConfigError, match="cannot merge 2 key/value heads into 4"):
        mha_to_gqa(tiny(n_kv_head=2), 4)


def test_hf_conversion_of_a_gqa_model_is_a_config_error(tiny):
    pytest.importorskip("transformers")
    from scratchlm.hf import to_hf

    with pytest.raises(ConfigError, match="one key/value head per query head"):
        to_hf(tiny(n_kv_head=2))


# command line


def test_cli_trains_rope_gqa_and_samples_the_same_text_with_and_without_cache(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    args = ["train", "--preset", "smoke", "--max-iters", "10", "--eval-interval", "10", "--eval-iters", "1",
            "--no-progress", "--threads", "1", "--data", text_file, "--out", str(out), "--pos-embedding", "rope",
            "--n-kv-head", "1"]  # fmt: skip
    assert main(args) == 0
    from scratchlm import checkpoint

    saved = checkpoint.load(out).gpt_config()
    assert (saved.pos_embedding, saved.n_kv_head, saved.block_size) == ("rope", 1, 32)
    capsys.readouterr()
    # 40 new tokens after a 5-character prompt: past the smoke preset's block_size of 32
    sample = ["sample", "--ckpt", str(out), "--prompt", "To be", "--max-new-tokens", "40", "--seed", "3"]
    for extra in ([], ["--temperature", "0"], ["--top-k", "5", "--num-samples", "2"]):
        assert main([*sample, *extra]) == 0
        cached = capsys.readouterr().out
        assert main([*sample, *extra, "--no-cache"]) == 0
        assert capsys.readouterr().out == cached


def test_help_lists_the_new_flags(capsys):
    for command, flags in (("train", ["--pos-embedding", "--n-kv-head"]), ("sample", ["--no-cache"])):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert all(flag in text for flag in flags)
