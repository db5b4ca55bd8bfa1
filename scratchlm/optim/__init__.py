"""Optimizers written here: Muon (momentum, then each hidden matrix's step orthogonalised by a Newton–Schulz
iteration) beside PyTorch's AdamW, and the object that steps them as one.

    hidden, rest = split_parameters(model)       # Muon's matrices, AdamW's everything else
    newton_schulz(G)                             # ≈ U Vᵀ for G = U S Vᵀ, singular values in QUINTIC_BAND

`scratchlm.training.make_optimizer` builds the pair for `TrainConfig(optimizer="muon")`.
"""

from scratchlm.optim.combined import CombinedOptimizer
from scratchlm.optim.muon import Muon, update_scale
from scratchlm.optim.newton_schulz import (
    QUINTIC,
    QUINTIC_BAND,
    QUINTIC_FLOOR,
    QUINTIC_STEPS,
    newton_schulz,
    quintic_on_singular_values,
)
from scratchlm.optim.split import HiddenMatrix, hidden_matrices, split_parameters

__all__ = [
    "QUINTIC",
    "QUINTIC_BAND",
    "QUINTIC_FLOOR",
    "QUINTIC_STEPS",
    "CombinedOptimizer",
    "HiddenMatrix",
    "Muon",
    "hidden_matrices",
    "newton_schulz",
    "quintic_on_singular_values",
    "split_parameters",
    "update_scale",
]
