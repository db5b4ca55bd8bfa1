"""A GPT: token + position embeddings, a stack of pre-LayerNorm transformer blocks, a tied output head.

Parameter names follow GPT-2 (`transformer.wte`, `transformer.h.0.attn.c_attn`, ...), so converting to and
from the Hugging Face implementation (`scratchlm.hf`) is a matter of transposing a few matrices.

Shapes in comments: B batch, T time (sequence length), C channels (n_embd), H heads, D = C // H per head,
V vocabulary.

Later lessons extend this file rather than fork it: rotary position embeddings (`pos_embedding="rope"`,
from `scratchlm.rope`, applied to q and k in `CausalSelfAttention`), grouped-query attention (`n_kv_head` <
`n_head`: fewer key/value heads shared by groups of query heads; `mha_to_gqa` converts a trained model) and a
key/value cache for fast generation (`forward(idx, cache=KVCache)`, from `scratchlm.kv_cache`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.errors import ConfigError
from scratchlm.kv_cache import KVCache
from scratchlm.rope import apply_rope, rope_cache

POS_EMBEDDINGS = ("learned", "rope")


@dataclass(frozen=True)
class GPTConfig:
    """Every architectural choice of the model. The defaults are the classic character-level Shakespeare GPT.

    vocab_size: number of token ids. block_size: the longest context the model sees (learned positions).
    n_layer: transformer blocks. n_head: attention heads per block. n_embd: width of the residual stream;
    must be divisible by n_head. dropout: probability used on embeddings, attention weights and residual
    branches during training. bias: biases in Linear layers and LayerNorms (True = GPT-2).
    pos_embedding: "learned" absolute position embeddings added to the tokens (GPT-2), or "rope", rotary
    embeddings applied to queries and keys in every attention layer (`scratchlm.rope`; no `wpe` parameter,
    and the head size must be even). rope_base: RoPE's base wavelength.
    n_kv_head: key/value heads; None means n_head (multi-head attention), fewer gives grouped-query
    attention, each k/v head shared by n_head // n_kv_head query heads, and 1 is multi-query attention.
    `kv_heads` is the resolved number.
    """

    vocab_size: int = 65
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = True
    pos_embedding: str = "learned"
    n_kv_head: int | None = None
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ConfigError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.bias, bool):
            raise ConfigError(f"bias must be True or False, got {self.bias!r}")
        if self.pos_embedding not in POS_EMBEDDINGS:
            raise ConfigError(f"pos_embedding must be one of {', '.join(POS_EMBEDDINGS)}, got {self.pos_embedding!r}")
        if self.n_kv_head is not None:
            if isinstance(self.n_kv_head, bool) or not isinstance(self.n_kv_head, int) or self.n_kv_head <= 0:
                raise ConfigError(f"n_kv_head must be a positive integer or None, got {self.n_kv_head!r}")
            if self.n_head % self.n_kv_head != 0:
                raise ConfigError(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        if self.pos_embedding == "rope":
            if self.head_size % 2:
                raise ConfigError(
                    f"RoPE rotates pairs of channels, so the head size must be even: n_embd={self.n_embd} / "
                    f"n_head={self.n_head} = {self.head_size}"
                )
            base = self.rope_base
            if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 1.0:
                raise ConfigError(f"rope_base must be a number > 1, got {base!r}")

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


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t attends only to positions <= t.

    One Linear computes queries (n_head heads) and keys and values (kv_heads heads each) at once; the heads
    are a reshape, and the masked softmax(q k^T / sqrt(D)) v runs in PyTorch's fused
    `scaled_dot_product_attention`. With grouped-query attention each key/value head serves a group of
    n_head // kv_heads consecutive query heads.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.kv_heads, config.head_size
        self.dropout = config.dropout
        # [q | k | v] in one matrix: for n_kv_head == n_head this is GPT-2's c_attn, names and shape alike
        qkv_size = (config.n_head + 2 * config.kv_heads) * config.head_size
        self.c_attn = nn.Linear(config.n_embd, qkv_size, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C).

        rope: (cos, sin), each (T, D/2), the rotation table rows for these T tokens' positions, or None.
        cache: a `KVCache` holding the keys and values of the cache.length tokens before these; the new
        ones are written into its buffers for `layer` (this block's index in the stack) and the T queries
        attend to all of them. The caller (`GPT.forward`) advances cache.length once every layer has run.
        """
        B, T, C = x.shape
        H, H_kv, D = self.n_head, self.n_kv_head, self.head_size
        q, k, v = self.c_attn(x).split((H * D, H_kv * D, H_kv * D), dim=2)
        # (B, T, H * D) -> (B, H, T, D): each head attends independently
        q = q.view(B, T, H, D).transpose(1, 2)
        k = k.view(B, T, H_kv, D).transpose(1, 2)  # (B, H_kv, T, D)
        v = v.view(B, T, H_kv, D).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.append(layer, k, v)  # (B, H_kv, past + T, D)
        y = _attend(q, k, v, past, self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # concatenate the heads again
        return self.resid_dropout(self.c_proj(y))


_SDPA_HAS_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)  # enable_gqa= is new in 2.5


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int, dropout_p: float) -> torch.Tensor:
    """Causal attention of T new queries over past + T keys: q (B, H, T, D), k, v (B, H_kv, past + T, D).

    Query i sits at position past + i and may see keys 0 .. past + i. With no past that is the ordinary
    causal mask; a single new token sees every key, so it needs no mask; a chunk of several new tokens after
    a past needs an explicit one (SDPA's is_causal aligns the triangle to the top-left, i.e. assumes no past).
    """
    T, S = q.size(2), k.size(2)
    if past == 0:
        mask, is_causal = None, True
    elif T == 1:
        mask, is_causal = None, False
    else:
        mask = torch.arange(S, device=q.device) <= past + torch.arange(T, device=q.device)[:, None]  # (T, S)
        is_causal = False
    group = q.size(1) // k.size(1)
    if group == 1:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
    if _SDPA_HAS_GQA:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, enable_gqa=True
        )
    # older torch: give every query head its own copy of its group's key/value head
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


class MLP(nn.Module):
    """Position-wise feed-forward network: widen 4x, GELU, project back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        # GPT-2 uses the tanh approximation of GELU; matching it keeps the Hugging Face conversion exact.
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C)."""
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A transformer block: communication (attention) then computation (MLP), each on a residual branch.

    Pre-LayerNorm: the norm sits at the start of each branch, so the residual stream itself is a clean sum
    that gradients flow through unchanged.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C). rope, cache, layer: passed on to the attention."""
        x = x + self.attn(self.ln_1(x), rope, cache, layer)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """The language model: ids (B, T) -> next-token logits (B, T, V)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ConfigError(f"GPT expects a GPTConfig, got {type(config).__name__}")
        self.config = config
        modules = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))
        if config.pos_embedding == "learned":
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.transformer = nn.ModuleDict(
            dict(
                **modules,
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: the input embedding and the output projection share one (V, C) matrix
        self.lm_head.weight = self.transformer.wte.weight
        if config.pos_embedding == "rope":
            # a fixed table, not a parameter: recomputed at construction, so not saved in the state_dict
            cos, sin = rope_cache(config.head_size, config.block_size, config.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)  # (block_size, D/2)
            self.register_buffer("rope_sin", sin, persistent=False)

        self.apply(self._init_weights)
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
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: (B, T) int64 token ids, T <= block_size; targets: (B, T) ids or None (-1 = ignore).

        Returns logits (B, T, V) for every position and the mean cross-entropy loss (None without targets).

        cache: a `KVCache` (see `KVCache.for_model`) for incremental decoding. The T tokens are then the
        continuation of the cache.length tokens already in it: they take positions cache.length ..
        cache.length + T - 1, attend to every cached token and causally to each other, and their keys and
        values are appended (cache.length grows by T). With learned positions the last position must stay
        below block_size; RoPE models may run past it when the cache is longer.
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
        for layer, block in enumerate(self.transformer.h):
            # plain block(x) when nothing else is needed: lessons swap in blocks whose forward takes x only
            x = block(x) if rope is None and cache is None else block(x, rope, cache, layer)
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

        non_embedding=True leaves out the learned position embeddings (RoPE has none), the count that
        scaling laws and the FLOPs estimate use; the token embedding stays in because, tied, it is also the
        output layer's matmul.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
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
