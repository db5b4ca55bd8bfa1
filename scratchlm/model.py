"""A GPT: token + position embeddings, a stack of pre-norm transformer blocks, an output head.

Parameter names follow GPT-2 (`transformer.wte`, `transformer.h.0.attn.c_attn`, ...), so converting to and
from the Hugging Face implementation (`scratchlm.hf`) is a matter of transposing a few matrices.

Shapes in comments: B batch, T time (sequence length), C channels (n_embd), H heads, D = C // H per head,
V vocabulary.

The attention lives in `scratchlm.attention` (`CausalSelfAttention`). Later lessons extend the model through
its config rather than fork it: rotary position embeddings (`pos_embedding="rope"`, from `scratchlm.rope`,
applied to q and k in the attention), grouped-query attention (`n_kv_head` < `n_head`: fewer key/value heads
shared by groups of query heads; `mha_to_gqa` converts a trained model) and a key/value cache for fast
generation (`forward(idx, cache=KVCache)`, from `scratchlm.kv_cache`; the model only passes it on).

The modern block (lesson 13) is four more one-word choices: `norm` (LayerNorm or RMSNorm), `mlp` (GELU,
SwiGLU or ReLU²), `qk_norm` (RMS-normalised query and key heads) and `tie_embeddings` (an output layer of its
own); `arch="llama"` sets the Llama combination (RMSNorm, SwiGLU, RoPE, no biases, untied) in one word.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.attention.causal import CausalSelfAttention
from scratchlm.errors import ConfigError
from scratchlm.layers import GELU, Linear, RMSNorm, relu_squared, silu
from scratchlm.options import BOOL, POSITIVE_INT, check_options, number, one_of, option, optional
from scratchlm.rope import rope_cache

POS_EMBEDDINGS = ("learned", "rope")
ATTENTION_KERNELS = ("sdpa", "tiled")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu", "relu2")
# a named architecture is the values it gives the fields left at None; fields given explicitly keep their value
ARCHS: dict[str, dict[str, Any]] = {
    "gpt2": dict(norm="layernorm", mlp="gelu", pos_embedding="learned", bias=True, tie_embeddings=True),
    "llama": dict(norm="rmsnorm", mlp="swiglu", pos_embedding="rope", bias=False, tie_embeddings=False),
}
ARCH_FIELDS = tuple(ARCHS["gpt2"])
SWIGLU_MULTIPLE = 8


def swiglu_hidden_size(n_embd: int) -> int:
    """SwiGLU's hidden width h: three C x h matrices hold as many weights as GELU's two C x 4C when h = 8C/3,
    rounded here to the nearest multiple of 8 (at least 8), so the counts differ by at most 3 * 4 * C weights."""
    return max(SWIGLU_MULTIPLE, SWIGLU_MULTIPLE * round(8 * n_embd / 3 / SWIGLU_MULTIPLE))


@dataclass(frozen=True)
class GPTConfig:
    """Every architectural choice of the model. The defaults are the classic character-level Shakespeare GPT.

    vocab_size None means "not known yet": `train` takes it from the tokenizer; a `GPT` needs a number.
    `arch` names a combination of norm, mlp, pos_embedding, bias and tie_embeddings (`ARCHS`): each of those
    left at None takes the arch's value when the config is made, and one given explicitly wins over it
    (`GPTConfig(arch="llama", bias=True)` is Llama with biases). The stored config holds the resolved values;
    change the arch with `replace`, which lets the new arch decide those fields again (`dataclasses.replace`
    would keep the old arch's values).
    With n_kv_head < n_head each key/value head is shared by n_head // n_kv_head query heads (grouped-query
    attention; 1 is multi-query attention); `kv_heads` is the resolved number. RoPE rotates pairs of
    channels, so with pos_embedding="rope" the head size must be even (and there is no `wpe` parameter).
    """

    vocab_size: int | None = option(
        None, "number of token ids (None: the tokenizer's)", optional(POSITIVE_INT, mention_none=False), cli=False
    )
    arch: str = option(
        "gpt2",
        "named architecture, the default of --norm, --mlp, --pos-embedding, --bias, --tie-embeddings: gpt2 "
        "(layernorm, gelu, learned, biases, tied) or llama (rmsnorm, swiglu, rope, no biases, untied); "
        "those flags given beside it win",
        one_of(*ARCHS),
    )
    block_size: int = option(256, "context length in tokens (the longest sequence the model sees)", POSITIVE_INT)
    n_layer: int = option(6, "number of transformer blocks", POSITIVE_INT)
    n_head: int = option(6, "attention heads per block (must divide --n-embd)", POSITIVE_INT)
    n_embd: int = option(384, "width of the residual stream", POSITIVE_INT)
    dropout: float = option(
        0.0, "dropout on embeddings, attention weights and residual branches", number("in [0, 1)", lambda v: 0 <= v < 1)
    )
    bias: bool | None = option(
        None, "biases in Linear layers and LayerNorms (GPT-2 has them; default: the --arch's)", BOOL
    )
    pos_embedding: str | None = option(
        None,
        "position encoding: learned absolute embeddings (GPT-2) or rotary (RoPE) (default: the --arch's)",
        one_of(*POS_EMBEDDINGS),
    )
    n_kv_head: int | None = option(
        None,
        "key/value heads for grouped-query attention (must divide --n-head; default: n_head, 1 = multi-query)",
        optional(POSITIVE_INT),
        metavar="N",
    )
    rope_base: float = option(
        10000.0, "RoPE's base wavelength (with --pos-embedding rope)", number("a number > 1", lambda v: v > 1)
    )
    attention: str = option(
        "sdpa",
        "attention kernel: PyTorch's fused scaled_dot_product_attention, or lesson 07's tiled online-softmax "
        "kernel in plain PyTorch (the same function, slower: for study)",
        one_of(*ATTENTION_KERNELS),
    )
    norm: str | None = option(
        None,
        "normalisation: layernorm (GPT-2) or rmsnorm (no centring, no bias) (default: the --arch's)",
        one_of(*NORMS),
    )
    norm_eps: float = option(1e-5, "epsilon of every LayerNorm/RMSNorm", number("in (0, 1)", lambda v: 0 < v < 1))
    mlp: str | None = option(
        None,
        "MLP: gelu (GPT-2: 4C wide), swiglu (SiLU-gated, about 8C/3 wide: the same parameters) or relu2 "
        "(ReLU squared, 4C wide) (default: the --arch's)",
        one_of(*MLPS),
    )
    qk_norm: bool = option(False, "RMS-normalise every query and key head (learned gain) before RoPE", BOOL)
    tie_embeddings: bool | None = option(
        None, "the output layer shares the token embedding's matrix (default: the --arch's)", BOOL
    )

    def __post_init__(self) -> None:
        for name, value in ARCHS.get(self.arch, {}).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        check_options(self)
        if self.n_embd % self.n_head != 0:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_kv_head is not None and self.n_head % self.n_kv_head != 0:
            raise ConfigError(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        if self.pos_embedding == "rope" and self.head_size % 2:
            raise ConfigError(
                "RoPE needs an even head size because it rotates pairs of channels (head size must be even: "
                f"n_embd={self.n_embd} / n_head={self.n_head} = {self.head_size})"
            )
        if self.attention == "tiled" and self.dropout > 0:
            raise ConfigError(
                f"attention='tiled' has no dropout on the attention weights; use dropout=0 (got {self.dropout}) "
                "or attention='sdpa'"
            )

    @property
    def head_size(self) -> int:
        """D, the size of every query, key and value head."""
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads: n_kv_head, or n_head when it is None."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def kv_head_size(self) -> int:
        """Size of one key (or value) head: the same D as a query head, since q . k needs equal lengths."""
        return self.head_size

    @property
    def kv_group_size(self) -> int:
        """Query heads sharing one key/value head: 1 for multi-head attention, n_head for multi-query."""
        return self.n_head // self.kv_heads

    def replace(self, **changes: Any) -> GPTConfig:
        """A copy with fields replaced by name. A different `arch` decides its fields (`ARCH_FIELDS`) again,
        except those given in `changes` too."""
        if changes.get("arch", self.arch) != self.arch:
            changes = {**dict.fromkeys(ARCH_FIELDS), **changes}
        return dataclasses.replace(self, **changes)

    def differences(self, other: GPTConfig, ignore: tuple[str, ...] = ("dropout",)) -> list[str]:
        """The fields in which `other` differs from this config, as "name=ours (now theirs)" (dropout, which
        does not change the parameters, is ignored by default)."""
        return [
            f"{f.name}={getattr(self, f.name)} (now {getattr(other, f.name)})"
            for f in dataclasses.fields(self)
            if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)
        ]


class MLP(nn.Module):
    """Position-wise feed-forward network (GPT-2's): widen 4x, GELU, project back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        # GPT-2 uses the tanh approximation of GELU; matching it keeps the Hugging Face conversion exact.
        self.gelu = GELU(approximate="tanh")
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C)."""
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class SwiGLUMLP(nn.Module):
    """Llama's MLP (Shazeer, 2020): silu(x W_gate) * (x W_up), projected back by W_down.

    The gate decides, per hidden unit, how much of the linear "up" path passes. Three matrices instead of two,
    so the hidden width is `swiglu_hidden_size(C)` (about 8C/3) to keep GELU's parameter count. `c_fc` holds
    [W_gate | W_up] as one (2h, C) matrix (one matmul instead of two), `c_proj` is W_down (the name that gets
    GPT-2's scaled residual init).
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = swiglu_hidden_size(config.n_embd)
        self.c_fc = Linear(config.n_embd, 2 * hidden, bias=config.bias)
        self.c_proj = Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C)."""
        gate, up = self.c_fc(x).chunk(2, dim=-1)  # each (B, T, h)
        return self.dropout(self.c_proj(silu(gate) * up))


class ReLU2MLP(nn.Module):
    """GPT-2's MLP with ReLU(x)² in place of GELU: widen 4x, square the positive part, project back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C)."""
        return self.dropout(self.c_proj(relu_squared(self.c_fc(x))))


MLP_CLASSES: dict[str, type[nn.Module]] = {"gelu": MLP, "swiglu": SwiGLUMLP, "relu2": ReLU2MLP}


def norm_layer(config: GPTConfig) -> nn.Module:
    """The config's norm over the C channels: LayerNorm (with a bias when config.bias) or RMSNorm (never one)."""
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


class Block(nn.Module):
    """A transformer block: communication (attention) then computation (MLP), each on a residual branch.

    Pre-norm: the norm (LayerNorm or RMSNorm) sits at the start of each branch, so the residual stream itself
    is a clean sum that gradients flow through unchanged.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = norm_layer(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = norm_layer(config)
        self.mlp = MLP_CLASSES[config.mlp](config)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Any = None,
        layer: int = 0,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C). rope, cache, layer, attn_mask: passed on to the attention.

        The GPT calls every block this way, so a block of one's own (lesson 03 writes several) takes the same
        arguments: the rotation table for these positions (or None), the KV cache (or None), its index, and,
        only when the caller gave one, the extra attention mask.
        """
        x = x + self.attn(self.ln_1(x), rope, cache, layer, attn_mask)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """The language model: ids (B, T) -> next-token logits (B, T, V)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ConfigError(f"GPT expects a GPTConfig, got {type(config).__name__}")
        if config.vocab_size is None:
            raise ConfigError("GPTConfig.vocab_size is None: set it to the tokenizer's vocab_size")
        self.config = config
        modules = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))
        if config.pos_embedding == "learned":
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.transformer = nn.ModuleDict(
            dict(
                **modules,
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=norm_layer(config),
            )
        )
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:  # weight tying: the input embedding and the output projection share one (V, C)
            self.lm_head.weight = self.transformer.wte.weight
        if config.pos_embedding == "rope":
            # a fixed table, not a parameter: recomputed at construction, so not saved in the state_dict
            cos, sin = rope_cache(config.head_size, config.block_size, config.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)  # (block_size, D/2)
            self.register_buffer("rope_sin", sin, persistent=False)

        self.apply(self._init_weights)  # an untied head gets GPT-2's N(0, 0.02) like the embedding it replaces
        # scaled init of residual projections, per GPT-2: each block adds two branches to the residual
        # stream, so 1/sqrt(2 * n_layer) keeps its variance from growing with depth
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def _rope_rows(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for positions start .. end - 1: (end - start, D/2)."""
        if end <= self.rope_cos.size(0):
            return self.rope_cos[start:end], self.rope_sin[start:end]
        # RoPE has no table limit: positions past block_size (a longer KV cache) get their angles computed
        cos, sin = rope_cache(
            self.config.head_size, end, self.config.rope_base, self.rope_cos.device, self.rope_cos.dtype
        )
        return cos[start:], sin[start:]

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: Any = None,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: (B, T) int64 token ids, T <= block_size; targets: (B, T) ids or None (-1 = ignore).

        Returns logits (B, T, V) for every position and the mean cross-entropy loss (None without targets).

        cache: a `KVCache` (see `KVCache.for_model`) for incremental decoding. The T tokens are then the
        continuation of the cache.length tokens already in it: they take positions cache.length ..
        cache.length + T - 1, attend to every cached token and causally to each other, and their keys and
        values are appended (cache.length grows by T). With learned positions the last position must stay
        below block_size; RoPE models may run past it when the cache is longer.

        attn_mask: which keys each token may see, on top of the causal mask (it cannot lift it): boolean
        (True = may attend) or additive float, (T, S) or (B, 1 or n_head, T, S), S = cache.length + T (every
        key, cached ones included). `scratchlm.attention.document_mask(doc_ids)` packs documents; a key padding
        mask is `(idx != pad)[:, None, None, :]`. A token that may see no key gets a zero attention output.
        Positions are not reset per document: with RoPE a packed document's logits equal those of the document
        alone (only offsets matter), with learned positions they do not.
        """
        batch_size, seq_len = idx.shape
        start = 0 if cache is None else cache.length
        end = start + seq_len
        if cache is None and seq_len > self.config.block_size and self.config.pos_embedding == "learned":
            raise ConfigError(
                f"cannot forward a sequence of length {seq_len}: block_size is {self.config.block_size} "
                "(crop the context, as generate() does)"
            )
        if cache is not None:
            if end > self.config.block_size and self.config.pos_embedding == "learned":
                raise ConfigError(
                    f"positions {start}..{end - 1} do not exist: learned position embeddings stop at "
                    f"block_size={self.config.block_size} (crop the context and start a fresh cache, as "
                    "generate() does)"
                )
            cache.check_fits(self.config, batch_size, seq_len)
        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.config.pos_embedding == "learned":
            x = x + self.transformer.wpe(torch.arange(start, end, device=idx.device))  # (T, C), broadcast over B
        else:
            rope = self._rope_rows(start, end)
        x = self.transformer.drop(x)
        mask = () if attn_mask is None else (attn_mask,)  # passed only when given: lessons' blocks take none
        for layer, block in enumerate(self.transformer.h):
            x = block(x, rope, cache, layer, *mask)
        if cache is not None:
            cache.length = end  # every layer has appended these T tokens' keys and values
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of parameters, each shared tensor counted once (the tied head is the embedding).

        non_embedding=True leaves out the lookup tables, the count that scaling laws and the FLOPs estimate
        use: the learned position embeddings (RoPE has none) and, when the head is untied, the token embedding.
        A tied token embedding stays in because it is also the output layer's matmul; an untied head is counted
        as that matmul.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        if non_embedding and not self.config.tie_embeddings:
            n -= self.transformer.wte.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward), PaLM-style: 6N + 12 * L * T * C.

        6N: each parameter does a multiply-add (2 FLOPs) per token forward and twice that backward.
        12 * L * T * C: the attention scores q k^T and their weighted sum over v, which depend on the
        sequence length T (default block_size) rather than on parameters.
        """
        T = seq_len or self.config.block_size
        N = self.num_parameters(non_embedding=True)
        return 6 * N + 12 * self.config.n_layer * T * self.config.n_embd

    def estimate_mfu(self, tokens_per_second: float, peak_flops: float, seq_len: int | None = None) -> float:
        """Model FLOPs utilisation: achieved training FLOP/s as a fraction of `peak_flops` (FLOP/s)."""
        if peak_flops <= 0:
            raise ConfigError(f"peak_flops must be positive, got {peak_flops}")
        return self.flops_per_token(seq_len) * tokens_per_second / peak_flops


def mha_to_gqa(model: GPT, n_kv_head: int) -> GPT:
    """A copy of `model` with `n_kv_head` key/value heads, each the mean of the group of heads it replaces.

    This is how the grouped-query attention paper (Ainslie et al., 2023) converts a multi-head checkpoint:
    mean-pool the key and value projection weights (and biases) of every group of n_kv_head_now / n_kv_head
    consecutive heads, keep the queries and everything else. The result is a starting point for a short
    "uptraining", not an equivalent model: with n_kv_head == the current number it is an exact copy.
    The new model has model's device, dtype and train/eval mode; `model` itself is left unchanged.
    """
    old = model.config
    config = dataclasses.replace(old, n_kv_head=n_kv_head)  # validates n_kv_head against n_head
    if old.kv_heads % config.kv_heads != 0:
        raise ConfigError(f"cannot merge {old.kv_heads} key/value heads into {config.kv_heads} equal groups")
    group, H, D = old.kv_heads // config.kv_heads, old.n_head, old.head_size

    def pool(t: torch.Tensor) -> torch.Tensor:  # (old.kv_heads * D, ...) -> (config.kv_heads * D, ...)
        return t.reshape(config.kv_heads, group, D, *t.shape[1:]).mean(dim=1).reshape(config.kv_heads * D, *t.shape[1:])

    state = {}
    for name, tensor in model.state_dict().items():
        if name.endswith(("attn.c_attn.weight", "attn.c_attn.bias")):
            q, k, v = tensor.split((H * D, old.kv_heads * D, old.kv_heads * D), dim=0)
            tensor = torch.cat((q, pool(k), pool(v)), dim=0)
        state[name] = tensor
    with torch.random.fork_rng(devices=[]):  # the throwaway initialisation leaves the global seed stream alone
        new = GPT(config)
    weight = model.transformer.wte.weight
    new.to(device=weight.device, dtype=weight.dtype)
    new.load_state_dict(state)
    return new.train(model.training)
