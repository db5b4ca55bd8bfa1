"""Converting between our `GPT` and Hugging Face's models (needs `transformers`): `to_hf` and `from_hf`.

A GPT-2-style `GPT` (LayerNorm, GELU) converts to `GPT2LMHeadModel`; a Llama-style one (RMSNorm and SwiGLU,
`GPTConfig(arch="llama")`) to `LlamaForCausalLM`, or to `Qwen3ForCausalLM` when it has QK-norm (`hf_llama` holds
that mapping, including the reordering of RoPE's channels). `from_hf` takes any of the three back.

GPT-2's and ours share the architecture and the parameter names; the differences are bookkeeping:
- HF's GPT-2 implements its Linear layers as `Conv1D`, which stores the weight as (in, out) where
  `nn.Linear` stores (out, in), so the four projection matrices of each block are transposed;
- GPT-2's activation is "gelu_new", the tanh approximation of GELU, which our MLP uses as well;
- LayerNorm epsilon is 1e-5 on both sides, and the output head is tied to the token embedding.
With these matched, logits agree to float rounding in both directions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from scratchlm.errors import ConfigError, ScratchLMError
from scratchlm.hf_llama import LLAMA_TYPES, llama_from_hf, llama_to_hf
from scratchlm.model import GPT, GPTConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# parameters stored as Conv1D (in, out) by HF and as nn.Linear (out, in) by us
_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ScratchLMError(
            "Hugging Face conversion needs the `transformers` package: pip install transformers"
        ) from None
    return transformers


def _copy_weights(source: dict[str, torch.Tensor], target: torch.nn.Module) -> None:
    """Copy every parameter of `target` from `source` (same names), transposing the Conv1D ones.

    A transpose is its own inverse, so the same function converts in either direction.
    """
    with torch.no_grad():
        for name, param in target.named_parameters():  # a tied tensor appears once, under wte
            tensor = source[name]
            if name.endswith(_TRANSPOSED):
                tensor = tensor.t()
            if tensor.shape != param.shape:
                raise ConfigError(f"shape mismatch for {name}: {tuple(tensor.shape)} vs {tuple(param.shape)}")
            param.copy_(tensor)


def to_hf(model: GPT) -> PreTrainedModel:
    """A Hugging Face model computing the same function as `model` (float32, in eval mode): a
    `LlamaForCausalLM` (`Qwen3ForCausalLM` with qk_norm) for an RMSNorm + SwiGLU model, else a `GPT2LMHeadModel`.
    A configuration the chosen model cannot represent raises `ConfigError` naming the field."""
    transformers = _transformers()
    c = model.config
    if c.norm == "rmsnorm" and c.mlp == "swiglu":
        return llama_to_hf(model)
    modern = {"norm": "layernorm", "mlp": "gelu", "qk_norm": False, "tie_embeddings": True, "norm_eps": 1e-5}
    not_gpt2 = [f"{name}={getattr(c, name)!r}" for name, value in modern.items() if getattr(c, name) != value]
    if not_gpt2:
        raise ConfigError(
            f"GPT-2 has {', '.join(f'{k}={v!r}' for k, v in modern.items())}; a model with {', '.join(not_gpt2)} "
            "cannot be converted to GPT2LMHeadModel (RMSNorm + SwiGLU models convert to LlamaForCausalLM)"
        )
    if not c.bias:
        raise ConfigError("GPT-2 has biases in every Linear and LayerNorm; only bias=True models convert")
    if c.pos_embedding != "learned":
        raise ConfigError(
            f"GPT-2 has learned absolute position embeddings; a pos_embedding={c.pos_embedding!r} model "
            "cannot be converted to it"
        )
    if c.kv_heads != c.n_head:
        raise ConfigError(
            f"GPT-2 has one key/value head per query head; a grouped-query model (n_kv_head={c.kv_heads}, "
            f"n_head={c.n_head}) cannot be converted to it"
        )
    special = 50256 if c.vocab_size > 50256 else None  # GPT-2's <|endoftext|>, when the vocabulary has it
    hf_config = transformers.GPT2Config(
        vocab_size=c.vocab_size,
        n_positions=c.block_size,
        n_embd=c.n_embd,
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_inner=4 * c.n_embd,
        activation_function="gelu_new",
        resid_pdrop=c.dropout,
        embd_pdrop=c.dropout,
        attn_pdrop=c.dropout,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
        bos_token_id=special,
        eos_token_id=special,
    )
    hf_model = transformers.GPT2LMHeadModel(hf_config)
    _copy_weights({k: v.detach().float().cpu() for k, v in model.state_dict().items()}, hf_model)
    return hf_model.eval()


def from_hf(hf_model: PreTrainedModel, dropout: float = 0.0) -> GPT:
    """Our `GPT` with the weights of a Hugging Face `GPT2LMHeadModel`, `LlamaForCausalLM` or `Qwen3ForCausalLM`,
    in eval mode on the CPU."""
    _transformers()
    hc = hf_model.config
    if getattr(hc, "model_type", None) in LLAMA_TYPES:
        return llama_from_hf(hf_model, dropout)
    if getattr(hc, "model_type", None) != "gpt2":
        raise ConfigError(
            f"expected a GPT-2, Llama or Qwen 3 model, got model_type={getattr(hc, 'model_type', None)!r}"
        )
    if hc.activation_function not in _TANH_GELU:
        raise ConfigError(f"activation {hc.activation_function!r} is not GPT-2's tanh GELU; cannot convert")
    if hc.n_inner not in (None, 4 * hc.n_embd):
        raise ConfigError(f"n_inner={hc.n_inner} differs from 4 * n_embd; cannot convert")
    if abs(hc.layer_norm_epsilon - 1e-5) > 1e-12:
        raise ConfigError(f"layer_norm_epsilon={hc.layer_norm_epsilon} differs from ours (1e-5)")
    if getattr(hc, "scale_attn_by_inverse_layer_idx", False) or not getattr(hc, "scale_attn_weights", True):
        raise ConfigError("this GPT-2 variant scales attention differently; cannot convert")
    head, embedding = hf_model.get_output_embeddings().weight, hf_model.get_input_embeddings().weight
    if not getattr(hc, "tie_word_embeddings", True) and not torch.equal(head, embedding):
        # our GPT ties its head to wte; converting would silently replace HF's lm_head by the embedding
        raise ConfigError("this GPT-2 has an output layer of its own (tie_word_embeddings=False); ours ties it to wte")
    config = GPTConfig(
        vocab_size=hc.vocab_size,
        block_size=hc.n_positions,
        n_layer=hc.n_layer,
        n_head=hc.n_head,
        n_embd=hc.n_embd,
        dropout=dropout,
        bias=True,
    )
    model = GPT(config)
    _copy_weights({k: v.detach().float().cpu() for k, v in hf_model.state_dict().items()}, model)
    return model.eval()


def from_pretrained_gpt2(name: str = "gpt2", dropout: float = 0.0) -> GPT:
    """Download (or read from the HF cache) OpenAI's GPT-2 weights and convert them to our `GPT`."""
    transformers = _transformers()
    return from_hf(transformers.GPT2LMHeadModel.from_pretrained(name), dropout=dropout)
