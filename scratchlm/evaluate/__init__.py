"""Evaluating a language model: what it knows (held-out scores), how sure it is, and how it does it.

Held-out scoring (`heldout`; lessons 06 and 08 derive it):

    token_bytes(tokenizer) -> (V,) int64                      UTF-8 bytes of each token id
    token_nats(model, ids, stride=None, batch_size=64, desc=None, *, block_size=None)
        -> (nats, context), each (len(ids) - 1,)             sliding or side-by-side windows, every target once
    bits_per_byte(nats, ids, n_bytes) -> float               code length of the text per byte
    loss_by_position(model, windows, context=None, stride=None, batch_size=32)
        -> (N, L) losses for windows (N, L + 1)              [:, t] predicts token t + 1 with t + 1 tokens of
                                                             context, or at most `context` tokens (sliding)
"""

from scratchlm.evaluate.heldout import bits_per_byte, loss_by_position, scoring, token_bytes, token_nats

__all__ = ["bits_per_byte", "loss_by_position", "scoring", "token_bytes", "token_nats"]
