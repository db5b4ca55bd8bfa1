"""Attention, as the lessons derive it: one causal head (lesson 02) and memory-efficient kernels (lesson 07)."""

from scratchlm.attention.head import Head

__all__ = ["Head"]
