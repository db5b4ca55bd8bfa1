"""The explicit attention mask: `attend`, the attention module and the GPT against PyTorch's SDPA, packed
documents against each document alone, and rows that may see nothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scratchlm.attention import CausalSelfAttention, attend, causal_mask, document_mask
from scratchlm.errors import ConfigError
from scratchlm.kv_cache import KVCache
from scratchlm.model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")

B, H, T, D = 2, 4, 5, 8
MASK_SHAPES = {
    "TS": lambda S: (T, S),
    "11TS": lambda S: (1, 1, T, S),
    "B1TS": lambda S: (B, 1, T, S),
    "BHTS": lambda S: (B, H, T, S),
    "B11S": lambda S: (B, 1, 1, S),  # key padding
}
TOL = {torch.float32: {"atol": 1e-5, "rtol": 1e-5}, torch.float64: {}, torch.bfloat16: {"atol": 2e-2, "rtol": 2e-2}}


def random_mask(shape, dtype, kind, seed=0):
    """A boolean or additive mask in which key 0 is always visible (so no row is fully masked)."""
    g = torch.Generator().manual_seed(seed)
    allowed = torch.rand(shape, generator=g) < 0.6
    allowed[..., 0] = True
    if kind == "bool":
        return allowed
    bias = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return bias.masked_fill(~allowed, float("-inf"))


def reference(q, k, v, mask, past, causal):
    """SDPA given the whole mask, the causal triangle folded in by hand, every query head its own k/v copy."""
    group = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    if causal:
        triangle = causal_mask(q.size(2), k.size(2), past)
        mask = mask & triangle if mask.dtype == torch.bool else mask.masked_fill(~triangle, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("past", [0, 3], ids=["no-cache", "cache3"])
@pytest.mark.parametrize("n_kv_head", [4, 2, 1], ids=["mha", "gqa2", "mqa"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "mask-only"])
@pytest.mark.parametrize("kind", ["bool", "additive"])
@pytest.mark.parametrize("shape", list(MASK_SHAPES), ids=list(MASK_SHAPES))
def test_attend_with_a_mask_equals_sdpa(shape, kind, causal, n_kv_head, past, dtype):
    S = past + T
    g = torch.Generator().manual_seed(1)
    q = torch.randn(B, H, T, D, generator=g).to(dtype)
    k, v = (torch.randn(B, n_kv_head, S, D, generator=g).to(dtype) for _ in range(2))
    mask = random_mask(MASK_SHAPES[shape](S), dtype, kind)
    got = attend(q, k, v, past, attn_mask=mask, causal=causal)
    torch.testing.assert_close(got, reference(q, k, v, mask, past, causal), **TOL[dtype])


def test_an_all_true_mask_changes_nothing():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    everything = torch.ones(T, T, dtype=torch.bool)
    torch.testing.assert_close(attend(q, k, v, attn_mask=everything), attend(q, k, v))
    torch.testing.assert_close(attend(q, k, v, attn_mask=torch.zeros(T, T)), attend(q, k, v))
    torch.testing.assert_close(attend(q, k, v, causal=False), F.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_a_row_that_sees_no_key_gives_zeros_and_finite_gradients(kind):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4, D, generator=g, requires_grad=True) for _ in range(3))
    allowed = torch.ones(4, 4, dtype=torch.bool)
    allowed[2] = False  # query 2 may see nothing
    mask = allowed if kind == "bool" else torch.zeros(4, 4).masked_fill(~allowed, float("-inf"))
    out = attend(q, k, v, attn_mask=mask)
    assert torch.equal(out[:, :, 2], torch.zeros(1, 2, D))
    out.square().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    assert torch.equal(q.grad[:, :, 2], torch.zeros(1, 2, D))
    # the other rows are untouched: the same as attention with row 2 opened
    opened = attend(q, k, v, attn_mask=torch.ones(4, 4, dtype=torch.bool))
    torch.testing.assert_close(out[:, :, [0, 1, 3]], opened[:, :, [0, 1, 3]])


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.ones(2, T, T, dtype=torch.bool), "does not fit"),  # 3-D: ambiguous, refused
        (torch.ones(T, T + 1, dtype=torch.bool), "does not fit"),  # S counts the wrong keys
        (torch.ones(3, 1, T, T, dtype=torch.bool), "does not fit"),  # batch 3 for a batch of 2
        (torch.ones(T, T, dtype=torch.long), "boolean or floating point"),
    ],
)
def test_bad_masks_are_config_errors(mask, message):
    q = k = v = torch.zeros(B, H, T, D)
    with pytest.raises(ConfigError, match=message):
        attend(q, k, v, attn_mask=mask)


def test_tiled_kernel_refuses_a_mask_in_one_line():
    q = k = v = torch.zeros(1, 1, T, D)
    with pytest.raises(ConfigError, match="attention='tiled' takes no attn_mask"):
        attend(q, k, v, kernel="tiled", attn_mask=torch.ones(T, T, dtype=torch.bool))


def test_causal_mask_is_the_shifted_lower_triangle():
    assert torch.equal(causal_mask(3, 3), torch.ones(3, 3, dtype=torch.bool).tril())
    assert causal_mask(2, 5, past=3).tolist() == [[True, True, True, True, False], [True] * 5]


def test_document_mask_is_block_diagonal_and_causal():
    expected = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=torch.bool
    )
    ids = torch.tensor([7, 7, 3, 3, 3])
    assert torch.equal(document_mask(ids), expected)
    assert torch.equal(document_mask(ids[None].repeat(2, 1)), expected.expand(2, 1, 5, 5))
    assert torch.equal(document_mask(ids, causal=False), ids[:, None] == ids[None, :])
    with pytest.raises(ConfigError, match="integer ids"):
        document_mask(torch.zeros(5))


# the mask inside the module and the model


@pytest.fixture
def rope_gqa_gpt():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, pos_embedding="rope")
    return GPT(config).eval()


def test_module_mask_equals_sdpa_with_the_triangle(tiny_gpt_config):
    attn = CausalSelfAttention(GPTConfig(**tiny_gpt_config)).eval()
    x = torch.randn(2, 6, 16)
    mask = random_mask((2, 1, 6, 6), torch.float32, "bool")
    q, k, v = (t.view(2, 6, 2, 8).transpose(1, 2) for t in attn.c_attn(x).split(16, dim=2))
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask & causal_mask(6, 6))
    torch.testing.assert_close(attn(x, attn_mask=mask), attn.c_proj(y.transpose(1, 2).reshape(2, 6, 16)))


def test_packed_documents_give_the_losses_of_each_document_alone(rope_gqa_gpt):
    """What SFT packing relies on: two documents in one row, a block-diagonal causal mask, per-token losses
    equal to running each document alone (RoPE: positions matter only as offsets)."""
    g = torch.Generator().manual_seed(0)
    first, second = torch.randint(0, 13, (1, 7), generator=g), torch.randint(0, 13, (1, 5), generator=g)
    packed = torch.cat((first, second), dim=1)
    doc_ids = torch.tensor([[0] * 7 + [1] * 5])
    logits, _ = rope_gqa_gpt(packed[:, :-1], attn_mask=document_mask(doc_ids[:, :-1]))
    targets = packed[:, 1:].masked_fill(doc_ids[:, 1:] != doc_ids[:, :-1], -1)  # no target across the seam
    packed_losses = F.cross_entropy(logits[0], targets[0], ignore_index=-1, reduction="none")
    alone = []
    for doc in (first, second):
        doc_logits, _ = rope_gqa_gpt(doc[:, :-1])
        alone.append(F.cross_entropy(doc_logits[0], doc[0, 1:], reduction="none"))
    expected = torch.cat((alone[0], torch.zeros(1), alone[1]))  # the seam's position has no loss
    torch.testing.assert_close(packed_losses, expected, atol=1e-5, rtol=1e-5)
    unmasked, _ = rope_gqa_gpt(packed[:, :-1])
    assert not torch.allclose(unmasked[0, 7:], logits[0, 7:], atol=1e-3)  # without the mask they differ


def test_learned_positions_do_not_make_packing_exact(make_tiny_gpt):
    """The documented limit: learned absolute positions see the second document at shifted positions."""
    model = make_tiny_gpt(vocab_size=13).eval()
    packed = torch.randint(0, 13, (1, 8), generator=torch.Generator().manual_seed(0))
    logits, _ = model(packed, attn_mask=document_mask(torch.tensor([[0] * 4 + [1] * 4])))
    torch.testing.assert_close(logits[:, :4], model(packed[:, :4])[0])
    assert not torch.allclose(logits[:, 4:], model(packed[:, 4:])[0], atol=1e-3)


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_mask_with_the_kv_cache_equals_one_masked_forward(kind, rope_gqa_gpt):
    """The mask's last dim spans every key, cached ones included: prefill, one token and a chunk, each given
    its rows of the full (B, 1, T, T) mask (rows = new tokens, columns = all keys so far)."""
    idx = torch.randint(0, 13, (2, 10), generator=torch.Generator().manual_seed(0))
    mask = random_mask((2, 1, 10, 10), torch.float32, kind, seed=3)
    full, _ = rope_gqa_gpt(idx, attn_mask=mask)
    cache = KVCache.for_model(rope_gqa_gpt, batch_size=2)
    parts = []
    for start, end in ((0, 4), (4, 5), (5, 10)):
        logits, _ = rope_gqa_gpt(idx[:, start:end], cache=cache, attn_mask=mask[:, :, start:end, :end])
        parts.append(logits)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_left_padding_mask_gives_the_unpadded_logits(rope_gqa_gpt):
    """A key padding mask (B, 1, 1, S) with left padding: the real tokens' logits equal the unpadded run's."""
    ids = torch.randint(1, 13, (1, 6), generator=torch.Generator().manual_seed(0))
    padded = torch.cat((torch.zeros(1, 3, dtype=torch.long), ids), dim=1)
    logits, _ = rope_gqa_gpt(padded, attn_mask=(padded != 0)[:, None, None, :])
    assert torch.isfinite(logits).all()  # the pad queries see no key: zero attention, not NaN
    torch.testing.assert_close(logits[:, 3:], rope_gqa_gpt(ids)[0], atol=1e-5, rtol=1e-5)


def test_training_through_a_mask_has_finite_gradients(rope_gqa_gpt):
    rope_gqa_gpt.train()
    idx = torch.randint(1, 13, (2, 8), generator=torch.Generator().manual_seed(0))
    idx[0, :3] = 0
    _, loss = rope_gqa_gpt(idx, idx.masked_fill(idx == 0, -1), attn_mask=(idx != 0)[:, None, None, :])
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in rope_gqa_gpt.parameters())
