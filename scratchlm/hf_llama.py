"""Converting between a Llama-style `GPT` and Hugging Face's `LlamaForCausalLM` (`Qwen3ForCausalLM` with QK-norm).

A `GPT` with RMSNorm, SwiGLU and RoPE (`GPTConfig(arch="llama")`) is the architecture of Llama; with `qk_norm`
it is Qwen 3's, which RMS-normalises each query and key head before RoPE exactly as ours does. The differences
are bookkeeping:

- Names and fused matrices. Ours keeps GPT-2's names; HF's Llama splits what we fuse:

      transformer.wte                 model.embed_tokens
      h.i.ln_1 / h.i.ln_2             layers.i.input_layernorm / layers.i.post_attention_layernorm
      h.i.attn.c_attn = [Wq; Wk; Wv]  layers.i.self_attn.q_proj, k_proj, v_proj (rows stacked in that order)
      h.i.attn.c_proj                 layers.i.self_attn.o_proj
      h.i.attn.q_norm / k_norm        layers.i.self_attn.q_norm / k_norm (Qwen 3)
      h.i.mlp.c_fc = [Wgate; Wup]     layers.i.mlp.gate_proj, up_proj
      h.i.mlp.c_proj                  layers.i.mlp.down_proj
      transformer.ln_f, lm_head       model.norm, lm_head

- RoPE's pair layout. Both rotate pair i of a head by the angle m * theta_i, theta_i = base^(-2i/D), but the
  pairs are different channels: ours are interleaved, (x[2i], x[2i+1]) (`rope.py`: the complex-number form);
  HF's `rotate_half` pairs the two halves, (x[i], x[i + D/2]). Listing a head's channels in the order
  perm = [0, 2, ..., D-2, 1, 3, ..., D-1] (HF channel j is our channel perm[j], `rope_permutation`) puts our pair
  (2i, 2i+1) at HF's (i, i + D/2), where it turns by the same angle. A score q.k sums over channels, so reordering
  the channels of q and of k alike changes no score; in the weights it reorders the rows of Wq and Wk within
  each head (and the QK-norm gains, one per channel). Values and the output projection are untouched.
- RMSNorm: x / sqrt(mean(x^2) + eps) * weight on both sides (HF computes it in float32, as a float32 model of ours
  does), eps being our `norm_eps` and HF's `rms_norm_eps`.
- Attention scales scores by 1/sqrt(D) on both sides; with grouped-query attention both give query head h the
  key/value head h // (n_head / kv_heads). `rope_base` is HF's `rope_theta`, `block_size` its
  `max_position_embeddings`, `tie_embeddings` its `tie_word_embeddings`, `bias` its `attention_bias` and
  `mlp_bias` (Qwen 3's MLP has no biases, so a Qwen 3 converts only without them).

What the other side cannot represent (a GELU MLP, learned positions, another SwiGLU width, scaled RoPE, biases
in attention but not in the MLP, ...) raises `ConfigError` in one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from scratchlm.errors import ConfigError
from scratchlm.model import GPT, GPTConfig, swiglu_hidden_size

if TYPE_CHECKING:
    from transformers import PreTrainedModel

LLAMA_TYPES = ("llama", "qwen3")


def rope_permutation(head_size: int) -> torch.Tensor:
    """perm with HF channel j = our channel perm[j] within a head: the even channels, then the odd ones: (D,)."""
    return torch.cat((torch.arange(0, head_size, 2), torch.arange(1, head_size, 2)))


def _reorder_heads(tensor: torch.Tensor, n_heads: int, order: torch.Tensor) -> torch.Tensor:
    """Reorder the channels of each of the n_heads heads stacked along dim 0: (n_heads * D, ...) -> same shape."""
    return tensor.reshape(n_heads, len(order), *tensor.shape[1:])[:, order].reshape(tensor.shape)


def _check_llama_style(config: GPTConfig) -> str:
    """'qwen3' for a QK-norm model, 'llama' otherwise; `ConfigError` naming the first field HF's cannot hold."""
    family = "Qwen3ForCausalLM" if config.qk_norm else "LlamaForCausalLM"
    required = {"norm": "rmsnorm", "mlp": "swiglu", "pos_embedding": "rope"}
    for name, value in required.items():
        if getattr(config, name) != value:
            raise ConfigError(
                f"Llama has {', '.join(f'{k}={v!r}' for k, v in required.items())}; a model with "
                f"{name}={getattr(config, name)!r} cannot be converted to {family}"
            )
    if config.qk_norm and config.bias:
        raise ConfigError(
            "Qwen 3 (the Llama with QK-norm) has no biases in its MLP; a qk_norm model with bias=True cannot be "
            "converted to Qwen3ForCausalLM"
        )
    return "qwen3" if config.qk_norm else "llama"


def _hf_state(model: GPT) -> dict[str, torch.Tensor]:
    """Our state dict under HF's Llama/Qwen 3 names, fused matrices split and q/k rows in HF's RoPE layout."""
    c = model.config
    ours = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    perm, q_size, kv_size = rope_permutation(c.head_size), c.n_embd, c.kv_heads * c.head_size
    state = {"model.embed_tokens.weight": ours["transformer.wte.weight"], "lm_head.weight": ours["lm_head.weight"]}
    state["model.norm.weight"] = ours["transformer.ln_f.weight"]
    for i in range(c.n_layer):
        src, dst = f"transformer.h.{i}.", f"model.layers.{i}."
        state[dst + "input_layernorm.weight"] = ours[src + "ln_1.weight"]
        state[dst + "post_attention_layernorm.weight"] = ours[src + "ln_2.weight"]
        for kind in ("weight", "bias") if c.bias else ("weight",):
            q, k, v = ours[src + f"attn.c_attn.{kind}"].split((q_size, kv_size, kv_size))
            state[dst + f"self_attn.q_proj.{kind}"] = _reorder_heads(q, c.n_head, perm)
            state[dst + f"self_attn.k_proj.{kind}"] = _reorder_heads(k, c.kv_heads, perm)
            state[dst + f"self_attn.v_proj.{kind}"] = v
            state[dst + f"self_attn.o_proj.{kind}"] = ours[src + f"attn.c_proj.{kind}"]
            gate, up = ours[src + f"mlp.c_fc.{kind}"].chunk(2)
            state[dst + f"mlp.gate_proj.{kind}"], state[dst + f"mlp.up_proj.{kind}"] = gate, up
            state[dst + f"mlp.down_proj.{kind}"] = ours[src + f"mlp.c_proj.{kind}"]
        if c.qk_norm:
            state[dst + "self_attn.q_norm.weight"] = ours[src + "attn.q_norm.weight"][perm]
            state[dst + "self_attn.k_norm.weight"] = ours[src + "attn.k_norm.weight"][perm]
    return state


def _our_state(hf_state: dict[str, torch.Tensor], c: GPTConfig) -> dict[str, torch.Tensor]:
    """HF's Llama/Qwen 3 state dict under our names: the inverse of `_hf_state`."""
    hf = {k: v.detach().float().cpu() for k, v in hf_state.items()}
    inverse = torch.argsort(rope_permutation(c.head_size))
    state = {
        "transformer.wte.weight": hf["model.embed_tokens.weight"],
        "transformer.ln_f.weight": hf["model.norm.weight"],
    }
    state["lm_head.weight"] = hf.get("lm_head.weight", hf["model.embed_tokens.weight"])
    for i in range(c.n_layer):
        src, dst = f"model.layers.{i}.", f"transformer.h.{i}."
        state[dst + "ln_1.weight"] = hf[src + "input_layernorm.weight"]
        state[dst + "ln_2.weight"] = hf[src + "post_attention_layernorm.weight"]
        for kind in ("weight", "bias") if c.bias else ("weight",):
            q = _reorder_heads(hf[src + f"self_attn.q_proj.{kind}"], c.n_head, inverse)
            k = _reorder_heads(hf[src + f"self_attn.k_proj.{kind}"], c.kv_heads, inverse)
            state[dst + f"attn.c_attn.{kind}"] = torch.cat((q, k, hf[src + f"self_attn.v_proj.{kind}"]))
            state[dst + f"attn.c_proj.{kind}"] = hf[src + f"self_attn.o_proj.{kind}"]
            gate_up = (hf[src + f"mlp.gate_proj.{kind}"], hf[src + f"mlp.up_proj.{kind}"])
            state[dst + f"mlp.c_fc.{kind}"] = torch.cat(gate_up)
            state[dst + f"mlp.c_proj.{kind}"] = hf[src + f"mlp.down_proj.{kind}"]
        if c.qk_norm:
            state[dst + "attn.q_norm.weight"] = hf[src + "self_attn.q_norm.weight"][inverse]
            state[dst + "attn.k_norm.weight"] = hf[src + "self_attn.k_norm.weight"][inverse]
    return state


def _load_parameters(target: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` into every parameter of `target` by name (a tied tensor appears once); shapes must match."""
    with torch.no_grad():
        for name, param in target.named_parameters():
            tensor = state[name]
            if tensor.shape != param.shape:
                raise ConfigError(f"shape mismatch for {name}: {tuple(tensor.shape)} vs {tuple(param.shape)}")
            param.copy_(tensor)


def llama_to_hf(model: GPT) -> PreTrainedModel:
    """A `LlamaForCausalLM` (`Qwen3ForCausalLM` for a qk_norm model) computing the same function as `model`
    (float32, eval mode). Called through `hf.to_hf`, which says in one line when transformers is missing."""
    import transformers

    c = model.config
    family = _check_llama_style(c)
    options: dict[str, Any] = dict(
        vocab_size=c.vocab_size,
        hidden_size=c.n_embd,
        intermediate_size=swiglu_hidden_size(c.n_embd),
        num_hidden_layers=c.n_layer,
        num_attention_heads=c.n_head,
        num_key_value_heads=c.kv_heads,
        head_dim=c.head_size,
        hidden_act="silu",
        max_position_embeddings=c.block_size,
        rms_norm_eps=c.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(c.rope_base)},
        attention_bias=c.bias,
        attention_dropout=c.dropout,
        tie_word_embeddings=c.tie_embeddings,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    if family == "qwen3":
        hf_model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**options, use_sliding_window=False))
    else:
        hf_model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**options, mlp_bias=c.bias))
    _load_parameters(hf_model, _hf_state(model))
    return hf_model.eval()


def llama_from_hf(hf_model: PreTrainedModel, dropout: float = 0.0) -> GPT:
    """Our `GPT` (arch="llama"; qk_norm for a Qwen 3) with the weights of a HF `LlamaForCausalLM` or
    `Qwen3ForCausalLM`, in eval mode on the CPU."""
    hc = hf_model.config
    kind = getattr(hc, "model_type", None)
    name = {"llama": "Llama", "qwen3": "Qwen 3"}.get(kind, repr(kind))
    if kind not in LLAMA_TYPES:
        raise ConfigError(f"expected a Llama or Qwen 3 model, got model_type={kind!r}")
    hidden, heads = hc.hidden_size, hc.num_attention_heads
    rope = dict(getattr(hc, "rope_parameters", None) or {})
    bias = bool(getattr(hc, "attention_bias", False))
    mlp_bias = bool(getattr(hc, "mlp_bias", False))
    problems = [
        (hc.hidden_act != "silu", f"its activation is {hc.hidden_act!r}, not SwiGLU's silu"),
        (hidden % heads or hc.head_dim != hidden // heads, f"its head_dim={hc.head_dim} is not hidden_size / heads"),
        (
            hc.intermediate_size != swiglu_hidden_size(hidden),
            f"its intermediate_size={hc.intermediate_size} differs from our SwiGLU width for hidden_size={hidden} "
            f"({swiglu_hidden_size(hidden)}, model.swiglu_hidden_size)",
        ),
        (rope.get("rope_type", "default") != "default", f"its RoPE is scaled (rope_type={rope.get('rope_type')!r})"),
        (bias != mlp_bias, f"it has attention_bias={bias} but mlp_bias={mlp_bias}; ours has one bias flag"),
        (bool(getattr(hc, "use_sliding_window", False)), "it uses sliding-window attention"),
    ]
    for problem, message in problems:
        if problem:
            raise ConfigError(f"this {name} cannot be converted: {message}")
    config = GPTConfig(
        arch="llama",
        vocab_size=hc.vocab_size,
        block_size=hc.max_position_embeddings,
        n_layer=hc.num_hidden_layers,
        n_head=heads,
        n_kv_head=None if hc.num_key_value_heads in (None, heads) else hc.num_key_value_heads,
        n_embd=hidden,
        dropout=dropout,
        bias=bias,
        norm_eps=hc.rms_norm_eps,
        rope_base=rope.get("rope_theta", 10000.0),
        qk_norm=kind == "qwen3",
        tie_embeddings=bool(getattr(hc, "tie_word_embeddings", False)),
    )
    model = GPT(config)
    _load_parameters(model, _our_state(hf_model.state_dict(), config))
    return model.eval()
