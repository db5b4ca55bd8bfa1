"""Attention, as the lessons derive it: one causal head (lesson 02) and memory-efficient kernels (lesson 07)."""

from scratchlm.attention.head import Head
from scratchlm.attention.tiled import naive_attention, online_softmax, tiled_attention
from scratchlm.attention.triton_kernel import TritonUnavailableError, triton_attention

__all__ = ["Head", "TritonUnavailableError", "naive_attention", "online_softmax", "tiled_attention", "triton_attention"]
