"""scratchlm: the library that the LLM-from-scratch course builds.

The names a lesson needs most are importable from the package itself; everything else lives in the module
named for its job (model, attention, generation, training, checkpoint, data, tokenizers, hf).
They are imported on first use, so `import scratchlm.tokenizers` stays light (no torch) for tokenizer-only
users and benchmarks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "GPT": "scratchlm.model",
    "GPTConfig": "scratchlm.model",
    "BigramLanguageModel": "scratchlm.bigram",
    "Head": "scratchlm.attention",
    "generate": "scratchlm.generation",
    "TrainConfig": "scratchlm.training",
    "TrainResult": "scratchlm.training",
    "train": "scratchlm.training",
    "get_device": "scratchlm.runtime",
    "pick": "scratchlm.runtime",
    "set_seed": "scratchlm.runtime",
}

__all__ = [
    "GPT",
    "BigramLanguageModel",
    "GPTConfig",
    "Head",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "generate",
    "get_device",
    "pick",
    "set_seed",
    "train",
]

if TYPE_CHECKING:
    from scratchlm.attention import Head
    from scratchlm.bigram import BigramLanguageModel
    from scratchlm.generation import generate
    from scratchlm.model import GPT, GPTConfig
    from scratchlm.runtime import get_device, pick, set_seed
    from scratchlm.training import TrainConfig, TrainResult, train


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scratchlm' has no attribute {name!r}")
