"""The modern block's options (norm, mlp, qk_norm, tie_embeddings, arch): each layer against its hand formula,
and every option through the whole library: shapes, parameter counts, a training step, checkpoints, generation
with the cache, grouped-query conversion, the CLI and the Hugging Face GPT-2 converter's refusal."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm import checkpoint
from scratchlm.attention import CausalSelfAttention
from scratchlm.cli import main
from scratchlm.errors import ConfigError
from scratchlm.generation import generate
from scratchlm.layers import RMSNorm, relu_squared, silu
from scratchlm.memory import parameter_count
from scratchlm.model import ARCHS, MLP, GPTConfig, ReLU2MLP, SwiGLUMLP, mha_to_gqa, swiglu_hidden_size
from scratchlm.rope import apply_rope, rope_cache
from scratchlm.scaling import non_embedding_params
from scratchlm.training import TrainConfig, preset

pytestmark = pytest.mark.usefixtures("one_thread")

# each option alone on the default (gpt2) architecture, and the named architecture with the rest on top
OPTIONS = {
    "rmsnorm": dict(norm="rmsnorm"),
    "swiglu": dict(mlp="swiglu"),
    "relu2": dict(mlp="relu2"),
    "qk-norm": dict(qk_norm=True),
    "qk-norm-rope": dict(qk_norm=True, pos_embedding="rope"),
    "untied": dict(tie_embeddings=False),
    "no-bias": dict(bias=False),
    "llama": dict(arch="llama"),
    "llama-gqa-qk-norm": dict(arch="llama", n_kv_head=1, qk_norm=True),
    "llama-tied-biases": dict(arch="llama", tie_embeddings=True, bias=True),
}


@pytest.fixture
def tiny_gpt_config(tiny_gpt_config):
    return {**tiny_gpt_config, "vocab_size": 13, "block_size": 12, "n_head": 4, "n_embd": 32}  # D = 8


def seeded(t: torch.Tensor) -> torch.Tensor:
    return t.normal_(generator=torch.Generator().manual_seed(0))


# the layers against their formulas


def test_silu_is_x_times_its_sigmoid():
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    torch.testing.assert_close(silu(x), x * torch.sigmoid(x))
    assert silu(torch.tensor(0.0)) == 0
    torch.testing.assert_close(silu(torch.tensor(1.0)), 1 / (1 + torch.exp(torch.tensor(-1.0))))


def test_relu_squared_is_the_square_of_the_positive_part():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    assert relu_squared(x).tolist() == [0.0, 0.0, 0.0, 0.25, 9.0]


def test_rmsnorm_equals_its_formula():
    norm = RMSNorm(6, eps=1e-5)
    with torch.no_grad():
        seeded(norm.weight)
    x = seeded(torch.empty(2, 3, 6)) * 5 + 2
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    assert sum(p.numel() for p in norm.parameters()) == 6  # a gain, no bias


def test_rmsnorm_of_a_zero_mean_input_is_layernorm_without_bias():
    norm, layer_norm = RMSNorm(8), nn.LayerNorm(8, bias=False)
    with torch.no_grad():
        seeded(norm.weight)
        layer_norm.weight.copy_(norm.weight)
    x = seeded(torch.empty(4, 8))
    x = x - x.mean(-1, keepdim=True)
    torch.testing.assert_close(norm(x), layer_norm(x))
    assert not torch.allclose(norm(x + 1), layer_norm(x + 1))  # with a mean they differ: RMSNorm does not centre


def test_swiglu_equals_its_formula(tiny_gpt_config):
    config = GPTConfig(**tiny_gpt_config, mlp="swiglu")
    mlp = SwiGLUMLP(config)
    h = swiglu_hidden_size(32)
    assert mlp.c_fc.weight.shape == (2 * h, 32) and mlp.c_proj.weight.shape == (32, h)
    w_gate, w_up = mlp.c_fc.weight[:h], mlp.c_fc.weight[h:]
    b_gate, b_up = mlp.c_fc.bias[:h], mlp.c_fc.bias[h:]
    x = seeded(torch.empty(2, 5, 32))
    gate, up = x @ w_gate.T + b_gate, x @ w_up.T + b_up
    expected = (gate * torch.sigmoid(gate) * up) @ mlp.c_proj.weight.T + mlp.c_proj.bias
    torch.testing.assert_close(mlp(x), expected)


def test_relu2_mlp_equals_its_formula(tiny_gpt_config):
    mlp = ReLU2MLP(GPTConfig(**tiny_gpt_config, mlp="relu2"))
    x = seeded(torch.empty(2, 5, 32))
    hidden = torch.clamp(x @ mlp.c_fc.weight.T + mlp.c_fc.bias, min=0) ** 2
    torch.testing.assert_close(mlp(x), hidden @ mlp.c_proj.weight.T + mlp.c_proj.bias)


@pytest.mark.parametrize("n_embd", [16, 32, 80, 96, 128, 384, 768, 1000])
def test_swiglu_width_keeps_the_gelu_mlp_parameter_count(n_embd):
    h = swiglu_hidden_size(n_embd)
    assert h % 8 == 0 and abs(h - 8 * n_embd / 3) <= 4  # 8C/3 to the nearest multiple of 8
    config = GPTConfig(n_embd=n_embd, n_head=1, bias=False)
    swiglu = sum(p.numel() for p in SwiGLUMLP(config).parameters())
    gelu = sum(p.numel() for p in MLP(config).parameters())
    assert abs(swiglu - gelu) <= 3 * 4 * n_embd  # three matrices, each off by at most 4 columns
    assert swiglu_hidden_size(80) == 216 and swiglu_hidden_size(128) == 344 and swiglu_hidden_size(384) == 1024


def test_qk_norm_normalises_each_head_before_rope(tiny_gpt_config):
    config = GPTConfig(**tiny_gpt_config, qk_norm=True, pos_embedding="rope")
    attn = CausalSelfAttention(config).eval()
    with torch.no_grad():
        seeded(attn.q_norm.weight), seeded(attn.k_norm.weight)
    x = seeded(torch.empty(2, 6, 32))
    q, k, v = (t.view(2, 6, 4, 8).transpose(1, 2) for t in attn.c_attn(x).split(32, dim=2))
    rms = lambda t, g: t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + 1e-5) * g
    cos, sin = rope_cache(8, 6)
    q, k = apply_rope(rms(q, attn.q_norm.weight), cos, sin), apply_rope(rms(k, attn.k_norm.weight), cos, sin)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 6, 32)
    torch.testing.assert_close(attn(x, (cos, sin)), attn.c_proj(y))


def test_qk_norm_keeps_rope_relative(tiny_gpt_config):
    """Normalised and gained before the rotation, scores still depend only on position offsets."""
    attn = CausalSelfAttention(GPTConfig(**tiny_gpt_config, qk_norm=True, pos_embedding="rope")).eval()
    with torch.no_grad():
        seeded(attn.q_norm.weight), seeded(attn.k_norm.weight)
    x = seeded(torch.empty(1, 5, 32))
    cos, sin = rope_cache(8, 12)
    torch.testing.assert_close(attn(x, (cos[:5], sin[:5])), attn(x, (cos[7:], sin[7:])), atol=1e-5, rtol=1e-5)


def test_qk_norm_bounds_the_logits_whatever_the_weights_scale(tiny_gpt_config):
    attn = CausalSelfAttention(GPTConfig(**tiny_gpt_config, qk_norm=True)).eval()
    with torch.no_grad():
        attn.c_attn.weight.mul_(1000)
    q, k, _ = (t.view(1, 6, 4, 8).transpose(1, 2) for t in attn.c_attn(seeded(torch.empty(1, 6, 32))).split(32, 2))
    logits = attn.q_norm(q) @ attn.k_norm(k).transpose(-2, -1) / math.sqrt(8)
    assert logits.abs().max() <= math.sqrt(8) + 1e-4  # gains at 1: |q.k| / sqrt(D) <= sqrt(D)


# the config


def test_default_config_is_gpt2_as_before():
    c = GPTConfig()
    assert (c.arch, c.norm, c.mlp, c.pos_embedding, c.bias, c.tie_embeddings, c.qk_norm, c.norm_eps) == (
        "gpt2", "layernorm", "gelu", "learned", True, True, False, 1e-5
    )  # fmt: skip


def test_arch_llama_sets_its_combination_and_explicit_fields_win():
    llama = GPTConfig(arch="llama")
    assert {k: getattr(llama, k) for k in ARCHS["llama"]} == dict(
        norm="rmsnorm", mlp="swiglu", pos_embedding="rope", bias=False, tie_embeddings=False
    )
    assert GPTConfig(arch="llama", bias=True, norm="layernorm").bias is True
    assert GPTConfig(arch="llama", norm="layernorm").norm == "layernorm"
    # replace: a new arch decides its fields again, unless they are given too; other changes keep them
    assert llama.replace(arch="gpt2") == GPTConfig()
    assert GPTConfig().replace(arch="llama", tie_embeddings=True).tie_embeddings is True
    assert llama.replace(n_layer=2).norm == "rmsnorm"
    assert TrainConfig().replace(arch="llama").model.mlp == "swiglu"
    cpu_llama = preset("cpu", arch="llama", bias=True).model  # the presets and the CLI go through replace
    assert (cpu_llama.norm, cpu_llama.pos_embedding, cpu_llama.bias, cpu_llama.n_embd) == ("rmsnorm", "rope", True, 80)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(arch="mistral"), "arch must be one of gpt2, llama"),
        (dict(norm="batchnorm"), "norm must be one of layernorm, rmsnorm"),
        (dict(mlp="geglu"), "mlp must be one of gelu, swiglu, relu2"),
        (dict(qk_norm=1), "qk_norm must be True or False"),
        (dict(tie_embeddings="no"), "tie_embeddings must be True or False"),
        (dict(norm_eps=0), r"norm_eps must be in \(0, 1\)"),
    ],
)
def test_bad_options_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        GPTConfig(**overrides)


# every option through the library


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_forward_shapes_and_parameter_count(options, make_tiny_gpt):
    model = make_tiny_gpt(**options)
    idx, targets = torch.randint(0, 13, (2, 2, 12), generator=torch.Generator().manual_seed(0))
    logits, loss = model(idx, targets)
    assert logits.shape == (2, 12, 13) and torch.isfinite(loss)
    assert abs(loss.item() - math.log(13)) < 0.5  # near uniform at init, untied head included
    assert model.num_parameters() == parameter_count(model.config)


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_a_training_step_lowers_the_loss(options, make_tiny_gpt):
    model = make_tiny_gpt(**options)
    idx = torch.randint(0, 13, (4, 12), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        _, loss = model(idx, idx)
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_save_load_and_cached_generation(options, make_tiny_gpt, tmp_path):
    model = make_tiny_gpt(**options).eval()
    path = checkpoint.save(tmp_path, model, None, {"note": "test"}, None, step=1)
    loaded = checkpoint.load(path)
    assert loaded.gpt_config() == model.config
    rebuilt = loaded.build_model()
    idx = torch.randint(0, 13, (2, 12), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rebuilt(idx)[0], model(idx)[0], rtol=0, atol=0)
    assert (rebuilt.lm_head.weight is rebuilt.transformer.wte.weight) == model.config.tie_embeddings
    prompt = idx[:, :3]
    with_cache = generate(model, prompt, 15, seed=0)  # past block_size: the cache restarts, as without
    assert torch.equal(with_cache, generate(model, prompt, 15, seed=0, use_cache=False))


def test_checkpoints_written_before_the_options_load_as_gpt2(make_tiny_gpt, tmp_path):
    model = make_tiny_gpt().eval()
    path = checkpoint.save(tmp_path, model, None, None, None, step=1)
    payload = torch.load(path, weights_only=True)
    for name in ("arch", "norm", "norm_eps", "mlp", "qk_norm", "tie_embeddings"):
        del payload["model_config"][name]
    payload.pop("checksum")
    payload["checksum"] = checkpoint._digest(payload)  # intact bytes of an older scratchlm's checkpoint
    torch.save(payload, path)
    loaded = checkpoint.load(path)
    assert loaded.gpt_config() == model.config
    idx = torch.zeros(1, 5, dtype=torch.long)
    assert torch.equal(loaded.build_model()(idx)[0], model(idx)[0])


@pytest.mark.parametrize("options", [OPTIONS["llama-tied-biases"], OPTIONS["llama"], dict(qk_norm=True)], ids=str)
def test_mha_to_gqa_converts_modern_models(options, make_tiny_gpt):
    model = make_tiny_gpt(**options).eval()
    same = mha_to_gqa(model, 4)
    idx = torch.randint(0, 13, (1, 8), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(same(idx)[0], model(idx)[0])
    gqa = mha_to_gqa(model, 2)
    assert gqa.config.kv_heads == 2 and gqa.config.norm == model.config.norm
    assert gqa.num_parameters() == parameter_count(gqa.config)


def test_untied_head_counts_as_the_matmul_not_the_embedding(make_tiny_gpt):
    tied, untied = make_tiny_gpt(pos_embedding="rope"), make_tiny_gpt(pos_embedding="rope", tie_embeddings=False)
    assert untied.num_parameters() == tied.num_parameters() + 13 * 32
    assert untied.num_parameters(non_embedding=True) == tied.num_parameters(non_embedding=True)
    assert non_embedding_params(untied.config, count_head=False) == tied.num_parameters() - 13 * 32
    torch.testing.assert_close(untied.lm_head.weight.std(), torch.tensor(0.02), atol=0.005, rtol=0)


@pytest.mark.parametrize("options", [dict(norm="rmsnorm"), dict(mlp="swiglu"), dict(tie_embeddings=False)], ids=str)
def test_hf_gpt2_conversion_refuses_other_architectures_in_one_line(options, make_tiny_gpt):
    pytest.importorskip("transformers")
    from scratchlm.hf import to_hf

    with pytest.raises(ConfigError, match="cannot be converted to GPT2LMHeadModel") as error:
        to_hf(make_tiny_gpt(**options))
    assert "\n" not in str(error.value)


# the command line


def test_train_help_lists_the_new_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--arch", "--norm ", "--norm-eps", "--mlp", "--qk-norm", "--no-qk-norm", "--tie-embeddings",
                 "--no-tie-embeddings"):  # fmt: skip
        assert flag in text, flag


def test_cli_trains_a_llama_and_samples_with_it(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    args = ["train", "--preset", "smoke", "--max-iters", "6", "--eval-interval", "3", "--eval-iters", "1"]
    assert main([*args, "--no-progress", "--arch", "llama", "--qk-norm", "--data", text_file, "--out", str(out)]) == 0
    saved = checkpoint.load(out / "ckpt.pt").gpt_config()
    assert (saved.arch, saved.norm, saved.mlp, saved.pos_embedding, saved.bias, saved.tie_embeddings) == (
        "llama", "rmsnorm", "swiglu", "rope", False, False
    )  # fmt: skip
    assert saved.qk_norm
    capsys.readouterr()
    assert main(["sample", "--ckpt", str(out), "--prompt", "To", "--max-new-tokens", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("To")
