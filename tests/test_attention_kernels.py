"""The memory-efficient attention kernels of lesson 07 against PyTorch's own attention and autograd."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlm.attention import TritonUnavailableError, naive_attention, online_softmax, tiled_attention, triton_kernel
from scratchlm.profiling import operators_called, peak_extra_memory, peak_live_bytes

ROOT = Path(__file__).resolve().parent.parent
TOL32 = {"atol": 1e-5, "rtol": 1e-5}

# (B, H, T, D, block_size): T equal to, below, and not a multiple of the block; D not a power of two
SHAPES = [(1, 1, 1, 8, 4), (2, 3, 37, 16, 16), (1, 2, 130, 64, 64), (2, 1, 200, 40, 128), (1, 1, 64, 24, 64)]


def qkv(B, H, T, D, dtype=torch.float32, T_k=None, requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(B, H, T, D), (B, H, T_k or T, D), (B, H, T_k or T, D)]
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_(requires_grad) for s in shapes]


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_tiled_forward_matches_sdpa(shape, causal):
    *bhtd, block = shape
    q, k, v = qkv(*bhtd)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(tiled_attention(q, k, v, causal=causal, block_size=block), expected, **TOL32)
    torch.testing.assert_close(naive_attention(q, k, v, causal=causal), expected, **TOL32)


def test_tiled_non_causal_with_more_keys_than_queries_and_a_custom_scale():
    q, k, v = qkv(2, 2, 50, 32, T_k=77)
    expected = F.scaled_dot_product_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(tiled_attention(q, k, v, causal=False, block_size=16, scale=0.3), expected, **TOL32)


def test_tiled_handles_large_scores_without_overflow():
    q, k, v = qkv(1, 2, 70, 16)
    q = q * 300  # scores in the thousands: exp() without the running max would overflow
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = tiled_attention(q, k, v, block_size=16)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, **TOL32)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("shape", SHAPES[1:4], ids=lambda s: "x".join(map(str, s)))
def test_tiled_gradients_match_autograd_through_naive_attention(shape, causal):
    *bhtd, block = shape
    q, k, v = qkv(*bhtd, requires_grad=True)
    dout = torch.randn((*q.shape[:-1], v.shape[-1]), generator=torch.Generator().manual_seed(1))
    expected = torch.autograd.grad(naive_attention(q, k, v, causal=causal), (q, k, v), dout)
    got = torch.autograd.grad(tiled_attention(q, k, v, causal=causal, block_size=block), (q, k, v), dout)
    for name, g, e in zip("qkv", got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=2e-5, rtol=1e-4, msg=lambda m, name=name: f"d{name}: {m}")


def test_tiled_backward_passes_gradcheck_in_float64():
    q, k, v = qkv(1, 1, 7, 3, dtype=torch.float64, requires_grad=True)
    for causal in (True, False):
        assert torch.autograd.gradcheck(lambda q, k, v, c=causal: tiled_attention(q, k, v, c, block_size=3), (q, k, v))


def test_tiled_backward_saves_nothing_quadratic_in_t():
    T = 96
    q, k, v = qkv(1, 1, T, 8, requires_grad=True)
    out = tiled_attention(q, k, v, block_size=32)
    saved = out.grad_fn.saved_tensors
    assert sum(t.numel() for t in saved) == 4 * T * 8 + T  # q, k, v, out and one logsumexp per row


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_tiled_half_precision_accumulates_in_float32(dtype):
    q, k, v = qkv(1, 2, 150, 32, dtype=dtype)
    out = tiled_attention(q, k, v, block_size=32)
    assert out.dtype == dtype
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    # within one rounding of the 16-bit output: the accumulation itself lost nothing
    torch.testing.assert_close(out.float(), exact, atol=2 * torch.finfo(dtype).eps, rtol=0)


def test_tiled_rejects_bad_input():
    q, k, v = qkv(1, 1, 8, 4, T_k=10)
    with pytest.raises(ValueError, match="T_q == T_k"):
        tiled_attention(q, k, v, causal=True)
    with pytest.raises(ValueError, match="block_size"):
        tiled_attention(q, k, v, causal=False, block_size=0)
    with pytest.raises(ValueError, match="incompatible shapes"):
        tiled_attention(q, k[..., :3], v, causal=False)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1, max_size=200),
    block_size=st.integers(1, 64),
)
def test_online_softmax_equals_softmax_on_a_vector(values, block_size):
    x = torch.tensor(values, dtype=torch.float32)
    torch.testing.assert_close(online_softmax(x, block_size), torch.softmax(x, -1), **TOL32)


def test_online_softmax_on_rows_of_a_matrix_with_masked_entries():
    x = torch.randn(5, 300)
    x[:, 10:40] = float("-inf")  # a whole block of -inf must not produce NaN
    torch.testing.assert_close(online_softmax(x, 16), torch.softmax(x, -1))


def test_peak_live_bytes_takes_the_running_maximum_in_time_order():
    assert peak_live_bytes([(3, -100), (1, 100), (2, 50), (4, 30)]) == 150
    assert peak_live_bytes([]) == 0


def test_operators_called_lists_what_ran_in_order():
    a = torch.randn(8, 8)
    ops = operators_called(lambda: torch.softmax(a @ a, dim=-1))
    assert ops.index("aten::matmul") < ops.index("aten::softmax")


def test_tiled_extra_memory_is_far_below_naive():
    q, k, v = qkv(1, 2, 512, 32)
    _, naive = peak_extra_memory(lambda: naive_attention(q, k, v))
    _, tiled = peak_extra_memory(lambda: tiled_attention(q, k, v, block_size=64))
    scores = 2 * 512 * 512 * 4  # one float32 (B, H, T, T) matrix
    assert naive >= scores
    assert tiled < naive / 8


def test_triton_missing_is_a_clear_scratchlm_error(monkeypatch):
    q, k, v = qkv(1, 1, 16, 16)
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    triton_kernel._kernel.cache_clear()
    try:
        with pytest.raises(TritonUnavailableError, match="not installed"):
            triton_kernel.triton_attention(q, k, v)
        assert not triton_kernel.triton_available()
    finally:
        triton_kernel._kernel.cache_clear()


def test_triton_on_cpu_without_the_interpreter_says_how_to_enable_it(monkeypatch):
    pytest.importorskip("triton")
    q, k, v = qkv(1, 1, 16, 16)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    triton_kernel._kernel.cache_clear()
    try:
        with pytest.raises(TritonUnavailableError, match="TRITON_INTERPRET=1"):
            triton_kernel.triton_attention(q, k, v)
    finally:
        triton_kernel._kernel.cache_clear()


# Triton reads TRITON_INTERPRET when a kernel is defined; a fresh interpreter keeps this independent of
# whatever the test session imported or compiled before. It first checks that importing the package leaves
# triton alone (only meaningful where triton is installed).
TRITON_INTERPRETER_CHECK = textwrap.dedent(
    """
    import sys

    import scratchlm.attention
    print("triton imported by scratchlm.attention:", "triton" in sys.modules, flush=True)

    import torch
    import torch.nn.functional as F
    from scratchlm.attention import triton_attention

    g = torch.Generator().manual_seed(0)
    shapes = [(1, 2, 37, 16, 37, 16, 16), (2, 1, 70, 40, 70, 32, 16), (1, 1, 20, 64, 45, 16, 32)]
    for (B, H, T, D, T_k, bm, bn) in shapes:  # (B, H, T_q, D, T_k, block_m, block_n)
        q, k, v = (torch.randn(B, H, t, D, generator=g) for t in (T, T_k, T_k))
        for causal in ((True, False) if T == T_k else (False,)):
            expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            got = triton_attention(q, k, v, causal=causal, block_m=bm, block_n=bn)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    q, k, v = (torch.randn(1, 2, 40, 32, generator=g) for _ in range(3))
    for dtype in (torch.float16, torch.bfloat16):
        got = triton_attention(q.to(dtype), k.to(dtype), v.to(dtype), block_m=16, block_n=16)
        assert got.dtype == dtype
        exact = F.scaled_dot_product_attention(q.to(dtype).float(), k.to(dtype).float(), v.to(dtype).float(),
                                               is_causal=True)
        torch.testing.assert_close(got.float(), exact, atol=4 * torch.finfo(dtype).eps, rtol=0)

    # forward by the kernel, backward by tiled_backward from the kernel's logsumexp
    q, k, v = (torch.randn(1, 2, 33, 16, generator=g, requires_grad=True) for _ in range(3))
    got = torch.autograd.grad(triton_attention(q, k, v, block_m=16, block_n=16).sum(), (q, k, v))
    expected = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=True).sum(), (q, k, v))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    """
)


@pytest.fixture(scope="module")
def interpreter_run() -> subprocess.CompletedProcess:
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    return subprocess.run(
        [sys.executable, "-c", TRITON_INTERPRETER_CHECK],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_importing_the_attention_package_does_not_import_triton(interpreter_run):
    assert "triton imported by scratchlm.attention: False" in interpreter_run.stdout, interpreter_run.stderr[-3000:]


def test_triton_kernel_matches_sdpa_under_the_interpreter(interpreter_run):
    assert interpreter_run.returncode == 0, interpreter_run.stderr[-3000:]
