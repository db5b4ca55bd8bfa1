"""Which parameters Muon updates and which stay with AdamW.

Muon is for hidden weight matrices: the 2-D weights of the `nn.Linear` layers inside the network. AdamW keeps
the rest: embeddings (a lookup table, not a linear map of the activations; each step touches the rows of the
tokens in the batch only), the output head (a classifier over the vocabulary, whose rows should move by how
often their token is seen, which Adam's per-entry scaling does and orthogonalisation undoes), and every vector
(norm gains, biases). A head tied to the embedding is the embedding, so it stays with AdamW too.

The rule reads modules, not names, so it holds for any model: a `nn.Linear` whose attribute name is `lm_head`
is the head, and a weight shared with an `nn.Embedding` is an embedding. Fused projections are recognised by
shape, not type: a module with `c_attn`, `n_head`, `n_kv_head` and `head_size` attributes (the GPT's
`CausalSelfAttention`) holds [q | k | v] in `c_attn`, and its weight gets the row `blocks` (H D, H_kv D, H_kv D)
that `Muon` orthogonalises one by one; a module whose `c_fc` Linear is twice as wide as its `c_proj` reads (the
SwiGLU MLP) holds [gate | up], blocks (h, h).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

HEAD_NAME = "lm_head"


@dataclass(frozen=True)
class HiddenMatrix:
    """A parameter for Muon: its name in `model.named_parameters()`, the tensor, the row sizes of the matrices
    fused in it (None: one matrix)."""

    name: str
    param: nn.Parameter
    blocks: tuple[int, ...] | None = None


def _fused_blocks(model: nn.Module) -> dict[int, tuple[int, ...]]:
    """{id(weight): row blocks} for every fused projection: (H D, H_kv D, H_kv D) for an attention module's
    [q | k | v], (h, h) for a gated MLP's [gate | up] (a `c_fc` twice as wide as its `c_proj` reads)."""
    blocks = {}
    for module in model.modules():
        if all(hasattr(module, a) for a in ("c_attn", "n_head", "n_kv_head", "head_size")):
            q, kv = module.n_head * module.head_size, module.n_kv_head * module.head_size
            blocks[id(module.c_attn.weight)] = (q, kv, kv)
        fc, proj = getattr(module, "c_fc", None), getattr(module, "c_proj", None)
        if isinstance(fc, nn.Linear) and isinstance(proj, nn.Linear) and fc.out_features == 2 * proj.in_features:
            blocks[id(fc.weight)] = (proj.in_features, proj.in_features)
    return blocks


def hidden_matrices(model: nn.Module) -> list[HiddenMatrix]:
    """The trainable 2-D weights of `model`'s hidden `nn.Linear` layers (see the module), in parameter order."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    linear = {
        id(m.weight)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] != HEAD_NAME
    }
    fused = _fused_blocks(model)
    return [
        HiddenMatrix(name, p, fused.get(id(p)))
        for name, p in model.named_parameters()  # yields a tied tensor once
        if p.requires_grad and p.dim() == 2 and id(p) in linear and id(p) not in embedded
    ]


def split_parameters(model: nn.Module) -> tuple[list[HiddenMatrix], list[nn.Parameter]]:
    """(the hidden matrices for Muon, every other trainable parameter for AdamW), each in parameter order."""
    hidden = hidden_matrices(model)
    taken = {id(h.param) for h in hidden}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    return hidden, rest
